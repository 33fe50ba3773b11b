"""The store interface: what the rest of appban asks of a backend, and nothing more.

Exactly the calls made from outside ``store/`` (tests/store/test_protocol.py fails
when code calls a store method that is not declared here, or when SQLiteStore stops
matching). A PostgreSQL backend implements this and only this.

Times are ``Micros`` (integer microseconds since the epoch, UTC). Writes happen
inside ``transaction()``; reads may happen outside one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from appban.catalog import Identifier
from appban.clock import Micros
from appban.store.records import (
    AuditEntry,
    DeviceRow,
    Exemption,
    GateRow,
    Observation,
    Person,
    PolicyRow,
    StateRow,
    SweepQuery,
)


class Store(Protocol):
    backend: str

    # -- lifecycle -------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version in the database; 0 when it is not an appban database."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit of work; a nested use joins the outer one."""
        ...

    # -- meta ------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the key-value meta table (clock, audit_head, versions)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value, replacing any old one."""
        ...

    def next_gate_seq(self) -> int:
        """Advance and return the counter that orders gate-relevant device changes."""
        ...

    def gate_seq(self) -> int:
        """The gate counter's committed value: the gate polls it to see that something changed."""
        ...

    # -- people ----------------------------------------------------------------------

    def get_person(self, email: str) -> Person | None:
        """The person with this (lower-cased) e-mail address, if known."""
        ...

    def put_people(self, people: Iterable[Person], at: Micros) -> None:
        """Insert or replace these people, stamped ``at``."""
        ...

    # -- devices ---------------------------------------------------------------------

    def get_device(self, device_id: int) -> DeviceRow | None:
        """The device with this appban id."""
        ...

    def get_device_by_key(self, source: str, source_id: str) -> DeviceRow | None:
        """The device a source knows by this id."""
        ...

    def devices_by_source_id(self, source_id: str) -> list[DeviceRow]:
        """Every device any source reported under this id, by appban id."""
        ...

    def devices_of_owner(self, email: str) -> list[DeviceRow]:
        """Every device this person owns, by appban id."""
        ...

    def devices_by_eas(self, eas_id: str) -> list[DeviceRow]:
        """Every device that uses this ActiveSync DeviceId, by appban id."""
        ...

    # The SQLite store also takes a raw SQL filter here; no caller uses it and it is
    # not portable, so it is not part of the interface.
    def iter_devices(self) -> Iterator[DeviceRow]:
        """Every device, by appban id."""
        ...

    def insert_device(self, d: DeviceRow) -> int:
        """Add a device (and its ActiveSync ids); returns its new appban id."""
        ...

    def update_device(self, d: DeviceRow, old_eas: tuple[str, ...]) -> None:
        """Replace a device's facts (not its decision); ``old_eas`` are its previous ids."""
        ...

    def set_decision(self, device_id: int, decision: str, reason: str, seq: int) -> None:
        """Record a device's gate decision and reason at gate sequence ``seq``."""
        ...

    def decisions_of(self, device_ids: list[int]) -> dict[int, tuple[str, str]]:
        """Device id -> its stored (decision, reason)."""
        ...

    # -- the gate's view: what changed since a gate sequence number ----------------------

    def gate_rows(self, after_seq: int = 0) -> Iterator[GateRow]:
        """Devices whose gate-relevant facts changed after ``after_seq`` (all for 0), streamed."""
        ...

    def tombstones(self, after_seq: int) -> list[tuple[int, str, int]]:
        """(seq, eas_id, device_id) of DeviceIds devices stopped using after ``after_seq``."""
        ...

    # -- mail credentials (IMAP, POP3, SMTP carry no device id) ---------------------------

    def add_credential(self, device_id: int, username: str, digest: str, at: Micros, seq: int) -> int:
        """Store a credential's hash for a device at gate sequence ``seq``; returns its id."""
        ...

    def revoke_credentials(self, device_id: int, at: Micros, seq: int) -> int:
        """Revoke every active credential of a device; returns how many."""
        ...

    def credentials(self, after_seq: int = 0) -> list[tuple[int, int, str, str, int | None, int]]:
        """(id, device_id, username, hash, revoked_at, seq) changed after ``after_seq``."""
        ...

    # -- observations ----------------------------------------------------------------

    def observations(self, device_id: int, *, present_only: bool = False) -> list[Observation]:
        """A device's kept app observations, by app key; only present ones if asked."""
        ...

    def write_observations(
        self,
        device_id: int,
        upserts: list[Observation],
        refreshed: list[tuple[str, str | None, Micros]],
        gone: list[str],
        at: Micros,
    ) -> None:
        """New or changed rows in full; (key, version, seen) refreshes; gone keys get ``at``."""
        ...

    def present_apps(self, families: Iterable[str], explicit: Iterable[tuple[str, str]]) -> dict[int, list[str]]:
        """Device id -> keys of present apps in these families or with these (kind, id)."""
        ...

    # -- catalog ---------------------------------------------------------------------

    def catalog(self) -> tuple[int, dict[str, dict[str, str]], list[Identifier]]:
        """The stored catalog: (version, family -> title and publisher, identifiers)."""
        ...

    def add_catalog(
        self,
        families: dict[str, dict[str, str]],
        identifiers: list[Identifier],
        version: int,
    ) -> None:
        """Add families and identifiers as catalog ``version`` and make it current."""
        ...

    def match_observations(self, identifiers: list[Identifier]) -> int:
        """Match stored, not yet matched observations against new identifiers; count them."""
        ...

    # -- policies --------------------------------------------------------------------

    def get_policy(self, policy_id: str) -> PolicyRow | None:
        """The stored policy with this id, in any status."""
        ...

    def list_policies(self) -> list[PolicyRow]:
        """Every stored policy, by id."""
        ...

    def save_policy(self, p: PolicyRow) -> None:
        """Insert or replace a policy (its ``created_at`` is kept on replace)."""
        ...

    # -- exemptions and attestations -------------------------------------------------

    def add_exemption(self, e: Exemption) -> int:
        """Store an exemption; returns its id."""
        ...

    def exemptions(self) -> list[Exemption]:
        """Every exemption not revoked, by id."""
        ...

    def add_attestation(self, policy_id: str, device_id: int, person: str, at: Micros) -> int:
        """Record that ``person`` attested removal on a device under a policy; returns its id."""
        ...

    def attested_at(self, policy_id: str, device_id: int) -> Micros | None:
        """The latest attestation for this device under this policy."""
        ...

    def attestations(self, policy_id: str) -> dict[int, Micros]:
        """Device id -> its latest attestation under this policy."""
        ...

    # -- states ----------------------------------------------------------------------

    def device_states(self, device_id: int) -> dict[str, StateRow]:
        """Policy id -> this device's stored state under it."""
        ...

    def put_states(self, rows: list[StateRow]) -> None:
        """Insert or replace (policy, device) states."""
        ...

    def add_history(self, rows: list[tuple[str, int, str | None, str, Micros, str]]) -> None:
        """Append state changes: (policy, device, old state, new state, at, cause)."""
        ...

    def history(
        self, *, policy_id: str | None = None, device_id: int | None = None
    ) -> list[tuple[str, int, str | None, str, Micros, str]]:
        """State changes, oldest first, optionally of one policy and/or one device."""
        ...

    def policy_facts(self, policy_id: str, *, due_before: Micros | None = None) -> Iterator[tuple[Any, ...]]:
        """Evaluation inputs and stored state per device (all, or those due by a time).

        (id, platform, ownership, owner, mail_access, inventory_scope, observed_at,
        catalog_version, groups, state, since, detail, deny, next_check)
        """
        ...

    def policy_candidates(
        self, policy_id: str, q: SweepQuery, *, complex_only: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Rows as ``policy_facts`` gives them, but only those whose state could change
        (with ``complex_only``: only devices with a banned app, exemption or attestation)."""
        ...

    def states_at(self, policy_id: str, at: Micros) -> dict[int, tuple[str, Micros, str]]:
        """Device id -> (state, since, cause) as the state history records it at ``at``."""
        ...

    def device_states_at(self, device_id: int, at: Micros) -> dict[str, tuple[str, Micros, str]]:
        """Policy id -> (state, since, cause) of one device as recorded at ``at``."""
        ...

    def sweep_simple(self, policy_id: str, q: SweepQuery, cause: str) -> list[tuple[int, str | None, str, bool]]:
        """Write the out-of-date states of devices without a banned app, exemption or
        attestation; return (device_id, old state, new state, deny changed) of each."""
        ...

    def due_count(self, policy_id: str, at: Micros) -> int:
        """How many of the policy's states wake exactly at ``at``."""
        ...

    def due_policies(self, now: Micros) -> list[str]:
        """Ids of policies with a state whose ``next_check`` is at or before ``now``."""
        ...

    def denies_of(self, device_ids: list[int], active: list[str]) -> dict[int, list[str]]:
        """Device id -> the deny reasons its states under the ``active`` policies give."""
        ...

    def clear_denies(self, policy_id: str) -> list[int]:
        """Stop a policy's states denying anything; returns the devices it denied."""
        ...

    def state_rows(self, policy_id: str, *, state: str | None = None) -> Iterator[tuple[Any, ...]]:
        """(device_id, state, since, detail, deny, next_check, owner, platform, org_unit)."""
        ...

    # -- audit -----------------------------------------------------------------------

    def append_audit(self, entries: list[AuditEntry]) -> None:
        """Append already-chained audit entries."""
        ...

    def last_audit(self) -> AuditEntry | None:
        """The audit entry with the highest sequence number."""
        ...

    def iter_audit(self) -> Iterator[AuditEntry]:
        """Every audit entry in sequence order."""
        ...
