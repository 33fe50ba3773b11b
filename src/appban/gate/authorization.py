"""Who the mail server will authenticate: the user an ``Authorization`` header names.

The gate binds a DeviceId to this user, never to a user the client merely claims in
the query. What each scheme yields (docs/gate.md, "Who is asking", has the table):

- ``Basic`` (RFC 7617): the user-id before the first colon, UTF-8. Not base64, not
  UTF-8, no colon, or an empty user-id: no readable user.
- ``Bearer`` (RFC 6750): a JWT (RFC 7519, the three-part compact form) names its
  user in the ``upn``, ``preferred_username`` or ``unique_name`` claim, the first
  present in that order. The signature is not checked: the mail server checks it,
  and a forged token gets nowhere there. An opaque or encrypted token, a payload
  that is not a JSON object, a claim repeated, or none of the three claims: no
  readable user.
- ``NTLM`` and ``Negotiate`` carrying NTLM (MS-NLMP 2.2.1): the AUTHENTICATE message
  (type 3) names ``DOMAIN\\user``, in UTF-16LE when NTLMSSP_NEGOTIATE_UNICODE is set,
  else in the OEM character set (read as ASCII). Its NEGOTIATE message (type 1) is the
  first step of a handshake and carries no credentials yet (``handshake``). Anonymous
  NTLM (an empty user), any other message type: no readable user.
- ``Negotiate`` carrying Kerberos: the user is inside the encrypted ticket, so there
  is no readable user. Neither is there for any other scheme.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

# The claims Microsoft identity platform tokens name the user with, most specific first.
CLAIMS = ("upn", "preferred_username", "unique_name")
_NTLM_SIGNATURE = b"NTLMSSP\x00"
_NTLM_UNICODE = 0x00000001  # NTLMSSP_NEGOTIATE_UNICODE (MS-NLMP 2.2.2.5, flag A)
_SPNEGO_OID = bytes.fromhex("2b0601050502")  # 1.3.6.1.5.5.2 (RFC 4178)
_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True, slots=True)
class Credentials:
    scheme: str  # lower-cased: basic, bearer, ntlm, negotiate, or whatever the client sent
    user: str = ""  # "" when the credentials name no user the gate can read
    handshake: bool = False  # NTLM's NEGOTIATE message: no credentials yet


def read_authorization(value: bytes) -> Credentials:
    """The user named by an ``Authorization`` header's value."""
    scheme_raw, _, rest = value.strip().partition(b" ")
    scheme = scheme_raw.decode("latin-1").lower()
    token = rest.strip()
    try:
        if scheme == "basic":
            return Credentials(scheme, _basic(token))
        if scheme == "bearer":
            return Credentials(scheme, _bearer(token))
        if scheme in ("ntlm", "negotiate"):
            return _ntlm_or_negotiate(scheme, token)
    except (ValueError, binascii.Error, RecursionError):  # also UnicodeDecodeError, JSONDecodeError
        pass
    return Credentials(scheme)


def _basic(token: bytes) -> str:
    decoded = base64.b64decode(token, validate=True).decode("utf-8")
    user, colon, _password = decoded.partition(":")
    return user if colon else ""


def _bearer(token: bytes) -> str:
    parts = token.split(b".")
    if len(parts) != 3:  # an opaque token, or an encrypted JWT (five parts)
        return ""
    payload = json.loads(_b64url(parts[1]), object_pairs_hook=_no_repeats)
    if not isinstance(payload, dict):
        return ""
    for claim in CLAIMS:
        value = payload.get(claim)
        if isinstance(value, str) and value:
            return value
    return ""


def _b64url(part: bytes) -> bytes:
    if not part or part.translate(None, _B64URL):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a repeated claim: trust neither.
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("repeated claim")
    return out


def _ntlm_or_negotiate(scheme: str, token: bytes) -> Credentials:
    raw = base64.b64decode(token, validate=True)
    if not raw.startswith(_NTLM_SIGNATURE):
        inner = _spnego_mech_token(raw) if scheme == "negotiate" else None
        if inner is None or not inner.startswith(_NTLM_SIGNATURE):
            return Credentials(scheme)  # Kerberos, or not NTLM at all
        raw = inner
    kind = int.from_bytes(raw[8:12], "little") if len(raw) >= 12 else 0
    if kind == 1:
        return Credentials(scheme, handshake=True)
    if kind != 3 or len(raw) < 64:
        return Credentials(scheme)
    # AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3): DomainNameFields at 28, UserNameFields at
    # 36, NegotiateFlags at 60; each Fields is Len (2), MaxLen (2), BufferOffset (4).
    flags = int.from_bytes(raw[60:64], "little")
    codec = "utf-16-le" if flags & _NTLM_UNICODE else "ascii"
    domain = _ntlm_field(raw, 28).decode(codec)
    user = _ntlm_field(raw, 36).decode(codec)
    if not user:
        return Credentials(scheme)  # anonymous
    return Credentials(scheme, f"{domain}\\{user}" if domain else user)


def _ntlm_field(raw: bytes, at: int) -> bytes:
    length = int.from_bytes(raw[at : at + 2], "little")
    offset = int.from_bytes(raw[at + 4 : at + 8], "little")
    if offset + length > len(raw):
        raise ValueError("NTLM field outside the message")
    return raw[offset : offset + length]


def _spnego_mech_token(raw: bytes) -> bytes | None:
    """The mechanism token inside an SPNEGO token (RFC 4178 4.2), or None.

    The first token is a GSS-API InitialContextToken ([APPLICATION 0]: the SPNEGO OID,
    then negTokenInit [0]); later ones are negTokenResp [1]. Both are a SEQUENCE whose
    field [2] (mechToken, responseToken) is an OCTET STRING holding the NTLM message.
    """
    tag, body, _ = _der(raw, 0)
    if tag == 0x60:
        oid_tag, oid, pos = _der(body, 0)
        if oid_tag != 0x06 or oid != _SPNEGO_OID:
            return None  # a bare Kerberos token (RFC 4121) or another mechanism
        tag, body, _ = _der(body, pos)
        if tag != 0xA0:
            return None
    elif tag != 0xA1:
        return None
    seq_tag, seq, _ = _der(body, 0)
    if seq_tag != 0x30:
        return None
    pos = 0
    while pos < len(seq):
        field_tag, field, pos = _der(seq, pos)
        if field_tag == 0xA2:
            inner_tag, token, _ = _der(field, 0)
            return token if inner_tag == 0x04 else None
    return None


def _der(raw: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, position after) of the DER element at ``pos``; single-byte tags."""
    if pos + 2 > len(raw):
        raise ValueError("truncated DER")
    tag, length = raw[pos], raw[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(raw):
            raise ValueError("bad DER length")
        length = int.from_bytes(raw[pos : pos + count], "big")
        pos += count
    if pos + length > len(raw):
        raise ValueError("truncated DER")
    return tag, raw[pos : pos + length], pos + length
