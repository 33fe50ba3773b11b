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
from typing import Protocol

from appban.clock import Micros
from appban.store.osquery_records import HeldApps, NodeFacts, OsqueryNode, OsqueryRefresh
from appban.store.records import (
    AuditEntry,
    ChangeCount,
    Credential,
    Decision,
    DeviceRow,
    Exemption,
    ExemptionRequest,
    FactRow,
    FleetSummary,
    GateRow,
    HistoryRow,
    Identifier,
    IdentifierRow,
    KeptName,
    NewNotice,
    Notice,
    Observation,
    Person,
    PolicyRow,
    RecordedState,
    SightedDevice,
    Sighting,
    SightingsWritten,
    SourceRecord,
    SourceRow,
    StateListing,
    StateRow,
    StoredCatalog,
    SweepChange,
    SweepQuery,
    TokenRow,
    Tombstone,
    UnseenDevice,
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

    def gate_token(self, seq: int) -> str | None:
        """The random token committed with gate counter value ``seq`` (None when that value
        was never committed here, or is long past): the same token means the same history."""
        ...

    # -- a long-lived follower (the gate) ----------------------------------------------

    def replaced(self) -> bool:
        """True when the database at this store's address is no longer the one this
        connection opened (another database was put in its place); raises OSError when
        nothing is there any more."""
        ...

    def limit_cache(self, kib: int) -> None:
        """Keep this connection's page cache to about ``kib`` KiB (a process that reads
        a little, often, keeps its memory for other things)."""
        ...

    def set_lock_wait(self, seconds: float) -> None:
        """How long this connection's writes wait for another writer before failing busy."""
        ...

    # -- people ----------------------------------------------------------------------

    def get_person(self, email: str) -> Person | None:
        """The person with this (lower-cased) e-mail address, if known."""
        ...

    def put_people(self, people: Iterable[Person], at: Micros) -> None:
        """Insert or replace these people, stamped ``at``."""
        ...

    def list_people(self, *, org_unit: str | None = None, group: str | None = None) -> list[Person]:
        """People by e-mail address; only those in this org unit and/or group if given."""
        ...

    def device_counts(self) -> dict[str, int]:
        """Owner's e-mail address -> how many devices they own (owners of none are absent)."""
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

    def decisions_of(self, device_ids: list[int]) -> dict[int, Decision]:
        """Device id -> its stored decision and reason."""
        ...

    # -- the gate's view: what changed since a gate sequence number ----------------------

    def gate_rows(self, after_seq: int = 0) -> Iterator[GateRow]:
        """Devices whose gate-relevant facts changed after ``after_seq`` (all for 0), streamed."""
        ...

    def tombstones(self, after_seq: int) -> list[Tombstone]:
        """DeviceIds devices stopped using after ``after_seq``."""
        ...

    # -- mail credentials (IMAP, POP3, SMTP carry no device id) ---------------------------

    def add_credential(self, device_id: int, username: str, digest: str, at: Micros, seq: int) -> int:
        """Store a credential's hash for a device at gate sequence ``seq``; returns its id."""
        ...

    def revoke_credentials(self, device_id: int, at: Micros, seq: int) -> int:
        """Revoke every active credential of a device; returns how many."""
        ...

    def credentials(self, after_seq: int = 0) -> list[Credential]:
        """Credentials issued or revoked after ``after_seq``."""
        ...

    def rehash_credential(self, credential_id: int, old: str, new: str, seq: int) -> bool:
        """Replace an active credential's hash ``old`` by ``new`` (a migration to a newer
        scheme) at gate sequence ``seq``; False when it was revoked or rehashed meanwhile."""
        ...

    def mail_owners(self, local_part: str) -> list[str]:
        """Distinct owners, with this local part (before ``@``), of devices the gate answers
        for: devices with an ActiveSync DeviceId or an active mail password."""
        ...

    def shared_local_parts(self) -> dict[str, list[str]]:
        """Local part -> its owners, for every local part that two or more distinct owners
        of such devices share (``mail_owners`` of each, all at once)."""
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

    def catalog(self) -> StoredCatalog:
        """The stored catalog: its version, families (title, publisher), identifiers."""
        ...

    def add_catalog(
        self,
        families: dict[str, dict[str, str]],
        identifiers: list[Identifier],
        version: int,
    ) -> None:
        """Add families and identifiers as catalog ``version`` and make it current."""
        ...

    # Matching kept observations (inventories kept whole) against identifiers new to
    # the catalog: the rules are catalog/matching.py's; these only find and write rows.
    # An observation "may match" when it has no match, or was watched only for a
    # policy (no family) and an identifier of the same kind now names a family.

    def match_kept_id(self, app_id: str, platforms: tuple[str, ...], family: str, kind: str, confidence: str) -> int:
        """Match present observations with this app id, on devices of these platforms,
        that may match; count them."""
        ...

    def match_kept_cert(self, digest: str, family: str, kind: str, confidence: str) -> int:
        """Match present observations signed with this certificate digest (any case) that
        may match; count them."""
        ...

    def kept_names(self, family: str, kind: str) -> list[KeptName]:
        """Present observations reported by name alone that may match."""
        ...

    def set_matches(self, keys: list[tuple[int, str]], family: str, kind: str, confidence: str) -> None:
        """Give these (device id, app key) observations this match."""
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

    def all_exemptions(self) -> list[Exemption]:
        """Every exemption, revoked ones included, by id."""
        ...

    def get_exemption(self, exemption_id: int) -> Exemption | None:
        """The exemption with this id, revoked or not."""
        ...

    def revoke_exemption(self, exemption_id: int, at: Micros) -> bool:
        """Mark an exemption revoked at ``at``; False when it does not exist or already was."""
        ...

    def add_attestation(self, policy_id: str, device_id: int, person: str, at: Micros) -> int:
        """Record that ``person`` attested removal on a device under a policy; returns its id."""
        ...

    def attested_at(self, policy_id: str, device_id: int) -> Micros | None:
        """The latest attestation for this device under this policy by its owner now
        (one given by a former owner no longer counts)."""
        ...

    def attestations(self, policy_id: str) -> dict[int, Micros]:
        """Device id -> its latest attestation under this policy by its owner now."""
        ...

    # -- states ----------------------------------------------------------------------

    def device_states(self, device_id: int) -> dict[str, StateRow]:
        """Policy id -> this device's stored state under it."""
        ...

    def put_states(self, rows: list[StateRow]) -> None:
        """Insert or replace (policy, device) states."""
        ...

    def add_history(self, rows: list[HistoryRow]) -> None:
        """Append state changes."""
        ...

    def history(self, *, policy_id: str | None = None, device_id: int | None = None) -> list[HistoryRow]:
        """State changes, oldest first, optionally of one policy and/or one device."""
        ...

    def policy_facts(self, policy_id: str, *, due_before: Micros | None = None) -> Iterator[FactRow]:
        """Evaluation inputs and stored state per device (all, or those due by a time)."""
        ...

    def policy_candidates(self, policy_id: str, q: SweepQuery, *, complex_only: bool = False) -> Iterator[FactRow]:
        """Rows as ``policy_facts`` gives them, but only those whose state could change
        (with ``complex_only``: only devices with a banned app, exemption or attestation)."""
        ...

    def states_at(self, policy_id: str, at: Micros) -> dict[int, RecordedState]:
        """Device id -> its state as the state history records it at ``at``."""
        ...

    def device_states_at(self, device_id: int, at: Micros) -> dict[str, RecordedState]:
        """Policy id -> one device's state as recorded at ``at``."""
        ...

    def sweep_simple(self, policy_id: str, q: SweepQuery, cause: str) -> list[SweepChange]:
        """Write the out-of-date states of devices without a banned app, exemption or
        attestation; return each change."""
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

    def state_rows(self, policy_id: str, *, state: str | None = None) -> Iterator[StateListing]:
        """A policy's stored states, with each device's owner, platform and org unit."""
        ...

    # -- reports over time (the demo's day-by-day counts; the console's campaign curve) --

    def state_counts(self, policy_id: str) -> dict[str, int]:
        """State -> how many devices are stored in it under the policy (absent states: 0 rows)."""
        ...

    def people_in_states(self, policy_id: str, states: tuple[str, ...]) -> int:
        """How many people own a device stored in one of these states under the policy."""
        ...

    def changes_between(
        self, policy_id: str, start: Micros, end: Micros, *, to: str | None = None, left: str | None = None
    ) -> ChangeCount:
        """Devices (and their owners) whose state became ``to``, or left ``left``, in [start, end)."""
        ...

    def removals_between(
        self, families: Iterable[str], explicit: Iterable[tuple[str, str]], start: Micros, end: Micros
    ) -> int:
        """Devices whose snapshot in [start, end) no longer showed an app of these families
        or with these (kind, id) that it had."""
        ...

    def devices_with_apps_at(
        self, families: Iterable[str], explicit: Iterable[tuple[str, str]], at: Micros
    ) -> list[int]:
        """Ids of devices whose kept snapshot showed an app of these families or with these
        (kind, id) at ``at``: first seen by then, not gone by then."""
        ...

    def fleet_summary(self, platforms: Iterable[str], families: Iterable[str]) -> FleetSummary:
        """People, devices by platform, mail readers of these platforms by ownership and
        inventory scope, and devices with a present app of these families."""
        ...

    # -- linked devices: one physical device, several source records ------------------

    def get_record(self, source: str, source_id: str) -> SourceRecord | None:
        """The record of a linked device with this key, or None."""
        ...

    def get_record_by_id(self, record_id: int) -> SourceRecord | None: ...

    def records_by_source_id(self, source_id: str) -> list[SourceRecord]: ...

    def records_of(self, device_id: int) -> list[SourceRecord]:
        """The records of a linked device, by id; [] for a device one source reports."""
        ...

    def put_record(self, r: SourceRecord) -> int:
        """Insert (``facts.id`` None) or update a record; returns its id."""
        ...

    def delete_record(self, record_id: int) -> None: ...

    def record_observations(self, record_id: int, *, present_only: bool = False) -> list[Observation]: ...

    def put_record_observations(self, record_id: int, rows: list[Observation]) -> None:
        """The record's observations, replaced whole."""
        ...

    def set_identifiers(
        self,
        source: str,
        source_id: str,
        owner: str,
        device_id: int,
        pairs: Iterable[tuple[str, str]],
        *,
        new: bool = False,
    ) -> None:
        """A source record's identifiers (kind, value), replaced whole (``new``: it has none yet)."""
        ...

    def identifier_rows(self, pairs: Iterable[tuple[str, str]]) -> list[IdentifierRow]:
        """Every record's row for any of these identifiers (at most 100 per identifier)."""
        ...

    def record_identifiers_to(self, source: str, source_id: str, device_id: int) -> None:
        """The record's identifiers now belong to ``device_id``."""
        ...

    def shared_identifiers(self) -> list[IdentifierRow]:
        """The rows of every identifier that records with two different known owners share."""
        ...

    def add_unlinked(self, a: tuple[str, str], b: tuple[str, str], at: Micros) -> None:
        """Remember that records ``a`` and ``b`` (source, source id) are not one device."""
        ...

    def unlinked_from(self, source: str, source_id: str) -> set[tuple[str, str]]: ...

    def relabel_device(self, device_id: int, source: str, source_id: str) -> None:
        """A linked device is shown by one of its records' keys: another one's now."""
        ...

    def fold_device(self, from_id: int, into_id: int, seq: int) -> None:
        """Device ``from_id`` is now part of ``into_id``: exemptions, attestations, mail
        passwords, records and identifiers move; its states and row go; the gate drops
        its DeviceIds at ``seq``."""
        ...

    # -- sightings: what the gate saw (written by its flusher, off the request path) ------

    def record_sightings(self, rows: list[Sighting], now: Micros, max_rows: int) -> SightingsWritten:
        """Add a flush's sightings, seen at ``now``: known keys get ``now`` as last seen and
        their counts added; new ones are inserted while fewer than ``max_rows`` are held
        (the most frequent first), the rest refused and counted."""
        ...

    def sightings_due(self, before: Micros) -> bool:
        """Whether any sighting was last seen before ``before``."""
        ...

    def expire_sightings(self, before: Micros) -> int:
        """Drop the sightings last seen before ``before``; returns how many."""
        ...

    def sightings_held(self) -> tuple[int, int]:
        """Sightings held, and new ones refused at the cap since the database was made."""
        ...

    def unseen_devices(self, since: Micros) -> Iterator[UnseenDevice]:
        """Sightings last seen at or after ``since`` of a DeviceId no device has (neither
        as an ActiveSync DeviceId nor as an identifier), most recently seen first."""
        ...

    def sighted_devices(self, eas_ids: list[str]) -> list[SightedDevice]:
        """Devices that name one of these DeviceIds as an identifier and that nothing yet
        says read mail."""
        ...

    def mark_mail_seen(self, device_ids: list[int], at: Micros) -> int:
        """The gate saw these devices' owners use them for mail at ``at`` (the first time
        counts: SPEC, Device, "accesses mail"); returns how many were not marked before."""
        ...

    # -- osquery agents enrolled with appban serve; MDM app lists held for their facts --

    def add_osquery_node(self, source: str, digest: str, facts: NodeFacts, at: Micros) -> int:
        """Keep a new node key's digest and its host's facts; the node's id."""
        ...

    def revoke_osquery_nodes(self, source: str, host: str, at: Micros) -> list[int]:
        """Revoke every live node key of ``host`` (of ``source``); the ids revoked."""
        ...

    def prune_osquery_nodes(self, revoked_before: Micros) -> int:
        """Forget the nodes revoked before ``revoked_before``, with their requests; how many."""
        ...

    def osquery_node_by_digest(self, digest: str) -> OsqueryNode | None:
        """The node whose key has this digest, revoked or not."""
        ...

    def osquery_nodes(self, *, source: str | None = None, live_only: bool = True) -> list[OsqueryNode]:
        """Nodes by source and host; of one source if given; revoked ones too unless ``live_only``."""
        ...

    def osquery_nodes_of_hosts(self, hosts: Iterable[tuple[str, str]]) -> list[OsqueryNode]:
        """The live nodes of these (source, host) pairs, by id."""
        ...

    def add_osquery_refresh(self, node_id: int, at: Micros) -> int:
        """Ask a node for its apps now (``device refresh``); the request's id."""
        ...

    def open_osquery_refreshes(self, node_id: int, *, since: Micros) -> list[OsqueryRefresh]:
        """A node's refresh requests made since ``since`` and not yet answered, by id."""
        ...

    def mark_osquery_refreshes_sent(self, ids: list[int], at: Micros) -> None:
        """These requests were handed to their node at ``at``."""
        ...

    def finish_osquery_refresh(self, refresh_id: int, node_id: int, at: Micros) -> bool:
        """The node answered request ``refresh_id`` at ``at``; False when it is not that
        node's or was answered before."""
        ...

    def prune_osquery_refreshes(self, node_id: int, before: Micros) -> int:
        """Forget a node's requests made before ``before``, answered or not; how many."""
        ...

    def hold_mdm_apps(self, held: HeldApps) -> None:
        """Hold an app list until its device's facts are known (replacing an older one)."""
        ...

    def held_mdm_apps(self, source: str, device_key: str) -> HeldApps | None:
        """The app list held for this device, or None."""
        ...

    def count_mdm_apps(self, source: str) -> int:
        """How many app lists of ``source`` are held."""
        ...

    def drop_mdm_apps(self, source: str, device_key: str) -> None:
        """Forget the app list held for this device (applied, or older than one applied)."""
        ...

    def expire_mdm_apps(self, before: Micros) -> int:
        """Drop the app lists received before ``before``; returns how many."""
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

    def audit_entries(
        self, *, since: Micros | None = None, until: Micros | None = None, actions: tuple[str, ...] = ()
    ) -> Iterator[AuditEntry]:
        """Audit entries in sequence order with ``since <= at < until`` and, if given, one of ``actions``."""
        ...

    # -- sources: who may post check-ins (appban serve) ------------------------------

    def add_source(self, name: str, at: Micros) -> bool:
        """Add a source; False when it is already there."""
        ...

    def list_sources(self) -> list[SourceRow]: ...

    def put_token(self, source: str, kind: str, digest: str, at: Micros) -> int:
        """Keep a new token's digest (``kind`` 'token' or 'osquery-secret'); its id."""
        ...

    def token_by_digest(self, digest: str) -> TokenRow | None: ...

    def revoke_tokens(self, source: str, kind: str, at: Micros) -> list[int]:
        """Revoke every live token of that kind of ``source``; the ids revoked."""
        ...

    # -- notices -----------------------------------------------------------------------

    def add_notices(self, rows: list[NewNotice]) -> None:
        """Plan notices; one already planned (same policy, person, kind, occasion,
        channel) is kept, a pending one taking the new devices too."""
        ...

    def audience(self, policy_id: str, states: tuple[str, ...] | None) -> Iterator[tuple[str, str]]:
        """(email, time zone) of owners of a device in ``states`` under the policy; None: everyone imported."""
        ...

    def owners_of(self, device_ids: list[int]) -> dict[int, str]:
        """Device id -> its owner ('' for none)."""
        ...

    def devices_in_states(self, policy_id: str, people: list[str], states: tuple[str, ...]) -> dict[str, list[int]]:
        """Person -> their devices in one of ``states`` under the policy."""
        ...

    def notified_people(
        self,
        policy_id: str,
        *,
        kinds: tuple[str, ...] | None = None,
        states: tuple[str, ...] = ("sent", "sending"),
        since: Micros = 0,
    ) -> list[tuple[str, str]]:
        """(email, time zone) of everyone with a notice under the policy in ``states``, planned since ``since``."""
        ...

    def cancel_notices(
        self,
        policy_id: str,
        *,
        kinds: tuple[str, ...] | None = None,
        occasion: str | None = None,
        person: str | None = None,
        at: Micros = 0,
        why: str = "",
    ) -> int:
        """Pending notices matching these are cancelled; how many."""
        ...

    def notice_marks(self, policy_id: str) -> dict[str, Micros]:
        """The policy-wide moments already planned: mark -> when."""
        ...

    def add_notice_mark(self, policy_id: str, mark: str, at: Micros) -> bool:
        """Record a moment as planned; False when it already was."""
        ...

    def claim_notices(self, now: Micros, limit: int, lease_until: Micros) -> list[Notice]:
        """Due pending notices, and ones whose sender's lease ran out, become ``sending``."""
        ...

    def finish_notice(
        self,
        notice_id: int,
        state: str,
        at: Micros,
        *,
        error: str = "",
        next_try: Micros | None = None,
        lease: Micros | None = None,
        untried: bool = False,
    ) -> bool:
        """Record a send's result: sent, failed, or pending again (only under the current ``lease``)."""
        ...

    def next_notice_due(self) -> Micros | None:
        """When the earliest pending notice may go; None when none waits."""
        ...

    def retry_notices(self, *, policy_id: str | None = None, ids: list[int] | None = None) -> int:
        """Failed notices are pending again; how many."""
        ...

    def get_notice(self, notice_id: int) -> Notice | None: ...

    def list_notices(
        self,
        *,
        policy_id: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        person: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[Notice]:
        """Notices in id order, filtered."""
        ...

    def notice_counts(self, policy_id: str | None = None) -> dict[tuple[str, str, str], int]:
        """(policy, kind, state) -> count."""
        ...

    def add_exemption_request(self, r: ExemptionRequest) -> int:
        """An employee's request from their page; its id."""
        ...

    def exemption_requests(self, *, state: str | None = None, person: str | None = None) -> list[ExemptionRequest]: ...

    def get_exemption_request(self, request_id: int) -> ExemptionRequest | None: ...

    def decide_exemption_request(
        self, request_id: int, state: str, at: Micros, by: str, *, answer: str = "", exemption_id: int | None = None
    ) -> bool:
        """Grant or refuse a pending request; False when it was not pending."""
        ...
