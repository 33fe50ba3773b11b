"""Bringing the store's catalog up to its layers: the package's, and the site's.

The catalog in effect is the shipped catalog with the site's layer over it
(``layers.merge``). Every command that may upgrade a database syncs the shipped
layer (``sync_shipped``), and ``appban catalog update FILE`` replaces the site's
layer (``update_site``); both keep the site's layer, which is stored with the
catalog, so an upgrade never undoes an admin's change.

Each change is a new catalog version: snapshots filtered against an older version
cannot prove the absence of what was added since (each identifier remembers the
version that added it). An identifier that leaves the catalog stops matching the
apps it matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from appban.audit import AuditLog
from appban.catalog.catalog import Catalog, CatalogList, kinds_for, normalise_name
from appban.catalog.layers import SHIPPED, SITE, CatalogData, merge, parse_catalog
from appban.catalog.layers import load_shipped as _load_shipped
from appban.catalog.matching import match_kept
from appban.clock import Micros
from appban.errors import BadInput
from appban.store import Store
from appban.store.records import Identifier

# The catalog in effect, with what the store's tables cannot hold (lists, layers,
# notes, the site's file): one JSON document in the store's meta table.
_DOC = "catalog_doc"

_Key = tuple[str, str, str]  # (kind, value, family)


def load_shipped() -> CatalogData:
    return _load_shipped()


@dataclass
class Changes:
    """What a catalog change adds, changes and removes (``kind:value`` per family)."""

    version: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)  # every family touched
    lists: list[str] = field(default_factory=list)  # every list added, changed or removed

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.lists)

    def to_json(self) -> dict[str, Any]:
        return {
            "catalog_version": self.version,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "families": self.families,
            "lists": self.lists,
        }


def current(store: Store) -> Catalog:
    stored = store.catalog()
    raw = store.get_meta(_DOC)
    if raw is None:  # a database from before layers: every stored identifier is shipped
        layers = dict.fromkeys(stored.families, SHIPPED)
        return Catalog(stored.version, stored.identifiers, stored.families, layers=layers)
    doc = msgspec.json.decode(raw)
    # Identifiers a policy names directly (no family) live only in the store's table.
    identifiers = [Identifier(*row) for row in doc["ids"]]
    identifiers += [i for i in stored.identifiers if not i.family]
    return Catalog(
        stored.version,
        identifiers,
        {f: dict(b) for f, b in doc["families"].items()},
        lists={n: CatalogList(b["title"], b["provenance"], tuple(b["families"])) for n, b in doc["lists"].items()},
        layers=doc["layers"],
        notes=doc["notes"],
        unmatched_names={f: [(n, p) for n, p in names] for f, names in doc["unmatched"].items()},
    )


def site_text(store: Store) -> str | None:
    raw = store.get_meta(_DOC)
    return None if raw is None else msgspec.json.decode(raw).get("site")


def add(
    store: Store,
    audit: AuditLog,
    now: Micros,
    families: dict[str, dict[str, str]],
    identifiers: list[Identifier],
    why: str,
) -> Catalog:
    """Add identifiers a policy names directly (no family); returns the catalog after."""
    version, _known_families, known = store.catalog()
    have = {(i.kind, i.value, i.family) for i in known}
    new_ids = [i for i in identifiers if (i.kind, i.value, i.family) not in have]
    new_families = {f: b for f, b in families.items() if f not in _known_families}
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
    """The shipped layer of this appban, under the site's layer as it is stored."""
    site = site_text(store)
    apply_layers(store, audit, now, site, "shipped catalog")
    return current(store)


def update_site(store: Store, audit: AuditLog, now: Micros, text: str, file: str) -> Changes:
    """Make this catalog file the site's layer; BadInput (nothing written) if the result is not one catalog."""
    parse_catalog(text, file=file, layer=SITE)  # the file's own errors name the file
    return apply_layers(store, audit, now, text, f"site catalog {file}", file=file)


def plan(store: Store, site: str | None, *, file: str = "site catalog") -> tuple[CatalogData, Changes]:
    """The catalog the layers make, and how it differs from the stored one; writes nothing."""
    shipped = load_shipped()
    layer = parse_catalog(site, file=file, layer=SITE) if site is not None else None
    try:
        data = merge(shipped, layer)
    except BadInput as exc:
        raise exc.at(file=file) from None
    before = current(store)
    return data, _diff(before, data, store.catalog().version)


