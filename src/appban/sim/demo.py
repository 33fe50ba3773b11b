"""``appban demo``: the July 2020 memo, played on a synthetic company, day by day.

A company is drawn from the seed, its devices report to appban, the TikTok policy
is previewed and switched on, people are told, remove the app or do not, are
reminded, blocked at the deadline and let back in when their phone reports clean;
one person is exempted and one owner attests. The result is a summary dict (printed
by ``--json``) or, for a person, a day-by-day table, the final status and a summary.
"""

from __future__ import annotations

import os
import random
import shlex
import sys
import time
from typing import Any

from appban import settings
from appban.clock import format_duration, format_time
from appban.errors import BadInput
from appban.policy.lifecycle import get_policy
from appban.progress import tracker
from appban.report.status import status
from appban.sim import _database, _delivery, _explain, _render
from appban.sim.campaign import POLICY_ID, Campaign, Outcome
from appban.sim.fleet import build_company
from appban.sim.timeline import HOUR, Timeline, default_timeline
from appban.workspace import Workspace


def run_demo(db: str, *, employees: int, seed: int, quiet: bool, smtp: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    url = _delivery.smtp_target(smtp) if smtp is not None else None
    _database.prepare(db)
    path = _database.file_of(db)
    if path is None:
        raise BadInput("the demo sends its notices from a database file: give --db a file", field="--db")
    delivery = _delivery.Delivery(path, url)
    t = default_timeline()
    with tracker(enabled=not quiet and sys.stderr.isatty()) as progress:
        progress.phase(f"drawing a company of {employees:,}")
        company = build_company(employees, random.Random(seed), t)
        start = min((d.first_seen for d in company.devices), default=t.effective)
        ws = Workspace(db, start, create=True)
        try:
            outcome = Campaign(ws, company, t, progress, delivery).run()
            progress.phase("final status")
            final = status(ws, POLICY_ID, "platform")
            policy, _row = get_policy(ws, POLICY_ID)
            explain = {
                "banned_app_devices": _explain.banned_app_devices(ws.store, policy, t.effective),
                "unverified": _explain.unverified(ws.store, policy),
            }
            audit_entries = ws.audit.seq
            outbox = ws.store.notice_counts(POLICY_ID)
        finally:
            ws.close()
    summary = _summary(db, employees, seed, t, outcome, final)
    summary["explain"] = explain
    summary["audit_entries"] = audit_entries
    summary["notices"] = {
        "delivered_to": delivery.where,
        "sent": dict(sorted(delivery.sent.items())),
        "waiting": sum(n for (_p, _k, state), n in outbox.items() if state in ("pending", "sending")),
        "failed": sum(n for (_p, _k, state), n in outbox.items() if state == "failed"),
    }
    summary["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    if not quiet:
        _render.report(summary)
    return summary


def _summary(
    db: str, employees: int, seed: int, t: Timeline, outcome: Outcome, final: dict[str, Any]
) -> dict[str, Any]:
    path = _database.file_of(db)
    return {
        "db": os.path.abspath(path) if path else db,
        "employees": employees,
        "seed": seed,
        "policy": {
            "id": POLICY_ID,
            "effective": format_time(t.effective),
            "deadline": format_time(t.deadline),
            "reminders": [f"{r // HOUR}h" for r in t.reminders],
            "max_inventory_age": format_duration(t.max_inventory_age),
        },
        "fleet": outcome.fleet,
        "dry_run": outcome.dry_run,
        "days": [d.as_dict() for d in outcome.days],
        "final": final,
        "exemption": outcome.exemption,
        "attestation": outcome.attestation,
        "totals": outcome.totals,
        "checkins": outcome.checkins,
        "hints": _hints(db, format_time(t.end) or ""),
    }


def _hints(db: str, end: str) -> list[str]:
    """Commands to look further. The demo's clock stops in July 2020: without --now,
    today's clock would find every inventory years old."""
    prefix = "appban" if settings.get("db") == db else f"appban --db {shlex.quote(db)}"
    return [
        f"{prefix} status --now {end}",
        f"{prefix} device list --state blocked --now {end}",
        f"{prefix} audit verify",
    ]
