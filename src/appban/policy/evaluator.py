"""Keeping every (policy, device) state and every device's gate decision up to date.

Three ways in, one state function (``states.compute``):

- ``evaluate_device``: after a device's inventory, owner or groups change;
- ``evaluate_policy``: after a policy is applied, every device under it;
- ``evaluate_due``: time alone (deadlines, exemption expiry, inventory ageing), for
  exactly the rows whose stored ``next_check`` has come, each recorded at the
  moment it changed rather than when the command happened to run.

Every state change is written with its time and cause to the history and the audit
log, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from appban.audit import AuditLog
from appban.catalog import Catalog
from appban.clock import Micros
from appban.policy.model import Policy
from appban.policy.notices import Planner
from appban.policy.states import (
    DETAIL_CATALOG,
    DETAIL_FULL,
    DETAIL_MANAGED,
    DETAIL_NONE,
    DETAIL_NOT_YET,
    DETAIL_STALE,
    Facts,
    Outcome,
    compute,
    walk,
)
from appban.store import Store
from appban.store.records import DeviceRow, Exemption, FactRow, HistoryRow, Observation, StateRow, SweepQuery

_BATCH = 20_000
_WIDE = 1_000  # rows waking at one policy-wide moment worth a sweep rather than a walk


def load_policy(row: Any) -> Policy:
    import msgspec

    body = msgspec.json.decode(row.body)
    body["status"], body["revision"] = row.status, row.revision
    return Policy.from_json(body)


def by_name(observations: Iterable[Observation]) -> frozenset[str]:
    """Keys of the apps matched by display name alone (SPEC: the lowest confidence)."""
    return frozenset(o.app_key for o in observations if o.confidence == "name" and o.gone_at is None)


def matching_keys(policy: Policy, observations: Iterable[Observation]) -> list[str]:
    fams, explicit = policy.families, policy.explicit
    return [
        o.app_key
        for o in observations
        if o.gone_at is None and ((o.family and o.family in fams) or (o.match_kind, o.app_id) in explicit)
    ]


class Evaluator:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog) -> None:
        self.store = store
        self.audit = audit
        self.catalog = catalog
        self._groups: dict[str, frozenset[str]] = {}
        self.notices = Planner(store)
        self.reload()

    # -- what evaluation reads -----------------------------------------------------

    def reload(self) -> None:
        """Re-read everything evaluation depends on: policies, exemptions, attestations
        and people's groups. Called at the start of every write transaction (another
        process may have changed any of them) and after this one changes them."""
        self._groups.clear()
        self._attest_cache: dict[str, set[int]] = {}
        self.policies: list[Policy] = [load_policy(r) for r in self.store.list_policies() if r.status == "active"]
        self.required = {p.id: self.catalog.required_version(set(p.families), set(p.explicit)) for p in self.policies}
        self.by_device: dict[tuple[str, int], list[Exemption]] = {}
        self.by_person: dict[tuple[str, str], list[Exemption]] = {}
        for e in self.store.exemptions():
            if e.device_id is not None:
                self.by_device.setdefault((e.policy_id, e.device_id), []).append(e)
            if e.person is not None:
                self.by_person.setdefault((e.policy_id, e.person), []).append(e)
        self.notices.reload(self.policies)

    def forget_groups(self, emails: Iterable[str]) -> None:
        for email in emails:
            self._groups.pop(email, None)

    def groups_of(self, email: str) -> frozenset[str]:
        groups = self._groups.get(email)
        if groups is None:
            person = self.store.get_person(email)
            groups = frozenset(person.groups) if person else frozenset()
            if len(self._groups) > 100_000:
                self._groups.clear()
            self._groups[email] = groups
        return groups

    def exemptions_for(self, policy_id: str, device_id: int, owner: str) -> tuple[tuple[Micros, Micros, str], ...]:
        if not self.by_device and not self.by_person:
            return ()
        found = self.by_device.get((policy_id, device_id), []) + self.by_person.get((policy_id, owner), [])
        return tuple((e.starts, e.until, e.reason) for e in found)

    def facts(
        self, policy: Policy, device: DeviceRow, present: list[str], named: frozenset[str] = frozenset()
    ) -> Facts:
        attested = None
        if device.id is not None and self._may_use_attestation(policy, device, present):
            attested = self.store.attested_at(policy.id, device.id)
        return Facts(
            platform=device.platform,
            ownership=device.ownership,
            groups=self.groups_of(device.owner),
            mail_access=device.mail_access,
            inventory_scope=device.inventory_scope,
            observed_at=device.observed_at,
            catalog_version=device.catalog_version,
            present=present,
            attested_at=attested,
            exemptions=self.exemptions_for(policy.id, device.id or 0, device.owner),
            by_name=named,
        )

    def _may_use_attestation(self, policy: Policy, device: DeviceRow, present: list[str]) -> bool:
        # Attestations are rare; skip the lookup when no policy state could use one.
        return bool(self._attested_devices(policy.id)) and device.id in self._attested_devices(policy.id)

    def _attested_devices(self, policy_id: str) -> set[int]:
        cache = self._attest_cache
        if policy_id not in cache:
            cache[policy_id] = set(self.store.attestations(policy_id))
        return cache[policy_id]

    def row_facts(self, policy: Policy, *, attested: dict[int, Micros] | None = None) -> Callable[[FactRow], Facts]:
        """A reader of ``Store.policy_facts`` rows into Facts, with what every row of one
        policy shares (present apps, attestations, parsed groups) loaded once."""
        present = self.store.present_apps(policy.families, policy.explicit)
        if attested is None:
            attested = self.store.attestations(policy.id)
        groups_cache: dict[str, frozenset[str]] = {}
        weigh_names = policy.name_matches != "count"

        def read(row: FactRow) -> Facts:
            groups = row.groups
            g = groups_cache.get(groups)
            if g is None:
                g = groups_cache[groups] = frozenset(groups.split(";")) if groups else frozenset()
            device_id = row.device_id
            keys = present.get(device_id, [])
            named: frozenset[str] = frozenset()
            # Only a policy for which a name match means something else needs to know
            # which matches were by name: they are the apps kept without an identifier.
            if weigh_names and any(k.startswith("name:") for k in keys):
                named = by_name(self.store.observations(device_id, present_only=True))
            return Facts(
                row.platform,
                row.ownership,
                g,
                bool(row.mail_access),
                row.inventory_scope,
                row.observed_at,
                row.catalog_version,
                keys,
                attested.get(device_id),
                self.exemptions_for(policy.id, device_id, row.owner),
                named,
            )

        return read

    def attestation_added(self, policy_id: str, device_id: int) -> None:
        self._attested_devices(policy_id).add(device_id)

    # -- one device ----------------------------------------------------------------

    def evaluate_device(
        self,
        device: DeviceRow,
        now: Micros,
        cause: str,
        observations: list[Observation] | None = None,
        *,
        only: str | None = None,
        new: bool = False,
    ) -> None:
        assert device.id is not None
        if not self.policies:
            return
        if observations is None:
            observations = self.store.observations(device.id, present_only=True)
        named = by_name(observations)
        stored = {} if new else self.store.device_states(device.id)
        writes: list[StateRow] = []
        history: list[HistoryRow] = []
        denies: list[str] = []
        for policy in self.policies:
            old = stored.get(policy.id)
            if only is not None and policy.id != only:
                if old is not None and old.deny:
                    denies.append(old.deny)
                continue
            facts = self.facts(policy, device, matching_keys(policy, observations), named)
            out = compute(policy, facts, now, self.required[policy.id])
            row = self._next_row(policy.id, device.id, old, out, now, cause, history)
            if row is not None:
                writes.append(row)
            if out.deny:
                denies.append(out.deny)
        if writes:
            self.store.put_states(writes)
            self.store.add_history(history)
            self._tell(history)
        # The device's states under every active policy are at hand: derive its
        # decision here rather than reading them back.
        decision, reason = decision_from(denies)
        if (decision, reason) != (device.decision, device.reason):
            self._set_decision(device.id, decision, reason, now, cause, old=(device.decision, device.reason))
            device.decision, device.reason = decision, reason

    def _next_row(
        self,
        policy_id: str,
        device_id: int,
        old: StateRow | None,
        out: Outcome,
        at: Micros,
        cause: str,
        history: list[HistoryRow],
        *,
        audit_each: bool = True,
    ) -> StateRow | None:
        """The row to write (None if nothing changed), recording a state change.

        A sweep passes ``audit_each=False`` and audits its history rows in batches
        (``_flush``): one chained entry per batch instead of one per device.
        """
        if old is not None and old.state == out.state:
            if (old.detail, old.deny, old.next_check) == (out.detail, out.deny, out.next_check):
                return None
            return StateRow(policy_id, device_id, out.state, old.since, out.detail, out.deny, out.next_check)
        before = old.state if old else None
        history.append(HistoryRow(policy_id, device_id, before, out.state, at, cause))
        if audit_each:
            self.audit.append(
                at,
                "state",
                f"{policy_id}/dev-{device_id}",
                {"from": before, "to": out.state, "cause": cause, "detail": out.detail},
            )
        return StateRow(policy_id, device_id, out.state, at, out.detail, out.deny, out.next_check)

    def outcomes_since(self, device: DeviceRow, now: Micros) -> dict[str, tuple[Outcome, Micros]]:
        """Every active policy's state for this device at ``now`` and when it began,
        computed from the stored rows (stepping through what time changed since)."""
        assert device.id is not None
        observations = self.store.observations(device.id, present_only=True)
        stored = self.store.device_states(device.id)
        named = by_name(observations)
        out: dict[str, tuple[Outcome, Micros]] = {}
        for p in self.policies:
            facts = self.facts(p, device, matching_keys(p, observations), named)
            row = stored.get(p.id)
            required = self.required[p.id]
            if row is not None and row.next_check is not None and row.next_check <= now:
                out[p.id] = walk(p, facts, row.state, row.since, row.next_check, now, required)
            else:
                now_out = compute(p, facts, now, required)
                same = row is not None and row.state == now_out.state
                out[p.id] = (now_out, row.since if same and row is not None else now)
        return out

    def outcomes_for(self, device: DeviceRow, now: Micros) -> dict[str, Outcome]:
        """Every active policy's state for this device at ``now``, computed, not stored."""
        assert device.id is not None
        observations = self.store.observations(device.id, present_only=True)
        named = by_name(observations)
        return {
            p.id: compute(p, self.facts(p, device, matching_keys(p, observations), named), now, self.required[p.id])
            for p in self.policies
        }

    # -- decisions -----------------------------------------------------------------

    def update_decisions(self, device_ids: list[int], now: Micros, cause: str) -> int:
        """Re-derive the gate decision of these devices from their states; count changes."""
        active = [p.id for p in self.policies]
        denies = self.store.denies_of(device_ids, active)
        current = self.store.decisions_of(device_ids)
        changed = 0
        for device_id in device_ids:
            decision, reason = decision_from(denies.get(device_id, []))
            old = current.get(device_id)
            if old != (decision, reason):
                self._set_decision(device_id, decision, reason, now, cause, old=old)
                changed += 1
        return changed

    def _set_decision(
        self, device_id: int, decision: str, reason: str, now: Micros, cause: str, *, old: tuple[str, str] | None
    ) -> None:
        if old is not None:
            self.notices.decision_changed(device_id, old, (decision, reason), now)
        seq = self.store.next_gate_seq()
        self.store.set_decision(device_id, decision, reason, seq)
        self.audit.append(
            now,
            "decision",
            f"dev-{device_id}",
            {"decision": decision, "reason": reason, "cause": cause},
        )

    # -- every device under one policy ----------------------------------------------

    def evaluate_policy(self, policy: Policy, now: Micros, cause: str) -> int:
        """Bring every device's state under ``policy`` up to date; count state changes."""
        return self._sweep(policy, now, cause, due=False)

    def evaluate_due(self, now: Micros) -> int:
        """Apply every change that time alone has brought by ``now``; count state changes."""
        active = {p.id: p for p in self.policies}
        changes = 0
        for policy_id in self.store.due_policies(now):
            policy = active.get(policy_id)
            if policy is None:
                continue
            # A policy-wide moment (effective, the deadline) wakes many rows at once:
            # bring everything up to just before it row by row, then take that moment
            # in one sweep (simple devices in SQL), recorded at that moment.
            for moment in sorted({policy.effective, policy.deadline}):
                if moment <= now and self.store.due_count(policy.id, moment) >= _WIDE:
                    changes += self._sweep(policy, moment - 1, "time", due=True)
                    changes += self._sweep(policy, moment, "time", due=False)
            changes += self._sweep(policy, now, "time", due=True)
        # The policies' own moments (the memo, reminders) come with time too.
        self.notices.tick(now)
        self.notices.flush()
        return changes

    def _sweep(self, policy: Policy, now: Micros, cause: str, *, due: bool) -> int:
        store = self.store
        required = self.required.get(policy.id, 0)
        writes: list[StateRow] = []
        history: list[HistoryRow] = []
        deny_changed: list[int] = []
        changes = 0
        if due:
            rows = list(store.policy_facts(policy.id, due_before=now))
        else:
            # Devices without a banned app, exemption or attestation: written by the
            # store in one statement; the rest come back for the state function.
            query = self._sweep_query(policy, now, required)
            simple = store.sweep_simple(policy.id, query, cause)
            changed = [c for c in simple if c.old_state != c.new_state]
            changes += len(changed)
            self.notices.states_changed(policy.id, [(c.device_id, c.old_state, c.new_state) for c in changed], now)
            deny_changed += [c.device_id for c in simple if c.deny_changed]
            for start in range(0, len(changed), _BATCH):
                self.audit.append(
                    now,
                    "states",
                    policy.id,
                    {
                        "cause": cause,
                        "changes": [
                            [f"dev-{c.device_id}", c.old_state, c.new_state, now]
                            for c in changed[start : start + _BATCH]
                        ],
                    },
                )
            rows = list(store.policy_candidates(policy.id, query, complex_only=True))
        read = self.row_facts(policy)
        for fact in rows:
            device_id, next_check = fact.device_id, fact.next_check
            facts = read(fact)
            old = None
            if fact.state is not None:
                old = StateRow(
                    policy.id, device_id, fact.state, fact.since or 0, fact.detail or "", fact.deny or "", next_check
                )
            if due and next_check is not None:
                # Walk through each moment time changed the state, in order.
                at = next_check
                row = old
                while True:
                    out = compute(policy, facts, at, required)
                    new = self._next_row(policy.id, device_id, row, out, at, cause, history, audit_each=False)
                    row = new or row
                    if out.next_check is None or out.next_check > now or out.next_check <= at:
                        break
                    at = out.next_check
                new_row = row if row is not old else None
            else:
                out = compute(policy, facts, now, required)
                new_row = self._next_row(policy.id, device_id, old, out, now, cause, history, audit_each=False)
            if new_row is not None:
                writes.append(new_row)
                if old is None or old.state != new_row.state:
                    changes += 1
                if (old.deny if old is not None else "") != new_row.deny:
                    deny_changed.append(device_id)
            if len(writes) >= _BATCH:
                self._flush(writes, history, now)
        self._flush(writes, history, now)
        for start in range(0, len(deny_changed), _BATCH):
            self.update_decisions(deny_changed[start : start + _BATCH], now, cause)
        return changes

    def _sweep_query(self, policy: Policy, now: Micros, required: int) -> SweepQuery:
        enforce_block = policy.mode == "enforce" and policy.on_unverified == "block"
        before = now < policy.deadline
        special = set(self._attested_devices(policy.id))
        special.update(d for (pid, d) in self.by_device if pid == policy.id)
        return SweepQuery(
            now=now,
            max_age=policy.max_inventory_age,
            required=required,
            platforms=policy.scope.platforms,
            mail_required=policy.scope.mail_access == "required",
            ownership=policy.scope.ownership,
            include_groups=policy.scope.include_groups,
            exclude_groups=policy.scope.exclude_groups,
            families=tuple(sorted(policy.families)),
            explicit=tuple(sorted(policy.explicit)),
            special_devices=tuple(sorted(special)),
            special_people=tuple(sorted(p for (pid, p) in self.by_person if pid == policy.id)),
            unverified_wake=policy.deadline if enforce_block and before else None,
            unverified_deny=f"unverified:{policy.id}" if enforce_block and not before else "",
            detail_managed=DETAIL_MANAGED,
            detail_catalog=DETAIL_CATALOG,
            detail_stale=DETAIL_STALE,
            detail_full=DETAIL_FULL,
            effective=policy.effective,
            detail_not_yet=DETAIL_NOT_YET,
            detail_none=DETAIL_NONE,
        )

    def _flush(self, writes: list[StateRow], history: list[HistoryRow], now: Micros) -> None:
        if writes:
            self.store.put_states(writes)
            writes.clear()
        if history:
            self.store.add_history(history)
            self._tell(history)
            policy_id, cause = history[0].policy_id, history[0].cause
            self.audit.append(
                now,
                "states",
                policy_id,
                {"cause": cause, "changes": [[f"dev-{h.device_id}", h.old_state, h.new_state, h.at] for h in history]},
            )
            history.clear()
        self.audit.flush()

    def _tell(self, history: list[HistoryRow]) -> None:
        """The notice planner hears of each state change as it is written."""
        by_policy: dict[str, list[tuple[int, str | None, str]]] = {}
        for h in history:
            by_policy.setdefault(h.policy_id, []).append((h.device_id, h.old_state, h.new_state))
        for policy_id, changes in by_policy.items():
            self.notices.states_changed(policy_id, changes, history[-1].at)

    # -- withdrawal ----------------------------------------------------------------

    def lift(self, policy_id: str, now: Micros, cause: str) -> int:
        """The policy no longer decides anything: re-derive every decision it shaped."""
        ids = self.store.clear_denies(policy_id)
        self.reload()
        changed = 0
        for start in range(0, len(ids), _BATCH):
            changed += self.update_decisions(ids[start : start + _BATCH], now, cause)
        return changed


def decision_from(denies: Iterable[str]) -> tuple[str, str]:
    """SPEC's decision from the deny reasons of a device's states: blocks first, then by id.

    A state that denies nothing contributes "" (every compliant device): not a reason.
    """
    reasons = sorted((r for r in denies if r), key=lambda r: (not r.startswith("blocked:"), r))
    return ("deny", reasons[0]) if reasons else ("allow", "ok")
