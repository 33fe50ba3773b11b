"""The ``exchange`` inventory format: which phones read mail, as Exchange knows them.

Exchange Server and Exchange Online list every mail partnership with
``Get-MobileDevice`` and, with their sync times, ``Get-MobileDeviceStatistics`` (and
Exchange Online's ``Get-EXOMobileDeviceStatistics``). An admin saves them with
``Export-Csv`` or ``ConvertTo-Json``; either file is read here, with the columns of
one cmdlet or of both joined. Exchange sees no apps: each partnership becomes a
record of scope ``none`` that says the device reads mail (``mail_access``), with its
ActiveSync DeviceId, the key the gate knows it by.

What the files look like, as PowerShell writes them:

- ``Export-Csv``: a ``#TYPE ...`` first line unless ``-NoTypeInformation`` (Windows
  PowerShell 5.1 writes it, PowerShell 7 does not); UTF-8 with or without a
  byte-order mark, or UTF-16 LE with one (``-Encoding Unicode``). Every value is
  the object's ``ToString()``, so a time is written in the exporting session's
  culture (``7/10/2020 3:00:00 PM``, ``10/07/2020 15:00:00``, ``10.07.2020 15:00:00``).
- ``ConvertTo-Json``: an array, or one object when there is one partnership (also
  JSON Lines, and an Exchange Online REST ``value`` page). Windows PowerShell 5.1
  writes times as ``/Date(1594393200000)/`` (milliseconds since 1970, UTC) and
  ``> file`` saves UTF-16 LE; PowerShell 7 writes ISO 8601, with or without an
  offset. A time may come wrapped as ``{"value": ..., "DateTime": ...}``, and
  ``Identity`` as the object PowerShell had (its ``DistinguishedName`` is read).

Property names are compared without case: ``Get-MobileDevice`` says ``DeviceId``
where the statistics say ``DeviceID``.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any, BinaryIO

import ijson

from appban.clock import FIRST_TIME, LAST_TIME, Micros, parse_time
from appban.errors import BadInput
from appban.gate.users import UserNames
from appban.inventory._lines import CsvReader
from appban.inventory._vendor import open_binary, vendor_time
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin, build
from appban.text import ascii_lower

# Columns an admin's joined export may add beside the cmdlets' own: the mailbox's
# address (Get-Mailbox's PrimarySmtpAddress, Get-EXOMailbox's UserPrincipalName).
_ADDRESS_KEYS = ("primarysmtpaddress", "userprincipalname", "windowsemailaddress")
# The container of a mailbox's partnerships in an Identity:
# "jane\ExchangeActiveSyncDevices\iPhone§V2UV..." (Exchange Online),
# "contoso.com/Users/Jane Doe/ExchangeActiveSyncDevices/iPhone§V2UV..." (on premises).
_CONTAINER = "exchangeactivesyncdevices"
# A mailbox name that could be an address's local part, and a GUID, which cannot.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_GUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
# Clients that reach the mailbox by another protocol than ActiveSync (Outlook for iOS
# and Android through Microsoft's sync service, REST, Outlook on the web for devices):
# they read mail, but their DeviceId never reaches an ActiveSync gate.
_NOT_ACTIVESYNC = frozenset({"outlook", "rest", "restapi", "mowa", "universaloutlook", "hx"})
# DeviceOS as Exchange shows it ("iOS 13.5.1 17F80", "Android 10.0.0", "Windows 10.0.19041").
_OS = re.compile(
    r"\s*(?P<os>ipados|iphone os|ios|android|windows phone|windows|mac os x|macos|os x|chrome ?os|linux)\b"
    r"\s*(?P<version>.*)",
    re.IGNORECASE,
)
_OS_PLATFORM = {
    "ipados": "ipados",
    "iphone os": "ios",
    "ios": "ios",
    "android": "android",
    "windows phone": "windows",
    "windows": "windows",
    "mac os x": "macos",
    "macos": "macos",
    "os x": "macos",
    "chromeos": "chromeos",
    "chrome os": "chromeos",
    "linux": "linux",
}
# When DeviceOS is empty: DeviceType, then the user agent ("Apple-iPhone12C1/1705.80",
# "Outlook-Android/2.0", "Android-SAMSUNG-SM-G960F/101.9.0").
_HINTS = (
    ("ipad", "ipados"),
    ("iphone", "ios"),
    ("ipod", "ios"),
    ("outlook-ios", "ios"),
    ("android", "android"),
    ("windowsmail", "windows"),
)
# .NET's times as Windows PowerShell 5.1's ConvertTo-Json writes them.
_MS_DATE = re.compile(r"/Date\((?P<ms>-?\d{1,16})(?:[+-]\d{4})?\)/")
# Export-Csv's times: DateTime.ToString() in the exporting session's culture.
_US = re.compile(
    r"(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4}) (?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d))? ?(?P<ampm>[AaPp][Mm])"
)
_DAY_FIRST = re.compile(
    r"(?P<d>\d{1,2})[./-](?P<m>\d{1,2})[./-](?P<y>\d{4}) (?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d))?"
)
_YEAR_FIRST = re.compile(r"(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2}) (?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d))?")
_NEVER = 1  # a year 1 time (DateTime.MinValue) is Exchange's "never"


class ExchangeFormat:
    name = "exchange"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        f = open_binary(path)
        rows: Iterator[_Row] = iter(())
        try:
            encoding, start = _encoding(f.read(4))
            f.seek(start)
            head = _first_character(f, encoding)
            f.seek(start)
            names = UserNames.from_settings()
            if head is None:
                return
            is_json = head in "[{"
            rows = _json_rows(f, encoding, array=head == "[") if is_json else _csv_rows(path, f, encoding, options)
            for row in rows:
                try:
                    checkin = _checkin(row, options, names)
                except BadInput as exc:
                    raise exc.at(line=row.line) from None
                if checkin is not None:
                    yield row.line, checkin
        except BadInput as exc:
            raise exc.at(file=path) from None
        finally:
            if isinstance(rows, Generator):
                rows.close()  # before the file it reads
            f.close()


# -- the file: encoding and shape --------------------------------------------------------------


def _encoding(bom: bytes) -> tuple[str, int]:
    """The file's encoding from its byte-order mark, and where the text starts."""
    if bom.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if bom.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if bom.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    return "utf-8", 0


