"""Notices' benchmarks, one command: ``python bench/notify.py`` (see --help).

- SMTP delivery: ``--notices`` memos in the outbox, delivered by the sender
  (``appban.notify.sender.run_once``: claim, render, send, record) to a local
  aiosmtpd sink in its own process, with one connection and with the pool
  (``--pool``), beside a plain ``smtplib`` loop sending the same rendered messages
  over one connection, in the same run; and the SMTP channel alone sending those
  rendered messages (what sending costs, without rendering and the outbox's
  transactions). Each measure runs ``--rounds`` times,
  interleaved, each sender run on a fresh copy of the same database; the medians
  are reported, and the ratios to the plain loop.

Each part is a function returning its lines of the report; they make the
"# Notices" section of docs/performance.md (other sections stay).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "tiktok-mail.yaml"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

import _fleet  # noqa: E402

from appban.clock import format_time, now_micros  # noqa: E402
from appban.workspace import Workspace  # noqa: E402
from gate import free_port, replace_section  # noqa: E402


def appban(db: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "appban", "--db", db, *args], check=True, capture_output=True)


POLICY_YAML = """\
id: tiktok-mail
title: TikTok is not permitted on mobile devices that access company email
reason: Security risks
apps: [tiktok]
scope:
  platforms: [ios, ipados, android]
  mail_access: required
effective: {effective}
deadline: {deadline}
mode: enforce
"""


def outbox_db(tmp: str, notices: int) -> str:
    """A database where applying the TikTok policy planned ``notices`` memos: one person
    a phone with TikTok, seen an hour ago; effective an hour ago, the deadline in 30 days."""
    db = os.path.join(tmp, "outbox.db")
    rng = random.Random(7)
    seen = format_time(now_micros() - 3600_000_000)
    checkins = os.path.join(tmp, "checkins.jsonl")
    with open(checkins, "wb") as f:
        for i in range(notices):
            checkin = _fleet.checkin(i, rng, observed_at=seen, tiktok=True)
            for app in checkin["apps"]:
                if app["name"] == "TikTok":
                    app["id"] = "com.zhiliaoapp.musically"  # TikTok's id on both iOS and Android
            f.write(json.dumps(checkin).encode() + b"\n")
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w", encoding="utf-8") as f:
        f.write(
            POLICY_YAML.format(
                effective=format_time(now_micros() - 3600_000_000),
                deadline=format_time(now_micros() + 30 * 86400_000_000),
            )
        )
    appban(db, "init")
    appban(db, "import", "appban", checkins)
    appban(db, "policy", "apply", policy)
    ws = Workspace(db, now_micros(), create=False, live=True)
    try:
        with ws.writing():
            ws.evaluator.evaluate_due(ws.now)  # whatever time plans, planned now, not in a timed run
        pending = len(ws.store.list_notices(state="pending"))
    finally:
        ws.close()
    if pending != notices:
        raise SystemExit(f"the policy planned {pending} notices, not {notices}")
    return db


def fresh_copy(template: str, tmp: str, name: str) -> str:
    db = os.path.join(tmp, name)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(db + suffix)
    shutil.copy(template, db)
    return db


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """aiosmtpd answering 250 to every message (its Sink handler), in its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def rendered(db: str) -> tuple[list[tuple[str, str, bytes]], float]:
    """(envelope sender, recipient, message) of every pending notice, rendered as the
    sender renders it; and the CPU seconds rendering took."""
    from appban.notify.render import message_bytes, render
    from appban.policy.model import split_address

    ws = Workspace(db, now_micros(), create=False)
    try:
        out = []
        notices = ws.store.list_notices(state="pending")
        started = time.process_time()
        for notice in notices:
            r = render(ws.store, notice, ws.now)
            out.append((split_address(r.sender)[1], r.to, message_bytes(r)))
        return out, time.process_time() - started
    finally:
        ws.close()


