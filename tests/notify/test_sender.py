"""The sender against real servers: claim, render, send, record; retries with backoff,
permanent failures, leases that run out, two senders at once, stops, and the thread
inside ``appban serve``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import logging
import mailbox
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appban.clock import Micros, now_micros, parse_time
from appban.notify import sender as sending
from appban.notify.render import render
from appban.store.records import NewNotice, Notice
from appban.workspace import Workspace
from helpers_cli import NOW

T0 = parse_time(NOW)
MINUTE = 60_000_000
POLICY = "tiktok-mail"


class Outbox:
    """The fleet's database with an outbox this test fills (the fleet's own planned
    notices are cancelled first, so that every row here is the test's)."""

    def __init__(self, db: Path, *, live: bool = False) -> None:
        self.db = db
        if live:
            # Brought up to the real clock first: time plans the fleet's later notices
            # (Bob Roe's memo once his phone's inventory is too old), cancelled below.
            ws = Workspace(str(db), now_micros(), create=False, live=True)
            try:
                with ws.writing():
                    ws.evaluator.evaluate_due(ws.now)
            finally:
                ws.close()
        with self.workspace() as ws, ws.writing(evaluates=False):
            ws.store.cancel_notices(POLICY, at=T0, why="test")

    def workspace(self, now: Micros = T0) -> Any:
        import contextlib

        @contextlib.contextmanager
        def opened() -> Any:
            ws = Workspace(str(self.db), now, create=False)
            try:
                yield ws
            finally:
                ws.close()

        return opened()

    def plan(
        self,
        people: list[str],
        *,
        kind: str = "memo",
        channel: str = "mail",
        policy: str = POLICY,
        due: Micros = T0,
        occasion: str = "",
    ) -> list[int]:
        with self.workspace() as ws:
            with ws.writing(evaluates=False):
                ws.store.add_notices([NewNotice(policy, p, kind, occasion, channel, "", T0, due) for p in people])
            wanted = set(people)
            return [
                n.id
                for n in ws.store.list_notices(policy_id=policy, kind=kind)
                if n.person in wanted and n.channel == channel and n.occasion == occasion
            ]

    def rows(self) -> dict[int, Notice]:
        with self.workspace() as ws:
            return {n.id: n for n in ws.store.list_notices() if n.state != "cancelled"}

    def message_id(self, notice_id: int) -> str:
        with self.workspace() as ws:
            notice = ws.store.get_notice(notice_id)
            assert notice is not None
            return render(ws.store, notice, T0).message_id

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.workspace() as ws:
            return [{"subject": e.subject, **json.loads(e.data)} for e in ws.store.iter_audit() if e.action == action]


@pytest.fixture
def outbox(fleet: Any) -> Outbox:
    """For tests on a fixed clock (just after the fleet's)."""
    return Outbox(fleet.db)


@pytest.fixture
def live_outbox(fleet: Any) -> Outbox:
    """For tests on the real clock."""
    return Outbox(fleet.db, live=True)


def people(n: int, start: int = 0) -> list[str]:
    return [f"person{i:04d}@example.com" for i in range(start, start + n)]