def _first_character(f: BinaryIO, encoding: str) -> str | None:
    """The first character that is not white space, or None for an empty file."""
    text = codecs.getincrementaldecoder(encoding)("replace").decode(f.read(4096))
    stripped = text.lstrip(" \t\r\n\ufeff")
    return stripped[0] if stripped else None


class _Utf8:
    """A UTF-16 file read as UTF-8 bytes, for ijson, a block at a time."""

    def __init__(self, f: BinaryIO, encoding: str) -> None:
        self._f = f
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for nothing first, to learn whether it gets bytes
            return b""
        while True:
            block = self._f.read(65536 if size < 0 else max(size, 2))
            text = self._decoder.decode(block, final=not block)
            if text or not block:
                return text.encode("utf-8")


class _Row:
    """One partnership: its values by lower-cased property name, and where it is."""

    def __init__(self, values: dict[str, Any], line: int | None, at: str) -> None:
        self.values: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        for key, value in values.items():
            folded = ascii_lower(key)
            if folded not in self.names or self.values[folded] in (None, ""):
                self.values[folded] = value
                self.names[folded] = key
        self.line = line
        self.at = at

    def field(self, key: str) -> str:
        name = self.names.get(key, key)
        return f"{self.at}.{name}" if self.at else name

    def raw(self, key: str) -> Any:
        return self.values.get(key)

    def text(self, key: str) -> str | None:
        """A string property; numbers as their text; empty is None."""
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(f"expected a string, got {_kind(value)}", key)
        value = str(value).strip()
        return value or None

    def error(self, message: str, key: str) -> BadInput:
        return BadInput(message, line=self.line, field=self.field(key))


