"""``appban catalog``: the app families and their identifiers."""

from __future__ import annotations

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
    """App families and how many identifiers each has."""
    ws = env.workspace(create=False)
    cat = ws.catalog
    doc = {
        "version": cat.version,
        "families": [
            {"family": f, **meta, "identifiers": len(cat.identifiers_of(f))} for f, meta in sorted(cat.families.items())
        ],
    }
    emit(
        env,
        doc,
        lambda d: output.table(
            f"catalog v{d['version']}",
            ["family", "title", "publisher", "identifiers"],
            [(f["family"], f["title"], f["publisher"], f["identifiers"]) for f in d["families"]],
            whole=("family",),
        ),
    )


@catalog.command("show")
@click.argument("family")
@common
def catalog_show(env: Env, family: str) -> None:
    """One family's identifiers, each with its provenance."""
    from appban.errors import NotFound

    ws = env.workspace(create=False)
    cat = ws.catalog
    if family not in cat.families:
        raise NotFound(f"no app family {family[:60]!r}", field="FAMILY")
    doc = {
        "family": family,
        **cat.families[family],
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
    }
    emit(
        env,
        doc,
        lambda d: output.table(
            f"{d['family']}: {d['title']} ({d['publisher']})",
            ["kind", "value", "since", "provenance"],
            [(i["kind"], i["value"], f"v{i['added_in']}", i["provenance"]) for i in d["identifiers"]],
            whole=("kind", "value", "since"),
        ),
    )
