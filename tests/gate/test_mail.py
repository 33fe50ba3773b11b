"""The nginx mail proxy (deploy/nginx/mail.conf) with the gate as its ``auth_http``
server, in front of a real dovecot (IMAP) and an SMTP server: per-device mail
passwords (SPEC: ``device credential issue``) decide who gets in.

A refused login costs the client ``Auth-Wait`` (3 s): nginx holds the answer back, as
its protocol says, to slow password guessing. So the refused logins are all made at
once, by one fixture, and each test reads the answer to its own.
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from servers import (
    Dovecot,
    Fleet,
    Gate,
    Nginx,
    Smtp,
    require,
    start_dovecot,
    start_gate,
    start_nginx,
    start_smtp,
)

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("mail-fleet"))


@pytest.fixture(scope="module")
def passwords(fleet: Fleet) -> dict[str, str]:
    """A mail password for each device that reads mail over IMAP/SMTP, by role."""
    return {role: fleet.issue_password(role) for role in ("compliant", "blocked", "mail_only_blocked", "revoked")}


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    require("dovecot")
    with start_dovecot() as running:
        yield running


@pytest.fixture(scope="module")
def smtp() -> Iterator[Smtp]:
    with start_smtp() as running:
        yield running


@pytest.fixture(scope="module")
def gate(fleet: Fleet, passwords: dict[str, str], dovecot: Dovecot, smtp: Smtp) -> Iterator[Gate]:
    with start_gate(fleet.db, fleet.folder, [f"imap={dovecot.addr}", f"smtp={smtp.addr}"]) as running:
        yield running


@pytest.fixture(scope="module")
def nginx(gate: Gate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    require("nginx")
    with start_nginx(tmp_path_factory.mktemp("nginx-mail"), gate=gate.addr, mail=True) as running:
        yield running


def imap_login(nginx: Nginx, user: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(HOST, nginx.ports["imap"], timeout=15)
    try:
        client.login(user, password)
    except BaseException:
        client.shutdown()
        raise
    return client


def imap_refused(nginx: Nginx, user: str, password: str) -> str:
    """The server's answer to a login it refuses (imaplib raises IMAP4.error)."""
    client = imaplib.IMAP4(HOST, nginx.ports["imap"], timeout=15)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error as refused:
        return str(refused)
    finally:
        client.shutdown()
    return "accepted"


def smtp_refused(nginx: Nginx, user: str, password: str) -> tuple[int, bytes]:
    """(code, text) of the answer to AUTH PLAIN, and whether mail could be sent after."""
    with smtplib.SMTP(HOST, nginx.ports["smtp"], timeout=15) as client:
        client.ehlo()
        client.user, client.password = user, password
        # One mechanism, so the attempt pays Auth-Wait once (login() would try PLAIN, then LOGIN).
        try:
            client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as refused:
            try:
                client.sendmail(user, ["alice@example.com"], "Subject: no\r\n\r\nno\r\n")
            except smtplib.SMTPSenderRefused:
                return refused.smtp_code, refused.smtp_error
            return refused.smtp_code, b"(but sent mail anyway)"
        return 235, b"accepted"


@pytest.fixture(scope="module")
def refused(nginx: Nginx, fleet: Fleet, passwords: dict[str, str], smtp: Smtp) -> dict[str, object]:
    """Every login that should be refused, made concurrently: case -> the server's answer."""
    d = fleet.devices
    cases: dict[str, Callable[[], object]] = {
        "imap blocked": lambda: imap_refused(nginx, d["blocked"].owner, passwords["blocked"]),
        "imap mail_only_blocked": lambda: imap_refused(
            nginx, d["mail_only_blocked"].owner, passwords["mail_only_blocked"]
        ),
        # Another device's real password is as wrong as a made-up one.
        "imap wrong password": lambda: imap_refused(nginx, d["compliant"].owner, passwords["blocked"]),
        "imap no password issued": lambda: imap_refused(nginx, d["excluded_group"].owner, passwords["compliant"]),
        "smtp blocked": lambda: smtp_refused(nginx, d["blocked"].owner, passwords["blocked"]),
    }
    received = len(smtp.received)
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {case: pool.submit(run) for case, run in cases.items()}
        answers = {case: future.result() for case, future in futures.items()}
    answers["smtp messages relayed"] = len(smtp.received) - received
    return answers