def _json_rows(f: BinaryIO, encoding: str, array: bool) -> Iterator[_Row]:
    """ConvertTo-Json's array (streamed, an item at a time), one object, JSON Lines of
    objects, or Exchange Online REST pages (``{"@odata.context": ..., "value": [...]}``)."""
    stream: Any = f if encoding == "utf-8" else _Utf8(f, encoding)
    n = 0
    try:
        for document in ijson.items(stream, "item" if array else "", multiple_values=True, use_float=True):
            records = [document]
            if (
                isinstance(document, dict)
                and isinstance(document.get("value"), list)
                and "deviceid" not in {ascii_lower(k) for k in document}
            ):
                records = document["value"]
            for record in records:
                if not isinstance(record, dict):
                    raise BadInput(f"expected an object, got {_kind(record)}", field=f"[{n}]")
                yield _Row(record, None, f"[{n}]")
                n += 1
    except ijson.JSONError:
        raise BadInput(f"not valid JSON (after {n:,} records)") from None
    except UnicodeError:
        raise BadInput(f"not {encoding.upper()[:6]} text (after {n:,} records)") from None
    except RecursionError:
        raise BadInput(f"JSON nested too deeply (after {n:,} records)") from None


def _delimiter(head: str) -> str:
    """The list separator of the export: ``,`` unless the header line is written with
    ``;`` or a tab (``Export-Csv -UseCulture`` or ``-Delimiter`` in many locales)."""
    for line in head.lstrip("\ufeff").splitlines():
        if line.strip() and not line.startswith("#TYPE"):
            counts = {d: line.count(d) for d in (",", ";", "\t")}
            best = max(counts, key=lambda d: counts[d])
            return best if counts[best] > counts[","] else ","
    return ","


def _csv_rows(path: str, f: BinaryIO, encoding: str, options: ReadOptions) -> Iterator[_Row]:
    """Export-Csv's rows, after its optional ``#TYPE`` line and the header."""
    # UTF-8 keeps bad bytes as surrogate escapes, for CsvReader to name their line.
    errors = "surrogateescape" if encoding == "utf-8" else "strict"
    start = f.tell()
    delimiter = _delimiter(f.read(65536).decode(encoding, errors="replace"))
    f.seek(start)
    text = io.TextIOWrapper(f, encoding=encoding, errors=errors, newline="")  # type: ignore[arg-type]
    reader = CsvReader(path, text, options.max_bytes, delimiter=delimiter)
    rows = iter(reader)
    try:
        header = reader.header(rows)
        if header is not None and len(header) == 1 and header[0].startswith("#TYPE"):
            header = reader.header(rows)
        if header is None:
            raise BadInput("no header line naming the columns")
        header = [h.strip() for h in header]
        reader.columns = header
        folded = [ascii_lower(h) for h in header]
        if "deviceid" not in folded:
            raise BadInput("no DeviceId column: is this a Get-MobileDevice export?", line=reader.header_line)
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise BadInput(f"{len(row)} columns where the header has {len(header)}", line=line)
            yield _Row(dict(zip(header, row, strict=True)), line, "")
    except UnicodeError:
        raise BadInput(f"not {encoding.upper()} text (after line {reader.line_num})") from None
    finally:
        text.detach()  # the file is the caller's to close


# -- one partnership ---------------------------------------------------------------------------


