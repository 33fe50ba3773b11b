"""Catalog files and their layers: the catalog shipped in the package, and the site's.

A catalog file (the schema of ``data/catalog.yaml``) names families, each with its
identifiers and their provenance, and lists of families. The site's file, loaded by
``appban catalog update``, is a layer over the shipped one: a family it names
replaces the shipped family of that key whole (give it no identifiers to stop it
matching), a list it names replaces the shipped list. What results is checked as
one catalog: an identifier that two families claim is an error naming both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from appban.catalog.catalog import KINDS, CatalogList, normalise_name
from appban.errors import BadInput, one_line
from appban.store.records import Identifier

SHIPPED, SITE = "shipped", "site"
_FAMILY_KEY = "[a-z0-9][a-z0-9-]{0,62}"
_TOP = {"families", "lists"}
_FAMILY = {"title", "publisher", "identifiers", "notes"}
_ENTRY = {"kind", "value", "provenance", "distinctive"}
_LIST = {"title", "provenance", "families"}
MAX_CATALOG_BYTES = 4 * 1024 * 1024


@dataclass
class Family:
    title: str
    publisher: str = ""
    notes: str = ""
    identifiers: list[Identifier] = field(default_factory=list)
    unmatched_names: list[tuple[str, str]] = field(default_factory=list)  # (name, provenance)


@dataclass
class CatalogData:
    """One catalog file, or the layers merged: families, lists, and each family's layer."""

    families: dict[str, Family]
    lists: dict[str, CatalogList]
    layers: dict[str, str] = field(default_factory=dict)

    @property
    def identifiers(self) -> list[Identifier]:
        return [i for f in self.families.values() for i in f.identifiers]


def load_shipped() -> CatalogData:
    """The catalog data shipped in the package."""
    text = resources.files("appban.catalog").joinpath("data/catalog.yaml").read_text("utf-8")
    return parse_catalog(text, file="catalog.yaml", layer=SHIPPED)


def read_catalog_file(path: str) -> tuple[CatalogData, str]:
    """A site's catalog file and its text; BadInput naming the file and field."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CATALOG_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", file=path) from None
    if len(raw) > MAX_CATALOG_BYTES:
        raise BadInput(f"catalog file larger than {MAX_CATALOG_BYTES} bytes", file=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 at byte {exc.start}", file=path) from None
    return parse_catalog(text, file=path, layer=SITE), text


def parse_catalog(text: str, *, file: str, layer: str) -> CatalogData:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise BadInput(f"malformed YAML: {exc.problem or exc.context}", file=file, line=line) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise BadInput(f"malformed YAML: {one_line(str(exc))}", file=file) from None
    try:
        return _catalog(data if data is not None else {}, layer)
    except BadInput as exc:
        raise exc.at(file=file) from None


def _catalog(data: Any, layer: str) -> CatalogData:
    _mapping(data, "", _TOP)
    families: dict[str, Family] = {}
    for key, body in _mapping(data.get("families") or {}, "families").items():
        families[_key(key, "families")] = _family(key, body, f"families.{key}")
    lists: dict[str, CatalogList] = {}
    for key, body in _mapping(data.get("lists") or {}, "lists").items():
        path = f"lists.{_key(key, 'lists')}"
        _mapping(body, path, _LIST)
        members = body.get("families")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise BadInput("expected a list of family names", field=f"{path}.families")
        if len(set(members)) != len(members):
            raise BadInput("a family is listed twice", field=f"{path}.families")
        lists[key] = CatalogList(
            _text(body, "title", path), _text(body, "provenance", path, required=True), tuple(members)
        )
    found = CatalogData(families, lists, dict.fromkeys(families, layer))
    # A site's list may name shipped families: its lists are checked once merged.
    check(found, lists=layer == SHIPPED)
    return found


def _family(key: str, body: Any, path: str) -> Family:
    _mapping(body, path, _FAMILY)
    family = Family(_text(body, "title", path), _text(body, "publisher", path), _text(body, "notes", path))
    entries = body.get("identifiers") or []
    if not isinstance(entries, list):
        raise BadInput("expected a list", field=f"{path}.identifiers")
    for i, entry in enumerate(entries):
        where = f"{path}.identifiers[{i}]"
        _mapping(entry, where, _ENTRY)
        kind = entry.get("kind")
        if kind not in KINDS:
            raise BadInput(
                f"unknown kind {one_line(str(kind), 40)!r} (known: {', '.join(KINDS)})", field=f"{where}.kind"
            )
        value = entry.get("value")
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise BadInput("expected an identifier", field=f"{where}.value")
        value = str(value)
        provenance = _text(entry, "provenance", where, required=True)
        distinctive = entry.get("distinctive")
        if kind == "name":
            # SPEC: a name match has the lowest confidence; the file must say for each
            # name whether it is distinctive enough to match alone.
            if not isinstance(distinctive, bool):
                raise BadInput("a name says whether it is distinctive: true or false", field=f"{where}.distinctive")
            if not distinctive:
                family.unmatched_names.append((value, provenance))
                continue
        elif distinctive is not None:
            raise BadInput("only a name is distinctive or not", field=f"{where}.distinctive")
        if kind == "cert":
            value = value.lower()
        family.identifiers.append(Identifier(kind, value, key, provenance))
    return family


def merge(shipped: CatalogData, site: CatalogData | None) -> CatalogData:
    """The site's layer over the shipped one, checked as one catalog."""
    if site is None:
        return shipped
    families = {**shipped.families, **site.families}
    layers = {**shipped.layers, **site.layers}
    merged = CatalogData(families, {**shipped.lists, **site.lists}, layers)
    check(merged)
    return merged


def check(data: CatalogData, *, lists: bool = True) -> None:
    """One catalog: no identifier (or matching name) in two families, no list of unknown families."""
    owner: dict[tuple[str, str], str] = {}
    for family, body in data.families.items():
        for ident in body.identifiers:
            key = (ident.kind, normalise_name(ident.value) if ident.kind == "name" else ident.value)
            other = owner.setdefault(key, family)
            if other != family:
                a, b = sorted((other, family))
                where = " and ".join(f"{f} ({data.layers.get(f, SHIPPED)})" for f in (a, b))
                raise BadInput(f"{ident.kind}:{ident.value} is claimed by two families: {where}", field="families")
    for name, lst in data.lists.items() if lists else ():
        for member in lst.families:
            if member not in data.families:
                raise BadInput(f"unknown family {member!r}", field=f"lists.{name}.families")


def _mapping(value: Any, path: str, known: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput("expected a mapping", field=path or None)
    if known is not None:
        for key in value:
            if key not in known:
                field_path = f"{path}.{key}" if path else str(key)
                raise BadInput(f"unknown field (known: {', '.join(sorted(known))})", field=one_line(field_path, 80))
    return value


def _key(key: Any, path: str) -> str:
    if not isinstance(key, str) or not re.fullmatch(_FAMILY_KEY, key):
        raise BadInput("a name of 1-63 of a-z, 0-9 and '-'", field=one_line(f"{path}.{key}", 80))
    return key


def _text(body: dict[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > 2000 or any(not ch.isprintable() for ch in value):
        raise BadInput("expected a line of text", field=f"{path}.{key}")
    if (required or key == "title") and not value.strip():
        raise BadInput("missing required field", field=f"{path}.{key}")
    return value
