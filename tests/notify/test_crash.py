"""Exactly once, under kill -9: ``appban notify run`` killed at random moments, many
times, against a real SMTP server in its own process (it outlives every sender).

Every notice must arrive; a notice may arrive twice only when a sender died after the
server accepted it and before the acceptance was recorded, and then both copies carry
the same Message-ID. The test counts those duplicates and says how many there were.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appban.clock import now_micros
from appban.notify.sender import PER_CONNECTION
from appban.store.records import NewNotice
from appban.workspace import Workspace
from helpers_cli import POLICY_YAML, _clean_env, run

NOTICES = 600
KILLS = 50
SEED = 20200629

# The SMTP server: aiosmtpd, recording "recipient<TAB>Message-ID" for each message it
# accepts, written before it answers 250 (a little later than the data arrives, so that
# some senders die between the server's acceptance and their own record of it).
SERVER = r"""
import asyncio, sys
from email import message_from_bytes
from aiosmtpd.controller import Controller

port, path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
out = open(path, "a", buffering=1)

class Recorder:
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(delay)
        message_id = message_from_bytes(envelope.original_content or envelope.content)["Message-ID"]
        for rcpt in envelope.rcpt_tos:
            out.write(f"{rcpt}\t{message_id}\n")
        out.flush()
        return "250 OK"

controller = Controller(Recorder(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outbox(tmp: Path) -> tuple[Path, list[str]]:
    """A database with a policy and NOTICES pending memos, one per person."""
    db = tmp / "crash.db"
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY_YAML, encoding="utf-8")
    for args in (("init",), ("policy", "apply", str(policy))):
        result = run("--db", str(db), *args)
        assert result.code == 0, result
    people = [f"person{i:04d}@example.com" for i in range(NOTICES)]
    now = now_micros()
    ws = Workspace(str(db), now, create=False)
    try:
        with ws.writing(evaluates=False):
            ws.store.add_notices([NewNotice("tiktok-mail", p, "memo", "", "mail", "", now, now) for p in people])
    finally:
        ws.close()
    return db, people


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_and_repeats_only_with_the_same_message_id(tmp_path: Path) -> None:
    started = time.monotonic()
    db, people = outbox(tmp_path)
    received = tmp_path / "received.tsv"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(received), "0.02"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    env = _clean_env(
        {
            "APPBAN_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "APPBAN_SMTP_CONNECTIONS": "2",
            "APPBAN_NOTIFY_LEASE": "1s",
            "APPBAN_NOTIFY_INTERVAL": "0.1",
        }
    )
    rng = random.Random(SEED)
    kills = 0
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for _ in range(KILLS):
            sender = subprocess.Popen(
                [sys.executable, "-m", "appban", "--db", str(db), "notify", "run"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            time.sleep(rng.uniform(0.1, 1.0))
            alive = sender.poll() is None
            os.kill(sender.pid, signal.SIGKILL)
            _, err = sender.communicate(timeout=10)
            assert alive, f"the sender ended before it was killed: {err.decode(errors='replace')}"
            kills += 1
        time.sleep(1.2)  # every lease of the last sender has run out
        final = subprocess.run(
            [sys.executable, "-m", "appban", "--db", str(db), "notify", "run", "--once"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert final.returncode == 0, final.stderr
    finally:
        if server.poll() is None:
            assert server.stdin is not None
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if server.stdout is not None:
            server.stdout.close()

    deliveries = collections.defaultdict(list)
    for line in received.read_text("utf-8").splitlines():
        rcpt, message_id = line.split("\t")
        deliveries[rcpt].append(message_id)
    missing = sorted(set(people) - set(deliveries))
    strangers = sorted(set(deliveries) - set(people))
    repeated = {rcpt: ids for rcpt, ids in deliveries.items() if len(ids) > 1}
    copies = sum(len(ids) - 1 for ids in repeated.values())
    report = (
        f"{kills} kills: {len(deliveries)} of {len(people)} notices arrived, {copies} duplicate "
        f"deliveries of {len(repeated)} notices (acknowledgements lost in a kill)"
    )
    assert not missing, f"{report}; never arrived: {missing[:5]}"
    assert not strangers, f"{report}; to no one planned: {strangers[:5]}"
    changed = {rcpt: ids for rcpt, ids in repeated.items() if len(set(ids)) > 1}
    assert not changed, f"{report}; a repeat with another Message-ID: {list(changed.items())[:3]}"
    first_ids = [ids[0] for ids in deliveries.values()]
    assert len(set(first_ids)) == len(first_ids), f"{report}; two notices shared a Message-ID"

    ws = Workspace(str(db), now_micros(), create=False)
    try:
        states = collections.Counter(n.state for n in ws.store.list_notices())
        attempts = max(n.attempts for n in ws.store.list_notices())
    finally:
        ws.close()
    assert states == {"sent": NOTICES}, f"{report}; outbox ends {dict(states)}"
    # Each duplicate is one lost acknowledgement: at most a batch's worth per kill.
    assert copies <= kills * 2 * PER_CONNECTION, report
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"{report}; took {elapsed:.0f} s"
    print(f"{report}; most tries of one notice {attempts}; {elapsed:.1f} s")
