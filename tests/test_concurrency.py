"""Many writers on one database, as real processes: each command waits its turn.

Two importers, an ``evaluate`` loop, a ``policy apply`` loop flipping between two
versions of the policy, and a running gate (which applies time-driven changes
itself) share one SQLite database for a bounded time. Every command must succeed,
none may lose a write, every stored state must be the one the current policy gives,
and the audit chain must be intact. Before every write read what it depends on
inside its transaction, this failed with ``UNIQUE constraint failed:
audit_log.seq`` or left states computed from a policy that had since changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from appban.clock import parse_time
from helpers_semantics import POLICY, Appban, run_subprocess

sys.path.insert(0, str(Path(__file__).parent / "gate"))
from helpers_gate import GateProcess, wall  # noqa: E402

pytestmark = pytest.mark.slow

RUN_SECONDS = 12.0
DEVICES_PER_IMPORTER = 40

# One worker process: runs ``appban`` commands in a loop, in-process (a fresh
# command each time, as a cron job would run them), until the deadline; prints one
# JSON line per command with its exit status and stderr.
WORKER = textwrap.dedent(
    """
    import contextlib, io, json, sys, time
    from datetime import UTC, datetime
    from appban.cli import main

    db, kind, until, arg = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]

    def now():
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def run(*args):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                main(["--db", db, *args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        print(json.dumps({"kind": kind, "args": list(args), "code": code, "err": err.getvalue()}), flush=True)

    round = 0
    while time.time() < until:
        round += 1
        if kind == "import":
            prefix, folder = arg
            path = f"{folder}/{prefix}-{round}.jsonl"
            at = now()
            with open(path, "w") as f:
                for i in range(DEVICES):
                    platform = "android" if i % 2 else "ios"
                    apps = [TIKTOK] if (i + round) % 3 == 0 else [NOTES]
                    f.write(json.dumps({
                        "device": {"id": f"{prefix}-{i}", "platform": platform,
                                   "owner": f"{prefix}-{i % 7}@example.com",
                                   "eas_device_ids": [f"EAS-{prefix}-{i}"]},
                        "observed_at": at, "apps": apps}) + "\\n")
            run("import", "appban", path)
            with open(f"{folder}/{prefix}.last", "w") as f:
                f.write(at)
        elif kind == "evaluate":
            run("evaluate")
        elif kind == "apply":
            run("policy", "apply", arg[round % 2])
    """
).replace("DEVICES", str(DEVICES_PER_IMPORTER))
TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
NOTES = {"id": "com.example.notes", "name": "Notes", "version": "1.0"}


def test_concurrent_writers_each_wait_their_turn(tmp_path: Path) -> None:
    ab = Appban(tmp_path)
    ab.init(now=wall(-7200))
    # Two versions that put different devices in scope: a state computed from the
    # version no longer stored is wrong, and `evaluate --full` at the end finds it.
    # The deadline falls during the run, so the gate has time-driven work to do.
    deadline = wall(RUN_SECONDS / 2)
    versions = []
    for name, platforms in (("both", ["ios", "android"]), ("ios", ["ios"])):
        body = {**POLICY, "effective": wall(-3600), "deadline": deadline, "reminders": []}
        body["scope"] = {**POLICY["scope"], "platforms": platforms}
        path = tmp_path / f"policy-{name}.json"  # JSON is YAML
        path.write_text(json.dumps(body), encoding="utf-8")
        versions.append(str(path))
    ab("policy", "apply", versions[0], now=wall())

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}
    until = time.time() + RUN_SECONDS
    prelude = f"TIKTOK = {TIKTOK!r}\nNOTES = {NOTES!r}\n"
    code = prelude + WORKER
    workers = [
        ("import", ["imp-a", str(tmp_path)]),
        ("import", ["imp-b", str(tmp_path)]),
        ("evaluate", []),
        ("apply", versions),
    ]
    with GateProcess(ab.db):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, ab.db, kind, str(until), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for kind, args in workers
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=RUN_SECONDS + 300)
            assert proc.returncode == 0, err
            results += [json.loads(line) for line in out.splitlines() if line.strip()]

    failed = [r for r in results if r["code"] != 0]
    assert not failed, failed[:5]
    by_kind = {k: sum(1 for r in results if r["kind"] == k) for k in ("import", "evaluate", "apply")}
    assert all(n >= 2 for n in by_kind.values()), by_kind  # they did overlap

    # No lost write: every device holds the last snapshot its importer committed.
    for prefix in ("imp-a", "imp-b"):
        last = (tmp_path / f"{prefix}.last").read_text()
        for i in (0, DEVICES_PER_IMPORTER - 1):
            shown = ab("device", "show", f"{prefix}-{i}", now=wall())
            assert parse_time(shown["observed_at"]) == parse_time(last), (shown["observed_at"], last)

    # No state was computed from a policy version other than the stored one: applying
    # time's changes, then recomputing everything, changes nothing.
    now = wall()
    ab("evaluate", now=now)
    assert ab("evaluate", "--full", now=now)["state_changes"] == 0

    verified = run_subprocess("audit", "verify", "--json", db=ab.db)
    assert verified.code == 0, verified.err
    assert verified.json["ok"], verified.json["problems"][:5]