def apply_layers(store: Store, audit: AuditLog, now: Micros, site: str | None, why: str, *, file: str = "") -> Changes:
    data, changes = plan(store, site, file=file or "site catalog")
    before = current(store)
    same_doc = store.get_meta(_DOC) is not None and site_text(store) == site
    if not changes and same_doc and _extras(before) == _extras_of(data):
        return changes
    version = store.catalog().version + (1 if changes else 0)
    old_versions = {(i.kind, i.value, i.family): i.added_version for i in before.identifiers if i.family}
    in_table = {(i.kind, i.value, i.family) for i in store.catalog().identifiers}
    new_ids = [i for i in data.identifiers if (i.kind, i.value, i.family) not in in_table]
    families = {f: {"title": b.title, "publisher": b.publisher} for f, b in data.families.items()}
    changed_families = {f: b for f, b in families.items() if before.families.get(f) != b}
    if changes or changed_families or new_ids:
        store.add_catalog(changed_families, new_ids, version)
    doc = {
        "ids": [
            [i.kind, i.value, i.family, i.provenance, old_versions.get((i.kind, i.value, i.family), version)]
            for i in data.identifiers
        ],
        "families": families,
        "lists": {
            n: {"title": lst.title, "provenance": lst.provenance, "families": list(lst.families)}
            for n, lst in data.lists.items()
        },
        "layers": data.layers,
        "notes": {f: b.notes for f, b in data.families.items() if b.notes},
        "unmatched": {f: [list(n) for n in b.unmatched_names] for f, b in data.families.items() if b.unmatched_names},
        "site": site,
    }
    store.set_meta(_DOC, msgspec.json.encode(doc).decode())
    if not changes:
        return changes
    gone = set(old_versions) - {(i.kind, i.value, i.family) for i in data.identifiers}
    _unmatch(store, sorted(gone))
    # Inventories kept whole, and apps that an identifier now names for another
    # family, are matched as an import now would match them.
    after = current(store)
    match_kept(store, [i for i in after.identifiers if i.family and i.added_version == version])
    audit.append(now, "catalog", f"v{version}", {"why": why, **changes.to_json()})
    _refresh_lists(store, audit, now, after, changes)
    return changes


def _extras(c: Catalog) -> tuple[Any, ...]:
    return (c.layers, c.notes, {f: [tuple(n) for n in v] for f, v in c.unmatched_names.items()}, c.families)


def _extras_of(d: CatalogData) -> tuple[Any, ...]:
    return (
        d.layers,
        {f: b.notes for f, b in d.families.items() if b.notes},
        {f: list(b.unmatched_names) for f, b in d.families.items() if b.unmatched_names},
        {f: {"title": b.title, "publisher": b.publisher} for f, b in d.families.items()},
    )


def _diff(before: Catalog, data: CatalogData, version: int) -> Changes:
    old = {(i.kind, i.value, i.family): i for i in before.identifiers if i.family}
    new = {(i.kind, i.value, i.family): i for i in data.identifiers}
    changes = Changes(version + 1)
    old_by_id = {(k, v): f for (k, v, f) in old}
    new_by_id = {(k, v): f for (k, v, f) in new}
    touched: set[str] = set()
    for key in sorted(new.keys() - old.keys()):
        kind, value, family = key
        was = old_by_id.get((kind, value))
        if was is not None and was != family:
            changes.changed.append(f"{family}: {kind}:{value} (was in {was})")
            touched.add(was)
        else:
            changes.added.append(f"{family}: {kind}:{value}")
        touched.add(family)
    for key in sorted(old.keys() - new.keys()):
        kind, value, family = key
        if (kind, value) not in new_by_id:
            changes.removed.append(f"{family}: {kind}:{value}")
        touched.add(family)
    for key in sorted(old.keys() & new.keys()):
        if old[key].provenance != new[key].provenance:
            changes.changed.append(f"{key[2]}: {key[0]}:{key[1]} (provenance)")
    for name in sorted(set(before.lists) | set(data.lists)):
        if before.lists.get(name) != data.lists.get(name):
            changes.lists.append(name)
    changes.families = sorted(touched)
    return changes


def _unmatch(store: Store, gone: list[_Key]) -> None:
    """Apps matched by identifiers that left the catalog no longer match them."""
    by_family: dict[str, list[tuple[str, str]]] = {}
    for kind, value, family in gone:
        by_family.setdefault(family, []).append((kind, value))
    for family, idents in by_family.items():
        present = store.present_apps([family], [])
        platforms: dict[int, str] = {}
        keys: list[tuple[int, str]] = []
        for device_id, app_keys in present.items():
            for key in app_keys:
                for kind, value in idents:
                    if kind == "name":
                        hit = key.startswith("name:") and normalise_name(key[5:]) == normalise_name(value)
                    elif key == value:
                        if device_id not in platforms:
                            device = store.get_device(device_id)
                            platforms[device_id] = device.platform if device else ""
                        hit = kind in kinds_for(platforms[device_id])
                    else:
                        hit = False
                    if hit:
                        keys.append((device_id, key))
                        break
        if keys:
            store.set_matches(keys, "", "", "")


def _refresh_lists(store: Store, audit: AuditLog, now: Micros, catalog: Catalog, changes: Changes) -> None:
    """Policies that ban a list ban its families as the catalog now has them."""
    if not changes.lists:
        return
    for row in store.list_policies():
        body = msgspec.json.decode(row.body)
        members = body.get("list_members") or {}
        stale = {n for n in members if n in changes.lists}
        if not stale:
            continue
        for name in stale:
            lst = catalog.lists.get(name)
            members[name] = list(lst.families) if lst else []
        body["list_members"] = members
        store.save_policy(replace(row, body=msgspec.json.encode(body).decode(), updated_at=now))
        audit.append(now, "policy.lists", row.id, {"lists": {n: members[n] for n in sorted(stale)}})