def _checkin(row: _Row, options: ReadOptions, names: UserNames) -> Checkin | None:
    device_id = row.text("deviceid")
    if device_id is None:
        raise row.error("missing", "deviceid")
    mailbox, partnership = _identity(row)
    platform = _platform(row)
    if platform is None:
        # BlackBerry, feature phones, an unnamed EAS client: no platform a policy can
        # name. The gate answers for their DeviceIds as for any unknown device.
        return None
    owner, owner_key, aliases = _owner(row, mailbox)
    imei = row.text("deviceimei")
    identifiers = [("imei", imei)] if imei else []
    identifiers += [("alias", a) for a in aliases]
    if owner is None and aliases and len(names.mail_domains) == 1 and not _mapped(options, device_id, identifiers):
        owner, owner_key = _complete(aliases[0], names), "identity"
    model = row.text("devicemodel")
    os_text = row.text("deviceos")
    match = _OS.match(os_text or "")
    os_version = (match.group("version").strip() or None) if match else os_text
    activesync = _activesync(row, partnership)
    return build(
        source=options.source or "exchange",
        device_id=device_id,
        platform=platform,
        owner=owner,
        observed_at=_observed(row, options),
        apps=[],
        model=model,
        os_version=os_version,
        eas_device_ids=[device_id] if activesync else [],
        inventory_scope="none",
        mail_access=True,
        identifiers=identifiers,
        where={
            "device.id": row.field("deviceid"),
            "device.eas_device_ids": row.field("deviceid"),
            "device.platform": row.field("deviceos"),
            "device.owner": row.field(owner_key or "identity"),
            "device.model": row.field("devicemodel"),
            "device.os_version": row.field("deviceos"),
            "device.imei": row.field("deviceimei"),
            "device.alias": row.field("identity" if "identity" in row.values else "userdisplayname"),
        },
    )


def _identity(row: _Row) -> tuple[str | None, str | None]:
    """The mailbox's name and the partnership's object name, from Identity.

    Identity is ``<mailbox>\\ExchangeActiveSyncDevices\\<type>§<DeviceId>`` in Exchange
    Online and ``<domain>/<OU>/<mailbox>/ExchangeActiveSyncDevices/...`` on premises;
    ConvertTo-Json of an unconverted object gives its ADObjectId, whose
    DistinguishedName reads ``CN=<object>,CN=ExchangeActiveSyncDevices,CN=<mailbox>,...``.
    """
    value = row.raw("identity")
    if isinstance(value, dict):
        dn = value.get("DistinguishedName")
        if not isinstance(dn, str):
            return None, None
        parts = [p.partition("=")[2] for p in re.split(r"(?<!\\),", dn)]
        for i, part in enumerate(parts):
            if ascii_lower(part) == _CONTAINER and 0 < i < len(parts) - 1:
                return parts[i + 1].strip() or None, parts[i - 1].strip() or None
        return None, None
    text = row.text("identity")
    if text is None:
        return None, None
    parts = re.split(r"[\\/]", text)
    for i, part in enumerate(parts):
        if ascii_lower(part) == _CONTAINER and i > 0:
            after = parts[i + 1] if i + 1 < len(parts) else ""
            return parts[i - 1].strip() or None, after.strip() or None
    return None, None


def _owner(row: _Row, mailbox: str | None) -> tuple[str | None, str | None, list[str]]:
    """The owner's address where the export shows one (the column it came from), and
    the mailbox's names, keys for ``--owners``: Identity's mailbox, then the last part
    of UserDisplayName (``contoso.com/Users/Jane Doe``)."""
    for key in _ADDRESS_KEYS:
        value = row.text(key)
        if value and "@" in value:
            return value, key, []
        if value:
            raise BadInput(f"not an e-mail address: {value[:80]!r}", field=row.field(key))
    if mailbox and "@" in mailbox:
        return mailbox, "identity", []
    aliases = [mailbox] if mailbox else []
    display = row.text("userdisplayname")
    if display:
        last = re.split(r"[\\/]", display)[-1].strip()
        if last and last not in aliases:
            aliases.append(last)
    return None, None, aliases


def _mapped(options: ReadOptions, device_id: str, identifiers: list[tuple[str, str]]) -> bool:
    """Whether ``--owners`` names this record: its mapping wins over a completed alias."""
    return any(ascii_lower(key) in options.owners for key in (device_id, *(v for _k, v in identifiers)))


