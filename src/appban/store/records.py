"""Rows the store hands out: plain data, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from appban.clock import Micros


@dataclass(slots=True)
class Person:
    email: str
    name: str = ""
    org_unit: str = ""
    groups: tuple[str, ...] = ()
    timezone: str = "UTC"


@dataclass(slots=True)
class DeviceRow:
    id: int | None
    source: str
    source_id: str
    platform: str
    ownership: str
    owner: str
    inventory_scope: str
    observed_at: Micros
    model: str | None = None
    os_version: str | None = None
    mail_reported: bool | None = None
    eas_ids: tuple[str, ...] = ()
    catalog_version: int | None = None
    credential: bool = False
    decision: str = "allow"
    reason: str = "ok"
    gate_seq: int = 0
    identifiers: tuple[tuple[str, str], ...] = ()  # (kind, value): what links records
    epoch: int | None = None  # a differential stream's position (osquery)
    counter: int | None = None
    linked: bool = False  # several source records describe it (device_records)
    mail_seen: Micros | None = None  # when the gate first saw its owner use it for mail

    @property
    def ref(self) -> str:
        return f"dev-{self.id}"

    @property
    def mail_access(self) -> bool:
        return bool(self.eas_ids) or self.credential or bool(self.mail_reported) or self.mail_seen is not None


@dataclass(slots=True)
class Observation:
    app_key: str
    app_id: str | None
    name: str | None
    version: str | None
    signing_sha256: str | None
    family: str
    match_kind: str
    confidence: str
    first_seen: Micros
    last_seen: Micros
    gone_at: Micros | None = None


@dataclass(slots=True)
class StateRow:
    policy_id: str
    device_id: int
    state: str
    since: Micros
    detail: str = ""
    deny: str = ""
    next_check: Micros | None = None


@dataclass(slots=True)
class Exemption:
    id: int
    policy_id: str
    person: str | None
    device_id: int | None
    starts: Micros
    until: Micros
    reason: str
    created_at: Micros
    revoked_at: Micros | None = None


@dataclass(slots=True)
class PolicyRow:
    id: str
    status: str
    revision: int
    body: str
    source_text: str
    created_at: Micros
    updated_at: Micros
    withdrawn_at: Micros | None = None
    withdraw_reason: str | None = None


@dataclass(slots=True)
class AuditEntry:
    seq: int
    at: Micros
    action: str
    subject: str
    data: str
    prev_hash: str
    hash: str


class GateRow(NamedTuple):
    """What the gate needs of one device (a tuple: a gate loads millions)."""

    device_id: int
    owner: str
    eas_ids: tuple[str, ...]
    decision: str
    reason: str
    gate_seq: int


@dataclass
class SweepQuery:
    """What a backend needs to find the rows a policy-wide sweep must look at.

    Built by the evaluator from the policy and the same constants the state function
    uses, so that a backend can rule out, in its own query language, every row whose
    state cannot change.
    """

    now: Micros
    max_age: Micros
    required: int
    platforms: tuple[str, ...]
    mail_required: bool
    ownership: str
    include_groups: tuple[str, ...]
    exclude_groups: tuple[str, ...]
    families: tuple[str, ...]
    explicit: tuple[tuple[str, str], ...]
    special_devices: tuple[int, ...]  # exemptions and attestations: always evaluated
    special_people: tuple[str, ...]
    unverified_wake: Micros | None  # next_check of an unverified row
    unverified_deny: str
    detail_managed: str
    detail_catalog: str
    detail_stale: str
    detail_full: str
    effective: Micros = 0  # before it every device is out of scope, waking at it
    detail_not_yet: str = ""
    detail_none: str = ""  # a source that lists no apps


@dataclass(slots=True)
class SourceRecord:
    """One source's report of a device that several sources describe.

    ``facts`` is the report as a DeviceRow (its ``id`` the record's own id, shown as
    rec-<id>); ``device_id`` the linked device; ``linked_by`` the identifier
    (``kind:value``) that linked it.
    """

    facts: DeviceRow
    device_id: int
    linked_by: str
    linked_at: Micros

    @property
    def ref(self) -> str:
        return f"rec-{self.facts.id}"


class IdentifierRow(NamedTuple):
    """A source record's identifier, with the device it belongs to."""

    kind: str
    value: str
    source: str
    source_id: str
    owner: str  # '' when the record names no one
    device_id: int


class Identifier(NamedTuple):
    """One catalog identifier as stored (``catalog_ids``): a family's id on a platform."""

    kind: str
    value: str
    family: str  # "" for an identifier watched only because a policy names it
    provenance: str
    added_version: int = 1


class StoredCatalog(NamedTuple):
    version: int
    families: dict[str, dict[str, str]]  # family -> {"title", "publisher"}
    identifiers: list[Identifier]


class Decision(NamedTuple):
    decision: str  # allow | deny
    reason: str  # SPEC's reason code


