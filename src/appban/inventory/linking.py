"""One physical device, however many sources report it.

A phone is seen by an MDM (its apps), by the mail server (its ActiveSync DeviceId,
and that it syncs mail) and by the gate. Source records that share a strong
identifier (serial number, IMEI/MEID, UDID, Apple enrollment id, Android
enterprise-specific id, ActiveSync DeviceId; a host id within its own source) are
one device, evaluated on the union of their evidence:

- an app is present if any record's latest report lists it: a record clears only its
  own evidence, never another's (a clean report of one source cannot hide what
  another saw), and the freshest full inventory's time decides staleness;
- any record's ActiveSync DeviceIds and mail access count;
- the owner is the one the records name (records naming two owners are never linked:
  ``conflicts`` lists them).

Never linked: records whose owners differ; records of different platforms (iOS and
iPadOS are one family), so that a record, whoever sent it, can never change what kind
of device another source reported (an osquery host claiming an iPhone's serial would
make it a Mac, out of a phone policy's scope); a pair an admin unlinked; an identifier
more than ``CROWD`` unrelated devices share (a placeholder a source invented, a
refurbished phone's recycled serial; the records of one host of one source, an osquery
host's queries, count as one); names and models, never. A linked device keeps
the platform it had: a record that later reports another platform leaves it.

A device reported by one source is, as before, one row of ``devices``. When records
link, the device with the lowest id stays (its states, history, exemptions and mail
passwords stay with it), every report is kept as a source record, and the device's
row holds their union.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from appban.clock import Micros
from appban.errors import BadInput, NotFound
from appban.inventory.checkin import is_placeholder
from appban.inventory.observed import write_observations
from appban.policy.evaluator import Evaluator
from appban.store.records import DeviceRow, IdentifierRow, Observation, SourceRecord

# More devices than this sharing one identifier: it identifies none of them.
CROWD = 5
# Platforms one physical device may be reported as by different sources.
_FAMILIES = ({"ios", "ipados"},)


def same_kind(a: str, b: str) -> bool:
    """Whether records of platforms ``a`` and ``b`` may be one device: the same
    platform, or one family (an iPad is ``ios`` to some sources, ``ipados`` to others)."""
    return a == b or any(a in family and b in family for family in _FAMILIES)


def identifier_pairs(d: DeviceRow) -> list[tuple[str, str]]:
    """The identifiers a record is found by. A host id means one machine only within
    its source, so it is kept with the source's name."""
    pairs = [
        (kind, f"{d.source}/{value}" if kind == "host" else value)
        for kind, value in d.identifiers
        if kind != "alias" and not is_placeholder(value)
    ]
    return pairs + [("eas", e) for e in d.eas_ids if ("eas", e) not in pairs and not is_placeholder(e)]