# -- IMAP ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["email", "bare", "upper-case"])
def test_imap_compliant_device_reads_the_inbox(
    nginx: Nginx, fleet: Fleet, passwords: dict[str, str], form: str
) -> None:
    alice = fleet.devices["compliant"]
    user = {"email": alice.owner, "bare": alice.user, "upper-case": alice.owner.upper()}[form]
    client = imap_login(nginx, user, passwords["compliant"])
    try:
        status, data = client.select("INBOX")
        assert status == "OK", data
        status, boxes = client.list()
        assert status == "OK" and any(b'"INBOX"' in b or b.endswith(b" INBOX") for b in boxes), boxes
    finally:
        client.logout()


@pytest.mark.parametrize("role", ["blocked", "mail_only_blocked"])
def test_imap_blocked_devices_password_is_refused(refused: dict[str, object], role: str) -> None:
    # mail_only_blocked has no ActiveSync DeviceId: its mail password alone brings it
    # under the policy (it reads mail), and the gate knows it by that password.
    assert "blocked:tiktok-mail" in str(refused[f"imap {role}"]), refused


@pytest.mark.parametrize("case", ["wrong password", "no password issued"])
def test_imap_wrong_password_is_refused(refused: dict[str, object], case: str) -> None:
    assert "unknown_device" in str(refused[f"imap {case}"]), refused


def test_imap_revoked_password_is_refused_within_a_second(
    nginx: Nginx, fleet: Fleet, passwords: dict[str, str]
) -> None:
    frank = fleet.devices["revoked"]
    imap_login(nginx, frank.owner, passwords["revoked"]).logout()  # known good, and cached by the gate
    with fleet.change("device", "credential", "revoke", frank.source_id) as change:
        assert change.stored_at is not None
        while True:
            # The gate answers at once; nginx then holds a refusal back for Auth-Wait, so
            # the time that counts is when the refused attempt was made.
            attempt = time.monotonic()
            try:
                imap_login(nginx, frank.owner, passwords["revoked"]).logout()
            except imaplib.IMAP4.error as refused:
                answer = str(refused)
                break
            assert attempt - change.stored_at < 5, "the revoked password still works after 5 s"
            time.sleep(0.05)
    elapsed = attempt - change.stored_at
    print(f"\nrevoked password refused {elapsed * 1000:.0f} ms after the revocation was stored")
    assert "unknown_device" in answer, answer
    assert elapsed < 1.0, f"the revoked password was accepted until {elapsed:.3f} s after the revocation"


# -- SMTP ------------------------------------------------------------------------------


def test_smtp_compliant_device_sends_mail(nginx: Nginx, fleet: Fleet, passwords: dict[str, str], smtp: Smtp) -> None:
    alice = fleet.devices["compliant"]
    message = f"From: {alice.owner}\r\nTo: bob@example.com\r\nSubject: through the proxy\r\n\r\nhello\r\n"
    with smtplib.SMTP(HOST, nginx.ports["smtp"], timeout=15) as client:
        code, _ = client.login(alice.owner, passwords["compliant"])
        assert code == 235
        assert client.sendmail(alice.owner, ["bob@example.com"], message) == {}
    deadline = time.monotonic() + 5
    while not smtp.received and time.monotonic() < deadline:
        time.sleep(0.01)
    sender, recipients, content = smtp.received[-1]
    assert (sender, recipients) == (alice.owner, ["bob@example.com"])
    assert b"Subject: through the proxy" in content


def test_smtp_blocked_device_is_refused_with_535(refused: dict[str, object]) -> None:
    code, text = refused["smtp blocked"]  # type: ignore[misc]
    assert code == 535, refused
    assert text.startswith(b"5.7.8 ") and b"blocked:tiktok-mail" in text, text
    assert refused["smtp messages relayed"] == 0
