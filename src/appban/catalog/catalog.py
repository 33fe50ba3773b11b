"""Matching reported apps to catalog families.

Matching is exact on identifiers. A display name is used only when the source gave
no identifier at all: an app that carries an identifier the catalog does not know
is not in the catalog, whatever it is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appban.store.records import Identifier

PLATFORMS = ("ios", "ipados", "android", "macos", "windows", "linux", "chromeos")
KINDS = ("android", "ios", "appstore", "cert", "name", "macos", "windows", "linux")

# Which identifier kinds a platform's app ids are. ChromeOS runs Android apps; iPadOS
# runs iOS apps and shares their bundle ids and App Store ids.
_PLATFORM_KINDS: dict[str, tuple[str, ...]] = {
    "android": ("android",),
    "chromeos": ("android",),
    "ios": ("ios", "appstore"),
    "ipados": ("ios", "appstore"),
    "macos": ("macos",),
    "windows": ("windows",),
    "linux": ("linux",),
}

# SPEC: identifier > certificate > name.
CONFIDENCE_ORDER = {"identifier": 3, "certificate": 2, "name": 1}


def kinds_for(platform: str) -> tuple[str, ...]:
    return _PLATFORM_KINDS.get(platform, ())


def id_kind(platform: str, app_id: str) -> str:
    """The catalog kind of an app id as reported from ``platform``."""
    kinds = kinds_for(platform)
    if "appstore" in kinds and app_id.isdigit():
        return "appstore"
    return kinds[0] if kinds else platform


def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Match:
    family: str
    kind: str
    value: str
    confidence: str


@dataclass(frozen=True)
class CatalogList:
    """A named group of families that a policy can ban at once (``list:NAME``)."""

    title: str
    provenance: str
    families: tuple[str, ...]


@dataclass
class Catalog:
    """An immutable-in-use view of the catalog at one version.

    ``layers`` says where each family comes from: ``shipped`` (the package's
    catalog) or ``site`` (the file ``appban catalog update`` loaded, which wins).
    ``unmatched_names`` are display names the catalog knows but that are too common
    to match alone; ``notes`` what could not be confirmed.
    """

    version: int
    identifiers: list[Identifier]
    families: dict[str, dict[str, str]] = field(default_factory=dict)
    lists: dict[str, CatalogList] = field(default_factory=dict)
    layers: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    unmatched_names: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[tuple[str, str], Identifier] = {}
        for ident in self.identifiers:
            value = normalise_name(ident.value) if ident.kind == "name" else ident.value
            if ident.kind == "cert":
                value = value.lower()
            # A family entry wins over a bare policy-watched entry for the same id.
            if (ident.kind, value) not in self._index or ident.family:
                self._index[(ident.kind, value)] = ident

    def match(self, platform: str, app_id: str | None, name: str | None, signing: str | None) -> Match | None:
        index = self._index
        if app_id:
            kind = id_kind(platform, app_id)
            hit = index.get((kind, app_id))
            if hit is not None:
                return Match(hit.family, kind, app_id, "identifier")
        if signing:
            hit = index.get(("cert", signing.lower()))
            if hit is not None:
                return Match(hit.family, "cert", signing.lower(), "certificate")
        if not app_id and name:
            key = normalise_name(name)
            hit = index.get(("name", key))
            if hit is not None:
                return Match(hit.family, "name", key, "name")
        return None

    def index_for(self, platform: str) -> tuple[dict[str, Match], dict[str, Match], dict[str, Match]]:
        """Lookup tables for one platform: (by app id, by normalised name, by certificate).

        The hot path of an import: one dict lookup per reported app.
        """
        cache: dict[str, tuple[dict[str, Match], dict[str, Match], dict[str, Match]]]
        cache = self.__dict__.setdefault("_platform_index", {})
        found = cache.get(platform)
        if found is None:
            kinds = kinds_for(platform)
            ids: dict[str, Match] = {}
            names: dict[str, Match] = {}
            certs: dict[str, Match] = {}
            for (kind, value), ident in self._index.items():
                if kind in kinds:
                    ids[value] = Match(ident.family, kind, value, "identifier")
                elif kind == "name":
                    names[value] = Match(ident.family, kind, value, "name")
                elif kind == "cert":
                    certs[value] = Match(ident.family, kind, value, "certificate")
            found = cache[platform] = (ids, names, certs)
        return found

    def identifiers_of(self, family: str) -> list[Identifier]:
        return [i for i in self.identifiers if i.family == family]

    def knows(self, kind: str, value: str) -> bool:
        return (kind, value) in self._index

    def required_version(self, families: set[str], explicit: set[tuple[str, str]]) -> int:
        """The catalog version from which a snapshot can prove absence of these apps."""
        versions = [
            i.added_version
            for i in self.identifiers
            if (i.family and i.family in families) or (i.kind, i.value) in explicit
        ]
        return max(versions, default=0)
