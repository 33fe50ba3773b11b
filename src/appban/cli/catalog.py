"""``appban catalog``: the app families, the lists that group them, and the site's layer."""

from __future__ import annotations

from typing import Any

import click

from appban import output
from appban.cli._root import Env, cli, common, emit

# -- catalog -----------------------------------------------------------------------------


@cli.group()
def catalog() -> None:
    """The app catalog."""


@catalog.command("list")
@common
def catalog_list(env: Env) -> None:
    """App families (with the layer each comes from) and catalog lists."""
    ws = env.workspace(create=False)
    cat = ws.catalog
    doc = {
        "version": cat.version,
        "families": [
            {
                "family": f,
                **meta,
                "identifiers": len(cat.identifiers_of(f)),
                "layer": cat.layers.get(f, "shipped"),
            }
            for f, meta in sorted(cat.families.items())
        ],
        "lists": [
            {"list": name, "title": lst.title, "families": len(lst.families)} for name, lst in sorted(cat.lists.items())
        ],
    }

    def render(d: dict[str, Any]) -> None:
        output.table(
            f"catalog v{d['version']}",
            ["family", "title", "publisher", "identifiers", "layer"],
            [(f["family"], f["title"], f["publisher"], f["identifiers"], f["layer"]) for f in d["families"]],
            whole=("family", "layer"),
        )
        output.table(
            "lists (ban one with apps: [list:NAME])",
            ["list", "title", "families"],
            [(lst["list"], lst["title"], lst["families"]) for lst in d["lists"]],
            whole=("list",),
        )

    emit(env, doc, render)


@catalog.command("show")
@click.argument("name", metavar="FAMILY|LIST")
@common
def catalog_show(env: Env, name: str) -> None:
    """One family's identifiers, each with its provenance; or a list's families."""
    from appban.errors import NotFound

    ws = env.workspace(create=False)
    cat = ws.catalog
    list_name = name.removeprefix("list:")
    if name in cat.families:
        emit(env, _family_doc(cat, name), _render_family)
    elif list_name in cat.lists:
        lst = cat.lists[list_name]
        doc = {
            "list": list_name,
            "title": lst.title,
            "provenance": lst.provenance,
            "catalog_version": cat.version,
            "families": [
                {
                    "family": f,
                    "title": cat.families.get(f, {}).get("title", ""),
                    "identifiers": len(cat.identifiers_of(f)),
                    "layer": cat.layers.get(f, "shipped"),
                }
                for f in lst.families
            ],
        }
        emit(
            env,
            doc,
            lambda d: output.table(
                f"list:{d['list']}: {d['title']} ({len(d['families'])} families)",
                ["family", "title", "identifiers", "layer"],
                [(f["family"], f["title"], f["identifiers"], f["layer"]) for f in d["families"]],
                whole=("family", "layer"),
            ),
        )
    else:
        raise NotFound(f"no app family or catalog list {name[:60]!r}", field="FAMILY|LIST")


def _family_doc(cat: Any, family: str) -> dict[str, Any]:
    return {
        "family": family,
        **cat.families[family],
        "layer": cat.layers.get(family, "shipped"),
        "catalog_version": cat.version,
        "identifiers": [
            {
                "kind": i.kind,
                "value": i.value,
                "provenance": i.provenance,
                "added_in": i.added_version,
            }
            for i in cat.identifiers_of(family)
        ],
        # Names too common to match an app alone: kept for the record, never matched.
        "names_not_matched": [{"name": n, "provenance": p} for n, p in cat.unmatched_names.get(family, [])],
        "notes": cat.notes.get(family, ""),
    }


def _render_family(d: dict[str, Any]) -> None:
    output.table(
        f"{d['family']}: {d['title']} ({d['publisher']}), {d['layer']} layer",
        ["kind", "value", "since", "provenance"],
        [(i["kind"], i["value"], f"v{i['added_in']}", i["provenance"]) for i in d["identifiers"]],
        whole=("kind", "value", "since"),
    )
    for n in d["names_not_matched"]:
        output.line(f"name {n['name']!r} is not matched alone: {n['provenance']}")
    if d["notes"]:
        output.line(f"notes: {d['notes']}")


@catalog.command("update")
@click.argument("file")
@common
def catalog_update(env: Env, file: str) -> None:
    """Load FILE (the shipped catalog's schema) as the site's layer over the shipped catalog.

    A family FILE names replaces the shipped family of that name (give it no
    identifiers to stop it matching); a list replaces the shipped list. The layer
    survives upgrades. Shows what it adds, changes and removes, and re-evaluates
    the policies it affects at once.
    """
    from appban.catalog import sync as catalog_sync
    from appban.catalog.layers import read_catalog_file

    ws = env.workspace(create=False)
    _data, text = read_catalog_file(file)
    with ws.writing():
        changes = catalog_sync.update_site(ws.store, ws.audit, ws.now, text, file)
        ws.refresh_catalog()
        touched = set(changes.families)
        affected = [
            p
            for p in ws.evaluator.policies
            if touched & p.families or any(n in changes.lists for n, _m in p.list_members)
        ]
        state_changes = sum(ws.evaluator.evaluate_policy(p, ws.now, "catalog") for p in affected)
    doc = {
        **changes.to_json(),
        "catalog_version": ws.catalog.version,
        "policies": sorted(p.id for p in affected),
        "state_changes": state_changes,
    }

    def render(d: dict[str, Any]) -> None:
        output.line(f"catalog v{d['catalog_version']}")
        for word in ("added", "changed", "removed"):
            for item in d[word]:
                output.line(f"  {word}: {item}")
        for name in d["lists"]:
            output.line(f"  list changed: {name}")
        if not (d["added"] or d["changed"] or d["removed"] or d["lists"]):
            output.line("  no change")
        if d["policies"]:
            output.line(f"re-evaluated {', '.join(d['policies'])}: {d['state_changes']} state changes")

    emit(env, doc, render)
