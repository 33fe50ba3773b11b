"""Authorization headers as clients send them, built field by field from their specs:
Basic (RFC 7617), a JWT (RFC 7519), NTLM's NEGOTIATE and AUTHENTICATE messages (MS-NLMP
2.2.1.1, 2.2.1.3) and the SPNEGO tokens that carry them in ``Negotiate`` (RFC 4178 4.2)."""

from __future__ import annotations

import base64
import json
import struct

SIGNATURE = b"NTLMSSP\x00"
UNICODE, OEM = 0x00000001, 0x00000002


def basic(user_password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user_password)


def jwt(payload: object, header: object = None) -> bytes:
    def part(doc: object) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=")

    return b".".join([part(header or {"alg": "RS256", "typ": "JWT"}), part(payload), b"c2lnbmF0dXJl"])


def ntlm_negotiate() -> bytes:
    """NEGOTIATE_MESSAGE: signature, type 1, flags, empty domain and workstation fields."""
    return SIGNATURE + struct.pack("<II", 1, 0x62088215) + bytes(16)


def ntlm_authenticate(user: str, domain: str, *, unicode: bool = True, version: bool = True) -> bytes:
    """AUTHENTICATE_MESSAGE: six (len, maxlen, offset) fields, flags, then the payload."""
    codec = "utf-16-le" if unicode else "ascii"
    lm, nt = b"\x00" * 24, b"\x11" * 24
    payload = [lm, nt, domain.encode(codec), user.encode(codec), "WS01".encode(codec), b""]
    offset = 64 + (8 + 16 if version else 0)  # Version and MIC follow the flags
    fields = b""
    body = b""
    for value in payload:
        fields += struct.pack("<HHI", len(value), len(value), offset + len(body))
        body += value
    flags = 0x62088215 & ~(UNICODE | OEM) | (UNICODE if unicode else OEM)
    head = SIGNATURE + struct.pack("<I", 3) + fields + struct.pack("<I", flags)
    assert len(head) == 64
    extra = (b"\x0a\x00\x63\x45\x00\x00\x00\x0f" + bytes(16)) if version else b""
    return head + extra + body


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + content


SPNEGO_OID = der(0x06, bytes.fromhex("2b0601050502"))
NTLM_OID = der(0x06, bytes.fromhex("2b06010401823702020a"))
KERBEROS_OID = der(0x06, bytes.fromhex("2a864886f712010202"))


def neg_token_init(mech_token: bytes, mech: bytes = NTLM_OID) -> bytes:
    init = der(0x30, der(0xA0, der(0x30, mech)) + der(0xA2, der(0x04, mech_token)))
    return der(0x60, SPNEGO_OID + der(0xA0, init))


def neg_token_resp(response_token: bytes) -> bytes:
    return der(0xA1, der(0x30, der(0xA0, der(0x0A, b"\x01")) + der(0xA2, der(0x04, response_token))))


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)
