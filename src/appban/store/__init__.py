"""Where appban keeps its data. SQLite now; the interface is what any backend implements."""

from __future__ import annotations

import os
import sqlite3

from appban.errors import AppbanError, BadInput
from appban.store.base import Store
from appban.store.sqlite import SQLiteStore, migrations


def open_store(url: str, *, create: bool) -> Store:
    """The store at ``url``: a SQLite path, ``sqlite:///path``, or (later) a server URL.

    With ``create``, the database is created or upgraded; without it, a missing
    database is an error rather than a new empty file.
    """
    if url.startswith(("postgresql://", "postgres://")):
        raise BadInput("PostgreSQL is not supported yet; use a SQLite path", field="--db")
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if path != ":memory:" and not create and not os.path.exists(path):
        raise BadInput(f"no database at {path}: run `appban init` first", field="--db")
    store = None
    try:
        store = SQLiteStore(path)
        if create:
            store.migrate()
            return store
        have, want = store.schema_version(), migrations()[-1][0]
    except sqlite3.DatabaseError as exc:
        if store is not None:
            store.close()
        raise AppbanError(f"{path} is not an appban database ({exc})") from None
    if have == 0:
        store.close()
        raise AppbanError(f"{path} is not an appban database: run `appban init`")
    if have < want:
        store.close()
        raise AppbanError(f"{path} has schema v{have}, this appban needs v{want}: run `appban init`")
    return store


__all__ = ["SQLiteStore", "Store", "open_store"]
