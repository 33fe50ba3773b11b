"""Applying, previewing and withdrawing policies; exemptions and attestations."""

from __future__ import annotations

from typing import Any

import msgspec

from appban.catalog import Identifier
from appban.catalog import sync as catalog_sync
from appban.clock import Micros, format_time
from appban.errors import BadInput, NotFound
from appban.policy import notices
from appban.policy.evaluator import load_policy
from appban.policy.model import Policy, TemplateCheck, parse_policy
from appban.policy.states import STATES, compute
from appban.store.records import DeviceRow, Exemption, PolicyRow, SourceRecord
from appban.text import check_text, normalise_email
from appban.workspace import Workspace


def read_policy_file(ws: Workspace, path: str, check: TemplateCheck | None = None) -> tuple[Policy, str]:
    try:
        with open(path, "rb") as f:
            raw = f.read(2 * 1024 * 1024)
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", file=path) from None
    policy = parse_policy(raw, ws.catalog, file=path, check=check)
    return policy, raw.decode("utf-8")


def get_policy(ws: Workspace, policy_id: str) -> tuple[Policy, PolicyRow]:
    row = ws.store.get_policy(policy_id)
    if row is None:
        raise NotFound(f"no policy {policy_id!r}", field="policy")
    return load_policy(row), row


def apply(
    ws: Workspace, path: str, *, dry_run: bool, draft: bool = False, check: TemplateCheck | None = None
) -> dict[str, Any]:
    """Apply the policy file at ``path``; ``check`` tries a policy's own notice templates
    (``appban.notify.render.check_template``): without it, a policy naming any is refused."""
    policy, text = read_policy_file(ws, path, check)
    status = "draft" if draft else "active"
    if dry_run:
        existing = ws.store.get_policy(policy.id)
        # The same answer the real apply would give: the same rule and status is "unchanged".
        same = existing is not None and existing.status == status and load_policy(existing).same_rule(policy)
        action = "unchanged" if same else _action(existing)
        return {"dry_run": True, "action": action, **_preview_as_applied(ws, policy)}
    now = ws.now
    with ws.writing():
        existing = ws.store.get_policy(policy.id)  # read under the write lock
        _watch_explicit(ws, policy)
        if existing is not None:
            old = load_policy(existing)
            if old.same_rule(policy) and existing.status == status:
                return {
                    "policy": policy.id,
                    "action": "unchanged",
                    "revision": existing.revision,
                    "status": status,
                }
        revision = 1 if existing is None else existing.revision + 1
        stored = Policy(**{**policy.__dict__, "status": status, "revision": revision})
        body = stored.to_json()
        ws.store.save_policy(
            PolicyRow(
                id=policy.id,
                status=status,
                revision=revision,
                body=msgspec.json.encode(body).decode(),
                source_text=text,
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
        )
        changed = _changed_fields(existing, stored)
        ws.audit.append(
            now,
            "policy.apply",
            policy.id,
            {"revision": revision, "status": status, "changed": changed, "policy": body},
        )
        ws.evaluator.reload()
        changes = 0
        told = 0
        if status == "active":
            told = ws.evaluator.notices.applied(load_policy(existing) if existing else None, stored, now)
            changes = ws.evaluator.evaluate_policy(stored, now, "policy")
            ws.evaluator.notices.tick(now)
            ws.evaluator.notices.flush()
        elif existing is not None and existing.status == "active":
            ws.evaluator.lift(policy.id, now, "policy")
    return {
        "policy": policy.id,
        "action": _action(existing),
        "revision": revision,
        "status": status,
        "changed": changed,
        "state_changes": changes,
        "policy_changed_notices": told,
    }


def _action(existing: PolicyRow | None) -> str:
    return "created" if existing is None else "updated"


def _changed_fields(existing: PolicyRow | None, policy: Policy) -> list[str]:
    if existing is None:
        return []
    before = load_policy(existing).to_json()
    after = policy.to_json()
    return sorted(k for k in after if k not in ("revision",) and before.get(k) != after.get(k))


def _watch_explicit(ws: Workspace, policy: Policy) -> None:
    """Identifiers a policy names directly join the catalog, so imports keep them."""
    new = [
        Identifier(kind, value, "", f"named by policy {policy.id}")
        for kind, value in sorted(policy.explicit)
        if not ws.catalog.knows(kind, value)
    ]
    if new:
        catalog_sync.add(ws.store, ws.audit, ws.now, {}, new, f"policy {policy.id}")
        ws.refresh_catalog()


class _Rollback(Exception):
    pass


def _preview_as_applied(ws: Workspace, policy: Policy) -> dict[str, Any]:
    """The preview of ``policy`` after what applying it would do to the catalog.

    Identifiers a policy names join the catalog, and inventories kept whole are matched
    against them; the preview must see that too, so it runs in a transaction that is
    rolled back: nothing is written.
    """
    if all(ws.catalog.knows(*e) for e in policy.explicit):
        return preview(ws, policy)
    result: dict[str, Any] = {}
    try:
        with ws.store.transaction():
            _watch_explicit(ws, policy)
            result = preview(ws, policy)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        ws.audit.discard()
        ws.refresh_catalog()
    return result


def preview(ws: Workspace, policy: Policy) -> dict[str, Any]:
    """What the policy would do now and at its deadline, from stored facts; writes nothing."""
    now = ws.now
    at_deadline = max(now, policy.deadline)
    # Before the policy is effective it holds no one; "now" is then shown as of the
    # moment it takes effect, which is what the admin asks: whom will it hit.
    at_start = max(now, policy.effective)
    unknown = [e for e in policy.explicit if not ws.catalog.knows(*e)]
    required = (
        ws.catalog.version + 1 if unknown else ws.catalog.required_version(set(policy.families), set(policy.explicit))
    )
    store = ws.store
    read = ws.evaluator.row_facts(policy, attested=None if store.get_policy(policy.id) else {})
    states_now = dict.fromkeys(STATES, 0)
    states_deadline = dict.fromkeys(STATES, 0)
    people_all: set[str] = set()
    people_scope: set[str] = set()
    people_hit: set[str] = set()
    people_to_act: set[str] = set()  # a device violating or unverified: reminders
    people_cut: set[str] = set()
    blocked_at_deadline: list[dict[str, Any]] = []
    for row in store.policy_facts(policy.id):
        device_id, platform, owner = row.device_id, row.platform, row.owner
        facts = read(row)
        now_out = compute(policy, facts, at_start, required)
        later = compute(policy, facts, at_deadline, required)
        states_now[now_out.state] += 1
        states_deadline[later.state] += 1
        people_all.add(owner)
        if now_out.state != "out_of_scope":
            people_scope.add(owner)
        if now_out.state in ("violating", "blocked"):
            people_hit.add(owner)
        if now_out.state in notices.REMIND_STATES:
            people_to_act.add(owner)
        if later.deny and owner:
            people_cut.add(owner)
        if later.deny:
            blocked_at_deadline.append(
                {
                    "device": f"dev-{device_id}",
                    "owner": owner,
                    "platform": platform,
                    "reason": later.deny,
                }
            )
    in_scope = sum(v for k, v in states_now.items() if k != "out_of_scope")
    return {
        "policy": policy.id,
        "now": format_time(now),
        "states_as_of": format_time(at_start),
        "deadline": format_time(policy.deadline),
        "in_scope": {"devices": in_scope, "people": len(people_scope)},
        "states": states_now,
        "states_at_deadline": states_deadline,
        "violating_now": states_now["violating"] + states_now["blocked"],
        "unverified": states_now["unverified"],
        "would_be_denied_at_deadline": len(blocked_at_deadline),
        "people_affected": len(people_hit),
        "people": sorted(people_hit),
        "denied_at_deadline": blocked_at_deadline,
        "notices": _notices_preview(
            ws,
            policy,
            at_start,
            {"affected": people_hit | people_to_act, "in_scope": people_scope, "all": people_all},
            people_to_act,
            people_cut,
        ),
    }


def _notices_preview(
    ws: Workspace,
    policy: Policy,
    at_start: Micros,
    audiences: dict[str, set[str]],
    to_act: set[str],
    cut: set[str],
) -> dict[str, Any]:
    """How many notices of each kind applying ``policy`` would plan, and when (the
    reminders and blocks as if no one acted before them)."""
    store = ws.store
    discard = {""}
    marks = store.notice_marks(policy.id)
    existing = store.get_policy(policy.id)
    life = notices.life_of(marks)
    since = marks.get(f"life:{life}", 0)
    if existing is not None and existing.status == "withdrawn":
        life, since = existing.revision + 1, ws.now  # applying it again starts a new life
    audience = policy.notices.audience
    wanted = audiences[audience]
    if audience == "all":  # everyone imported, and every device's owner
        wanted = {p.email for p in store.list_people()} | wanted
    memo_sent = {email for email, _tz in store.notified_people(policy.id, kinds=("memo",), since=since)}
    planned = ("pending", "sending", "sent")
    memo_planned = {
        email for email, _tz in store.notified_people(policy.id, kinds=("memo",), states=planned, since=since)
    }
    wave = marks.get(notices.memo_mark(life), at_start)
    # Only the latest of the reminder moments already past goes (see Planner.tick).
    moments = sorted(policy.deadline - r for r in policy.reminders)
    due = [at for at in moments if at >= wave and notices.reminder_mark(at, life) not in marks and at < policy.deadline]
    passed = [at for at in due if at <= max(at_start, ws.now)]
    due = [at for at in due if at not in passed[:-1]]
    out: dict[str, Any] = {
        "memo": {"people": len(wanted - memo_planned - discard), "at": format_time(max(at_start, ws.now))},
        "reminder": [{"at": format_time(at), "people": len(to_act - discard)} for at in due],
        "blocked": {"people": len(cut - discard), "at": format_time(max(policy.deadline, ws.now))},
        "channels": list(notices.channels(policy)),
    }
    if existing is not None and existing.status == "active" and notices.memo_mark(life) in marks:
        old = load_policy(existing)
        if (old.deadline, old.mode) != (policy.deadline, policy.mode):
            out["policy_changed"] = {"people": len(memo_sent), "at": format_time(ws.now)}
    return out


def withdraw(ws: Workspace, policy_id: str, reason: str) -> dict[str, Any]:
    if not reason.strip():
        raise BadInput("a withdrawal needs a reason", field="--reason")
    if len(reason) > 500:
        raise BadInput("reason longer than 500 characters", field="--reason")
    check_text(reason, "--reason")
    get_policy(ws, policy_id)
    with ws.writing():
        _policy, row = get_policy(ws, policy_id)  # read under the write lock
        if row.status == "withdrawn":
            return {"policy": policy_id, "action": "unchanged", "status": "withdrawn"}
        row.status, row.withdrawn_at, row.withdraw_reason, row.updated_at = (
            "withdrawn",
            ws.now,
            reason,
            ws.now,
        )
        ws.store.save_policy(row)
        ws.audit.append(ws.now, "policy.withdraw", policy_id, {"reason": reason, "revision": row.revision})
        corrections, cancelled = ws.evaluator.notices.withdrawn(_policy, ws.now)
        # Requests for an exemption from it need no answer any more: they are closed.
        closed = [
            r.id
            for r in ws.store.exemption_requests(state="pending")
            if r.policy_id == policy_id
            and ws.store.decide_exemption_request(r.id, "refused", ws.now, "appban", answer="the policy was withdrawn")
        ]
        if closed:
            ws.audit.append(ws.now, "exemption.refuse", policy_id, {"requests": closed, "reason": "policy withdrawn"})
        lifted = ws.evaluator.lift(policy_id, ws.now, "withdrawn")
    return {
        "policy": policy_id,
        "action": "withdrawn",
        "status": "withdrawn",
        "decisions_changed": lifted,
        "corrections": corrections,
        "notices_cancelled": cancelled,
        "requests_closed": len(closed),
    }


def find_device(ws: Workspace, ref: str) -> DeviceRow:
    """A device by appban id (dev-N), a source record (rec-N), source:id, or the id its
    source reported (a linked device is found by any of its records' ids)."""
    store = ws.store
    matches = _unique(store.devices_by_source_id(ref) + _linked(ws, store.records_by_source_id(ref)))
    numbered = ref[4:].isdigit() and len(ref) <= 22  # an id fits in 64 bits
    if ref.startswith("rec-") and numbered:
        record = store.get_record_by_id(int(ref[4:]))
        if record is not None and not matches:
            matches = _linked(ws, [record])
    if ref.startswith("dev-") and numbered:
        found = store.get_device(int(ref[4:]))
        if found is not None:
            others = [d for d in matches if d.id != found.id]
            if others:
                # A source may call a device "dev-7" too: acting on the wrong phone is worse
                # than asking.
                named = ", ".join(f"{d.source}:{d.source_id}" for d in others)
                raise BadInput(
                    f"{ref!r} is appban's {found.ref} and also what {named} reported: "
                    f"use {found.source}:{found.source_id} or the other's source:id",
                    field="device",
                )
            return found
    if not matches and ":" in ref:
        source, _, sid = ref.partition(":")
        record = store.get_record(source, sid)
        one = store.get_device(record.device_id) if record is not None else store.get_device_by_key(source, sid)
        matches = [one] if one else []
    if not matches:
        raise NotFound(f"no device {ref[:100]!r}", field="device")
    if len(matches) > 1:
        refs = ", ".join(d.ref for d in matches)
        raise BadInput(f"{ref!r} names {len(matches)} devices ({refs}): use the appban id", field="device")
    return matches[0]


def _linked(ws: Workspace, records: list[SourceRecord]) -> list[DeviceRow]:
    found = [ws.store.get_device(r.device_id) for r in records]
    return [d for d in found if d is not None]


def _unique(devices: list[DeviceRow]) -> list[DeviceRow]:
    seen: dict[int | None, DeviceRow] = {}
    for d in devices:
        seen.setdefault(d.id, d)
    return list(seen.values())


def add_exemption(
    ws: Workspace,
    policy_id: str,
    *,
    person: str | None,
    device_ref: str | None,
    until: Micros,
    reason: str,
) -> dict[str, Any]:
    get_policy(ws, policy_id)
    if (person is None) == (device_ref is None):
        raise BadInput("give exactly one of --person and --device", field="--person")
    if not reason.strip():
        raise BadInput("an exemption needs a reason", field="--reason")
    if len(reason) > 500:
        raise BadInput("reason longer than 500 characters", field="--reason")
    check_text(reason, "--reason")
    if until <= ws.now:
        raise BadInput("--until is not in the future", field="--until")
    device = find_device(ws, device_ref) if device_ref else None
    if person is not None:
        person = normalise_email(person, "--person")
    with ws.writing():
        # Read again under the write lock: its decision is compared with the new one.
        device = find_device(ws, device_ref) if device_ref else None
        exemption = Exemption(0, policy_id, person, device.id if device else None, ws.now, until, reason, ws.now)
        exemption.id = ws.store.add_exemption(exemption)
        subject = person or (device.ref if device else "")
        ws.audit.append(
            ws.now,
            "exemption",
            f"{policy_id}/{subject}",
            {"until": format_time(until), "reason": reason, "id": exemption.id},
        )
        ws.evaluator.reload()
        policy, _row = get_policy(ws, policy_id)
        if policy.status == "active":  # a draft tells no one; a withdrawn policy binds no one
            ws.evaluator.notices.exemption_granted(policy, exemption, ws.now)
        devices = [device] if device else ws.store.devices_of_owner(person or "")
        for d in devices:
            ws.evaluator.evaluate_device(d, ws.now, "exemption", only=policy_id)
    return {
        "exemption": exemption.id,
        "policy": policy_id,
        "person": person,
        "device": device.ref if device else None,
        "until": format_time(until),
        "devices": len(devices),
    }


def attest(ws: Workspace, policy_id: str, device_ref: str, person: str) -> dict[str, Any]:
    get_policy(ws, policy_id)
    find_device(ws, device_ref)
    person = normalise_email(person, "--person")
    with ws.writing():
        # Read again under the write lock: the owner or the policy may have changed.
        _policy, row = get_policy(ws, policy_id)
        device = find_device(ws, device_ref)
        if person != device.owner:
            raise BadInput(
                f"{person[:80]!r} does not own {device.ref}; only its owner can attest",
                field="--person",
            )
        assert device.id is not None
        ws.store.add_attestation(policy_id, device.id, person, ws.now)
        ws.evaluator.attestation_added(policy_id, device.id)
        ws.audit.append(ws.now, "attestation", f"{policy_id}/{device.ref}", {"person": person})
        if row.status == "active":
            ws.evaluator.evaluate_device(device, ws.now, "attestation", only=policy_id)
        state = ws.store.device_states(device.id).get(policy_id)
    return {
        "policy": policy_id,
        "device": device.ref,
        "person": person,
        "attested_at": format_time(ws.now),
        "state": state.state if state else None,
    }
