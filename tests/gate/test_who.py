"""Who is asking, at a running gate: the DeviceId is bound to the user the mail server
will authenticate, never to a user the client merely names in the query.

Jane's phone (EASJANE1) is blocked; Bob's (EASBOB1) is clean. Jane, with her own
valid credentials, presents Bob's clean DeviceId and ``User=bob.roe``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_auth import (
    KERBEROS_OID,
    b64,
    basic,
    der,
    jwt,
    neg_token_init,
    neg_token_resp,
    ntlm_authenticate,
    ntlm_negotiate,
)
from helpers_gate import GateProcess, live_fleet, parse_responses

from helpers_semantics import Appban

EAS = "/Microsoft-Server-ActiveSync"
BOBS_CLEAN_PHONE = f"{EAS}?Cmd=Sync&User=bob.roe&DeviceId=EASBOB1&DeviceType=Android"
# A Kerberos AP-REQ (RFC 4121 4.1): the user is inside the ticket, encrypted.
KERBEROS_AP_REQ = der(0x60, KERBEROS_OID + b"\x01\x00" + der(0x6E, b"\x30\x03\x02\x01\x05"))
DOMAINS = {"APPBAN_MAIL_DOMAINS": "example.com", "APPBAN_NETBIOS_DOMAINS": "CORP"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Appban:
    return live_fleet(tmp_path_factory.mktemp("who"))


@pytest.fixture(scope="module")
def gate(fleet: Appban) -> Iterator[GateProcess]:
    with GateProcess(fleet.db, env=DOMAINS) as running:
        yield running


@pytest.fixture(scope="module")
def strict(fleet: Appban) -> Iterator[GateProcess]:
    """APPBAN_QUERY_USER=deny: the query's User= is never enough."""
    with GateProcess(fleet.db, env={**DOMAINS, "APPBAN_QUERY_USER": "deny"}) as running:
        yield running


def ask(gate: GateProcess, authorization: bytes | None, uri: str = BOBS_CLEAN_PHONE) -> tuple[int, str]:
    headers = {} if authorization is None else {"Authorization": authorization.decode("latin-1")}
    answer = gate.nginx(uri, **headers)
    return answer.status, answer.reason


# -- the user the server authenticates wins ------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        basic(b"jane.doe:x"),
        b"Bearer " + jwt({"upn": "jane.doe@example.com", "aud": "https://outlook.office365.com"}),
        b"Bearer " + jwt({"preferred_username": "jane.doe@example.com"}),
        b"NTLM " + b64(ntlm_authenticate("jane.doe", "CORP")),
        b"Negotiate " + b64(neg_token_resp(ntlm_authenticate("jane.doe", "CORP"))),
    ],
    ids=["basic", "bearer-upn", "bearer-preferred_username", "ntlm", "negotiate-ntlm"],
)
def test_janes_credentials_with_bobs_device_id_are_refused(gate: GateProcess, authorization: bytes) -> None:
    assert ask(gate, authorization) == (403, "user_mismatch")


@pytest.mark.parametrize(
    "authorization",
    [
        basic(b"bob.roe:x"),
        b"Bearer " + jwt({"upn": "bob.roe@example.com"}),
        b"NTLM " + b64(ntlm_authenticate("bob.roe", "CORP")),
        b"Negotiate " + b64(neg_token_resp(ntlm_authenticate("Bob.Roe", "corp"))),
    ],
    ids=["basic", "bearer", "ntlm", "negotiate-ntlm"],
)
def test_bobs_own_credentials_are_allowed(gate: GateProcess, authorization: bytes) -> None:
    assert ask(gate, authorization) == (204, "ok")


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer 2YotnFZFEjr1zCsicMWpAA",  # opaque
        b"Bearer " + jwt({"sub": "1234", "email": "bob.roe@example.com"}),  # none of the claims
        basic(b":x"),  # empty user
        b"Basic %%%",  # not base64
        b"NTLM " + b64(ntlm_authenticate("", "")),  # anonymous
        b"Negotiate " + b64(neg_token_init(KERBEROS_AP_REQ, KERBEROS_OID)),
        b'Digest username="bob.roe", realm="mail"',
    ],
    ids=[
        "opaque-bearer",
        "jwt-without-claims",
        "empty-basic-user",
        "bad-basic",
        "anonymous-ntlm",
        "kerberos",
        "digest",
    ],
)
def test_credentials_naming_no_one_never_fall_back_to_the_query(gate: GateProcess, authorization: bytes) -> None:
    # Whatever User= says, and even though the query user is allowed (the default).
    assert ask(gate, authorization) == (403, "user_unverified")


