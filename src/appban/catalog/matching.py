"""Matching inventories kept whole against identifiers new to the catalog.

A snapshot kept whole (``--keep-full-inventory``) holds apps the catalog did not
know when it arrived; once the catalog (or a policy) names one, those rows must
match as an import now would (``Catalog.match``), or the snapshot would prove an
absence it contradicts. The rules are here; the store only finds and writes rows.
"""

from __future__ import annotations

from appban.catalog.catalog import PLATFORMS, kinds_for, normalise_name
from appban.store import Store
from appban.store.records import Identifier

# SPEC: identifier > certificate > name.
_CONFIDENCE = {"cert": "certificate", "name": "name"}


def match_kept(store: Store, identifiers: list[Identifier]) -> int:
    """Match kept observations against these identifiers; count the rows matched.

    A row keeps any match it has, except that one watched only for a policy takes
    the family that the same identifier now gives it.
    """
    matched = 0
    for ident in identifiers:
        confidence = _CONFIDENCE.get(ident.kind, "identifier")
        if ident.kind == "name":
            # Names match only apps reported without an identifier (Catalog.match).
            want = normalise_name(ident.value)
            keys = [
                (k.device_id, k.app_key)
                for k in store.kept_names(ident.family, ident.kind)
                if normalise_name(k.name) == want
            ]
            store.set_matches(keys, ident.family, ident.kind, confidence)
            matched += len(keys)
        elif ident.kind == "cert":
            matched += store.match_kept_cert(ident.value, ident.family, ident.kind, confidence)
        else:
            # An identifier is an app id only on the platforms whose ids are of its kind.
            platforms = tuple(p for p in PLATFORMS if ident.kind in kinds_for(p))
            matched += store.match_kept_id(ident.value, platforms, ident.family, ident.kind, confidence)
    return matched
