"""The notice channels against real servers: SMTP (aiosmtpd: plain, STARTTLS, smtps,
AUTH, scripted refusals, dropped connections), an mbox file, and an HTTP webhook."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import mailbox
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from appban.errors import BadInput
from appban.notify.channels import (
    SENT,
    Mail,
    MboxChannel,
    Permanent,
    Post,
    SmtpChannel,
    Temporary,
    WebhookChannel,
    mail_channel,
    parse_smtp_url,
)

SENDER = "appban@example.com"


def message(i: int, to: str | None = None, subject: str = "Remove TikTok") -> Mail:
    to = to or f"person{i}@example.com"
    msg = EmailMessage()
    msg["From"] = f"Appban <{SENDER}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<notice-{i}@appban.example.com>"
    msg.set_content(f"Hello {i}: caf\u00e9, please remove the app.\n.\nA line with a dot above.\n")
    msg.add_alternative(f"<p>Hello {i}</p>", subtype="html")
    return Mail(i, SENDER, to, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))


def smtp(url: str, *, connections: int = 1, timeout: float = 5.0, ca_file: str = "") -> SmtpChannel:
    return SmtpChannel(parse_smtp_url(url), connections=connections, timeout=timeout, ca_file=ca_file)


@pytest.fixture
def channel_closer() -> Any:
    opened: list[Any] = []
    yield opened.append
    for c in opened:
        c.close()


# -- SMTP: plain ---------------------------------------------------------------------------


def test_smtp_sends_each_message_as_written_over_kept_connections(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server()
    channel = smtp(server.url(), connections=3)
    channel_closer(channel)
    batch = [message(i) for i in range(1, 31)]
    results = channel.deliver(iter(batch))
    assert results == {i: SENT for i in range(1, 31)}
    got = sorted(server.handler.received, key=lambda r: r.message_id)
    assert len(got) == 30
    by_id = {r.message_id: r for r in got}
    for item in batch:
        r = by_id[f"<notice-{item.notice_id}@appban.example.com>"]
        assert r.mail_from == SENDER and r.rcpt_tos == [item.to]
        # The message arrives as written: dot-stuffing undone, non-ASCII text intact.
        assert r.raw.replace(b"\r\n", b"\n") == item.data.replace(b"\r\n", b"\n")
    # Connections are kept for the next messages: at most the pool's size for 30 messages.
    assert 1 <= len(server.handler.peers()) <= 3
    # A second batch reuses them.
    assert channel.deliver([message(99)]) == {99: SENT}
    assert len(server.handler.peers()) <= 3


def test_smtp_4xx_is_temporary_and_a_retry_is_sent(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server()
    server.handler.data_answers.append("451 4.3.0 Mailbox busy, try later")
    channel = smtp(server.url())
    channel_closer(channel)
    results = channel.deliver([message(1), message(2)])
    assert results[1] == Temporary("end of data: 451 4.3.0 Mailbox busy, try later")
    assert results[2] == SENT  # the same connection goes on after the refusal
    assert channel.deliver([message(1)]) == {1: SENT}
    assert [r.message_id for r in server.handler.received] == ["<notice-2@appban.example.com>"] + [
        "<notice-1@appban.example.com>"
    ]
    assert len(server.handler.peers()) == 1


def test_smtp_5xx_is_permanent(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server()
    server.handler.rcpt_answers["gone@example.com"] = "550 5.1.1 No such user here"
    server.handler.data_answers.append("554 5.7.1 Message refused")
    channel = smtp(server.url())
    channel_closer(channel)
    results = channel.deliver([message(1, "gone@example.com"), message(2), message(3)])
    assert results[1] == Permanent("RCPT TO: 550 5.1.1 No such user here")
    assert results[2] == Permanent("end of data: 554 5.7.1 Message refused")
    assert results[3] == SENT
    assert [r.rcpt_tos for r in server.handler.received] == [["person3@example.com"]]


def test_smtp_dropped_connection_is_temporary_and_the_next_message_reconnects(
    smtp_server: Any, channel_closer: Any
) -> None:
    server = smtp_server()
    server.handler.data_answers.append("drop")
    channel = smtp(server.url())
    channel_closer(channel)
    results = channel.deliver([message(1), message(2)])
    assert isinstance(results[1], Temporary) and "SMTPServerDisconnected" in results[1].error
    assert results[2] == SENT
    assert channel.deliver([message(1)]) == {1: SENT}
    assert len(server.handler.received) == 2


def test_smtp_a_kept_connection_the_server_closed_is_replaced_silently(smtp_server: Any, channel_closer: Any) -> None:
    # aiosmtpd closes a connection idle for `timeout` seconds (421, then closes).
    server = smtp_server(timeout=0.3)
    channel = smtp(server.url())
    channel_closer(channel)
    assert channel.deliver([message(1)]) == {1: SENT}
    time.sleep(0.8)
    assert channel.deliver([message(2)]) == {2: SENT}
    assert len(server.handler.peers()) == 2


def test_smtp_unreachable_server_is_temporary_for_the_whole_batch_at_once(channel_closer: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        channel = smtp(f"smtp://127.0.0.1:{port}", connections=2)
        channel_closer(channel)
        started = time.monotonic()
        results = channel.deliver([message(i) for i in range(20)])
    assert time.monotonic() - started < 5
    assert all(isinstance(r, Temporary) for r in results.values()), results
    assert "ConnectionRefusedError" in results[0].error  # type: ignore[union-attr]


def test_smtp_silent_server_times_out_as_temporary(channel_closer: Any) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)  # accepts, never greets
        channel = smtp(f"smtp://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        channel_closer(channel)
        started = time.monotonic()
        results = channel.deliver([message(1), message(2)])
        assert time.monotonic() - started < 3
    assert isinstance(results[1], Temporary) and "timed out" in results[1].error.lower()
    assert results[2] == results[1]  # not tried again: the batch knows the server is down


def test_smtp_long_reply_is_kept_as_one_short_line(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server()
    server.handler.data_answers.append("452 " + "x" * 900)
    channel = smtp(server.url())
    channel_closer(channel)
    result = channel.deliver([message(1)])[1]
    assert isinstance(result, Temporary)
    assert len(result.error) <= 300 and "\n" not in result.error


# -- SMTP: TLS and AUTH --------------------------------------------------------------------


def test_starttls_when_offered_verified_against_the_ca_file(
    smtp_server: Any, tls_files: Any, channel_closer: Any
) -> None:
    server = smtp_server(starttls=True)
    channel = smtp(server.url(), ca_file=str(tls_files.cert))
    channel_closer(channel)
    assert channel.deliver([message(1)]) == {1: SENT}
    assert server.handler.received[0].tls


def test_starttls_with_an_unknown_ca_sends_nothing(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server(starttls=True)
    channel = smtp(server.url())  # the system's CAs do not know the self-signed certificate
    channel_closer(channel)
    results = channel.deliver([message(1), message(2)])
    assert isinstance(results[1], Temporary) and "SSLCertVerificationError" in results[1].error
    assert results[2] == results[1]
    assert server.handler.received == []


def test_smtps_is_tls_from_the_start(smtp_server: Any, tls_files: Any, channel_closer: Any) -> None:
    server = smtp_server(smtps=True)
    assert parse_smtp_url(server.url()).tls
    channel = smtp(server.url(), ca_file=str(tls_files.cert))
    channel_closer(channel)
    assert channel.deliver([message(1)]) == {1: SENT}
    assert server.handler.received[0].tls


def test_auth_with_a_percent_encoded_password(smtp_server: Any, tls_files: Any, channel_closer: Any) -> None:
    server = smtp_server(starttls=True, auth=(b"mailer@example.com", b"p@ss:w/rd"))
    channel = smtp(server.url("mailer%40example.com:p%40ss%3Aw%2Frd"), ca_file=str(tls_files.cert))
    channel_closer(channel)
    assert channel.deliver([message(1)]) == {1: SENT}
    assert server.handler.received[0].login == b"mailer@example.com"


def test_auth_refused_is_temporary_and_never_shows_the_password(
    smtp_server: Any, tls_files: Any, channel_closer: Any
) -> None:
    server = smtp_server(starttls=True, auth=(b"mailer", b"right-secret"))
    channel = smtp(server.url("mailer:wrong-secret"), ca_file=str(tls_files.cert))
    channel_closer(channel)
    result = channel.deliver([message(1)])[1]
    assert isinstance(result, Temporary) and "535" in result.error
    assert "wrong-secret" not in result.error and "mailer:" not in result.error
    assert server.handler.received == []


def test_no_password_in_clear_when_the_server_offers_no_starttls(smtp_server: Any, channel_closer: Any) -> None:
    server = smtp_server()  # plain, no STARTTLS, no AUTH required
    channel = smtp(server.url("mailer:secret"))
    channel_closer(channel)
    result = channel.deliver([message(1)])[1]
    assert isinstance(result, Temporary) and "STARTTLS" in result.error and "secret" not in result.error
    assert server.handler.received == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, False, "", "")),
        ("smtps://mail.example.com", ("mail.example.com", 465, True, "", "")),
        ("SMTP://u%20x:p%25w@[::1]:2525", ("::1", 2525, False, "u x", "p%w")),
        ("smtp://relay:587/", ("relay", 587, False, "", "")),
    ],
)
def test_smtp_url(url: str, expected: tuple[Any, ...]) -> None:
    s = parse_smtp_url(url)
    assert (s.host, s.port, s.tls, s.user, s.password) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@mail.example.com",
        "smtp://user:hunter2@mail.example.com:99999",
        "smtp://user:hunter2@",
        "smtp://user:hunter2@mail.example.com/path",
        "smtp://:hunter2@mail.example.com",
        "mail.example.com:25",
    ],
)
def test_bad_smtp_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_smtp_url(url)
    assert "APPBAN_SMTP_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


# -- the mbox file -------------------------------------------------------------------------


def test_mbox_appends_each_batch_and_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "notices.mbox"
    channel = MboxChannel(str(path))
    try:
        assert channel.deliver(iter([message(1), message(2)])) == {1: SENT, 2: SENT}
        assert channel.deliver([message(3, subject="From the start of a line")]) == {3: SENT}
    finally:
        channel.close()
    # Another process (a second channel) appends after what is there.
    other = MboxChannel(str(path))
    try:
        assert other.deliver([message(4)]) == {4: SENT}
    finally:
        other.close()
    box = mailbox.mbox(str(path))
    try:
        got = [(m["Message-ID"], m["To"], m.get_from().split()[0]) for m in box]
        first = email.message_from_bytes(box.get_bytes(next(iter(box.keys()))), policy=email.policy.default)
    finally:
        box.close()
    assert got == [(f"<notice-{i}@appban.example.com>", f"person{i}@example.com", SENDER) for i in (1, 2, 3, 4)]
    body = first.get_body(("plain",))  # type: ignore[attr-defined]
    assert body is not None and "caf\u00e9" in body.get_content() and "\n.\nA line" in body.get_content()


def test_mbox_that_cannot_be_written_is_temporary(tmp_path: Path) -> None:
    channel = MboxChannel(str(tmp_path / "missing" / "notices.mbox"))
    results = channel.deliver([message(1), message(2)])
    channel.close()
    assert set(results) == {1, 2}
    assert all(isinstance(r, Temporary) and "mbox" in r.error for r in results.values())


def test_mail_channel_follows_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("APPBAN_NOTIFY_FILE", "APPBAN_SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BadInput) as caught:
        mail_channel()
    assert "APPBAN_SMTP_URL" in str(caught.value) and "APPBAN_NOTIFY_FILE" in str(caught.value)
    monkeypatch.setenv("APPBAN_SMTP_URL", "smtp://127.0.0.1:2525")
    chosen = mail_channel()
    assert isinstance(chosen, SmtpChannel)
    chosen.close()
    monkeypatch.setenv("APPBAN_NOTIFY_FILE", str(tmp_path / "out.mbox"))
    chosen = mail_channel()
    assert isinstance(chosen, MboxChannel)  # the file wins
    chosen.close()


# -- webhooks ------------------------------------------------------------------------------

BODY = b'{"kind":"memo","to":"jane.doe@example.com"}'


def test_webhook_posts_signed_json(webhook_server: Any) -> None:
    channel = WebhookChannel("s3cret", timeout=5)
    try:
        before = int(time.time())
        assert channel.deliver([Post(7, webhook_server.url("/hook?room=1"), BODY)]) == {7: SENT}
    finally:
        channel.close()
    (hook,) = webhook_server.received
    assert hook.path == "/hook?room=1" and hook.body == BODY
    assert hook.headers["content-type"] == "application/json"
    stamp = hook.headers["x-appban-timestamp"]
    assert before <= int(stamp) <= int(time.time())
    # The timestamp is signed with the body: an old post replayed later does not verify.
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + BODY, hashlib.sha256).hexdigest()
    assert hook.headers["x-appban-signature"] == f"sha256={expected}"
    assert hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest() != expected
    assert hook.headers["x-appban-notice"] == "7"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, Temporary), (503, Temporary), (429, Temporary), (408, Temporary), (400, Permanent), (404, Permanent)],
)
def test_webhook_status_classified(webhook_server: Any, status: int, kind: type) -> None:
    webhook_server.statuses.append(status)
    channel = WebhookChannel("s3cret", timeout=5)
    try:
        result = channel.deliver([Post(1, webhook_server.url(), BODY)])[1]
        assert isinstance(result, kind) and str(status) in result.error  # type: ignore[union-attr]
        # 500 then 200: a retry goes through.
        assert channel.deliver([Post(1, webhook_server.url(), BODY)]) == {1: SENT}
    finally:
        channel.close()


def test_webhook_redirect_is_not_followed(webhook_server: Any) -> None:
    webhook_server.statuses.append(302)
    channel = WebhookChannel("s3cret", timeout=5)
    try:
        result = channel.deliver([Post(1, webhook_server.url(), BODY)])[1]
    finally:
        channel.close()
    assert isinstance(result, Permanent) and "302" in result.error
    assert [h.path for h in webhook_server.received] == ["/hook"]


def test_webhook_without_a_secret_is_never_posted(webhook_server: Any) -> None:
    channel = WebhookChannel("", timeout=5)
    try:
        result = channel.deliver([Post(1, webhook_server.url(), BODY)])[1]
    finally:
        channel.close()
    assert isinstance(result, Permanent) and "APPBAN_WEBHOOK_SECRET" in result.error
    assert webhook_server.received == []


def test_webhook_unreachable_or_silent_is_temporary() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        channel = WebhookChannel("s3cret", timeout=0.5)
        try:
            silent = channel.deliver([Post(1, f"http://127.0.0.1:{port}/hook", BODY)])[1]
        finally:
            channel.close()
    assert isinstance(silent, Temporary) and "timed out" in silent.error.lower()
    channel = WebhookChannel("s3cret", timeout=0.5)
    try:
        refused = channel.deliver([Post(1, f"http://127.0.0.1:{port}/hook", BODY)])[1]
    finally:
        channel.close()
    assert isinstance(refused, Temporary) and "ConnectionRefusedError" in refused.error


def test_webhook_url_with_a_secret_path_never_reaches_the_error(webhook_server: Any) -> None:
    webhook_server.statuses.append(403)
    channel = WebhookChannel("s3cret", timeout=5)
    try:
        result = channel.deliver([Post(1, webhook_server.url("/services/T0/B0/XXsecretXX"), BODY)])[1]
    finally:
        channel.close()
    assert isinstance(result, Permanent) and "XXsecretXX" not in result.error


def test_deliver_takes_items_lazily_while_sending(smtp_server: Any, channel_closer: Any) -> None:
    """The caller renders the next message while the server answers: a lazy iterable is
    taken alongside the sends, at most a message a connection ahead, never all first."""
    server = smtp_server()
    channel = smtp(server.url(), connections=2)
    channel_closer(channel)
    ahead: list[int] = []

    def lazy() -> Any:
        for i in range(1, 41):
            ahead.append(i - len(server.handler.received))
            yield message(i)

    assert channel.deliver(lazy()) == {i: SENT for i in range(1, 41)}
    # Taken: up to 2 in flight and 2 waiting for a connection, plus the one being taken.
    assert max(ahead) <= 5, ahead
