"""A writer waits its turn behind another; when it cannot, it says the database is busy.

And every commit is synced to disk (``synchronous = FULL`` under WAL) unless the admin
chooses otherwise: an enforcement audit log must survive a power cut, not only a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from appban.store import open_store
from appban.store.sqlite import SQLiteStore
from helpers_cli import assert_bad_input, run_process

CHECKIN = {
    "device": {"id": "JANE-IPHONE", "platform": "ios", "owner": "jane.doe@example.com"},
    "observed_at": "2020-07-10T15:00:00Z",
    "apps": [],
}
NOW = "2020-07-10T16:00:00Z"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "appban.db"
    assert run_process("--db", str(path), "init", "--now", NOW).code == 0
    return path


def _hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another writer: holds SQLite's write lock for ``seconds``, then commits."""
    locked = threading.Event()

    def hold() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(seconds)
            con.execute("COMMIT")
        finally:
            con.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return thread


def test_a_second_writer_waits_its_turn(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "checkin.json"
    path.write_text(json.dumps(CHECKIN), encoding="utf-8")
    holder = _hold_write_lock(db, 1.5)
    started = time.monotonic()
    result = run_process("--db", str(db), "import", "appban", str(path), "--now", NOW)
    waited = time.monotonic() - started
    holder.join()
    assert result.code == 0, result.err
    assert waited >= 1.0, waited  # it waited for the lock rather than failing


def test_a_writer_that_cannot_get_its_turn_says_the_database_is_busy(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "checkin.json"
    path.write_text(json.dumps(CHECKIN), encoding="utf-8")
    holder = _hold_write_lock(db, 4)
    try:
        result = run_process(
            "--db", str(db), "import", "appban", str(path), "--now", NOW, env={"APPBAN_BUSY_TIMEOUT": "0.5"}
        )
    finally:
        holder.join()
    line = assert_bad_input(result, str(db), "busy", "APPBAN_BUSY_TIMEOUT", code=1)
    assert "not an appban database" not in line
    # Nothing was written: the device is unknown once the other writer is done.
    shown = run_process("--db", str(db), "device", "list", "--json", "--now", NOW)
    assert json.loads(shown.out)["count"] == 0


def test_commits_are_synced_to_disk_by_default(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPBAN_SQLITE_SYNCHRONOUS", raising=False)
    store = open_store(str(db), create=False)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
    monkeypatch.setenv("APPBAN_SQLITE_SYNCHRONOUS", "normal")
    store = open_store(str(db), create=False)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        store.close()


def test_a_bad_durability_setting_is_refused(db: Path) -> None:
    result = run_process("--db", str(db), "status", "--now", NOW, env={"APPBAN_SQLITE_SYNCHRONOUS": "off"})
    assert_bad_input(result, "APPBAN_SQLITE_SYNCHRONOUS")
