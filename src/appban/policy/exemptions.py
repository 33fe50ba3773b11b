"""Revoking an exemption (audited, and the devices it covered re-evaluated at once), and
employees' requests for one: made on their page, granted or refused by an admin."""

from __future__ import annotations

import json
from typing import Any

from appban.clock import Micros, format_time
from appban.errors import BadInput, NotFound
from appban.store import Store
from appban.store.records import DeviceRow, ExemptionRequest
from appban.text import check_text
from appban.workspace import Workspace


def parse_id(text: str, what: str = "an exemption id") -> int:
    """An exemption id as ``exempt add`` printed it (or a request's, as ``exempt requests`` does)."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadInput(f"not {what}: {text[:40]!r}", field="ID")
    return int(text)


def revoke(ws: Workspace, exemption_id: int, reason: str | None) -> dict[str, Any]:
    if reason is not None:
        if not reason.strip():
            raise BadInput("an empty reason", field="--reason")
        if len(reason) > 500:
            raise BadInput("reason longer than 500 characters", field="--reason")
        check_text(reason, "--reason")
    with ws.writing():
        found = ws.store.get_exemption(exemption_id)  # read under the write lock
        if found is None:
            raise NotFound(f"no exemption {exemption_id}", field="ID")
        if ws.now < found.created_at:
            raise BadInput(
                f"exemption {exemption_id} was made at {format_time(found.created_at)}, after --now",
                field="ID",
            )
        if found.revoked_at is not None or not ws.store.revoke_exemption(exemption_id, ws.now):
            raise BadInput(
                f"exemption {exemption_id} was already revoked at {format_time(found.revoked_at)}",
                field="ID",
            )
        subject = found.person or f"dev-{found.device_id}"
        ws.audit.append(
            ws.now,
            "exemption.revoke",
            f"{found.policy_id}/{subject}",
            {"id": exemption_id, "reason": reason, "until": format_time(found.until)},
        )
        ws.evaluator.reload()
        ws.evaluator.notices.exemption_revoked(found, ws.now)
        devices: list[DeviceRow]
        if found.device_id is not None:
            one = ws.store.get_device(found.device_id)
            devices = [one] if one else []
        else:
            devices = ws.store.devices_of_owner(found.person or "")
        states: dict[str, str | None] = {}
        for d in devices:
            assert d.id is not None
            ws.evaluator.evaluate_device(d, ws.now, "exemption", only=found.policy_id)
            now_state = ws.store.device_states(d.id).get(found.policy_id)
            states[d.ref] = now_state.state if now_state else None
    return {
        "exemption": exemption_id,
        "policy": found.policy_id,
        "person": found.person,
        "device": None if found.device_id is None else f"dev-{found.device_id}",
        "revoked_at": format_time(ws.now),
        "devices": len(devices),
        "states": states,
    }


# -- employees' requests (their page) and admins' answers (the command line) --------------

REQUEST_STATES = ("pending", "granted", "refused")
# Pending requests one person may have at once: their page is theirs, not a way to fill
# the admins' queue (the token is the credential; whoever holds it is that person).
MAX_PENDING = 20


def check_reason(reason: str, field: str) -> str:
    """A reason as appban keeps one: 1 to 500 characters of text, stripped."""
    reason = reason.strip()
    if not reason:
        raise BadInput("a reason is needed", field=field)
    if len(reason) > 500:
        raise BadInput(f"a reason is at most 500 characters, not {len(reason):,}", field=field)
    check_text(reason, field)
    return reason


def request(ws: Workspace, policy_id: str, person: str, device_id: int | None, reason: str) -> dict[str, Any]:
    """An employee asks, from their page, to be exempted from a policy (for one device of
    theirs, or for all). Checked again under the write lock; audited."""
    reason = check_reason(reason, "reason")
    with ws.writing(evaluates=False):
        row = ws.store.get_policy(policy_id)
        if row is None or row.status != "active" or not concerns(ws.store, policy_id, person):
            raise BadInput("that policy is not in force for you", field="policy")
        if device_id is not None:
            device = ws.store.get_device(device_id)
            if device is None or device.owner != person:
                raise BadInput("that device is not one of yours", field="device")
        # A request under a policy withdrawn since waits for no answer: it does not count.
        active = {p.id for p in ws.store.list_policies() if p.status == "active"}
        pending = [r for r in ws.store.exemption_requests(state="pending", person=person) if r.policy_id in active]
        if any(r.policy_id == policy_id and r.device_id == device_id for r in pending):
            raise BadInput("you already asked for this exemption: it waits for an answer", field="policy")
        if len(pending) >= MAX_PENDING:
            raise BadInput(f"you have {len(pending)} requests waiting for an answer already", field="policy")
        created = ExemptionRequest(0, policy_id, person, device_id, reason, ws.now, "pending")
        created.id = ws.store.add_exemption_request(created)
        ws.audit.append(
            ws.now,
            "exemption.request",
            f"{policy_id}/{person}",
            {"id": created.id, "device": _device_ref(device_id), "reason": reason},
        )
    return describe_request(created)


def concerns(store: Store, policy_id: str, person: str) -> bool:
    """Whether a policy concerns a person: a device of theirs is in its scope, or they
    were sent a notice under it."""
    for device in store.devices_of_owner(person):
        state = store.device_states(device.id or 0).get(policy_id)
        if state is not None and state.state != "out_of_scope":
            return True
    return any(n.state in ("sent", "sending") for n in store.list_notices(policy_id=policy_id, person=person))


def describe_request(r: ExemptionRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "policy": r.policy_id,
        "person": r.person,
        "device": _device_ref(r.device_id),
        "reason": r.reason,
        "created_at": format_time(r.created_at),
        "state": r.state,
        "decided_at": format_time(r.decided_at),
        "decided_by": r.decided_by or None,
        "answer": r.answer or None,
        "exemption": r.exemption_id,
    }


def list_requests(ws: Workspace, state: str) -> dict[str, Any]:
    """``exempt requests``: the requests in ``state`` (or ``all``), oldest first."""
    if state != "all" and state not in REQUEST_STATES:
        raise BadInput(f"unknown state {state[:40]!r} (known: {', '.join(REQUEST_STATES)}, all)", field="--state")
    rows = ws.store.exemption_requests(state=None if state == "all" else state)
    active = {p.id for p in ws.store.list_policies() if p.status == "active"}
    return {
        "now": format_time(ws.now),
        "state": state,
        "requests": [{**describe_request(r), "policy_active": r.policy_id in active} for r in rows],
    }


def _pending(ws: Workspace, request_id: int) -> ExemptionRequest:
    found = ws.store.get_exemption_request(request_id)
    if found is None:
        raise NotFound(f"no exemption request {request_id}", field="ID")
    if found.state != "pending":
        raise BadInput(f"request {request_id} was already {found.state} at {format_time(found.decided_at)}", field="ID")
    if ws.now < found.created_at:
        raise BadInput(f"request {request_id} was made at {format_time(found.created_at)}, after --now", field="ID")
    return found


def grant(ws: Workspace, request_id: int, until: Micros, reason: str | None) -> dict[str, Any]:
    """Grant a request: the exemption ``exempt add`` would make (for its device, or for
    its person), and the request marked granted with it, in one transaction."""
    if reason is not None:
        reason = check_reason(reason, "--reason")
    from appban.policy.lifecycle import add_exemption

    with ws.writing():
        found = _pending(ws, request_id)
        device = _still_grantable(ws, found)
        made = add_exemption(
            ws,
            found.policy_id,
            person=found.person if device is None else None,
            device_ref=None if device is None else device.ref,
            until=until,
            reason=reason or found.reason,
        )
        if not ws.store.decide_exemption_request(
            request_id, "granted", ws.now, "cli", exemption_id=made["exemption"]
        ):  # pragma: no cover - read under the same write lock just above
            raise BadInput(f"request {request_id} is no longer pending", field="ID")
        ws.audit.append(
            ws.now,
            "exemption.grant",
            f"{found.policy_id}/{found.person}",
            {"request": request_id, "exemption": made["exemption"], "until": format_time(until)},
        )
    return {"request": request_id, "state": "granted", "asked_for": _device_ref(found.device_id), **made}


def _still_grantable(ws: Workspace, found: ExemptionRequest) -> DeviceRow | None:
    """What the page checked when the request was made, checked again as it is granted
    (under the write lock): the policy is still in force, and the device (the one it
    became, if it was linked into another since) is still the requester's. Otherwise
    the request stays pending, for an admin to refuse, and the command says why (exit 2).
    The device to exempt; None for a request for all the person's devices."""
    row = ws.store.get_policy(found.policy_id)
    if row is None or row.status != "active":
        status = "gone" if row is None else f"{row.status} at {format_time(row.withdrawn_at)}"
        raise BadInput(
            f"request {found.id} is under {found.policy_id}, {status}: refuse it with "
            f"appban exempt refuse {found.id} --reason TEXT",
            field="ID",
        )
    if found.device_id is None:
        return None
    device = device_now(ws.store, found)
    if device is not None and device.owner == found.person:
        return device
    asked = f"dev-{found.device_id}"
    if device is None:
        why = f"{asked}, which appban no longer knows"
    else:
        became = "" if device.id == found.device_id else f" (part of {device.ref} now)"
        why = f"{asked}{became}, which {found.person[:80]} no longer owns ({device.owner[:80] or 'no one'} does)"
    raise BadInput(
        f"request {found.id} is for {why}: refuse it with appban exempt refuse {found.id} --reason TEXT",
        field="ID",
    )


