"""Times and durations.

Times are stored as integer microseconds since the epoch (UTC): they sort, compare
and index cheaply on every backend, and keep sub-second order between snapshots.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from appban.errors import BadInput

Micros = int

_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# Times a datetime can show again (format_time): years 1 to 9999, in UTC.
FIRST_TIME: Micros = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MICRO
LAST_TIME: Micros = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICRO
_FIRST, _LAST = FIRST_TIME, LAST_TIME
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([wdhms])")
# The longest duration: 100 years of 365.25 days. Longer ones mean nothing for an
# inventory's age or a reminder, and an unbounded one overflows what a database
# stores (a 64-bit count of microseconds lasts about 292,000 years).
MAX_DURATION_DAYS = 36525
MAX_DURATION: Micros = MAX_DURATION_DAYS * 86400 * _SECOND
_EXAMPLE = "2020-07-10T16:00:00Z"
_DATE_ONLY = re.compile(r"[0-9W-]+")  # what fromisoformat reads as a date: 2020-07-10, 20200710, 2020-W28-5
# The times appban reads: RFC 3339's date-time (ISO-8601's extended format), with a
# space allowed for the "T", the seconds optional, any number of digits of a second
# (past six, cut: times are kept to the microsecond), and an offset written Z,
# +HH:MM, +HHMM or +HH, optionally after a space. Nothing else: Python's fromisoformat
# alone also takes "10:00:009" (as 10:00:00), "10:00:00.Z", week dates and offsets
# with seconds, which no system appban reads writes, and a typo must not pass for a time.
_TIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)[Tt ]"
    r"(?P<hour>\d\d):(?P<minute>\d\d)(?::(?P<second>\d\d)(?:[.,](?P<fraction>\d+))?)?"
    r"(?: ?(?P<zone>[Zz]|(?P<sign>[+-])(?P<oh>\d\d)(?::?(?P<om>\d\d))?))?",
    re.ASCII,
)
# The parts of a time that looks like ISO-8601, to say which one is out of range
# when fromisoformat refuses it (30 February, hour 24, offset +25:00).
_PARTS = re.compile(
    r"(?P<year>\d{4})-?(?P<month>\d\d)-?(?P<day>\d\d)"
    r"(?:[T ](?P<hour>\d\d)(?::?(?P<minute>\d\d)(?::?(?P<second>\d\d)(?:[.,]\d+)?)?)?)?"
    r"\s*(?:Z|(?P<sign>[+-])(?P<oh>\d\d)(?::?(?P<om>\d\d))?)?",
    re.IGNORECASE,
)


def now_micros() -> Micros:
    return (datetime.now(UTC) - _EPOCH) // _MICRO


def parse_time(text: object, *, field: str = "time", naive_is_utc: bool = False) -> Micros:
    """An ISO-8601 time with an offset (``2020-07-10T16:00:00Z``, ``...+02:00``), in
    one of the forms ``_TIME`` describes (RFC 3339's, and a little more).

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
        value = read_time(text.strip(), field)
    else:
        raise BadInput(f"expected an ISO-8601 time, got {_kind(text)}", field=field)
    if value.utcoffset() is None:
        if not naive_is_utc:
            shown = text.strip() if isinstance(text, str) else value.isoformat()
            raise BadInput(f"{shown!r} has no offset: add Z (UTC) or +HH:MM, e.g. {_EXAMPLE}", field=field)
        value = value.replace(tzinfo=UTC)
    micros = (value - _EPOCH) // _MICRO
    if not _FIRST <= micros <= _LAST:
        raise BadInput(f"time outside the years 1-9999 in UTC: {value.isoformat()!r}", field=field)
    return micros


def read_time(text: str, field: str = "time") -> datetime:
    """``text`` as a datetime, aware when it has an offset, naive when not (for readers
    that know the zone of naive times); BadInput unless it is a time of the forms
    ``_TIME`` describes, with every part in range."""
    m = _TIME.fullmatch(text)
    if m is None:
        if _DATE_ONLY.fullmatch(text):
            raise BadInput(f"{text!r} is a date: give a time with an offset, e.g. {_EXAMPLE}", field=field)
        raise BadInput(_why_not_a_time(text), field=field)
    try:
        zone = None
        if m["sign"] is not None:
            offset = timedelta(hours=int(m["oh"]), minutes=int(m["om"] or 0))
            zone = timezone(-offset if m["sign"] == "-" else offset)
        elif m["zone"] is not None:
            zone = UTC
        return datetime(
            int(m["year"]),
            int(m["month"]),
            int(m["day"]),
            int(m["hour"]),
            int(m["minute"]),
            int(m["second"] or 0),
            int((m["fraction"] or "")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError:  # a part out of range: 30 February, hour 24, offset +24:00
        raise BadInput(_why_not_a_time(text), field=field) from None


def _why_not_a_time(text: str) -> str:
    """What is wrong with a time fromisoformat refused, in appban's words."""
    m = _PARTS.fullmatch(text)
    if m is not None:
        year, month, day = int(m["year"]), int(m["month"]), int(m["day"])
        if year == 0:
            return f"{text!r}: there is no year 0000 (years are 0001 to 9999)"
        if not 1 <= month <= 12:
            return f"{text!r}: month {m['month']} is not 01 to 12"
        try:
            date(year, month, day)
        except ValueError:
            return f"{text!r}: {m['year']}-{m['month']} has no day {m['day']}"
        for part, limit in (("hour", 23), ("minute", 59), ("second", 59)):
            if m[part] is not None and int(m[part]) > limit:
                return f"{text!r}: {part} {m[part]} is not 00 to {limit}"
        if m["sign"] is not None and (int(m["oh"]) > 23 or int(m["om"] or 0) > 59):
            offset = f"{m['sign']}{m['oh']}:{m['om'] or '00'}"
            return f"{text!r}: the offset {offset} is not a time zone offset (-23:59 to +23:59)"
    return f"not an ISO-8601 time: {text!r}"


def format_time(value: Micros | None) -> str | None:
    """``2020-07-10T16:00:00Z``, with ``.ffffff`` when there is a fraction of a second.

    The year always has four digits (``0202``, not ``202``): ISO-8601 says so, and
    parse_time must read back every time this writes (strftime's ``%Y`` does not pad).
    """
    if value is None:
        return None
    dt = _EPOCH + timedelta(microseconds=value)
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if value % _SECOND:
        return f"{text}.{dt.microsecond:06d}Z"
    return text + "Z"


def parse_duration(text: object, *, field: str = "duration", allow_zero: bool = False) -> Micros:
    """``7d``, ``24h``, ``1d12h``, ``90m``, ``2w``, ``30s``; zero only where ``allow_zero``;
    at most MAX_DURATION (100 years)."""
    if isinstance(text, str) and 0 < len(text) <= 32:
        compact = text.strip().replace(" ", "")
        if compact and _DURATION.sub("", compact) == "":
            seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
            if seconds * _SECOND > MAX_DURATION:
                raise BadInput(
                    f"duration {text.strip()!r} is longer than 100 years ({MAX_DURATION_DAYS}d)",
                    field=field,
                )
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