@pytest.fixture
def mail_server(smtp_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server = smtp_server()
    monkeypatch.setenv("APPBAN_SMTP_URL", server.url())
    return server


# -- sending -------------------------------------------------------------------------------


def test_due_notices_are_sent_once_each_with_their_message_id(outbox: Outbox, mail_server: Any) -> None:
    ids = outbox.plan(people(25))
    later = outbox.plan(people(3, 100), due=T0 + 60 * MINUTE)
    summary = sending.run_once(str(outbox.db), now=T0 + MINUTE)
    assert (summary.sent, summary.failed, summary.retried, summary.left) == (25, 0, 0, 3)
    rows = outbox.rows()
    assert all(rows[i].state == "sent" and rows[i].attempts == 1 for i in ids)
    assert all(rows[i].state == "pending" for i in later)
    got = {r.rcpt_tos[0]: r for r in mail_server.handler.received}
    assert sorted(got) == sorted(people(25))
    for notice_id in ids:
        received = got[rows[notice_id].person]
        assert received.message_id == outbox.message_id(notice_id)
        assert received.mail_from == "appban@localhost"  # APPBAN_MAIL_FROM's default
        parsed = email.message_from_bytes(received.raw, policy=email.policy.default)
        assert parsed["X-Appban-Notice"] == str(notice_id)
        assert parsed.get_body(("html",)) is not None  # type: ignore[attr-defined]
    # One audit entry per batch, with ids only.
    entries = outbox.audit("notices")
    assert sorted(i for e in entries for i in e.get("sent", [])) == sorted(ids)
    assert all(len(json.dumps(e)) < 2000 for e in entries)
    # Nothing is sent twice: a second pass finds nothing due.
    again = sending.run_once(str(outbox.db), now=T0 + 2 * MINUTE)
    assert again.claimed == 0 and len(mail_server.handler.received) == 25


def test_temporary_failure_waits_doubling_then_sends(outbox: Outbox, mail_server: Any) -> None:
    (notice_id,) = outbox.plan(people(1))
    mail_server.handler.data_answers.extend(["451 4.3.0 try later", "421 4.3.2 shutting down"])
    t1 = T0 + MINUTE
    first = sending.run_once(str(outbox.db), now=t1)
    assert (first.sent, first.retried) == (0, 1)
    row = outbox.rows()[notice_id]
    assert row.state == "pending" and row.attempts == 1 and row.next_try == t1 + MINUTE  # APPBAN_NOTIFY_RETRY 1m
    assert row.last_error == "end of data: 451 4.3.0 try later"
    # Not before its time.
    assert sending.run_once(str(outbox.db), now=t1 + MINUTE - 1).claimed == 0
    t2 = t1 + MINUTE
    second = sending.run_once(str(outbox.db), now=t2)
    assert second.retried == 1
    row = outbox.rows()[notice_id]
    assert row.attempts == 2 and row.next_try == t2 + 2 * MINUTE and "421" in row.last_error
    third = sending.run_once(str(outbox.db), now=t2 + 2 * MINUTE)
    assert third.sent == 1
    row = outbox.rows()[notice_id]
    assert row.state == "sent" and row.attempts == 3 and row.last_error == ""
    assert len(mail_server.handler.received) == 1


def test_temporary_failures_end_failed_after_the_last_try(
    outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPBAN_NOTIFY_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("APPBAN_NOTIFY_RETRY", "4h")
    (notice_id,) = outbox.plan(people(1))
    mail_server.handler.data_answers.extend(["452 4.2.2 mailbox full"] * 5)
    at = T0 + MINUTE
    waits = []
    for _ in range(3):
        summary = sending.run_once(str(outbox.db), now=at)
        assert summary.claimed == 1
        row = outbox.rows()[notice_id]
        if row.next_try is not None:
            waits.append(row.next_try - at)
            at = row.next_try
    assert waits == [4 * 60 * MINUTE, 6 * 60 * MINUTE]  # 4 h, then 8 h capped at 6 h
    row = outbox.rows()[notice_id]
    assert row.state == "failed" and row.attempts == 3
    assert row.last_error == "end of data: 452 4.2.2 mailbox full (after 3 tries)"
    assert sending.run_once(str(outbox.db), now=at + 24 * 60 * MINUTE).claimed == 0


def test_permanent_failure_fails_at_once_and_the_rest_go(outbox: Outbox, mail_server: Any) -> None:
    ids = outbox.plan(people(3))
    mail_server.handler.rcpt_answers[people(1)[0]] = "550 5.1.1 no such mailbox"
    summary = sending.run_once(str(outbox.db), now=T0 + MINUTE)
    assert (summary.sent, summary.failed, summary.retried) == (2, 1, 0)
    rows = outbox.rows()
    refused = next(i for i in ids if rows[i].person == people(1)[0])
    assert rows[refused].state == "failed" and rows[refused].attempts == 1
    assert rows[refused].last_error == "RCPT TO: 550 5.1.1 no such mailbox"
    assert sorted(r.rcpt_tos[0] for r in mail_server.handler.received) == people(3)[1:]


def test_a_notice_that_cannot_be_rendered_fails(outbox: Outbox, mail_server: Any) -> None:
    (ghost,) = outbox.plan(people(1), policy="no-such-policy")
    (hook,) = outbox.plan(people(1, 50), channel="webhook")  # tiktok-mail names no webhook
    summary = sending.run_once(str(outbox.db), now=T0 + MINUTE)
    assert summary.failed == 2
    rows = outbox.rows()
    assert rows[ghost].state == "failed" and "no policy 'no-such-policy'" in rows[ghost].last_error
    assert rows[hook].state == "failed" and "webhook" in rows[hook].last_error
    assert mail_server.handler.received == []


def test_a_claim_whose_lease_ran_out_is_sent_again_with_the_same_message_id(
    outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that died after the server accepted its message (the row still
    ``sending``): after the lease, the next sender sends it again, same Message-ID."""
    monkeypatch.setenv("APPBAN_NOTIFY_LEASE", "5m")
    (notice_id,) = outbox.plan(people(1))
    dead = sending.Sender(str(outbox.db), now=T0 + MINUTE)
    try:
        with dead.ws.writing(evaluates=False):
            (claimed,) = dead.ws.store.claim_notices(dead.ws.now, 10, dead.ws.now + 5 * MINUTE)
        results: dict[int, Any] = {}
        dead._deliver([claimed], results)  # sent; never recorded: the process "died" here
    finally:
        dead.close()
    assert outbox.rows()[notice_id].state == "sending"
    # Within the lease nobody else takes it.
    assert sending.run_once(str(outbox.db), now=T0 + 5 * MINUTE).claimed == 0
    summary = sending.run_once(str(outbox.db), now=T0 + 7 * MINUTE)
    assert summary.sent == 1
    first, second = mail_server.handler.received
    assert first.message_id == second.message_id == outbox.message_id(notice_id)
    row = outbox.rows()[notice_id]
    assert row.state == "sent" and row.attempts == 2


def test_two_senders_at_once_never_send_one_notice_twice(
    live_outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPBAN_SMTP_CONNECTIONS", "1")  # small batches: many claims interleave
    ids = live_outbox.plan(people(120))
    summaries: list[sending.Summary] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            summaries.append(sending.run_once(str(live_outbox.db)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(s.sent for s in summaries) == len(mail_server.handler.received) == 120
    assert sum(1 for s in summaries if s.sent) >= 2, [s.sent for s in summaries]  # they did share the work
    ids_seen = [r.message_id for r in mail_server.handler.received]
    assert len(ids_seen) == len(set(ids_seen))
    assert {r.rcpt_tos[0] for r in mail_server.handler.received} == set(people(120))
    assert all(live_outbox.rows()[i].state == "sent" for i in ids)


def test_a_batch_stops_taking_messages_at_half_the_lease(
    live_outbox: Outbox, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    monkeypatch.setenv("APPBAN_SMTP_URL", server.url())
    monkeypatch.setenv("APPBAN_NOTIFY_LEASE", "1s")
    monkeypatch.setenv("APPBAN_SMTP_CONNECTIONS", "1")

    original = server.handler.handle_DATA

    async def slow(*args: Any) -> str:
        await asyncio.sleep(0.2)
        return await original(*args)

    server.handler.handle_DATA = slow
    ids = live_outbox.plan(people(10))
    summary = sending.run_once(str(live_outbox.db))
    assert summary.sent == 10 and summary.released > 0, summary
    assert all(live_outbox.rows()[i].state == "sent" for i in ids)
    assert len(server.handler.received) == 10


def test_stop_finishes_the_message_in_flight_and_puts_the_rest_back(live_outbox: Outbox, smtp_server: Any) -> None:
    server = smtp_server()
    stop = threading.Event()
    original = server.handler.handle_DATA

    async def stopping(*args: Any) -> str:
        stop.set()
        return await original(*args)

    server.handler.handle_DATA = stopping
    ids = live_outbox.plan(people(10))
    from appban.notify.channels import SmtpChannel, parse_smtp_url

    channel = SmtpChannel(parse_smtp_url(server.url()), connections=1, timeout=5)
    sender = sending.Sender(str(live_outbox.db), mail=channel, stop=stop)
    try:
        summary = sender.round()
    finally:
        sender.close()
    rows = live_outbox.rows()
    # The message in flight and any already handed to the pool finish; the rest wait untried.
    assert 1 <= summary.sent <= 3 and summary.sent + summary.released == 10, summary
    assert sum(rows[i].state == "sent" for i in ids) == summary.sent == len(server.handler.received)
    assert sum(rows[i].state == "pending" and rows[i].next_try is None for i in ids) == summary.released


def test_file_channel_wins_over_smtp(live_outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = live_outbox.db.parent / "notices.mbox"
    monkeypatch.setenv("APPBAN_NOTIFY_FILE", str(path))
    ids = live_outbox.plan(people(5))
    assert sending.run_once(str(live_outbox.db)).sent == 5
    assert mail_server.handler.received == []
    box = mailbox.mbox(str(path))
    try:
        got = sorted(m["Message-ID"] for m in box)
    finally:
        box.close()
    assert got == sorted(live_outbox.message_id(i) for i in ids)


# -- webhooks ------------------------------------------------------------------------------

HOOK_POLICY = """\
id: chat-notices
title: TikTok is not permitted
apps: [tiktok]
scope:
  platforms: [ios, ipados, android]
  mail_access: required
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
notices:
  webhook: {url}
"""


def test_webhook_notices_are_posted_signed_with_retries(
    fleet: Any, outbox: Outbox, mail_server: Any, webhook_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = fleet.write("hook.yaml", HOOK_POLICY.format(url=webhook_server.url("/chat")))
    assert fleet.run("policy", "apply", str(policy)).code == 0
    monkeypatch.setenv("APPBAN_WEBHOOK_SECRET", "k3y")
    webhook_server.statuses.extend([500])
    with outbox.workspace() as ws:
        hooks = [n for n in ws.store.list_notices(policy_id="chat-notices") if n.channel == "webhook"]
    assert hooks, "the planner plans webhook notices for a policy with a webhook"
    first = sending.run_once(str(outbox.db), now=T0 + MINUTE)
    assert first.retried == 1 and first.sent >= 1
    second = sending.run_once(str(outbox.db), now=T0 + 3 * MINUTE)
    assert second.sent == 1
    rows = outbox.rows()
    assert all(rows[n.id].state == "sent" for n in hooks)
    delivered = webhook_server.received[1:]  # the first answer was 500
    assert sorted(int(h.headers["x-appban-notice"]) for h in delivered) == sorted(n.id for n in hooks)
    for hook in webhook_server.received:
        assert hook.path == "/chat"
        signed = hook.headers["x-appban-timestamp"].encode() + b"." + hook.body
        expected = hmac.new(b"k3y", signed, hashlib.sha256).hexdigest()
        assert hook.headers["x-appban-signature"] == f"sha256={expected}"
        body = json.loads(hook.body)
        assert body["email"] == rows[int(hook.headers["x-appban-notice"])].person
        assert body["policy"] == "chat-notices"


# -- the thread inside appban serve --------------------------------------------------------


def wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_background_sends_counts_and_stops(
    live_outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APPBAN_SMTP_CONNECTIONS", "1")
    mail_server.handler.rcpt_answers[people(1)[0]] = "550 5.1.1 unknown"
    mail_server.handler.data_answers.append("451 4.3.0 later")
    live_outbox.plan(people(25))
    caplog.set_level(logging.INFO, logger="appban.notify")
    background = sending.Background(str(live_outbox.db), interval=0.1)
    background.start()
    try:
        wait_for(lambda: background.sent + background.failed >= 24)
        # New notices are picked up on a later round.
        live_outbox.plan(people(5, 500))
        wait_for(lambda: background.sent >= 28)
    finally:
        background.stop()
    assert background.counters() == {"sent": 28, "failed": 1, "retried": 1, "errors": 0}
    assert background.state == "stopped"
    assert any("sent" in r.getMessage() for r in caplog.records if r.name == "appban.notify")


def test_background_waits_out_a_busy_database(
    live_outbox: Outbox, mail_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPBAN_BUSY_TIMEOUT", "0.2")
    live_outbox.plan(people(5))
    holder = sqlite3.connect(live_outbox.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    background = sending.Background(str(live_outbox.db), interval=0.1)
    background.start()
    try:
        wait_for(lambda: background.state == "waiting_for_lock")
        assert background.sent == 0
        holder.execute("ROLLBACK")
        wait_for(lambda: background.sent == 5)
        assert background.state == "running"
    finally:
        background.stop()
        holder.close()


def test_background_without_a_mail_channel_says_so_and_sends_nothing(
    live_outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    live_outbox.plan(people(2))
    background = sending.Background(str(live_outbox.db), interval=0.1)
    with caplog.at_level(logging.WARNING, logger="appban.notify"):
        background.start()
    background.stop()
    assert background.state == "not_configured"
    assert any("APPBAN_SMTP_URL" in r.getMessage() for r in caplog.records)
    assert all(n.state == "pending" for n in live_outbox.rows().values())
