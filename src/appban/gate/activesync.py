"""Who is asking: the ActiveSync request line of MS-ASHTTP.

Two encodings of the same parameters (MS-ASHTTP 2.2.1.1.1):

- plain: ``?Cmd=Sync&User=jdoe&DeviceId=ABC123&DeviceType=iPhone``;
- base64 (protocol 12.1 and later, 2.2.1.1.1.1): the query is one base64 string of
  protocol version (1 byte), command code (1 byte), locale (2 bytes, little-endian),
  DeviceId (length byte + bytes), PolicyKey (length byte + bytes), DeviceType
  (length byte + bytes), then command parameters as tag, length, value; tag 8 is User.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_to_bytes

MAX_ID = 128  # MS-ASHTTP caps DeviceId at 32 characters; leave room, refuse the absurd

# MS-ASHTTP 2.2.1.1.1.1.2, command codes.
COMMANDS = {
    0: "Sync",
    1: "SendMail",
    2: "SmartForward",
    3: "SmartReply",
    4: "GetAttachment",
    9: "FolderSync",
    10: "FolderCreate",
    11: "FolderDelete",
    12: "FolderUpdate",
    13: "MoveItems",
    14: "GetItemEstimate",
    15: "MeetingResponse",
    16: "Search",
    17: "Settings",
    18: "Ping",
    19: "ItemOperations",
    20: "Provision",
    21: "ResolveRecipients",
    22: "ValidateCert",
}
_USER_TAG = 8


class Garbage(ValueError):
    """The request line cannot be read; the gate denies it (never a 5xx)."""

    reason = "no_device_id"


class AmbiguousDeviceId(Garbage):
    """Two DeviceId parameters: the ActiveSync server may read the other one."""

    reason = "ambiguous_device_id"


@dataclass(frozen=True, slots=True)
class Request:
    device_id: str
    user: str
    cmd: str = ""
    device_type: str = ""
    protocol: str = ""


class LineCache:
    """Parsed request lines, capped by their bytes, oldest dropped first.

    A cap by count is no cap: 50,000 distinct 8 KB lines held 400 MB. Each entry is
    charged the size of its line, of the parsed request and its strings, and of the
    dict and ordering slots that hold it.
    """

    ENTRY_OVERHEAD = 200  # OrderedDict slot, hash table share, linked-list node

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[Request, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, uri: str) -> Request | None:
        found = self._entries.get(uri)
        return None if found is None else found[0]

    def put(self, uri: str, request: Request) -> None:
        cost = self.ENTRY_OVERHEAD + sys.getsizeof(uri) + sys.getsizeof(request)
        cost += sum(sys.getsizeof(getattr(request, f)) for f in Request.__slots__)
        if cost > self.max_bytes:
            return
        old = self._entries.pop(uri, None)
        if old is not None:
            self.bytes -= old[1]
        while self._entries and self.bytes + cost > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1][1]
        self._entries[uri] = (request, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


# 16 MB holds some 40,000 typical request lines (a phone repeats a handful all day).
CACHE_BYTES = 16 * 1024 * 1024
_CACHE = LineCache(CACHE_BYTES)
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# Characters no one sees, which str.isprintable() lets through (it refuses categories
# C* and Z* but the space): combining marks on nothing, and fillers that render blank.
_INVISIBLE = frozenset("\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def parse_uri(uri: str) -> Request:
    """Device and user from an ActiveSync URI such as ``/Microsoft-Server-ActiveSync?...``.

    A phone repeats the same request line all day (Sync, Ping): parsed lines are kept
    in a cache capped by bytes, so the hot path is one dict lookup. Garbage is never
    cached.
    """
    found = _CACHE.get(uri)
    if found is None:
        found = _parse(uri)
        _CACHE.put(uri, found)
    return found


def device_id(text: str) -> str:
    """A DeviceId as the gate compares it: exactly as given, "" when blank.

    Raises Garbage for one no device can have: too long, or holding a control,
    format (zero-width, bidi), separator or other invisible character, which two
    DeviceIds that look alike could differ by.
    """
    if len(text) > MAX_ID * 2:
        raise Garbage("DeviceId too long")
    if text.isascii():
        if _CONTROL.search(text):
            raise Garbage("control character in DeviceId")
    elif not text.isprintable() or any(c in _INVISIBLE or unicodedata.category(c) in ("Mn", "Me") for c in text):
        raise Garbage("invisible character in DeviceId")
    return "" if not text.strip() else text


def _parse(uri: str) -> Request:
    if len(uri) > 8192:
        raise Garbage("request line too long")
    _, _, query = uri.partition("?")
    query, _, fragment = query.partition("#")
    if "=" in fragment or "&" in fragment:
        # A client never sends a fragment; a server may read parameters behind one.
        raise AmbiguousDeviceId("parameters after a '#' in the query")
    if not query:
        return Request("", "")
    if "=" in query and _looks_plain(query):
        return _plain(query)
    return _base64(query)


def _looks_plain(query: str) -> bool:
    lowered = query.lower()
    return any(k in lowered for k in ("deviceid=", "cmd=", "user=", "devicetype="))


def _plain(query: str) -> Request:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Garbage(f"bad query: {exc}") from None
    # Parameter names in any letter case, folded as a server comparing them without
    # regard to case would (upper case: "devıceid" with a dotless i is DeviceId too).
    for segment in query.split("&"):
        if _BASE64_SEGMENT.match(segment) and _names_a_device(segment):
            # The whole query in MS-ASHTTP's base64 form, beside plain parameters: a
            # server reading either encoding could see another DeviceId.
            raise AmbiguousDeviceId("a base64 query beside plain parameters")
    values: dict[str, str] = {}
    for key, value in pairs:
        name = key.upper()
        if name == "DEVICEID" and name in values:
            raise AmbiguousDeviceId("two DeviceId parameters")
        values[name] = value
    return Request(
        device_id(values.get("DEVICEID", "")),
        _clean(values.get("USER", "")),
        values.get("CMD", "")[:64],
        _clean(values.get("DEVICETYPE", "")),
    )


# A segment that can only be a base64 query: base64 letters (maybe percent-encoded),
# '=' only as padding at its end, long enough to hold a version, a command, a locale
# and a DeviceId. A plain parameter always has a name, '=', and a value.
_BASE64_SEGMENT = re.compile(r"^[A-Za-z0-9+/%]{10,}=*$")


def _names_a_device(segment: str) -> bool:
    try:
        return bool(_base64(segment).device_id)
    except Garbage:
        return False


def _clean(value: str) -> str:
    if len(value) > MAX_ID * 2:
        raise Garbage("field too long")
    if _CONTROL.search(value):
        raise Garbage("control character")
    return value


def _base64(query: str) -> Request:
    try:
        text = unquote_to_bytes(query)
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Garbage("query is neither name=value pairs nor base64") from None
    if len(raw) < 7:
        raise Garbage("base64 query too short")
    version, command = raw[0], raw[1]
    pos = 4  # after the two-byte locale
    device_raw, pos = _field(raw, pos)
    _policy_key, pos = _field(raw, pos)
    device_type, pos = _field(raw, pos)
    user = b""
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise Garbage("truncated command parameter")
        tag, length = raw[pos], raw[pos + 1]
        value = raw[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise Garbage("truncated command parameter")
        if tag == _USER_TAG:
            user = value
        pos += 2 + length
    return Request(
        _device_text(device_raw),
        _clean(user.decode("utf-8", "strict") if _utf8(user) else ""),
        COMMANDS.get(command, str(command)),
        _clean(device_type.decode("ascii", "replace")),
        f"{version // 10}.{version % 10}",
    )


def _field(raw: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(raw):
        raise Garbage("truncated base64 query")
    length = raw[pos]
    value = raw[pos + 1 : pos + 1 + length]
    if len(value) != length:
        raise Garbage("truncated base64 query")
    return value, pos + 1 + length


def _device_text(raw: bytes) -> str:
    # Protocol 12.1 clients may send a binary 16-byte id; compare it as upper-case hex.
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.hex().upper()
    if text.isprintable():
        return device_id(text)
    return raw.hex().upper()


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
