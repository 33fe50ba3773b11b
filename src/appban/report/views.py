"""States as of any time, without writing.

Stored states are exact as of the store's clock (the latest time a command
evaluated at). A report for a later time recomputes, in memory, only the rows
whose ``next_check`` has come. A report for an earlier time reads the state
history, which records every change at the moment it happened: the facts of that
time are not kept, the states they led to are. A report never writes: previewing
next month must not block anyone today.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from appban.clock import Micros
from appban.policy.model import Policy
from appban.policy.states import Outcome, compute, walk
from appban.workspace import Workspace


class Row(NamedTuple):
    """A device's state under a policy as of a report's time."""

    device_id: int
    state: str
    since: Micros
    detail: str
    deny: str
    owner: str
    platform: str
    org_unit: str


def needs_compute(ws: Workspace, policy: Policy, now: Micros) -> str:
    """'' when stored rows answer for ``now``; 'due' when some must be computed;
    'history' when ``now`` is before the store's clock."""
    if now < ws.clock():
        return "history"
    if policy.status != "active":
        return ""
    return "due" if policy.id in ws.store.due_policies(now) else ""


def recorded_deny(policy: Policy, state: str, now: Micros) -> str:
    """The gate reason a recorded state contributed at ``now`` (SPEC: Decision)."""
    if policy.status != "active" and policy.status != "withdrawn":
        return ""
    if state == "blocked":
        return f"blocked:{policy.id}"
    if (
        state == "unverified"
        and policy.mode == "enforce"
        and policy.on_unverified == "block"
        and now >= policy.deadline
    ):
        return f"unverified:{policy.id}"
    return ""


def _computed(ws: Workspace, policy: Policy, now: Micros, mode: str) -> dict[int, tuple[Outcome, Micros | None]]:
    required = ws.evaluator.required.get(policy.id, 0)
    read = ws.evaluator.row_facts(policy)
    out: dict[int, tuple[Outcome, Micros | None]] = {}
    for row in ws.store.policy_facts(policy.id, due_before=None if mode == "all" else now):
        facts = read(row)
        if mode == "due" and row.state is not None and row.since is not None and row.next_check is not None:
            out[row.device_id] = walk(policy, facts, row.state, row.since, row.next_check, now, required)
        else:
            out[row.device_id] = (compute(policy, facts, now, required), None)
    return out


def rows_as_of(ws: Workspace, policy: Policy, now: Micros, *, state: str | None = None) -> Iterator[Row]:
    mode = needs_compute(ws, policy, now)
    if mode == "history":
        yield from _recorded(ws, policy, now, state)
        return
    computed = _computed(ws, policy, now, mode) if mode else {}
    for row in ws.store.state_rows(policy.id):
        st, since, detail, deny = row.state, row.since, row.detail, row.deny
        hit = computed.get(row.device_id)
        if hit is not None:
            out, began = hit
            if began is not None:
                since = began
            elif out.state != st:
                since = now
            st, detail, deny = out.state, out.detail, out.deny
        if state is None or st == state:
            yield Row(row.device_id, st, since, detail, deny, row.owner, row.platform, row.org_unit)


def _recorded(ws: Workspace, policy: Policy, now: Micros, state: str | None) -> Iterator[Row]:
    recorded = ws.store.states_at(policy.id, now)
    for row in ws.store.state_rows(policy.id):
        hit = recorded.get(row.device_id)
        if hit is None:
            continue  # no state yet at that time
        if state is None or hit.state == state:
            deny = recorded_deny(policy, hit.state, now)
            detail = f"as recorded ({hit.cause})"
            yield Row(row.device_id, hit.state, hit.since, detail, deny, row.owner, row.platform, row.org_unit)


def counts(ws: Workspace, policy: Policy, now: Micros, by: str | None) -> dict[str, Any]:
    from appban.policy.states import STATES

    total = dict.fromkeys(STATES, 0)
    hit: set[str] = set()
    groups: dict[str, dict[str, Any]] = {}
    for _id, st, _since, _detail, _deny, owner, platform, org_unit in rows_as_of(ws, policy, now):
        total[st] += 1
        affected = st in ("violating", "blocked")
        if affected:
            hit.add(owner)
        if by is not None:
            key = org_unit if by == "org_unit" else platform
            g = groups.get(key)
            if g is None:
                g = groups[key] = {"states": dict.fromkeys(STATES, 0), "_people": set()}
            g["states"][st] += 1
            if affected:
                g["_people"].add(owner)
    result: dict[str, Any] = {"states": total, "people_affected": len(hit)}
    if by is not None:
        result["by"] = {
            k: {"states": g["states"], "people_affected": len(g["_people"])} for k, g in sorted(groups.items())
        }
    return result
