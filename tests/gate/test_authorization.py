"""Who an ``Authorization`` header names (gate/authorization.py).

The NTLM messages are built field by field from MS-NLMP 2.2.1 (NEGOTIATE_MESSAGE,
AUTHENTICATE_MESSAGE), and the SPNEGO wrappers from RFC 4178 4.2, as Windows clients
send them with ``Negotiate``.
"""

from __future__ import annotations

import base64
import struct

import pytest
from helpers_auth import (
    KERBEROS_OID,
    SIGNATURE,
    b64,
    basic,
    der,
    jwt,
    neg_token_init,
    neg_token_resp,
    ntlm_authenticate,
    ntlm_negotiate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from appban.gate.authorization import Credentials, read_authorization

# -- Basic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "user"),
    [
        (basic(b"jane.doe:secret"), "jane.doe"),
        (basic(b"CORP\\jane.doe:pa:ss"), "CORP\\jane.doe"),
        (b"basic   " + base64.b64encode(b"jane@example.com:x"), "jane@example.com"),
        (basic("j\u00e4ne:x".encode()), "j\u00e4ne"),
        (basic(b":secret"), ""),  # empty user
        (basic(b"no-colon"), ""),
        (basic("j\u00e4ne:x".encode("latin-1")), ""),  # not UTF-8
        (b"Basic !!notbase64!!", ""),
        (b"Basic", ""),
    ],
)
def test_basic(value: bytes, user: str) -> None:
    assert read_authorization(value) == Credentials("basic", user)


# -- Bearer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "user"),
    [
        ({"upn": "bob@example.com", "preferred_username": "x", "unique_name": "y"}, "bob@example.com"),
        ({"preferred_username": "bob@example.com", "unique_name": "y"}, "bob@example.com"),
        ({"unique_name": "EXAMPLE\\bob"}, "EXAMPLE\\bob"),
        ({"upn": "", "preferred_username": "bob@example.com"}, "bob@example.com"),
        ({"upn": 7, "unique_name": "bob"}, "bob"),
        ({"sub": "abc", "email": "bob@example.com"}, ""),  # none of the three claims
        (["upn", "bob"], ""),  # not an object
    ],
)
def test_bearer_jwt_claims(payload: object, user: str) -> None:
    assert read_authorization(b"Bearer " + jwt(payload)) == Credentials("bearer", user)


@pytest.mark.parametrize(
    "token",
    [
        b"2YotnFZFEjr1zCsicMWpAA",  # opaque (RFC 6749's example)
        jwt({"upn": "bob@example.com"}) + b".x.y",  # five parts: an encrypted JWT
        b"a.b.c",  # not base64url JSON
        b"eyJhbGciOiJub25lIn0.e3tbXX0.",  # payload not JSON
        b"eyJhbGciOiJub25lIn0.eyJ1cG4iOiJhIiwidXBuIjoiYiJ9.x",  # {"upn":"a","upn":"b"}
        b"eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(b"[" * 200_000).rstrip(b"=") + b".x",
    ],
    ids=["opaque", "JWE", "not-json", "bad-json", "repeated-claim", "deep-nesting"],
)
def test_bearer_without_a_readable_user(token: bytes) -> None:
    assert read_authorization(b"Bearer " + token) == Credentials("bearer", "")


# -- NTLM and Negotiate --------------------------------------------------------------------


def test_ntlm_authenticate_unicode() -> None:
    value = b"NTLM " + b64(ntlm_authenticate("jane.doe", "CORP"))
    assert read_authorization(value) == Credentials("ntlm", "CORP\\jane.doe")


def test_ntlm_authenticate_oem_and_without_version() -> None:
    value = b"NTLM " + b64(ntlm_authenticate("bob", "CORP", unicode=False, version=False))
    assert read_authorization(value) == Credentials("ntlm", "CORP\\bob")


def test_ntlm_authenticate_upn_without_domain() -> None:
    value = b"NTLM " + b64(ntlm_authenticate("bob@example.com", ""))
    assert read_authorization(value) == Credentials("ntlm", "bob@example.com")


def test_ntlm_non_ascii_user_in_utf16() -> None:
    value = b"NTLM " + b64(ntlm_authenticate("j\u00e4ne", "CORP"))
    assert read_authorization(value).user == "CORP\\j\u00e4ne"


def test_ntlm_negotiate_is_a_handshake_without_a_user() -> None:
    assert read_authorization(b"NTLM " + b64(ntlm_negotiate())) == Credentials("ntlm", "", handshake=True)


@pytest.mark.parametrize(
    "raw",
    [
        ntlm_authenticate("", ""),  # anonymous
        SIGNATURE + struct.pack("<I", 2) + bytes(40),  # a CHALLENGE, which only servers send
        ntlm_authenticate("jane.doe", "CORP")[:70],  # fields point past the end
        SIGNATURE + struct.pack("<I", 3) + bytes(10),  # too short
        b"not ntlm at all",
    ],
    ids=["anonymous", "challenge", "truncated", "short", "garbage"],
)
def test_ntlm_without_a_readable_user(raw: bytes) -> None:
    assert read_authorization(b"NTLM " + b64(raw)) == Credentials("ntlm", "")


def test_negotiate_with_raw_ntlm() -> None:
    value = b"Negotiate " + b64(ntlm_authenticate("jane.doe", "CORP"))
    assert read_authorization(value) == Credentials("negotiate", "CORP\\jane.doe")


def test_negotiate_spnego_wrapped_ntlm() -> None:
    first = b"Negotiate " + b64(neg_token_init(ntlm_negotiate()))
    assert read_authorization(first) == Credentials("negotiate", "", handshake=True)
    third = b"Negotiate " + b64(neg_token_resp(ntlm_authenticate("jane.doe", "CORP")))
    assert read_authorization(third) == Credentials("negotiate", "CORP\\jane.doe")
    # Long-form DER lengths (a payload past 127 bytes).
    long_user = "u" * 200
    third = b"Negotiate " + b64(neg_token_resp(ntlm_authenticate(long_user, "CORP")))
    assert read_authorization(third).user == "CORP\\" + long_user


def test_negotiate_kerberos_has_no_readable_user() -> None:
    # A Kerberos AP-REQ (RFC 4121): the user is inside the encrypted ticket.
    ap_req = der(0x60, KERBEROS_OID + b"\x01\x00" + der(0x6E, b"\x30\x03\x02\x01\x05"))
    assert read_authorization(b"Negotiate " + b64(ap_req)) == Credentials("negotiate", "")
    wrapped = neg_token_init(ap_req, KERBEROS_OID)
    assert read_authorization(b"Negotiate " + b64(wrapped)) == Credentials("negotiate", "")


def test_other_schemes_name_no_one() -> None:
    assert read_authorization(b'Digest username="bob", realm="x"') == Credentials("digest", "")
    assert read_authorization(b"") == Credentials("", "")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"Basic ", b"Bearer ", b"NTLM ", b"Negotiate "]), st.binary(max_size=300))
def test_any_bytes_read_or_name_no_one(scheme: bytes, raw: bytes) -> None:
    for value in (scheme + raw, scheme + base64.b64encode(raw)):
        assert isinstance(read_authorization(value).user, str)
