"""``appban exempt list``: exemptions with their status as of the command's clock."""

from __future__ import annotations

from typing import Any

from appban.clock import Micros, format_time
from appban.policy.lifecycle import get_policy
from appban.store.records import Exemption
from appban.workspace import Workspace

# What an exemption is at a moment: not yet made, in force, past its end, revoked.
STATUSES = ("not_yet", "active", "expired", "revoked")


def status_of(e: Exemption, now: Micros) -> str:
    if e.revoked_at is not None and e.revoked_at <= now:
        return "revoked"
    if now < e.created_at or now < e.starts:
        return "not_yet"
    if e.until <= now:
        return "expired"
    return "active"


def describe(e: Exemption, now: Micros) -> dict[str, Any]:
    return {
        "id": e.id,
        "policy": e.policy_id,
        "person": e.person,
        "device": None if e.device_id is None else f"dev-{e.device_id}",
        "from": format_time(e.starts),
        "until": format_time(e.until),
        "reason": e.reason,
        "status": status_of(e, now),
        "created_at": format_time(e.created_at),
        "revoked_at": format_time(e.revoked_at),
    }


def list_exemptions(ws: Workspace, *, policy_id: str | None, everything: bool) -> dict[str, Any]:
    if policy_id is not None:
        get_policy(ws, policy_id)  # an unknown policy is an error, not an empty list
    rows = [describe(e, ws.now) for e in ws.store.all_exemptions() if policy_id is None or e.policy_id == policy_id]
    if not everything:
        rows = [r for r in rows if r["status"] == "active"]
    return {"now": format_time(ws.now), "policy": policy_id, "all": everything, "exemptions": rows}
