"""``appban device list`` and ``device show``: every device, with its evidence."""

from __future__ import annotations

from typing import Any

from appban.clock import format_time
from appban.errors import BadInput
from appban.policy.evaluator import decision_from, load_policy, matching_keys
from appban.policy.lifecycle import find_device, get_policy
from appban.policy.states import STATES, Outcome
from appban.report.views import recorded_deny, rows_as_of
from appban.store.records import DeviceRow, StateRow
from appban.workspace import Workspace


def device_decision(ws: Workspace, device: DeviceRow) -> tuple[str, str, dict[str, Any]]:
    """The gate decision for ``device`` as of the workspace's clock, and its states.

    Before the store's clock, from the recorded history; otherwise computed from the
    current facts (which the stored states equal unless time has moved on).
    """
    if ws.now < ws.clock() and device.id is not None:
        recorded = ws.store.device_states_at(device.id, ws.now)
        outcomes: dict[str, Any] = {}
        for policy in ws.evaluator.policies:
            if policy.id in recorded:
                st, _since, cause = recorded[policy.id]
                outcomes[policy.id] = Outcome(st, f"as recorded ({cause})", recorded_deny(policy, st, ws.now), None)
    else:
        outcomes = {pid: out for pid, (out, _since) in ws.evaluator.outcomes_since(device, ws.now).items()}
    decision, reason = decision_from(o.deny for o in outcomes.values())
    return decision, reason, outcomes


def list_devices(
    ws: Workspace, policy_id: str | None, state: str | None, limit: int | None, *, ownerless: bool = False
) -> dict[str, Any]:
    if state is not None and state not in STATES:
        raise BadInput(f"unknown state {state[:40]!r} (known: {', '.join(STATES)})", field="--state")
    if state is not None and policy_id is None:
        active = [r.id for r in ws.store.list_policies() if r.status == "active"]
        if len(active) != 1:
            raise BadInput(
                "--state needs --policy when there is not exactly one active policy",
                field="--policy",
            )
        policy_id = active[0]
    items: list[dict[str, Any]] = []
    total = 0
    if policy_id is not None:
        policy, _row = get_policy(ws, policy_id)
        for device_id, st, since, detail, _deny, owner, platform, _org in rows_as_of(ws, policy, ws.now, state=state):
            if ownerless and owner:
                continue
            total += 1
            if limit is None or len(items) < limit:
                items.append(
                    {
                        "id": f"dev-{device_id}",
                        "owner": owner or None,
                        "platform": platform,
                        "state": st,
                        "since": format_time(since),
                        "detail": detail,
                    }
                )
        return {
            "policy": policy_id,
            "state": state,
            "now": format_time(ws.now),
            "count": total,
            "devices": items,
        }
    for device in ws.store.iter_devices():
        if ownerless and device.owner:
            continue
        total += 1
        if limit is None or len(items) < limit:
            items.append(
                {
                    "id": device.ref,
                    "source": device.source,
                    "source_id": device.source_id,
                    "platform": device.platform,
                    "owner": device.owner or None,
                    "observed_at": format_time(device.observed_at),
                    "records": len(ws.store.records_of(device.id or 0)) if device.linked else 1,
                }
            )
    return {"now": format_time(ws.now), "ownerless": ownerless, "count": total, "devices": items}


