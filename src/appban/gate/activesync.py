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


@dataclass(frozen=True, slots=True)
class Request:
    device_id: str
    user: str
    cmd: str = ""
    device_type: str = ""
    protocol: str = ""


_CACHE: dict[str, Request] = {}
_CACHE_SIZE = 100_000
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def parse_uri(uri: str) -> Request:
    """Device and user from an ActiveSync URI such as ``/Microsoft-Server-ActiveSync?...``.

    A phone repeats the same request line all day (Sync, Ping): parsed lines are kept
    in a bounded cache, so the hot path is one dict lookup. Garbage is never cached.
    """
    found = _CACHE.get(uri)
    if found is None:
        found = _parse(uri)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[uri] = found
    return found


def _parse(uri: str) -> Request:
    if len(uri) > 8192:
        raise Garbage("request line too long")
    _, _, query = uri.partition("?")
    query = query.partition("#")[0]
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
    values = {k.lower(): v for k, v in pairs}
    device_id = _clean(values.get("deviceid", ""))
    user = _clean(values.get("user", ""))
    return Request(device_id, user, values.get("cmd", "")[:64], _clean(values.get("devicetype", "")))


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
        return _clean(text)
    return raw.hex().upper()


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
