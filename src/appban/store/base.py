"""The store interface. Filled in below from the SQLite store's public surface."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    backend: str