class Linker:
    def __init__(self, store: Any, evaluator: Evaluator) -> None:
        self.store = store
        self.evaluator = evaluator
        self.used: set[tuple[str, str]] = set()  # identifiers this linker linked by

    @property
    def audit(self) -> Any:
        return self.evaluator.audit

    # -- after a record is written -----------------------------------------------------

    def note_identifiers(self, d: DeviceRow, old: DeviceRow | None, device_id: int) -> bool:
        """Store the record's identifiers if they changed; True when they did (or it is new)."""
        if old is not None and (old.identifiers, old.eas_ids, old.owner) == (d.identifiers, d.eas_ids, d.owner):
            return False
        pairs = identifier_pairs(d)
        if old is None and not pairs:
            return False
        self.store.set_identifiers(d.source, d.source_id, d.owner, device_id, pairs, new=old is None)
        return True

    def link_new(self, d: DeviceRow, device_id: int, now: Micros) -> bool:
        """Link the record ``d`` (of device ``device_id``) to every device it shares an
        identifier with, where the rules allow. True when it linked."""
        found = self._candidates(d, device_id)
        if not found:
            return False
        self._link(device_id, found, now)
        return True

    def _candidates(self, d: DeviceRow, device_id: int) -> dict[int, str]:
        pairs = identifier_pairs(d)
        if not pairs:
            return {}
        rows = self.store.identifier_rows(pairs)
        if all(r.device_id == device_id for r in rows):
            return {}  # the common case: no other record shares any of them
        by_value: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for r in rows:
            by_value.setdefault((r.kind, r.value), set()).add((r.source, r.source_id))
        # Keys of every record already in the group being formed, and the owner it has.
        own = self.store.get_device(device_id)
        owner = d.owner or (own.owner if own is not None else "")
        platform = own.platform if own is not None else d.platform
        keys = self._keys(device_id)
        unlinked = set().union(*(self.store.unlinked_from(*k) for k in keys))
        found: dict[int, str] = {}
        refused: set[int] = set()
        crowded: dict[tuple[str, str], bool] = {}
        for r in rows:
            other = r.device_id
            if other == device_id or other in refused or other in found:
                continue
            value = (r.kind, r.value)
            if value not in crowded:
                crowded[value] = self._crowded(by_value[value])
            if crowded[value]:
                self.used.add((r.kind, r.value))  # drop_crowded looks at it by the end of the import
                continue
            device = self.store.get_device(other)
            if device is None or not same_kind(device.platform, platform) or not same_kind(device.platform, d.platform):
                refused.add(other)  # another kind of device: the value is not this one's
                continue
            theirs = self._keys(other)
            if unlinked & theirs:
                refused.add(other)  # an admin said these are not one device
                continue
            if device.owner and owner and device.owner != owner:
                # Devices of two people share the value: if this record names no one,
                # which of them it is cannot be known.
                return {} if not d.owner else self._without(found, refused | {other})
            owner = owner or device.owner
            found[other] = f"{r.kind}:{_shown_value(r)}"
            self.used.add((r.kind, r.value))
            keys |= theirs
            unlinked |= set().union(*(self.store.unlinked_from(*k) for k in theirs))
        return found

    def _crowded(self, keys: set[tuple[str, str]]) -> bool:
        """Whether more than CROWD machines' records share a value. The records of one
        host of one source (an osquery host's queries, each a record) are one machine:
        counted once, they never make its own serial number look like a placeholder."""
        if len(keys) <= CROWD:
            return False
        machines = set()
        for source, source_id in keys:
            row = self.store.get_device_by_key(source, source_id)
            record = self.store.get_record(source, source_id) if row is None or row.linked else None
            facts = record.facts if record is not None else row
            host = next((v for k, v in facts.identifiers if k == "host"), None) if facts is not None else None
            machines.add((source, "host", host) if host is not None else (source, "id", source_id))
            if len(machines) > CROWD:
                return True
        return False

    @staticmethod
    def _without(found: dict[int, str], refused: set[int]) -> dict[int, str]:
        return {k: v for k, v in found.items() if k not in refused}

    def _keys(self, device_id: int) -> set[tuple[str, str]]:
        """The (source, source id) of every record of a device."""
        records = self.store.records_of(device_id)
        if records:
            return {(r.facts.source, r.facts.source_id) for r in records}
        device = self.store.get_device(device_id)
        return {(device.source, device.source_id)} if device is not None else set()

    def _link(self, device_id: int, found: dict[int, str], now: Micros) -> None:
        store = self.store
        members = sorted({device_id, *found})
        target_id = members[0]
        target = store.get_device(target_id)
        assert target is not None
        owner = target.owner
        seq = store.next_gate_seq()
        linked: list[str] = []
        for member_id in members:
            member = store.get_device(member_id)
            assert member is not None
            if owner and member.owner and member.owner != owner:
                continue  # another member's owner differs: a conflict, listed, not merged
            owner = owner or member.owner
            by = found.get(member_id) or found.get(device_id) or next(iter(found.values()))
            if not member.linked:
                self._keep_as_record(member, target_id, by, now)
            if member_id != target_id:
                store.fold_device(member_id, target_id, seq)
            linked.append(member.ref)
        target.linked = True
        self.audit.append(now, "link", target.ref, {"devices": linked, "by": sorted(set(found.values()))})
        self.refresh(target_id, now, "link")

    def _keep_as_record(self, device: DeviceRow, target_id: int, by: str, now: Micros) -> None:
        """A device reported by one source becomes a record of a linked device."""
        assert device.id is not None
        facts = replace(device, id=None, credential=False, decision="allow", reason="ok", gate_seq=0, linked=False)
        record = SourceRecord(facts, target_id, by, now)
        record_id = self.store.put_record(record)
        self.store.put_record_observations(record_id, self.store.observations(device.id))
        self.store.record_identifiers_to(device.source, device.source_id, target_id)
        if device.id == target_id:
            self.store.update_device(replace(device, linked=True), device.eas_ids)

    def record_changed(self, record: SourceRecord, facts: DeviceRow, kept: list[Observation], now: Micros) -> None:
        """A linked device's record has a newer report: keep it, then bring the device
        up to date (and link further if it names a new identifier)."""
        store = self.store
        old = record.facts
        assert old.id is not None
        facts.id = old.id
        before = {o.app_key: o for o in store.record_observations(old.id)}
        store.put_record_observations(old.id, _replaced(before, kept, facts.observed_at))
        record.facts = facts
        store.put_record(record)
        device = store.get_device(record.device_id)
        assert device is not None
        if not same_kind(facts.platform, device.platform):
            # The source now says this is another kind of device: the record leaves, it
            # does not change what the device is.
            self.note_identifiers(facts, old, record.device_id)
            self.unlink(int(old.id), now, remember=False, why="platform")
            return
        others = {r.facts.owner for r in store.records_of(record.device_id) if r.facts.id != old.id} - {""}
        if facts.owner and others - {facts.owner}:
            # The source now names another owner than the device's other records: the
            # record leaves (listed by `device conflicts`), it does not carry them along.
            self.note_identifiers(facts, old, record.device_id)
            self.unlink(int(old.id), now, remember=False, why="owner")
            return
        if self.note_identifiers(facts, old, record.device_id) and self.link_new(facts, record.device_id, now):
            return
        self.refresh(record.device_id, now, "inventory")

    # -- the device as the union of its records ------------------------------------------

    def refresh(self, device_id: int, now: Micros, cause: str) -> None:
        """Write the linked device's row and observations from its records; evaluate it."""
        store = self.store
        device = store.get_device(device_id)
        assert device is not None
        records = store.records_of(device_id)
        present = {r.facts.id: store.record_observations(r.facts.id, present_only=True) for r in records}
        merged, apps = union([r.facts for r in records], present)
        merged.id, merged.source, merged.source_id = device.id, device.source, device.source_id
        merged.platform = device.platform  # no record changes what kind of device it is
        merged.credential, merged.decision, merged.reason = device.credential, device.decision, device.reason
        merged.mail_seen = device.mail_seen
        merged.linked = True
        changed = (device.owner, device.eas_ids) != (merged.owner, merged.eas_ids)
        merged.gate_seq = store.next_gate_seq() if changed else device.gate_seq
        store.update_device(merged, device.eas_ids)
        existing = {o.app_key: o for o in store.observations(device_id)}
        kept = write_observations(store, device_id, apps, existing, merged.observed_at)
        self.evaluator.evaluate_device(merged, now, cause, kept)

    def drop_crowded(self, now: Micros) -> int:
        """Undo the links made by an identifier that, by the end of an import, more than
        CROWD records share: it names no one device (a placeholder a source invented).
        Records it linked become devices of their own again; returns how many."""
        split = 0
        for kind, value in sorted(self.used):
            rows = self.store.identifier_rows([(kind, value)])
            if not self._crowded({(r.source, r.source_id) for r in rows}):
                continue
            shown = f"{kind}:{_shown_value(rows[0])}"
            for device_id in sorted({r.device_id for r in rows}):
                device = self.store.get_device(device_id)
                if device is None:
                    continue
                # The device keeps the record it was before the link (its label), with
                # its id, states and what is attached to it; the others it took in by
                # this value leave.
                label = (device.source, device.source_id)
                for record in self.store.records_of(device_id):
                    if record.linked_by != shown or (record.facts.source, record.facts.source_id) == label:
                        continue
                    if self.store.get_record_by_id(record.facts.id) is not None:
                        self.unlink(int(record.facts.id or 0), now, remember=False, why="crowded")
                        split += 1
        self.used.clear()
        return split

    # -- undoing a link ------------------------------------------------------------------

    def unlink(self, record_id: int, now: Micros, *, remember: bool = True, why: str = "admin") -> dict[str, Any]:
        """The record becomes a device of its own again, remembered (unless not
        ``remember``) so that no import links the pair again; both devices are
        evaluated at once."""
        store = self.store
        record = store.get_record_by_id(record_id)
        if record is None:
            raise NotFound(f"no source record rec-{record_id}", field="ID")
        device_id = record.device_id
        device = store.get_device(device_id)
        assert device is not None
        others = [r for r in store.records_of(device_id) if r.facts.id != record_id]
        if not others:
            raise BadInput(f"rec-{record_id} is the only record of {device.ref}: nothing to unlink", field="ID")
        facts = record.facts
        if (device.source, device.source_id) == (facts.source, facts.source_id):
            # The device is labelled with this record's key: it takes another's.
            label = others[0].facts
            store.relabel_device(device_id, label.source, label.source_id)
        for other in others if remember else ():
            store.add_unlinked((facts.source, facts.source_id), (other.facts.source, other.facts.source_id), now)
        apps = store.record_observations(record_id)
        store.delete_record(record_id)
        alone = replace(facts, id=None, gate_seq=store.next_gate_seq(), linked=False)
        alone.id = store.insert_device(alone)
        present = [o for o in apps if o.gone_at is None]
        if present:
            store.write_observations(alone.id, present, [], [], now)
        store.record_identifiers_to(facts.source, facts.source_id, alone.id)
        self.audit.append(
            now,
            "unlink",
            device.ref,
            {"record": f"{facts.source}:{facts.source_id}", "now": alone.ref, "by": why},
        )
        self.evaluator.evaluate_device(alone, now, "unlink", present, new=True)
        if len(others) == 1:
            self._collapse(device_id, others[0], now)
        else:
            self.refresh(device_id, now, "unlink")
        return {"record": f"rec-{record_id}", "from": device.ref, "device": alone.ref}

    def _collapse(self, device_id: int, last: SourceRecord, now: Micros) -> None:
        """A linked device left with one record is that record's device again."""
        store = self.store
        device = store.get_device(device_id)
        assert device is not None and last.facts.id is not None
        apps = store.record_observations(last.facts.id)
        store.delete_record(last.facts.id)
        facts = replace(
            last.facts,
            id=device_id,
            credential=device.credential,
            mail_seen=device.mail_seen,
            decision=device.decision,
            reason=device.reason,
            gate_seq=store.next_gate_seq(),
            linked=False,
        )
        store.update_device(facts, device.eas_ids)
        store.relabel_device(device_id, facts.source, facts.source_id)
        existing = {o.app_key: o for o in store.observations(device_id)}
        present = [o for o in apps if o.gone_at is None]
        write_observations(store, device_id, present, existing, facts.observed_at)
        self.evaluator.evaluate_device(facts, now, "unlink", present)

    # -- what admins ask ------------------------------------------------------------------

    def conflicts(self) -> list[dict[str, Any]]:
        """Records that share an identifier but name different owners: never linked."""
        out: dict[tuple[str, str], list[IdentifierRow]] = {}
        for row in self.store.shared_identifiers():
            out.setdefault((row.kind, row.value), []).append(row)
        return [
            {
                "identifier": f"{kind}:{_shown_value(rows[0])}",
                "records": [
                    {"source": r.source, "id": r.source_id, "owner": r.owner or None, "device": f"dev-{r.device_id}"}
                    for r in rows
                ],
            }
            for (kind, _value), rows in out.items()
        ]