def plain_loop(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """The baseline: one smtplib connection sending the messages one after another."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for sender, to, data in messages:
            smtp.sendmail(sender, [to], data)
    return time.perf_counter() - started


def channel_run(port: int, messages: list[tuple[str, str, bytes]], connections: int) -> float:
    """The SMTP channel alone, on messages already rendered: what sending costs appban."""
    from appban.notify.channels import SENT, Mail, SmtpChannel, parse_smtp_url

    channel = SmtpChannel(parse_smtp_url(f"smtp://127.0.0.1:{port}"), connections=connections, timeout=30)
    items = [Mail(i, sender, to, data) for i, (sender, to, data) in enumerate(messages)]
    try:
        started = time.perf_counter()
        results = channel.deliver(items)
        elapsed = time.perf_counter() - started
    finally:
        channel.close()
    if sum(r == SENT for r in results.values()) != len(items):
        raise SystemExit("the channel did not send every message")
    return elapsed


def sender_run(template: str, tmp: str, port: int, connections: int, expected: int) -> tuple[float, float]:
    """The sender's wall-clock and CPU seconds for the whole outbox."""
    from appban.notify.sender import run_once

    db = fresh_copy(template, tmp, f"run-{connections}.db")
    os.environ["APPBAN_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    os.environ["APPBAN_SMTP_CONNECTIONS"] = str(connections)
    cpu = time.process_time()
    started = time.perf_counter()
    summary = run_once(db)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if summary.sent != expected:
        raise SystemExit(f"the sender sent {summary.sent} of {expected}: {summary}")
    return elapsed, cpu


def smtp_delivery(notices: int, pool: int, rounds: int) -> list[str]:
    """The "SMTP delivery" part of the report."""
    runs: dict[str, list[float]] = {"plain": [], "channel1": [], "channel": [], "one": [], "pool": []}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, smtp_sink() as port:
        template = outbox_db(tmp, notices)
        messages, rendering = rendered(template)
        assert len(messages) == notices, len(messages)
        cpu: list[float] = []
        for r in range(rounds):
            print(f"SMTP delivery: round {r + 1} of {rounds} ...", file=sys.stderr)
            runs["plain"].append(plain_loop(port, messages))
            runs["channel1"].append(channel_run(port, messages, 1))
            runs["channel"].append(channel_run(port, messages, pool))
            for key, connections in (("one", 1), ("pool", pool)):
                wall, used = sender_run(template, tmp, port, connections, notices)
                runs[key].append(wall)
                cpu.append(used)
    rate = {k: notices / statistics.median(v) for k, v in runs.items()}
    size = statistics.mean(len(m[2]) for m in messages)
    rows = [
        ("plain smtplib loop, one connection, the same rendered messages (baseline), messages/s", rate["plain"]),
        ("the SMTP channel alone, the same rendered messages, one connection, messages/s", rate["channel1"]),
        (f"the SMTP channel alone, the same rendered messages, pool of {pool}, messages/s", rate["channel"]),
        ("appban notify sender, one connection, notices/s", rate["one"]),
        (f"appban notify sender, pool of {pool} connections, notices/s", rate["pool"]),
        ("ratio channel alone, one connection / plain loop", rate["channel1"] / rate["plain"]),
        (f"ratio channel alone, pool of {pool} / plain loop", rate["channel"] / rate["plain"]),
        ("ratio sender one connection / plain loop", rate["one"] / rate["plain"]),
        (f"ratio sender pool of {pool} / plain loop", rate["pool"] / rate["plain"]),
        ("the sender's CPU time a notice (all of it, median of its runs), ms", statistics.median(cpu) / notices * 1000),
        ("of which rendering a notice (render and message_bytes), ms", rendering / notices * 1000),
    ]
    lines = [
        "## SMTP delivery",
        "",
        "Goals: the sender at least 0.8 x a plain `smtplib` loop with one connection, and more than 1 x with the pool.",
        "",
        f"{notices:,} memos (one a person, each naming the person's phone and the app found on it, "
        f"{size:,.0f} bytes) delivered to a local aiosmtpd sink "
        "(`python -m aiosmtpd -c aiosmtpd.handlers.Sink`, its own process). The sender's time is all of "
        "`notify run --once`'s work: evaluating, claiming in batches, rendering each notice, sending, and "
        "recording each batch's results with an audit entry, on a fresh copy of one database each run. The "
        "plain loop, and the SMTP channel alone (`appban.notify.channels.SmtpChannel`), send the messages "
        "already rendered. Medians of "
        f"{rounds} interleaved runs.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *(f"| {label} | {value:,.2f} |" for label, value in rows),
        "",
        "Each run (s): "
        + "; ".join(f"{k}: " + ", ".join(f"{v:.2f}" for v in runs[k]) for k in runs)
        + f". The machine's load average (1 minute) was {load:.1f} at the start and {os.getloadavg()[0]:.1f} "
        f"at the end, on {os.cpu_count()} cores.",
        "",
        "The sink takes one core for itself. The channel alone needs little CPU a message and keeps up with "
        "the plain loop; the sender also renders each notice and keeps the outbox, about the sink's own CPU "
        "time a message, so it keeps the sink busy only with a core of its own, and a machine shared with "
        "other work shows it first in the sender's runs.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notices", type=int, default=5_000, help="notices delivered in each SMTP run")
    parser.add_argument("--pool", type=int, default=4, help="connections of the sender's pool")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measure, interleaved")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("APPBAN_")]:
        del os.environ[name]
    lines = [f"# Notices (`python bench/notify.py`, {time.strftime('%Y-%m-%d')})", ""]
    lines += smtp_delivery(args.notices, args.pool, args.rounds)
    text = "\n".join(lines)
    print(text)
    replace_section(Path(args.out), "# Notices (", text)


if __name__ == "__main__":
    main()
