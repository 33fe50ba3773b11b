"""Notices: queueing the memo for a large company, and rendering one notice.
One command: ``python bench/notices.py`` (see --help).

- queueing: a company of ``--people`` (default 500,000), each with one phone
  carrying TikTok, and the TikTok policy applied with ``effective`` at the apply: the
  outbox is written for every one of them in the apply's transaction. Reported: the
  whole ``policy apply`` (states, decisions, audit, outbox), and the memo wave alone
  (``Planner.tick`` on the same database, the outbox emptied first) beside its
  baseline in the same run, a bare ``executemany`` of the same rows into a table with
  the same unique key, the least any outbox of these rows costs.
- rendering: ``appban.notify.render.render`` of memos (a person's devices, evidence
  and link read from the store, both parts rendered) beside the bare Jinja2 rendering
  of the same templates with a context built once, in the same run; medians.

Figures replace the "# Notices: queueing and rendering" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from appban.clock import parse_time  # noqa: E402
from appban.inventory.checkin import App, Checkin, Device  # noqa: E402
from appban.inventory.ingest import Ingestor  # noqa: E402
from appban.notify import render as rendering  # noqa: E402
from appban.policy.lifecycle import apply, get_policy  # noqa: E402
from appban.store.records import Person  # noqa: E402
from appban.workspace import Workspace  # noqa: E402
from gate import replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OBSERVED = "2020-07-10T15:00:00Z"
APPLY_AT = "2020-07-10T16:00:00Z"
ZONES = ("Europe/London", "America/New_York", "Asia/Kolkata", "Asia/Tokyo", "UTC")
POLICY = """\
id: tiktok-mail
title: TikTok is not permitted on mobile devices that access company email
reason: Security risks
apps: [tiktok]
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
reminders: [24h, 2h]
"""


def build(db: str, people: int) -> None:
    """``people`` people, each with one phone reporting TikTok."""
    ws = Workspace(db, parse_time(OBSERVED), create=True)
    tiktok = [App(id="com.zhiliaoapp.musically", name="TikTok", version="16.5.0")]
    ids = [a.id for a in tiktok]
    observed = parse_time(OBSERVED)
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
    step = 50_000
    for start in range(0, people, step):
        chunk = range(start, min(people, start + step))
        with ws.writing():
            ws.store.put_people(
                [Person(f"user{i}@example.com", f"User {i}", f"ou{i % 50}", (), ZONES[i % len(ZONES)]) for i in chunk],
                ws.now,
            )
            for i in chunk:
                device = Device(
                    id=f"phone-{i:08d}",
                    platform="android" if i % 2 else "ios",
                    owner=f"user{i}@example.com",
                    ownership="personal",
                    eas_device_ids=[f"EAS{i:012d}"],
                )
                ingestor.ingest(Checkin("mdm", device, observed, tiktok, ids), ws.now)
        print(f"  {min(people, start + step):,} people", file=sys.stderr)
    ws.close()


def time_apply(db: str, policy_file: str) -> float:
    ws = Workspace(db, parse_time(APPLY_AT), create=False)
    try:
        start = time.perf_counter()
        apply(ws, policy_file, dry_run=False)
        return time.perf_counter() - start
    finally:
        ws.close()


def time_wave(db: str) -> tuple[float, int]:
    """The memo wave alone: the outbox and its marks emptied, then one tick."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("DELETE FROM notices")
    con.execute("DELETE FROM notice_marks")
    con.close()
    ws = Workspace(db, parse_time(APPLY_AT), create=False)
    try:
        start = time.perf_counter()
        with ws.writing(evaluates=False):
            planned = ws.evaluator.notices.tick(ws.now)
        return time.perf_counter() - start, planned
    finally:
        ws.close()


