"""Times and durations.

Times are stored as integer microseconds since the epoch (UTC): they sort, compare
and index cheaply on every backend, and keep sub-second order between snapshots.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from appban.errors import BadInput

Micros = int

_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# Times a datetime can show again (format_time): years 1 to 9999, in UTC.
_FIRST = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MICRO
_LAST = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICRO
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([wdhms])")
_EXAMPLE = "2020-07-10T16:00:00Z"
_DATE_ONLY = re.compile(r"[0-9W-]+")  # what fromisoformat reads as a date: 2020-07-10, 20200710, 2020-W28-5


def now_micros() -> Micros:
    return (datetime.now(UTC) - _EPOCH) // _MICRO


def parse_time(text: object, *, field: str = "time", naive_is_utc: bool = False) -> Micros:
    """An ISO-8601 time with an offset (``2020-07-10T16:00:00Z``, ``...+02:00``).

    A time without an offset, or a date without a time, is refused: which zone it
    meant cannot be known, and a guess moves a deadline by hours. Vendor formats that
    document their naive times as UTC say so with ``naive_is_utc``. PyYAML turns
    unquoted timestamps into ``datetime`` (aware or naive) and bare dates into
    ``date``: each is taken as if it had been written as text.
    """
    if isinstance(text, datetime):
        value = text
    elif isinstance(text, date):
        raise BadInput(f"{text.isoformat()!r} is a date: give a time with an offset, e.g. {_EXAMPLE}", field=field)
    elif isinstance(text, str) and 0 < len(text) <= 64:
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise BadInput(f"not an ISO-8601 time: {text!r}", field=field) from None
    else:
        raise BadInput(f"expected an ISO-8601 time, got {_kind(text)}", field=field)
    if value.utcoffset() is None:
        if not naive_is_utc:
            shown = text.strip() if isinstance(text, str) else value.isoformat()
            if _DATE_ONLY.fullmatch(shown):
                raise BadInput(f"{shown!r} is a date: give a time with an offset, e.g. {_EXAMPLE}", field=field)
            raise BadInput(f"{shown!r} has no offset: add Z (UTC) or +HH:MM, e.g. {_EXAMPLE}", field=field)
        value = value.replace(tzinfo=UTC)
    micros = (value - _EPOCH) // _MICRO
    if not _FIRST <= micros <= _LAST:
        raise BadInput(f"time outside the years 1-9999 in UTC: {value.isoformat()!r}", field=field)
    return micros


def format_time(value: Micros | None) -> str | None:
    if value is None:
        return None
    dt = _EPOCH + timedelta(microseconds=value)
    if value % _SECOND:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: object, *, field: str = "duration", allow_zero: bool = False) -> Micros:
    """``7d``, ``24h``, ``1d12h``, ``90m``, ``2w``, ``30s``; zero only where ``allow_zero``."""
    if isinstance(text, str) and 0 < len(text) <= 32:
        compact = text.strip().replace(" ", "")
        if compact and _DURATION.sub("", compact) == "":
            seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
            if seconds > 0 or allow_zero:
                return seconds * _SECOND
    shown = repr(text) if isinstance(text, str) and len(text) <= 32 else _kind(text)
    raise BadInput(f"bad duration {shown}: use e.g. 7d, 24h, 90m", field=field)


def format_duration(value: Micros) -> str:
    seconds = value // _SECOND
    out = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return type(value).__name__
