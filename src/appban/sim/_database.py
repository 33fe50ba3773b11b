"""Where the demo writes: a fresh database, or its own previous one, never real data."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from appban.errors import BadInput

DEMO_KEY = "demo"  # meta key that marks a database the demo made and may replace


def file_of(db: str) -> str | None:
    """The file behind a --db value, None for an in-memory database or a server URL."""
    path = db.removeprefix("sqlite:///")
    if path == ":memory:" or "://" in path:
        return None
    return path


def prepare(db: str) -> None:
    """Delete a previous demo database; refuse one that holds anything else."""
    path = file_of(db)
    if path is None or not os.path.exists(path):
        return
    kind = _inspect(path)
    if kind == "demo":
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        # The notices the last demo delivered to its mbox (``_delivery.mbox_of``).
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.splitext(path)[0] + "-notices.mbox")
    elif kind == "real":
        raise BadInput(
            f"{path} holds real data; run the demo on another database: appban --db demo.db demo",
            field="--db",
        )


def _inspect(path: str) -> str:
    """'demo', 'empty' (no people, devices or policies: safe to fill) or 'real'."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise BadInput(f"cannot open {path} ({exc.sqlite_errorname or 'error'})", field="--db") from None
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return "empty"
        if not {"meta", "people", "devices", "policies"} <= tables:
            raise BadInput(
                f"{path} is not an appban database; run the demo on another database: appban --db demo.db demo",
                field="--db",
            )
        if con.execute("SELECT 1 FROM meta WHERE key = ?", (DEMO_KEY,)).fetchone():
            return "demo"
        for table in ("devices", "people", "policies"):
            if con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return "real"
        return "empty"
    except sqlite3.DatabaseError:
        raise BadInput(f"{path} is not a SQLite database", field="--db") from None
    finally:
        con.close()
