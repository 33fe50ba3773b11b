"""The app catalog: app families and the identifiers that name them on each platform."""

from appban.catalog.catalog import (
    CONFIDENCE_ORDER,
    PLATFORMS,
    Catalog,
    CatalogList,
    Identifier,
    Match,
    kinds_for,
)
from appban.catalog.layers import load_shipped

__all__ = [
    "CONFIDENCE_ORDER",
    "PLATFORMS",
    "Catalog",
    "CatalogList",
    "Identifier",
    "Match",
    "kinds_for",
    "load_shipped",
]
