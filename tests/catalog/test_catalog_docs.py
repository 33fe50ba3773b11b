"""docs/catalog.md lists every family and list of the shipped catalog, with sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from appban.catalog import load_shipped

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_catalog", DOCS / "gen_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalog_reference_is_current() -> None:
    current = (DOCS / "catalog.md").read_text("utf-8")
    assert _generator().render(current) == current, (
        "docs/catalog.md is out of date: run `python docs/gen_catalog.py` and commit the result"
    )


def test_every_family_identifier_and_list_is_in_the_reference() -> None:
    text = (DOCS / "catalog.md").read_text("utf-8")
    data = load_shipped()
    for key, family in data.families.items():
        assert f"### `{key}`: {family.title}" in text
        for ident in family.identifiers:
            assert f"| {ident.kind} | `{ident.value}` |" in text, (key, ident.value)
    for name, lst in data.lists.items():
        assert f"### `list:{name}`" in text and lst.provenance in text