def show_device(ws: Workspace, ref: str) -> dict[str, Any]:
    device = find_device(ws, ref)
    assert device.id is not None
    decision, reason, outcomes = device_decision(ws, device)
    stored = ws.store.device_states(device.id)
    observations = ws.store.observations(device.id)
    records = ws.store.records_of(device.id) if device.linked else []
    # Which source saw what: each record's own observations for a linked device.
    reports = [r.facts for r in records] or [device]
    seen = (
        [(r.facts.source, o) for r in records for o in ws.store.record_observations(r.facts.id or 0)]
        if records
        else [(device.source, o) for o in observations]
    )
    history = ws.store.history(device_id=device.id)
    # When each state began: stepped through from the stored rows (later --now), or
    # read from the recorded history (earlier --now).
    began = (
        {} if ws.now < ws.clock() else {pid: s for pid, (_o, s) in ws.evaluator.outcomes_since(device, ws.now).items()}
    )
    policies: dict[str, Any] = {}
    for row in ws.store.list_policies():
        if row.status == "draft":
            continue
        policy = load_policy(row)
        old = stored.get(policy.id)
        out = outcomes.get(policy.id)
        if out is not None:
            state, detail = out.state, out.detail
            since = began.get(policy.id) or _since(old, state, history, policy.id, ws.now)
        elif old is not None:
            state, detail, since = old.state, old.detail, old.since
        else:
            continue
        relevant = [
            (source, o)
            for source, o in seen
            if (o.family and o.family in policy.families) or (o.match_kind, o.app_id) in policy.explicit
        ]
        evidence: list[dict[str, Any]] = [
            {
                "kind": "app",
                "source": source,
                "app": o.app_id,
                "name": o.name,
                "version": o.version,
                "family": o.family or None,
                "match": o.confidence,
                "first_seen": format_time(o.first_seen),
                "last_seen": format_time(o.last_seen),
                "gone_at": format_time(o.gone_at),
                "present": o.gone_at is None,
            }
            for source, o in relevant
        ]
        evidence += [
            {
                "kind": "inventory",
                "source": r.source,
                "observed_at": format_time(r.observed_at),
                "inventory_scope": r.inventory_scope,
                "catalog_version": r.catalog_version,
            }
            for r in reports
        ]
        attested = ws.store.attested_at(policy.id, device.id)
        if attested is not None:
            evidence.append(
                {
                    "kind": "attestation",
                    "person": device.owner,
                    "attested_at": format_time(attested),
                }
            )
        for starts, until, why in ws.evaluator.exemptions_for(policy.id, device.id, device.owner):
            evidence.append(
                {
                    "kind": "exemption",
                    "starts": format_time(starts),
                    "until": format_time(until),
                    "reason": why,
                }
            )
        policies[policy.id] = {
            "state": state,
            "since": format_time(since),
            "detail": detail,
            "policy_status": row.status,
            "present": matching_keys(policy, observations),
            "evidence": evidence,
        }
    return {
        "id": device.ref,
        "source": device.source,
        "source_id": device.source_id,
        "platform": device.platform,
        "ownership": device.ownership,
        "owner": device.owner or None,
        "model": device.model,
        "os_version": device.os_version,
        "eas_device_ids": list(device.eas_ids),
        "mail_access": device.mail_access,
        "inventory_scope": device.inventory_scope,
        "observed_at": format_time(device.observed_at),
        "records": [_record(r.facts, r.ref, r.linked_by, r.linked_at) for r in records]
        or [_record(device, None, None, None)],
        "now": format_time(ws.now),
        "decision": decision,
        "reason": reason,
        "policies": policies,
        "history": [
            {"policy": p, "from": old, "to": new, "at": format_time(at), "cause": cause}
            for p, _d, old, new, at, cause in history
        ],
    }


def _record(r: DeviceRow, ref: str | None, linked_by: str | None, linked_at: int | None) -> dict[str, Any]:
    """One source's report of the device: what it said, and what linked it."""
    return {
        "record": ref,
        "source": r.source,
        "source_id": r.source_id,
        "platform": r.platform,
        "ownership": r.ownership,
        "owner": r.owner or None,
        "inventory_scope": r.inventory_scope,
        "observed_at": format_time(r.observed_at),
        "eas_device_ids": list(r.eas_ids),
        "identifiers": [f"{kind}:{value}" for kind, value in r.identifiers],
        "linked_by": linked_by,
        "linked_at": format_time(linked_at),
    }


def _since(old: StateRow | None, state: str, history: list[Any], policy_id: str, now: int) -> int:
    """When the state shown as of ``now`` began (as ``views.rows_as_of`` says it)."""
    if old is not None and old.state == state:
        return old.since
    if old is not None and old.next_check is not None and old.next_check <= now:
        # Time alone changed it after the last evaluation: at the stored wake-up time.
        return old.next_check
    return _changed_at(history, policy_id, state, now)


def _changed_at(history: list[Any], policy_id: str, state: str, now: int) -> int:
    for p, _d, _old, new, at, _cause in reversed(history):
        if p == policy_id and new == state and at <= now:
            return int(at)
    return now
