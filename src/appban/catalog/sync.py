"""Bringing the store's catalog up to the data shipped with this version of appban.

Each change is a new catalog version: snapshots filtered against an older version
cannot prove the absence of what was added since.
"""

from __future__ import annotations

from appban.audit import AuditLog
from appban.catalog.catalog import Catalog, load_shipped
from appban.catalog.matching import match_kept
from appban.clock import Micros
from appban.store import Store
from appban.store.records import Identifier


def current(store: Store) -> Catalog:
    stored = store.catalog()
    return Catalog(stored.version, stored.identifiers, stored.families)


def add(
    store: Store,
    audit: AuditLog,
    now: Micros,
    families: dict[str, dict[str, str]],
    identifiers: list[Identifier],
    why: str,
) -> Catalog:
    """Add what is new among these families and identifiers; returns the catalog after."""
    version, known_families, known = store.catalog()
    have = {(i.kind, i.value, i.family) for i in known}
    new_ids = [i for i in identifiers if (i.kind, i.value, i.family) not in have]
    new_families = {f: b for f, b in families.items() if f not in known_families}
    if new_ids or new_families:
        version += 1
        store.add_catalog(new_families, new_ids, version)
        # Inventories kept whole may already hold what was just named.
        match_kept(store, new_ids)
        audit.append(
            now,
            "catalog",
            f"v{version}",
            {
                "why": why,
                "families": sorted(new_families),
                "identifiers": [f"{i.kind}:{i.value}" for i in new_ids],
            },
        )
    return current(store)


def sync_shipped(store: Store, audit: AuditLog, now: Micros) -> Catalog:
    families, identifiers = load_shipped()
    return add(store, audit, now, families, identifiers, "shipped catalog")
