"""``appban status``: counts per state, overall or by org unit or platform."""

from __future__ import annotations

from typing import Any

from appban.clock import format_time
from appban.errors import BadInput
from appban.policy.evaluator import load_policy
from appban.policy.lifecycle import get_policy
from appban.report.views import counts
from appban.workspace import Workspace


def status(ws: Workspace, policy_id: str | None, by: str | None) -> dict[str, Any]:
    if by not in (None, "org_unit", "platform"):
        raise BadInput("--by is org_unit or platform", field="--by")
    if policy_id is not None:
        return _one(ws, policy_id, by)
    rows = [r for r in ws.store.list_policies() if r.status != "draft"]
    active = [r for r in rows if r.status == "active"]
    chosen = active or rows
    if len(chosen) == 1:
        return _one(ws, chosen[0].id, by)
    return {"now": format_time(ws.now), "policies": [_one(ws, r.id, by) for r in chosen]}


def _one(ws: Workspace, policy_id: str, by: str | None) -> dict[str, Any]:
    policy, row = get_policy(ws, policy_id)
    result = {
        "policy": policy.id,
        "title": policy.title,
        "status": row.status,
        "mode": policy.mode,
        "now": format_time(ws.now),
        "effective": format_time(policy.effective),
        "deadline": format_time(policy.deadline),
        **counts(ws, policy, ws.now, by),
    }
    if row.status == "withdrawn":
        result["withdrawn_at"] = format_time(row.withdrawn_at)
        result["withdraw_reason"] = row.withdraw_reason
    return result


def policy_summary(ws: Workspace) -> list[dict[str, Any]]:
    out = []
    for row in ws.store.list_policies():
        p = load_policy(row)
        out.append(
            {
                "id": p.id,
                "title": p.title,
                "status": row.status,
                "revision": row.revision,
                "mode": p.mode,
                "apps": list(p.apps),
                "effective": format_time(p.effective),
                "deadline": format_time(p.deadline),
            }
        )
    return out
