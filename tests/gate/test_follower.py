"""The running gate follows the store: changes in a second, deadlines by itself, outages survived.

Each test builds a database on the real clock (the clock a running gate uses), starts
``appban gate serve`` as a child process, changes the store through the CLI and times
how long the gate takes to answer differently. Nobody runs ``appban evaluate``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_gate import NOTES, TIKTOK, GateProcess, device, live_fleet, wait_for, wall

from appban.gate.credentials import CredentialCache
from appban.gate.follower import Follower
from appban.gate.table import DecisionTable
from helpers_semantics import Appban

BLOCKED = "blocked:tiktok-mail"
JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Appban, GateProcess]]:
    ab = live_fleet(tmp_path)
    with GateProcess(ab.db) as gate:
        yield ab, gate


def checkin(ab: Appban, source_id: str, owner: str, eas: list[str], apps: list[dict[str, str]]) -> None:
    ab.ingest(device(source_id, owner, eas, apps, at=wall(-1)), now=wall())


def reason_becomes(gate: GateProcess, eas: str, user: str, expected: str, timeout: float = 1.0) -> float:
    """Seconds until the gate answers ``expected``; fails after ``timeout``."""
    _, took = wait_for(lambda: gate.sync(eas, user).reason == expected, timeout=timeout + 2, every=0.01)
    assert took < timeout, f"{eas}/{user} -> {expected} took {took:.2f}s"
    return took


def test_a_clean_checkin_restores_access_within_a_second(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    assert gate.sync("EASJANE1", "jane.doe").reason == BLOCKED
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    # And back: TikTok is installed again after the deadline.
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES, TIKTOK])
    reason_becomes(gate, "EASJANE1", "jane.doe", BLOCKED)
    assert gate.sync("EASBOB1", "bob.roe").reason == "ok"
    assert "Traceback" not in "".join(gate.log)


def test_device_ids_and_owners_follow_the_store(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    # Jane's phone now syncs with another DeviceId: the old one is forgotten (a tombstone).
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE9"], [TIKTOK])
    reason_becomes(gate, "EASJANE9", "jane.doe", BLOCKED)
    assert gate.sync("EASJANE1", "jane.doe").reason == "unknown_device"
    # Bob's phone is handed to Jane.
    checkin(ab, "BOB-PIXEL", JANE, ["EASBOB1"], [NOTES])
    reason_becomes(gate, "EASBOB1", "bob.roe", "user_mismatch")
    assert gate.sync("EASBOB1", "jane.doe").reason == "ok"
    # A new device appears.
    checkin(ab, "ANN-IPHONE", "ann.lee@example.com", ["EASANN1"], [NOTES])
    reason_becomes(gate, "EASANN1", "ann.lee", "ok")
    assert gate.health()["table_devices"] == 3


def test_withdrawal_and_exemption_reach_the_gate_within_a_second(
    live: tuple[Appban, GateProcess],
) -> None:
    ab, gate = live
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--person",
        JANE,
        "--until",
        wall(3600),
        "--reason",
        "security research",
        now=wall(),
    )
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    checkin(ab, "BOB-PIXEL", BOB, ["EASBOB1"], [TIKTOK])
    reason_becomes(gate, "EASBOB1", "bob.roe", BLOCKED)
    ab("policy", "withdraw", "tiktok-mail", "--reason", "sent in error", now=wall())
    reason_becomes(gate, "EASBOB1", "bob.roe", "ok")


def test_the_deadline_is_applied_by_the_gate_itself(tmp_path: Path) -> None:
    lead = 4.0
    deadline = time.time() + lead
    ab = live_fleet(tmp_path, deadline_in=lead)
    with GateProcess(ab.db) as gate:
        assert time.time() < deadline - 0.5, "the fixture took too long to test anything"
        # Before the deadline Jane's phone is violating, which does not deny.
        assert gate.sync("EASJANE1", "jane.doe").reason == "ok"
        _, _took = wait_for(
            lambda: gate.sync("EASJANE1", "jane.doe").reason == BLOCKED,
            timeout=lead + 5,
            every=0.02,
        )
        blocked_at = time.time()
        assert blocked_at >= deadline - 0.05, "blocked before the deadline"
        assert blocked_at - deadline < 2.0, f"blocked {blocked_at - deadline:.2f}s after the deadline"
        assert gate.sync("EASBOB1", "bob.roe").reason == "ok"
    # The gate wrote the change to the store: the CLI sees it, as of now, without evaluating.
    shown = ab.show("JANE-IPHONE", now=wall())
    assert shown["decision"] == "deny"
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"


def take_away(db: Path) -> Path:
    """Move the database (with its -wal and -shm) to another folder, names unchanged."""
    elsewhere = db.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    for extra in ("", "-wal", "-shm"):
        if Path(f"{db}{extra}").exists():
            os.rename(f"{db}{extra}", elsewhere / f"{db.name}{extra}")
    return elsewhere / db.name


def bring_back(moved: Path, db: Path) -> None:
    for extra in ("-wal", "-shm", ""):  # the database file last: the gate looks for it
        if Path(f"{moved}{extra}").exists():
            os.rename(f"{moved}{extra}", f"{db}{extra}")


def test_store_outage_keeps_answering_and_recovers(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    db = Path(ab.db)
    expected = {
        ("EASJANE1", "jane.doe"): (403, BLOCKED),
        ("EASBOB1", "bob.roe"): (204, "ok"),
        ("EASBOB1", "jane.doe"): (403, "user_mismatch"),
        ("EASNONE", "bob.roe"): (403, "unknown_device"),
    }
    assert gate.health()["status"] == "ok"

    moved = take_away(db)
    wait_for(lambda: gate.health()["status"] == "degraded", timeout=2)
    health = gate.get("/healthz")
    assert health.status == 200 and health.reason == "store_unreachable"
    doc = gate.health()
    assert doc["store"] == "unreachable" and doc["error"]
    assert doc["table_devices"] == 2
    assert gate.metrics()["appban_gate_store_up"] == 0
    for _ in range(10):  # answers from the last table, never a 5xx
        for (eas, user), (status, reason) in expected.items():
            answer = gate.sync(eas, user)
            assert (answer.status, answer.reason) == (status, reason)
    time.sleep(0.3)
    assert gate.health()["table_age_seconds"] >= 0.3
    assert gate.metrics()["appban_gate_table_age_seconds"] >= 0.3
    assert not db.exists(), "the gate must not create a new, empty database"

    bring_back(moved, db)
    _, took = wait_for(lambda: gate.health()["status"] == "ok", timeout=3)
    assert took < 2, f"recovery took {took:.2f}s"
    assert gate.metrics()["appban_gate_store_up"] == 1
    assert gate.health()["table_age_seconds"] < 1
    # ... and follows changes again.
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    log = "".join(gate.log)
    assert "store unreachable" in log and "reachable again" in log
    assert "Traceback" not in log


def test_changes_made_during_an_outage_are_picked_up(live: tuple[Appban, GateProcess], tmp_path: Path) -> None:
    ab, gate = live
    db = Path(ab.db)
    moved = take_away(db)
    wait_for(lambda: gate.health()["status"] == "degraded", timeout=2)
    # While the gate cannot see it, the store changes (a volume remounted, say).
    away = Appban(tmp_path)
    away.db = str(moved)
    away.ingest(device("JANE-IPHONE", JANE, ["EASJANE1"], [NOTES], at=wall(-1)), now=wall())
    assert gate.sync("EASJANE1", "jane.doe").reason == BLOCKED
    bring_back(moved, db)
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok", timeout=2)


def test_a_database_restored_from_backup_is_reloaded(live: tuple[Appban, GateProcess]) -> None:
    import sqlite3

    ab, gate = live
    db = Path(ab.db)
    backup = db.parent / "backup.db"
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # Jane's phone is blocked in the backup
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES])
    checkin(ab, "BOB-PIXEL", BOB, ["EASBOB1", "EASBOB2"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    reason_becomes(gate, "EASBOB2", "bob.roe", "ok")
    # The backup goes back in place: its change counter is lower than the gate's.
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    os.replace(backup, db)
    reason_becomes(gate, "EASJANE1", "jane.doe", BLOCKED, timeout=2)
    reason_becomes(gate, "EASBOB2", "bob.roe", "unknown_device", timeout=2)
    assert "reloading" in "".join(gate.log)


# -- in-process: a commit that lands between the follower's reads -----------------------------


class Interleaved:
    """The follower's store, with a commit slipped in after it read the credentials."""

    def __init__(self, store: Any, commit: Callable[[], None]) -> None:
        self.store = store
        self.commit: Callable[[], None] | None = commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def credentials(self, after_seq: int = 0) -> list[Any]:
        found = self.store.credentials(after_seq)
        if self.commit is not None:
            self.commit, commit = None, self.commit
            commit()
        return list(found)


def test_a_credential_committed_between_two_reads_is_not_lost(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    table, creds = DecisionTable(), CredentialCache()
    follower = Follower(ab.db, table, creds)
    follower.load()
    try:
        ab.ingest(
            device("ANN-IPHONE", "ann.lee@example.com", ["EASANN1"], [NOTES], at=wall(-1)),
            now=wall(),
        )

        def issue() -> None:
            ab("device", "credential", "issue", "BOB-PIXEL", now=wall())

        follower._store = Interleaved(follower._store, issue)
        follower.poll()  # sees Ann's phone; Bob's password lands mid-poll
        assert table.decide("EASANN1", "ann.lee") == "ok"
        follower.poll()
        (bob_pixel,) = creds.devices
        assert table.by_device.get(bob_pixel) == (BOB, "ok")
        assert table.seq == int(ab.sql("SELECT value FROM meta WHERE key = 'gate_seq'")[0][0])
    finally:
        follower._store.close()
