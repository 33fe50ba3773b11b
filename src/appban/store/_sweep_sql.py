"""SQL for policy-wide sweeps: the state of a device without a banned app, in SQLite.

A device with no banned app present, no exemption and no attestation is in one of
six situations, each a fixed (state, detail, deny, next_check) given the policy
(``states.compute``): out of scope; unverified because its source lists no apps, its
inventory is managed-only, filtered against an older catalog, or stale; or compliant. SQLite classifies every
device into these "kinds" in one pass, so a sweep of a million devices costs a scan
in C. Devices with a banned app, an exemption or an attestation are "complex" and
always go through the Python state function.

``tests/policy/test_sweep_prefilter.py`` checks this mirror against the function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appban.store.records import SweepQuery

COMPLIANT, OUT_OF_SCOPE, MANAGED, CATALOG, STALE, NO_APPS = 4, 0, 1, 2, 3, 5

# SPEC, Device: it "accesses mail" when it has an ActiveSync DeviceId, a mail password
# issued by appban, or a source says so (or the gate saw its owner use a DeviceId it
# names: mail_seen). The one SQL definition (DeviceRow.mail_access is its Python twin);
# ``d`` is the devices table.
READS_MAIL = "(d.eas_ids != '' OR d.credential OR coalesce(d.mail_reported, 0) OR d.mail_seen IS NOT NULL)"

# The columns of ``FactRow``, in its order.
FACT_COLUMNS = f"""d.id, d.platform, d.ownership, d.owner, {READS_MAIL},
    d.inventory_scope, d.observed_at, d.catalog_version, coalesce(p.groups, ''),
    s.state, s.since, s.detail, s.deny, s.next_check"""


def bind(params: dict[str, Any], prefix: str, values: Iterable[Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names) or "NULL"


def parameters(policy_id: str, q: SweepQuery) -> dict[str, Any]:
    return {
        "pid": policy_id,
        "now": q.now,
        "oos_detail": q.detail_not_yet if q.now < q.effective else "",
        "oos_wake": q.effective if q.now < q.effective else None,
        "age": q.max_age,
        "req": q.required,
        "managed": q.detail_managed,
        "none": q.detail_none,
        "catalog": q.detail_catalog,
        "stale": q.detail_stale,
        "full": q.detail_full,
        "wake": q.unverified_wake,
        "udeny": q.unverified_deny,
    }


def in_scope(q: SweepQuery, params: dict[str, Any]) -> str:
    if q.now < q.effective:
        return "0"  # not yet effective: no one is in scope
    scope = ["1"]
    if q.platforms:
        scope.append(f"d.platform IN ({bind(params, 'pl', q.platforms)})")
    if q.mail_required:
        scope.append(READS_MAIL)
    if q.ownership != "any":
        params["own"] = q.ownership
        scope.append("d.ownership = :own")
    groups = "(';' || coalesce(p.groups, '') || ';')"
    for key, items, negate in (("ig", q.include_groups, False), ("xg", q.exclude_groups, True)):
        if items:
            names = bind(params, key, [f";{g};" for g in items]).split(", ")
            test = "(" + " OR ".join(f"instr({groups}, {n}) > 0" for n in names) + ")"
            scope.append(f"NOT {test}" if negate else test)
    return " AND ".join(scope)


def banned(params: dict[str, Any], families: Iterable[str], explicit: Iterable[tuple[str, str]], o: str = "") -> str:
    """A condition on an observation row (alias ``o``): an app of these families, or with
    one of these (kind, id) pairs. Never empty: "0" when nothing is named."""
    terms = ["0"]
    fams = sorted(families)
    if fams:
        terms.append(f"{o}family IN ({bind(params, 'fam', fams)})")
    for i, (kind, value) in enumerate(sorted(explicit)):
        params[f"ek{i}"], params[f"ev{i}"] = kind, value
        terms.append(f"({o}match_kind = :ek{i} AND {o}app_id = :ev{i})")
    return " OR ".join(terms)


def complex_rows(q: SweepQuery, params: dict[str, Any]) -> str:
    """A condition true for devices the Python state function must see."""
    present = banned(params, q.families, q.explicit, "o.")
    terms = [f"d.id IN (SELECT o.device_id FROM observations o WHERE o.gone_at IS NULL AND ({present}))"]
    # Never "x IN (NULL)": it is NULL, not false, and NOT of it would drop every row.
    if q.special_devices:
        terms.append(f"d.id IN ({bind(params, 'sd', q.special_devices)})")
    if q.special_people:
        terms.append(f"d.owner IN ({bind(params, 'sp', q.special_people)})")
    return "(" + " OR ".join(terms) + ")"


def kind(scope: str) -> str:
    return f"""CASE WHEN NOT ({scope}) THEN {OUT_OF_SCOPE}
        WHEN d.inventory_scope = 'none' THEN {NO_APPS}
        WHEN d.inventory_scope != 'full' THEN {MANAGED}
        WHEN d.catalog_version IS NOT NULL AND d.catalog_version < :req THEN {CATALOG}
        WHEN :now - d.observed_at > :age THEN {STALE}
        ELSE {COMPLIANT} END"""


def up_to_date(scope: str) -> str:
    """True when the stored row already is what the device's kind says (one CASE, so
    each condition is computed once per row: SQLite shares no repeated subexpression)."""

    def unverified(detail: str) -> str:
        return f"s.state = 'unverified' AND s.detail = {detail} AND s.deny = :udeny AND s.next_check IS :wake"

    return f"""CASE WHEN NOT ({scope}) THEN s.state = 'out_of_scope' AND s.detail = :oos_detail
            AND s.deny = '' AND s.next_check IS :oos_wake
        WHEN d.inventory_scope = 'none' THEN {unverified(":none")}
        WHEN d.inventory_scope != 'full' THEN {unverified(":managed")}
        WHEN d.catalog_version IS NOT NULL AND d.catalog_version < :req THEN {unverified(":catalog")}
        WHEN :now - d.observed_at > :age THEN {unverified(":stale")}
        ELSE s.state = 'compliant' AND s.detail = :full AND s.deny = ''
            AND s.next_check = d.observed_at + :age + 1 END"""


def candidates_sql(q: SweepQuery, params: dict[str, Any], *, complex_only: bool) -> str:
    scope = in_scope(q, params)
    where = complex_rows(q, params)
    if not complex_only:
        where = f"s.state IS NULL OR {where} OR NOT ({up_to_date(scope)})"
    return f"""SELECT {FACT_COLUMNS} FROM devices d
        LEFT JOIN states s ON s.device_id = d.id AND s.policy_id = :pid
        LEFT JOIN people p ON p.email = d.owner
        WHERE {where}"""


def simple_changes_sql(q: SweepQuery, params: dict[str, Any]) -> str:
    """Every simple device whose stored row is not its kind's: old and new values.

    The cheap ``up_to_date`` test picks the rows; only those pay for computing the new
    values (each column repeats the kind's CASE: SQLite shares no subexpression).
    """
    scope = in_scope(q, params)
    k = kind(scope)
    unverified = f"({MANAGED}, {CATALOG}, {STALE}, {NO_APPS})"
    return f"""
        SELECT d.id, s.state, s.since, s.deny,
            CASE {k} WHEN {OUT_OF_SCOPE} THEN 'out_of_scope' WHEN {COMPLIANT} THEN 'compliant'
                ELSE 'unverified' END,
            CASE {k} WHEN {OUT_OF_SCOPE} THEN :oos_detail WHEN {MANAGED} THEN :managed WHEN {NO_APPS} THEN :none
                WHEN {CATALOG} THEN :catalog WHEN {STALE} THEN :stale ELSE :full END,
            CASE WHEN {k} IN {unverified} THEN :udeny ELSE '' END,
            CASE {k} WHEN {COMPLIANT} THEN d.observed_at + :age + 1 WHEN {OUT_OF_SCOPE} THEN :oos_wake
                ELSE :wake END
        FROM devices d
        LEFT JOIN states s ON s.device_id = d.id AND s.policy_id = :pid
        LEFT JOIN people p ON p.email = d.owner
        WHERE NOT {complex_rows(q, params)} AND (s.state IS NULL OR NOT ({up_to_date(scope)}))"""