def _complete(alias: str, names: UserNames) -> str | None:
    """A bare mailbox name completed with the one mail domain, as the gate completes a
    bare user name; a name no address could have (spaces, a GUID) stays a key only."""
    if not _LOCAL_PART.fullmatch(alias) or _GUID.fullmatch(alias):
        return None
    name = names.read(alias)
    if name is None or not name.local:
        return None
    return f"{name.local}@{names.mail_domains[0]}"


def _platform(row: _Row) -> str | None:
    os_text = row.text("deviceos") or ""
    hints = " ".join(ascii_lower(row.text(k) or "") for k in ("devicetype", "devicemodel", "deviceuseragent"))
    match = _OS.match(os_text)
    if match:
        platform = _OS_PLATFORM[ascii_lower(match.group("os"))]
        if platform == "ios" and "ipad" in hints:
            return "ipados"  # iPads report "iOS" to Exchange, iPadOS 13 and later included
        return platform
    for hint, platform in _HINTS:
        if hint in hints:
            return platform
    return None


def _activesync(row: _Row, partnership: str | None) -> bool:
    """Whether the DeviceId is an ActiveSync DeviceId (one the gate sees)."""
    client = row.raw("clienttype")
    if isinstance(client, str) and client.strip():
        return ascii_lower(client.strip()) not in _NOT_ACTIVESYNC
    if ascii_lower(row.text("devicetype") or "") == "outlook":
        return False
    prefix = ascii_lower((partnership or "").partition("§")[0])
    return prefix not in _NOT_ACTIVESYNC


def _observed(row: _Row, options: ReadOptions) -> Micros:
    """The last successful sync, else the last attempt: the device's last contact.
    Get-MobileDevice alone has neither, and an export states no time of its own: then
    the command's clock."""
    for key in ("lastsuccesssync", "lastsyncattempttime"):
        when = _time(row, key, options.timezone)
        if when is not None:
            return when
    return options.now


def _time(row: _Row, key: str, zone: tzinfo) -> Micros | None:
    value = row.raw(key)
    if isinstance(value, dict) and "value" in value:  # a PSObject: {"value": ..., "DateTime": ...}
        value = value["value"]
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise row.error(f"expected a time, got {_kind(value)}", key)
    text = value.strip()
    field = row.field(key)
    try:
        m = _MS_DATE.fullmatch(text)
        if m:
            micros = int(m.group("ms")) * 1000
            if not FIRST_TIME <= micros <= LAST_TIME:
                raise ValueError("out of range")
            return _never_or(micros)
        if re.match(r"\d{4}-\d\d-\d\d", text):
            return _never_or(vendor_time(text, field, zone))
        for pattern in (_US, _YEAR_FIRST, _DAY_FIRST):
            m = pattern.fullmatch(text)
            if m:
                return _never_or(_culture_time(m, zone, field))
    except (ValueError, OverflowError):
        raise row.error(f"not a time: {text[:40]!r}", key) from None
    raise row.error(
        f"not a time Exchange exports write: {text[:40]!r} (ISO 8601, /Date(ms)/, "
        "M/d/yyyy h:mm:ss AM, dd/MM/yyyy HH:mm:ss, dd.MM.yyyy HH:mm:ss or yyyy/MM/dd HH:mm:ss)",
        key,
    )


def _culture_time(m: re.Match[str], zone: tzinfo, field: str) -> Micros:
    hour = int(m.group("H"))
    ampm = m.groupdict().get("ampm")
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError("hour")
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    when = datetime(
        int(m.group("y")), int(m.group("m")), int(m.group("d")), hour, int(m.group("M")), int(m.group("S") or 0)
    )
    return parse_time(when.replace(tzinfo=zone) if when.year > _NEVER else when.replace(tzinfo=UTC), field=field)


def _never_or(micros: Micros) -> Micros | None:
    """None for DateTime.MinValue (year 1), Exchange's "never synced"."""
    return None if micros < -62_000_000_000_000_000 else micros


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "a number"
