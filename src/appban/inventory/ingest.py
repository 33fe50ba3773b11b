"""Applying one check-in to the store: SPEC's snapshot semantics, then evaluation.

- A snapshot no newer than the stored one for that device and source changes
  nothing (so importing a file twice, or reports arriving out of order, is safe).
  A record that lists no apps (device facts only) is no snapshot of apps: an app
  list older than it still brings its apps, and the record keeps the newer facts.
- An app absent from a newer snapshot is gone (``gone_at`` keeps when it went).
- Data minimisation: only apps the catalog or a policy names are kept, and the
  snapshot remembers the catalog version it was filtered against.
- A snapshot from the future is refused: one dated ahead of the command's clock
  by more than ``clock_skew`` would be "newer" than every real check-in after it,
  and the device's state would freeze. Every importer goes through ``ingest``, so
  every format and the check-in API share the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appban import settings
from appban.catalog import Catalog
from appban.catalog.catalog import normalise_name
from appban.clock import Micros, format_duration, format_time
from appban.errors import BadInput
from appban.inventory.checkin import Checkin
from appban.inventory.linking import Linker
from appban.inventory.observed import write_observations
from appban.policy.evaluator import Evaluator
from appban.store.records import DeviceRow, Observation, SourceRecord


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0  # a snapshot no newer than the one stored

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged

    def as_dict(self) -> dict[str, int]:
        return {
            "checkins": self.total,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


class Ingestor:
    def __init__(self, store: Any, evaluator: Evaluator, *, keep_full: bool, clock_skew: Micros | None = None) -> None:
        self.store = store
        self.evaluator = evaluator
        self.keep_full = keep_full
        self.clock_skew = read_clock_skew() if clock_skew is None else clock_skew
        self.counts = IngestCounts()
        self.linker = Linker(store, evaluator)
        # The catalog version check-ins were cut down to before they reach ingest (an
        # import's first phase), or None.
        self.filtered_with: int | None = None

    @property
    def catalog(self) -> Catalog:
        # The evaluator's: read again inside each write transaction (Workspace.writing).
        return self.evaluator.catalog

    def check_time(self, c: Checkin, now: Micros) -> None:
        """Raises BadInput (field ``observed_at``) for a snapshot dated further ahead of
        ``now`` than the clock skew allows."""
        if c.observed_at > now + self.clock_skew:
            raise BadInput(
                f"{format_time(c.observed_at)} is in the future: more than "
                f"{format_duration(self.clock_skew)} ({settings.SETTINGS['clock_skew'].env}) "
                f"ahead of the clock, {format_time(now)}",
                field="observed_at",
            )

    def ingest(self, c: Checkin, now: Micros) -> None:
        """Apply ``c`` as of ``now`` (check_time's rule holds here too)."""
        self.check_time(c, now)
        store = self.store
        d = c.device
        # A device several sources report keeps each source's report as a record (and
        # is labelled with one record's key): only then is the record looked up.
        old = store.get_device_by_key(c.source, d.id)
        record = store.get_record(c.source, d.id) if old is None or old.linked else None
        if record is not None:
            old = record.facts
        # An app list against a record that lists no apps (device facts only, such as an
        # MDM's DeviceInformation): compared with the last app list, of which there is
        # none, not with the facts. An older list still brings the apps; the newer facts stay.
        behind_facts = (
            old is not None
            and old.inventory_scope == "none"
            and d.inventory_scope != "none"
            and c.removed is None
            and c.observed_at <= old.observed_at
        )
        # More rows of the run stored last (a run that came in parts): they add to it.
        same_run = (
            c.partial
            and old is not None
            and (c.epoch, c.counter, c.observed_at) == (old.epoch, old.counter, old.observed_at)
        )
        if old is not None and not behind_facts and not same_run and not self._newer(c, old, record):
            self.counts.unchanged += 1
            return
        kept = self._kept_apps(c)
        catalog_version = None if self.keep_full else self.catalog.version
        if catalog_version is not None and self.filtered_with is not None:
            # Filtered when the file was read: a catalog that grew since did not see it.
            catalog_version = min(catalog_version, self.filtered_with)
        if (c.removed is not None or c.partial) and old is not None:
            # A differential report: what was there, less what went, with what came. So
            # is a report that may be partial: the absence of an app from part of a run
            # proves nothing, so it only adds (and removes what it says went).
            kept, catalog_version = self._applied_difference(c, old, record, kept, catalog_version)
            if same_run and {(o.app_key, o.version) for o in kept} == {
                (o.app_key, o.version) for o in self._present(old, record)
            }:
                self.counts.unchanged += 1  # the same rows again (a resent batch)
                return
        scope, observed_at = d.inventory_scope, c.observed_at
        if c.partial:
            scope = "managed"  # maybe not every row of its run: never a whole set
        if c.removed is not None and (
            old is None
            or old.inventory_scope != "full"
            or c.epoch != old.epoch
            or c.counter is None
            or c.counter != (old.counter or 0) + 1
        ):
            # A differential after a gap (a lost or late report, a new epoch that did not
            # start with its whole set): what it applies to is not known to be the set,
            # so its absence of an app proves nothing until the next whole set.
            scope = "managed"
        if scope == "none" and old is not None and old.inventory_scope != "none":
            # A report that lists no apps (device facts only) says nothing about them: the
            # source's last inventory stands, with its own time and scope.
            kept = self._present(old, record)
            scope, observed_at, catalog_version = old.inventory_scope, old.observed_at, old.catalog_version
        device = DeviceRow(
            id=None if old is None else old.id,
            source=c.source,
            source_id=d.id,
            platform=d.platform,
            ownership=d.ownership,
            owner=d.owner or "",
            inventory_scope=scope,
            observed_at=observed_at,
            model=d.model,
            os_version=d.os_version,
            mail_reported=d.mail_access,
            eas_ids=tuple(d.eas_device_ids),
            catalog_version=catalog_version,
            identifiers=tuple(d.identifiers),
            epoch=c.epoch,
            counter=c.counter,
        )
        if behind_facts:
            assert old is not None
            device.platform, device.ownership, device.owner = old.platform, old.ownership, old.owner
            device.model, device.os_version, device.mail_reported = old.model, old.os_version, old.mail_reported
            device.eas_ids = old.eas_ids
            device.identifiers = tuple(dict.fromkeys([*old.identifiers, *d.identifiers]))
        if record is not None:
            self.counts.updated += 1
            self.linker.record_changed(record, device, kept, now)
            return
        if old is None:
            device.gate_seq = store.next_gate_seq()
            device.id = store.insert_device(device)
            existing: dict[str, Observation] = {}
            self.counts.new += 1
        else:
            device.credential, device.mail_seen = old.credential, old.mail_seen
            device.decision, device.reason = old.decision, old.reason
            gate_facts_changed = old.owner != device.owner or old.eas_ids != device.eas_ids
            device.gate_seq = store.next_gate_seq() if gate_facts_changed else old.gate_seq
            store.update_device(device, old.eas_ids)
            existing = {o.app_key: o for o in store.observations(device.id)}
            self.counts.updated += 1
        assert device.id is not None
        present = self._write_observations(device.id, kept, existing, observed_at)
        if old is not None and old.owner and old.owner != device.owner:
            self._end_device_exemptions(device.id, now)
        if self.linker.note_identifiers(device, old, device.id) and self.linker.link_new(device, device.id, now):
            return  # linked: the linked device was evaluated on the union of its records
        self.evaluator.evaluate_device(device, now, "inventory", present, new=old is None)
        if old is not None and old.owner != device.owner and device.owner:
            self.evaluator.notices.owner_changed(device.id, now)

    def _end_device_exemptions(self, device_id: int, now: Micros) -> None:
        """A device that changed hands keeps no exemption granted for it: it was granted
        on its former owner's word (an exemption of a person follows the person)."""
        ended = [e for e in self.store.exemptions() if e.device_id == device_id and e.until > now]
        for e in ended:
            self.store.revoke_exemption(e.id, now)
            self.evaluator.audit.append(
                now,
                "exemption.revoke",
                f"{e.policy_id}/dev-{device_id}",
                {"id": e.id, "reason": "the device changed owner", "until": format_time(e.until)},
            )
            self.evaluator.notices.exemption_revoked(e, now)
        if ended:
            self.evaluator.reload()

    def _newer(self, c: Checkin, old: DeviceRow, record: SourceRecord | None) -> bool:
        """Whether ``c`` changes what is stored: it is newer (and, in a differential
        stream, not from an older epoch nor an earlier count of the same one)."""
        if c.epoch is not None and old.epoch is not None:
            if c.counter == 0 and c.removed is None and c.observed_at > old.observed_at:
                # A whole set again, newer in time: an agent reinstalled restarts its
                # counters at 0 within the same epoch.
                return True
            if c.epoch < old.epoch or (c.epoch == old.epoch and (c.counter or 0) <= (old.counter or 0)):
                return False
            if c.observed_at < old.observed_at:
                return False
            return c.observed_at > old.observed_at or c.epoch != old.epoch or c.counter != old.counter
        if c.observed_at <= old.observed_at:
            if c.observed_at == old.observed_at and c.removed is None:
                self._check_same_snapshot(c, old, record)
            return False
        return True

    def _present(self, old: DeviceRow, record: SourceRecord | None) -> list[Observation]:
        assert old.id is not None
        if record is not None:
            return self.store.record_observations(old.id, present_only=True)
        return self.store.observations(old.id, present_only=True)

    def _applied_difference(
        self,
        c: Checkin,
        old: DeviceRow,
        record: SourceRecord | None,
        added: list[Observation],
        catalog_version: int | None,
    ) -> tuple[list[Observation], int | None]:
        assert old.id is not None
        before = self._present(old, record)
        removed = {a.id if a.id is not None else "name:" + (a.name or "") for a in c.removed or ()}
        came = {o.app_key for o in added}
        kept = [o for o in before if o.app_key not in removed and o.app_key not in came] + added
        # Apps the catalog did not name when the stream's base was filtered are not known
        # to be absent: the stream stays as old as its base.
        if catalog_version is not None and old.catalog_version is not None:
            catalog_version = min(catalog_version, old.catalog_version)
        elif old.catalog_version is not None:
            catalog_version = old.catalog_version
        return kept, catalog_version

    def _check_same_snapshot(self, c: Checkin, old: DeviceRow, record: SourceRecord | None) -> None:
        """A check-in dated exactly as the stored snapshot must say what it said.

        The same file imported again is harmless. A source that reports two different
        things about one device at one instant (in two files, or in one file and the
        store) is an error: whichever came first would silently win. Only what appban
        keeps is compared: device facts, and the apps the catalog or a policy names.
        """
        d = c.device
        facts = {
            "device.platform": (d.platform, old.platform),
            "device.ownership": (d.ownership, old.ownership),
            "device.owner": (d.owner or "", old.owner),  # stored as "" when no one is named
            "device.inventory_scope": (d.inventory_scope, old.inventory_scope),
            "device.model": (d.model, old.model),
            "device.os_version": (d.os_version, old.os_version),
            "device.mail_access": (d.mail_access, old.mail_reported),
            "device.eas_device_ids": (sorted(d.eas_device_ids), sorted(old.eas_ids)),
        }
        for field, (new, stored) in facts.items():
            if new != stored:
                raise BadInput(self._same_time_differs(old), field=field)
        assert old.id is not None
        named = {(o.app_key, o.version) for o in self._kept_apps(c) if o.match_kind}
        stored_apps = {(o.app_key, o.version) for o in self._present(old, record) if o.match_kind}
        if named != stored_apps:
            raise BadInput(self._same_time_differs(old), field="apps")

    @staticmethod
    def _same_time_differs(old: DeviceRow) -> str:
        return (
            f"the snapshot of {old.source} device {old.source_id} at {format_time(old.observed_at)} is "
            "already stored, and said something else: one device, one time, one snapshot"
        )

    def _kept_apps(self, c: Checkin) -> list[Observation]:
        ids, names, certs = self.catalog.index_for(c.device.platform)
        keep_full = self.keep_full
        at = c.observed_at
        kept: list[Observation] = []
        apps = c.apps
        if not keep_full and not certs:
            # Most apps are not in the catalog: find the few that are with one set
            # intersection instead of a lookup per app.
            app_ids = c.app_ids or [a.id for a in apps]
            hits = ids.keys() & app_ids
            if not hits and None not in app_ids:
                return kept
            apps = [a for a in apps if a.id in hits or a.id is None]
        for app in apps:
            app_id, signing = app.id, app.signing_sha256
            # Exact identifier first; a certificate next; a name only without an id.
            m = ids.get(app_id) if app_id is not None else None
            if m is None and signing and certs:
                m = certs.get(signing.lower())
            if m is None and app_id is None and app.name:
                m = names.get(normalise_name(app.name))
            if m is None and not keep_full:
                continue
            key = app_id if app_id is not None else "name:" + (app.name or "")
            kept.append(
                Observation(
                    key,
                    app_id,
                    app.name,
                    app.version,
                    signing,
                    m.family if m else "",
                    m.kind if m else "",
                    m.confidence if m else "",
                    at,
                    at,
                )
            )
        return kept

    def _write_observations(
        self, device_id: int, kept: list[Observation], existing: dict[str, Observation], at: Micros
    ) -> list[Observation]:
        return write_observations(self.store, device_id, kept, existing, at)


def read_clock_skew() -> Micros:
    """The ``clock_skew`` setting: how far ahead of the clock an observed_at may be."""
    return settings.duration("clock_skew", allow_zero=True)
