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
    database is an error rather than a new empty file. A zero-byte file is an empty
    SQLite database: ``create`` makes it appban's, anything else says to run
    ``appban init``. A SQLite database of another program is never written to.
    """
    if url.startswith(("postgresql://", "postgres://")):
        raise BadInput("PostgreSQL is not supported yet; use a SQLite path", field="--db")
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if not path.strip():
        raise BadInput("no database given: a SQLite path or database URL is needed", field="--db")
    if path != ":memory:":
        _check_path(path, create=create)
    store = None
    try:
        store = SQLiteStore(path)
        have = store.schema_version()
        if have == 0 and _has_tables(store):
            raise BadInput(f"{path} is a SQLite database of another program, not appban's", field="--db")
        if create:
            store.migrate()
            return store
        want = migrations()[-1][0]
    except sqlite3.DatabaseError as exc:
        if store is not None:
            store.close()
        if is_busy(exc) and store is not None:
            raise store.busy() from None
        if _error_code(exc) == sqlite3.SQLITE_NOTADB:
            raise BadInput(f"{path} is not a SQLite database (nor an appban one)", field="--db") from None
        # SQLite's own name for what went wrong (its message wording is not relied on).
        raise AppbanError(f"cannot read the database {path} ({exc.sqlite_errorname or 'error'})") from None
    except BaseException:
        if store is not None:
            store.close()
        raise
    if have == 0:
        store.close()
        raise BadInput(f"{path} is not an appban database (it is empty): run `appban init`", field="--db")
    if have < want:
        store.close()
        # Usage, not a fault: only `appban init` upgrades a database (it also syncs the catalog).
        raise BadInput(f"{path} has schema v{have}, this appban needs v{want}: run `appban init`", field="--db")
    return store


def _check_path(path: str, *, create: bool) -> None:
    """What can be told before opening: a folder, a database missing, a folder missing."""
    if os.path.isdir(path):
        raise BadInput(f"{path} is a folder, not a database file", field="--db")
    if os.path.exists(path):
        return
    if not create:
        raise BadInput(f"no database at {path}: run `appban init` first", field="--db")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadInput(f"no folder {folder} to create the database {path} in", field="--db")


def _has_tables(store: SQLiteStore) -> bool:
    return store.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone() is not None


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


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
