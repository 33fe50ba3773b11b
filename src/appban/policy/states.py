"""SPEC's compliance states: a pure function of a device's facts, a policy and a time.

The same function serves the incremental path (one device after a check-in), the
time-driven path (deadlines, expiries, ageing) and the full re-evaluation, so the
three cannot disagree. It also says when, with nothing else changing, the answer
could next change: that time is stored and drives ``appban evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from appban.clock import Micros, format_time
from appban.policy.model import Policy

STATES = ("out_of_scope", "compliant", "violating", "blocked", "unverified", "exempt")

# Details of the states a device has without a banned app. A store's sweep query
# (``SweepQuery``) uses the same strings to tell which stored rows are up to date.
DETAIL_FULL = "full inventory shows none"
DETAIL_NONE = "no inventory"
DETAIL_MANAGED = "inventory shows managed apps only"
DETAIL_CATALOG = "inventory was filtered against a catalog older than these apps' entries"
DETAIL_STALE = "inventory older than max_inventory_age"
DETAIL_NOT_YET = "policy not yet effective"
# A banned app matched by its display name alone, under ``name_matches: unverified``.
DETAIL_BY_NAME = "matched by name only"


@dataclass(slots=True)
class Facts:
    """What evaluation needs to know of one device, for one policy."""

    platform: str
    ownership: str
    groups: frozenset[str]
    mail_access: bool
    inventory_scope: str
    observed_at: Micros | None  # the latest snapshot, None when never seen
    catalog_version: int | None  # None: the snapshot was kept whole
    present: list[str]  # banned apps present in the latest snapshot (app keys)
    attested_at: Micros | None = None
    exemptions: tuple[tuple[Micros, Micros, str], ...] = ()  # (starts, until, reason)
    by_name: frozenset[str] = frozenset()  # keys of ``present`` matched by display name alone


@dataclass(slots=True)
class Outcome:
    state: str
    detail: str
    deny: str  # "" or the gate reason this state contributes: blocked:<id>, unverified:<id>
    next_check: Micros | None


def in_scope(policy: Policy, f: Facts) -> bool:
    scope = policy.scope
    if scope.platforms and f.platform not in scope.platforms:
        return False
    if scope.mail_access == "required" and not f.mail_access:
        return False
    if scope.ownership != "any" and f.ownership != scope.ownership:
        return False
    if scope.include_groups and f.groups.isdisjoint(scope.include_groups):
        return False
    return not (scope.exclude_groups and not f.groups.isdisjoint(scope.exclude_groups))


def compute(policy: Policy, f: Facts, now: Micros, required_catalog: int = 0) -> Outcome:
    # SPEC: "effective: ... state is computed from here". Before it the policy holds no
    # one; at it, every device gets its state, recorded at that moment.
    if now < policy.effective:
        return Outcome("out_of_scope", DETAIL_NOT_YET, "", policy.effective)
    if not in_scope(policy, f):
        return Outcome("out_of_scope", "", "", None)
    upcoming: list[Micros] = []
    active_until: Micros | None = None
    reason = ""
    for starts, until, why in f.exemptions:
        if starts <= now < until:
            if active_until is None or until > active_until:
                active_until, reason = until, why
        elif now < starts:
            upcoming.append(starts)
    if active_until is not None:
        return Outcome("exempt", f"exempt until {format_time(active_until)}: {reason}", "", active_until)
    enforce = policy.mode == "enforce"
    before_deadline = now < policy.deadline
    present, named = f.present, []
    if f.by_name and policy.name_matches == "unverified":
        # A name alone proves nothing here: neither presence nor, being there, absence.
        present = [k for k in f.present if k not in f.by_name]
        named = [k for k in f.present if k in f.by_name]
    contradicted = present and (f.attested_at is None or (f.observed_at or 0) > f.attested_at)
    if contradicted:
        apps = ", ".join(present)
        if enforce and not before_deadline:
            return _done("blocked", f"present: {apps}", f"blocked:{policy.id}", None, upcoming)
        deadline = policy.deadline if enforce and before_deadline else None
        return _done("violating", f"present: {apps}", "", deadline, upcoming)
    if f.attested_at is not None:
        return _done(
            "compliant",
            f"owner attested removal at {format_time(f.attested_at)}",
            "",
            None,
            upcoming,
        )
    why = f"{DETAIL_BY_NAME}: {', '.join(named)}" if named else _unverified_because(policy, f, now, required_catalog)
    if why:
        blocks = enforce and policy.on_unverified == "block"
        deny = f"unverified:{policy.id}" if blocks and not before_deadline else ""
        wake = policy.deadline if blocks and before_deadline else None
        return _done("unverified", why, deny, wake, upcoming)
    assert f.observed_at is not None
    # SPEC: stale means *older than* max_inventory_age, so the first stale moment is one
    # microsecond past it.
    stale_at = f.observed_at + policy.max_inventory_age + 1
    # Details avoid formatting times: this line runs for nearly every device in a sweep,
    # and the inventory's time is in the device's evidence.
    return _done("compliant", DETAIL_FULL, "", stale_at, upcoming)


def walk(
    policy: Policy, f: Facts, state: str, since: Micros, wake: Micros, now: Micros, required_catalog: int = 0
) -> tuple[Outcome, Micros]:
    """The outcome at ``now`` of a row stored in ``state`` (since ``since``) that time
    woke at ``wake``, and when that outcome's state began: each time-driven change in
    between is stepped through, so the answer says "blocked since the deadline", not
    "since whenever someone looked"."""
    at = wake
    out = compute(policy, f, at, required_catalog)
    while True:
        if out.state != state:
            state, since = out.state, at
        nxt = out.next_check
        if nxt is None or nxt > now or nxt <= at:
            return out, since
        at = nxt
        out = compute(policy, f, at, required_catalog)


def _unverified_because(policy: Policy, f: Facts, now: Micros, required_catalog: int) -> str:
    if f.observed_at is None or f.inventory_scope == "none":
        return DETAIL_NONE
    if f.inventory_scope != "full":
        return DETAIL_MANAGED
    if f.catalog_version is not None and f.catalog_version < required_catalog:
        return DETAIL_CATALOG
    if now - f.observed_at > policy.max_inventory_age:
        return DETAIL_STALE
    return ""


def _done(state: str, detail: str, deny: str, wake: Micros | None, upcoming: list[Micros]) -> Outcome:
    if upcoming:
        first = min(upcoming)
        wake = first if wake is None else min(wake, first)
    return Outcome(state, detail, deny, wake)