def device_now(store: Store, found: ExemptionRequest) -> DeviceRow | None:
    """The device a request names, as it is now: one linked into another since (its row
    folded into the other's, audited as ``link``) is followed to the device it became."""
    if found.device_id is None:
        return None
    ref = f"dev-{found.device_id}"
    for entry in store.audit_entries(since=found.created_at, actions=("link",)):
        if entry.subject != ref and ref in json.loads(entry.data).get("devices", ()):
            ref = entry.subject
    return store.get_device(int(ref.removeprefix("dev-")))


def refuse(ws: Workspace, request_id: int, reason: str) -> dict[str, Any]:
    """Refuse a request, saying why: the employee's page shows the answer."""
    reason = check_reason(reason, "--reason")
    with ws.writing(evaluates=False):
        found = _pending(ws, request_id)
        if not ws.store.decide_exemption_request(
            request_id, "refused", ws.now, "cli", answer=reason
        ):  # pragma: no cover - read under the same write lock just above
            raise BadInput(f"request {request_id} is no longer pending", field="ID")
        ws.audit.append(
            ws.now, "exemption.refuse", f"{found.policy_id}/{found.person}", {"request": request_id, "answer": reason}
        )
    return {
        "request": request_id,
        "state": "refused",
        "policy": found.policy_id,
        "person": found.person,
        "answer": reason,
    }


def _device_ref(device_id: int | None) -> str | None:
    return None if device_id is None else f"dev-{device_id}"
