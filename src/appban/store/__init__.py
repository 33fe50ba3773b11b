"""Where appban keeps its data. SQLite now; the interface is what any backend implements."""

from __future__ import annotations

import os
import sqlite3

from appban.errors import AppbanError, BadInput, Busy
from appban.store.base import Store
from appban.store.sqlite import SQLiteStore, is_busy, is_unavailable, migrations


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
        if is_busy(exc) and store is not None:
            raise store.busy() from None
        raise AppbanError(f"{path} is not an appban database ({exc})") from None
    except BaseException:
        if store is not None:
            store.close()
        raise
    if have == 0:
        store.close()
        raise AppbanError(f"{path} is not an appban database: run `appban init`")
    if have < want:
        store.close()
        # Usage, not a fault: only `appban init` upgrades a database (it also syncs the catalog).
        raise BadInput(f"{path} has schema v{have}, this appban needs v{want}: run `appban init`", field="--db")
    return store


def failure_kind(exc: BaseException) -> str:
    """What a failed store call means to a process that keeps following the store.

    ``busy``: another writer holds the lock (wait, retry); ``unavailable``: the
    database cannot be reached or read (an outage); ``error``: anything else (a bug).
    """
    if isinstance(exc, Busy) or is_busy(exc):
        return "busy"
    if is_unavailable(exc):
        return "unavailable"
    return "error"


__all__ = ["SQLiteStore", "Store", "failure_kind", "open_store"]
