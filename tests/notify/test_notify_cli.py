"""``appban notify``: run, status, list, retry, preview, as a user runs them."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appban.clock import parse_time
from appban.store.records import NewNotice
from appban.workspace import Workspace
from helpers_cli import NOW, _clean_env, assert_bad_input, run_process

T0 = parse_time(NOW)


def plan(db: Path, people: list[str], *, policy: str = "tiktok-mail", kind: str = "memo") -> None:
    ws = Workspace(str(db), T0, create=False)
    try:
        with ws.writing(evaluates=False):
            ws.store.add_notices([NewNotice(policy, p, kind, "", "mail", "", T0, T0) for p in people])
    finally:
        ws.close()


def notices(fleet: Any, *args: str) -> list[dict[str, Any]]:
    result = fleet.run("notify", "list", "--json", *args)
    assert result.code == 0, result
    return list(json.loads(result.out)["notices"])


def test_run_refuses_without_a_mail_channel_and_writes_nothing(fleet: Any) -> None:
    line = assert_bad_input(run_process("--db", str(fleet.db), "notify", "run", "--once"))
    assert "APPBAN_SMTP_URL" in line and "APPBAN_NOTIFY_FILE" in line
    fleet.assert_unchanged()


def test_run_refuses_now(fleet: Any) -> None:
    env = {"APPBAN_NOTIFY_FILE": str(fleet.tmp / "out.mbox")}
    assert_bad_input(fleet.run("notify", "run", "--once", env=env), "--now", "real clock")
    fleet.assert_unchanged()


def test_run_refuses_a_bad_smtp_url_without_showing_it(fleet: Any) -> None:
    result = run_process(
        "--db", str(fleet.db), "notify", "run", "--once", env={"APPBAN_SMTP_URL": "smtp://u:hunter2@mail:notaport"}
    )
    line = assert_bad_input(result, "APPBAN_SMTP_URL")
    assert "hunter2" not in line
    fleet.assert_unchanged()


def test_run_once_to_the_file_then_status_and_list(fleet: Any) -> None:
    mbox = fleet.tmp / "out.mbox"
    before = notices(fleet, "--state", "pending")
    assert before, "the fleet's policy planned notices"
    result = run_process(
        "--db", str(fleet.db), "--json", "notify", "run", "--once", env={"APPBAN_NOTIFY_FILE": str(mbox)}
    )
    assert result.code == 0, result
    doc = json.loads(result.out)
    assert doc["sent"] >= len(before) and doc["failed"] == 0 and doc["left"] == 0
    box = mailbox.mbox(str(mbox))
    try:
        recipients = sorted(m["To"] for m in box)
    finally:
        box.close()
    assert len(recipients) == doc["sent"]
    assert all(n["state"] == "sent" and n["sent_at"] for n in notices(fleet))

    status = fleet.run("notify", "status", "--json")
    assert status.code == 0, status
    s = json.loads(status.out)
    assert s["totals"] == {"sent": doc["sent"]}
    (policy,) = s["policies"]
    assert policy["policy"] == "tiktok-mail" and policy["states"] == {"sent": doc["sent"]}
    text = fleet.run("notify", "status")
    assert text.code == 0 and "tiktok-mail" in text.out and "memo" in text.out

    human = run_process("--db", str(fleet.db), "notify", "run", "--once", env={"APPBAN_NOTIFY_FILE": str(mbox)})
    assert human.code == 0 and human.out == "0 sent, 0 to retry, 0 failed; 0 notices left in the outbox\n"


def test_list_filters(fleet: Any) -> None:
    plan(fleet.db, ["ann.example@example.com", "bo.example@example.com"], kind="exemption")
    everything = notices(fleet)
    mine = notices(fleet, "--person", "Ann.Example@example.com")
    assert [n["person"] for n in mine] == ["ann.example@example.com"]
    assert {n["kind"] for n in notices(fleet, "--kind", "exemption")} == {"exemption"}
    assert len(notices(fleet, "--limit", "1")) == 1
    assert notices(fleet, "--policy", "tiktok-mail") == everything
    assert notices(fleet, "--state", "failed") == []
    text = fleet.run("notify", "list")
    assert text.code == 0 and "ann.example@example.com" in text.out
    assert_bad_input(fleet.run("notify", "list", "--state", "lost"), "--state")
    assert_bad_input(fleet.run("notify", "list", "--person", "not an address"), "--person")


def test_retry_puts_failed_notices_back_and_audits(fleet: Any, smtp_server: Any) -> None:
    server = smtp_server()
    for who in ("jane.doe@example.com", "bob.roe@example.com", "ann.example@example.com"):
        server.handler.rcpt_answers[who] = "550 5.1.1 unknown"
    plan(fleet.db, ["ann.example@example.com"])
    env = {"APPBAN_SMTP_URL": server.url()}
    assert run_process("--db", str(fleet.db), "notify", "run", "--once", env=env).code == 0
    failed = notices(fleet, "--state", "failed")
    assert len(failed) >= 2 and all("550" in n["last_error"] for n in failed)
    status = json.loads(fleet.run("notify", "status", "--json").out)
    errors = status["policies"][0]["errors"]
    assert errors == [{"error": "RCPT TO: 550 5.1.1 unknown", "count": len(failed)}]

    assert_bad_input(fleet.run("notify", "retry", "abc"), "ID")
    assert_bad_input(fleet.run("notify", "retry", "999999"), "no notice 999999")
    assert_bad_input(fleet.run("notify", "retry", "--policy", "nope"), "nope")

    first = failed[0]["id"]
    one = fleet.run("notify", "retry", str(first), "--json")
    assert one.code == 0 and json.loads(one.out)["retried"] == 1
    assert [n["id"] for n in notices(fleet, "--state", "pending")] == [first]
    rest = fleet.run("notify", "retry", "--policy", "tiktok-mail")
    assert rest.code == 0 and rest.out == f"{len(failed) - 1} failed notices pending again\n"
    pending = notices(fleet, "--state", "pending")
    assert len(pending) == len(failed) and all(n["attempts"] == 0 for n in pending)
    audit = fleet.run("audit", "list", "--json")
    assert audit.code == 0 and audit.out.count("notices.retry") == 2

    del server.handler.rcpt_answers["ann.example@example.com"]
    assert run_process("--db", str(fleet.db), "notify", "run", "--once", env=env).code == 0
    assert [n["person"] for n in notices(fleet, "--state", "sent")] == ["ann.example@example.com"]


def test_preview_renders_as_it_would_be_sent_and_writes_nothing(fleet: Any) -> None:
    text = fleet.run(
        "notify", "preview", "--policy", "tiktok-mail", "--person", "jane.doe@example.com", "--kind", "memo"
    )
    assert text.code == 0, text
    assert text.out.startswith("Subject: ") and "TikTok" in text.out
    html = fleet.run(
        "notify", "preview", "--policy", "tiktok-mail", "--person", "jane.doe@example.com", "--kind", "blocked",
        "--part", "html",
    )  # fmt: skip
    assert html.code == 0 and "<html" in html.out.lower()
    raw = fleet.run(
        "notify", "preview", "--policy", "tiktok-mail", "--person", "jane.doe@example.com", "--kind", "memo",
        "--part", "raw",
    )  # fmt: skip
    assert raw.code == 0
    parsed = email.message_from_string(raw.out, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "jane.doe@example.com"
    assert parsed["Message-ID"] and parsed.get_body(("plain",)) is not None  # type: ignore[attr-defined]
    doc = json.loads(
        fleet.run(
            "notify", "preview", "--json", "--policy", "tiktok-mail", "--person", "jane.doe@example.com",
            "--kind", "correction",
        ).out
    )  # fmt: skip
    assert doc["kind"] == "correction" and doc["person"] == "jane.doe@example.com"
    assert doc["raw"].startswith("From: ") or "\r\nFrom: " in doc["raw"]
    fleet.assert_unchanged()


def test_preview_bad_input(fleet: Any) -> None:
    base = ("notify", "preview", "--policy", "tiktok-mail", "--person", "jane.doe@example.com")
    assert_bad_input(fleet.run(*base, "--kind", "telegram"), "--kind")
    assert_bad_input(fleet.run("notify", "preview", "--policy", "nope", "--person", "x@example.com", "--kind", "memo"))
    assert_bad_input(
        fleet.run("notify", "preview", "--policy", "tiktok-mail", "--person", "who@example.com", "--kind", "memo"),
        "who@example.com",
    )
    fleet.assert_unchanged()


def test_run_loops_until_sigterm_and_exits_0(fleet: Any, smtp_server: Any) -> None:
    server = smtp_server()
    env = {**_clean_env({"APPBAN_SMTP_URL": server.url(), "APPBAN_NOTIFY_INTERVAL": "0.2"})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appban", "--db", str(fleet.db), "notify", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not server.handler.received and time.monotonic() < deadline:
            time.sleep(0.05)
        # A notice planned while it runs goes on a later round.
        plan(fleet.db, ["late.example@example.com"])
        while "late.example@example.com" not in {r.rcpt_tos[0] for r in server.handler.received}:
            assert time.monotonic() < deadline, "the running sender did not pick up a new notice"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.startswith(f"{len(server.handler.received)} sent, 0 to retry, 0 failed"), out
    assert "notices: " in err  # the running log


def test_help_names_every_command() -> None:
    result = run_process("notify", "--help")
    assert result.code == 0
    for command in ("run", "status", "list", "retry", "preview"):
        assert command in result.out