def time_baseline(db: str, people: int) -> float:
    """The same rows, executemany'd into a table with the outbox's unique key."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = FULL")
    con.execute(
        "CREATE TABLE IF NOT EXISTS bare (id INTEGER PRIMARY KEY, policy_id TEXT, person TEXT, kind TEXT, "
        "occasion TEXT, channel TEXT, devices TEXT, created_at INTEGER, due_at INTEGER, state TEXT, "
        "UNIQUE (policy_id, person, kind, occasion, channel))"
    )
    con.execute("DELETE FROM bare")
    at = parse_time(APPLY_AT)
    start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(
        "INSERT OR IGNORE INTO bare (policy_id, person, kind, occasion, channel, devices, created_at, due_at, state) "
        "VALUES ('tiktok-mail', ?, 'memo', '', 'mail', '', ?, ?, 'pending')",
        ((f"user{i}@example.com", at, at) for i in range(people)),
    )
    con.execute("COMMIT")
    took = time.perf_counter() - start
    con.close()
    return took


def time_render(db: str, count: int) -> tuple[list[float], list[float]]:
    """Seconds per notice: render() from the store, and bare Jinja2 with a context built once."""
    ws = Workspace(db, parse_time(APPLY_AT), create=False)
    try:
        notices = ws.store.list_notices(kind="memo", limit=count)
        full: list[float] = []
        for notice in notices:
            start = time.perf_counter()
            rendering.render(ws.store, notice, ws.now)
            full.append(time.perf_counter() - start)
        policy, _row = get_policy(ws, "tiktok-mail")
        context = rendering.render(ws.store, notices[0], ws.now).context
        bare: list[float] = []
        for _ in notices:
            start = time.perf_counter()
            for part in ("subject", "text", "html"):
                rendering._render_part(policy, "memo", part, context)
            bare.append(time.perf_counter() - start)
        return full, bare
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of the wave and its baseline, interleaved")
    parser.add_argument("--renders", type=int, default=2_000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        template = str(Path(tmp) / "template.db")
        print(f"building a company of {args.people:,} ...", file=sys.stderr)
        started = time.perf_counter()
        build(template, args.people)
        built = time.perf_counter() - started
        policy_file = str(Path(tmp) / "tiktok-mail.yaml")
        Path(policy_file).write_text(POLICY, encoding="utf-8")
        db = str(Path(tmp) / "run.db")
        shutil.copy(template, db)
        print("policy apply ...", file=sys.stderr)
        applied = time_apply(db, policy_file)
        queued = sqlite3.connect(db).execute("SELECT count(*) FROM notices WHERE kind = 'memo'").fetchone()[0]
        waves: list[float] = []
        bases: list[float] = []
        for r in range(args.rounds):
            print(f"memo wave and baseline, round {r + 1} of {args.rounds} ...", file=sys.stderr)
            took, planned = time_wave(db)
            waves.append(took)
            bases.append(time_baseline(db, planned))
        print("rendering ...", file=sys.stderr)
        full, bare = time_render(db, args.renders)
    wave, base = statistics.median(waves), statistics.median(bases)
    rows = [
        (f"`policy apply` to {args.people:,} people, each with TikTok (states, decisions, outbox), s", applied),
        ("memos queued by that apply", queued),
        ("the memo wave alone (Planner.tick), median s", wave),
        ("baseline: bare executemany of the same rows, same unique key, median s", base),
        ("ratio wave / baseline", wave / base),
        ("render one memo from the store (both parts), median µs", statistics.median(full) * 1e6),
        ("baseline: bare Jinja2 render of the same templates (subject, text, HTML), context built once, median µs",
         statistics.median(bare) * 1e6),
        ("ratio render / bare Jinja2", statistics.median(full) / statistics.median(bare)),
    ]  # fmt: skip
    lines = [
        f"# Notices: queueing and rendering (`python bench/notices.py`, {time.strftime('%Y-%m-%d')})",
        "",
        f"Goal: the outbox for a policy applied to {args.people:,} people written in at most 60 s. A company "
        f"of {args.people:,} people, one phone each with TikTok (built in {built:,.0f} s through the "
        "ingest path), the TikTok policy applied at its `effective` time: the apply plans every memo in "
        f"its own transaction. The wave and its baseline: median of {args.rounds} interleaved runs. "
        f"Rendering: {len(full):,} memos, each read from the store and rendered (subject, text and HTML).",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [
        f"| {label} | {value:,} |" if isinstance(value, int) else f"| {label} | {value:,.2f} |" for label, value in rows
    ]
    lines.append("")
    lines.append(
        "Each run (s): wave "
        + ", ".join(f"{v:.2f}" for v in waves)
        + "; baseline "
        + ", ".join(f"{v:.2f}" for v in bases)
        + "."
    )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    replace_section(Path(args.out), "# Notices: queueing and rendering (", text)


if __name__ == "__main__":
    main()