def find_record(store: Any, ref: str) -> int:
    """A linked device's source record by rec-N, source:id, or the id its source reported."""
    if ref.startswith("rec-") and ref[4:].isdigit():
        if len(ref) > 22:  # no record has an id past 64 bits
            raise NotFound(f"no source record {ref[:40]!r}", field="ID")
        return int(ref[4:])
    found = store.records_by_source_id(ref)
    if not found and ":" in ref:
        source, _, sid = ref.partition(":")
        one = store.get_record(source, sid)
        found = [one] if one is not None else []
    if not found:
        raise NotFound(f"no source record {ref[:100]!r} of a linked device (see device show)", field="ID")
    if len(found) > 1:
        refs = ", ".join(f"{r.ref} ({r.facts.source})" for r in found)
        raise BadInput(f"{ref!r} names {len(found)} records ({refs}): use rec-N", field="ID")
    return int(found[0].facts.id)


def _shown_value(r: IdentifierRow) -> str:
    if r.kind == "host":
        return r.value.partition("/")[2]
    return r.value


def _replaced(before: dict[str, Observation], kept: list[Observation], at: Micros) -> list[Observation]:
    """A record's observations after a newer report: kept apps present (first seen
    kept from before), the rest gone at ``at`` (or when they went)."""
    out: list[Observation] = []
    keys = set()
    for o in kept:
        old = before.get(o.app_key)
        if old is not None and old.gone_at is None:
            o = replace(o, first_seen=old.first_seen)
        out.append(o)
        keys.add(o.app_key)
    for key, old in before.items():
        if key not in keys:
            out.append(old if old.gone_at is not None else replace(old, gone_at=at))
    return out