class Tombstone(NamedTuple):
    """An ActiveSync DeviceId a device stopped using, at gate sequence ``seq``."""

    seq: int
    eas_id: str
    device_id: int


# -- what the gate saw (sightings) ---------------------------------------------------------


class Sighting(NamedTuple):
    """A (DeviceId, user, DeviceType, protocol) the gate answered, ``times`` times since
    the last flush; text as it is stored (``gate/sightings.py`` cleans it)."""

    eas_id: str
    user: str
    device_type: str
    protocol: str
    times: int


class SightingsWritten(NamedTuple):
    """What one flush did: rows that were there, rows added, new keys refused at the cap."""

    updated: int
    inserted: int
    refused: int


class UnseenDevice(NamedTuple):
    """A DeviceId the gate saw that no device has, with who used it and how often."""

    eas_id: str
    user: str
    device_type: str
    protocol: str
    first_seen: Micros
    last_seen: Micros
    times: int


class SightedDevice(NamedTuple):
    """A device that names a sighted DeviceId, not yet known to read mail."""

    eas_id: str
    device_id: int
    owner: str


class Credential(NamedTuple):
    """A per-device mail password as stored: its hash, never the password."""

    id: int
    device_id: int
    username: str
    hash: str
    revoked_at: Micros | None
    seq: int


class HistoryRow(NamedTuple):
    """One recorded state change."""

    policy_id: str
    device_id: int
    old_state: str | None
    new_state: str
    at: Micros
    cause: str


class RecordedState(NamedTuple):
    """A state as the history records it at some time."""

    state: str
    since: Micros
    cause: str


class FactRow(NamedTuple):
    """What evaluating one device under one policy needs, and its stored state.

    A NamedTuple: a sweep reads a million of them.
    """

    device_id: int
    platform: str
    ownership: str
    owner: str
    mail_access: int  # 0 or 1: the store's one definition of "reads mail"
    inventory_scope: str
    observed_at: Micros
    catalog_version: int | None
    groups: str  # ';'-joined
    state: str | None  # None: no stored state under this policy yet
    since: Micros | None
    detail: str | None
    deny: str | None
    next_check: Micros | None


class StateListing(NamedTuple):
    """A stored state with what reports show beside it."""

    device_id: int
    state: str
    since: Micros
    detail: str
    deny: str
    next_check: Micros | None
    owner: str
    platform: str
    org_unit: str


class SweepChange(NamedTuple):
    """A state the store's sweep rewrote."""

    device_id: int
    old_state: str | None
    new_state: str
    deny_changed: bool


class KeptName(NamedTuple):
    """A kept observation reported by display name alone."""

    device_id: int
    app_key: str
    name: str


class ChangeCount(NamedTuple):
    """How many devices, and of how many people, a set of state changes touched."""

    devices: int
    people: int


@dataclass(slots=True)
class FleetSummary:
    """What the inventory holds, for an overview (the demo's opening lines)."""

    people: int
    org_units: int
    time_zones: int
    by_platform: dict[str, int]  # platform -> devices
    reading_mail_by: dict[str, int]  # "ownership/inventory_scope" -> devices of the platforms asked
    banned_app_devices: int  # devices with a present app of the families asked
    banned_apps: dict[str, int]  # app id -> devices it is present on


class SourceRow(NamedTuple):
    """A source that may post check-ins, with how many live tokens and enroll secrets it has."""

    name: str
    created_at: Micros
    tokens: int
    osquery_secrets: int


class TokenRow(NamedTuple):
    """A source token or osquery enroll secret, found by its digest (never stored itself)."""

    id: int
    source: str
    kind: str  # 'token' | 'osquery-secret'
    created_at: Micros
    revoked_at: Micros | None


NOTICE_KINDS = (
    "memo",
    "reminder",
    "policy_changed",
    "blocked",
    "restored",
    "correction",
    "exemption",
    "exemption_expiring",
)
NOTICE_STATES = ("pending", "sending", "sent", "failed", "cancelled")


class NewNotice(NamedTuple):
    """A notice to plan: what it is about, not its text (rendered when sent)."""

    policy_id: str
    person: str
    kind: str
    occasion: str
    channel: str
    devices: str  # device ids, comma-separated
    created_at: Micros
    due_at: Micros


@dataclass(slots=True)
class Notice:
    id: int
    policy_id: str
    person: str
    kind: str
    occasion: str
    channel: str
    devices: tuple[int, ...]
    created_at: Micros
    due_at: Micros
    state: str
    attempts: int
    next_try: Micros | None
    claimed_until: Micros | None
    sent_at: Micros | None
    last_error: str


@dataclass(slots=True)
class ExemptionRequest:
    id: int
    policy_id: str
    person: str
    device_id: int | None
    reason: str
    created_at: Micros
    state: str  # pending | granted | refused
    decided_at: Micros | None = None
    decided_by: str = ""
    answer: str = ""
    exemption_id: int | None = None