def test_two_authorization_headers_name_no_one(gate: GateProcess) -> None:
    request = (
        f"GET /auth/nginx HTTP/1.1\r\nHost: gate\r\nX-Original-URI: {BOBS_CLEAN_PHONE}\r\n"
        "Authorization: Basic Ym9iLnJvZTp4\r\n"  # bob.roe:x
        "Authorization: Basic amFuZS5kb2U6eA==\r\n"  # jane.doe:x
        "Connection: close\r\n\r\n"
    )
    (answer,) = parse_responses(gate.raw(request.encode(), until_close=True))
    assert (answer.status, answer.reason) == (403, "user_unverified")


# -- the query's User= ---------------------------------------------------------------------


def test_without_credentials_the_query_user_is_used_unless_refused(gate: GateProcess, strict: GateProcess) -> None:
    assert ask(gate, None) == (204, "ok")
    assert ask(gate, None, BOBS_CLEAN_PHONE.replace("bob.roe", "jane.doe")) == (403, "user_mismatch")
    assert ask(strict, None) == (403, "user_unverified")
    # Nothing names a user at all (a base64 query carries none, and no Authorization).
    assert ask(gate, None, f"{EAS}?Cmd=Sync&DeviceId=EASBOB1") == (403, "user_unverified")


def test_ntlm_negotiate_message_is_a_handshake_decided_on_the_query_user(
    gate: GateProcess, strict: GateProcess
) -> None:
    # The first message of an NTLM handshake carries no credentials: it cannot reach a
    # mailbox, and the next message of the handshake names the user.
    for token in (b"NTLM " + b64(ntlm_negotiate()), b"Negotiate " + b64(neg_token_init(ntlm_negotiate()))):
        assert ask(gate, token) == (204, "ok")
        assert ask(gate, token, BOBS_CLEAN_PHONE.replace("bob.roe", "jane.doe")) == (403, "user_mismatch")
        assert ask(strict, token) == (403, "user_unverified")


def test_credentials_still_decide_when_the_query_user_is_refused(strict: GateProcess) -> None:
    assert ask(strict, basic(b"bob.roe:x")) == (204, "ok")
    assert ask(strict, basic(b"CORP\\jane.doe:x")) == (403, "user_mismatch")


# -- the DeviceId --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Cmd=Sync&User=bob.roe&DeviceId=EASBOB1&DeviceId=EASJANE1",
        "Cmd=Sync&User=bob.roe&deviceid=EASJANE1&DeviceId=EASBOB1",
        "Cmd=Sync&User=bob.roe&DeviceId=EASBOB1&DEVICEID=EASBOB1",
    ],
)
def test_two_device_ids_are_ambiguous(gate: GateProcess, query: str) -> None:
    assert ask(gate, basic(b"bob.roe:x"), f"{EAS}?{query}") == (403, "ambiguous_device_id")


@pytest.mark.parametrize("invisible", ["%E2%80%8B", "%E2%80%8D", "%EF%BB%BF", "%C2%AD"])
def test_invisible_characters_in_the_device_id_do_not_match(gate: GateProcess, invisible: str) -> None:
    uri = f"{EAS}?Cmd=Sync&User=bob.roe&DeviceId=EASBOB1{invisible}"
    assert ask(gate, basic(b"bob.roe:x"), uri) == (403, "no_device_id")


# -- a user header set by the proxy --------------------------------------------------------


def test_the_proxys_user_header_wins(tmp_path: Path, fleet: Appban) -> None:
    with GateProcess(fleet.db, "--user-header", "X-Remote-User", env=DOMAINS) as gate:
        jane = {"Authorization": basic(b"bob.roe:x").decode(), "X-Remote-User": "jane.doe@example.com"}
        assert (gate.nginx(BOBS_CLEAN_PHONE, **jane).reason) == "user_mismatch"
        bob = {"X-Remote-User": "bob.roe"}
        assert (gate.nginx(BOBS_CLEAN_PHONE, **bob).reason) == "ok"
        # Without the header, Authorization decides as before.
        assert gate.nginx(BOBS_CLEAN_PHONE, Authorization=basic(b"bob.roe:x").decode()).reason == "ok"


def test_the_rule_in_force_is_logged_at_start(gate: GateProcess, strict: GateProcess) -> None:
    log = "".join(gate.log)
    assert "a bare name is name@example.com" in log and "DOMAIN\\name accepted for corp" in log
    assert "User= is trusted" in log
    assert "User= is refused (user_unverified)" in "".join(strict.log)