def union(
    records: list[DeviceRow], present: dict[int | None, list[Observation]]
) -> tuple[DeviceRow, list[Observation]]:
    """One device from its records: the facts, and the apps present.

    Presence: every app any record's latest report lists (the newest record's
    observation of it). A record's report clears that record's apps only: a newer clean
    report of one source (or of another query of one osquery host) never hides what
    another saw, which stays until its own source reports it gone. Time: the freshest
    full inventory's, which decides staleness. Scope: full if any record is; else
    managed if any is; else none.
    """
    if not records:
        raise BadInput("a linked device without records")  # never: callers keep one
    by_time = sorted(records, key=lambda r: r.observed_at)
    fresh = by_time[-1]
    inventories = [r for r in by_time if r.inventory_scope != "none"]
    full = [r for r in inventories if r.inventory_scope == "full"]
    basis = full[-1] if full else (inventories[-1] if inventories else None)
    apps: dict[str, Observation] = {}
    for r in reversed(inventories):
        for o in present.get(r.id, []):
            apps.setdefault(o.app_key, replace(o))
    owners = [r.owner for r in by_time if r.owner]
    known_ownership = [r.ownership for r in by_time if r.ownership != "unknown"]
    eas: list[str] = []
    identifiers: list[tuple[str, str]] = []
    for r in records:
        eas += [e for e in r.eas_ids if e not in eas]
        identifiers += [i for i in r.identifiers if i not in identifiers]
    reported = [r.mail_reported for r in records if r.mail_reported is not None]
    facts = DeviceRow(
        id=None,
        source=fresh.source,
        source_id=fresh.source_id,
        platform=(basis or fresh).platform,
        ownership=known_ownership[-1] if known_ownership else "unknown",
        owner=owners[-1] if owners else "",
        inventory_scope="full" if full else ("managed" if inventories else "none"),
        observed_at=(basis or fresh).observed_at,
        model=next((r.model for r in reversed(by_time) if r.model), None),
        os_version=next((r.os_version for r in reversed(by_time) if r.os_version), None),
        mail_reported=any(reported) if reported else None,
        eas_ids=tuple(eas),
        catalog_version=basis.catalog_version if basis is not None else None,
        identifiers=tuple(identifiers),
    )
    return facts, list(apps.values())
