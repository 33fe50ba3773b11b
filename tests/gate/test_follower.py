"""The running gate follows the store: changes in a second, deadlines by itself, outages survived.

Each test builds a database on the real clock (the clock a running gate uses), starts
``appban gate serve`` as a child process, changes the store through the CLI and times
how long the gate takes to answer differently. Nobody runs ``appban evaluate``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_gate import NOTES, PEOPLE, TIKTOK, GateProcess, device, live_fleet, wait_for, wall

from appban.clock import now_micros
from appban.gate.credentials import CredentialCache
from appban.gate.follower import Evaluation, Follower
from appban.gate.server import Gate
from appban.gate.table import DecisionTable
from appban.inventory.importer import import_inventory
from appban.workspace import Workspace
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
    wait_for(lambda: gate.health()["table_age_seconds"] >= 0.3, timeout=5)
    assert gate.metrics()["appban_gate_table_age_seconds"] >= 0.3
    # An outage, told apart from a lock and from a bug; the evaluation sees it too.
    wait_for(lambda: gate.health()["evaluation"] == "store_unreachable", timeout=5)
    metrics = gate.metrics()
    assert metrics['appban_gate_store_poll_failures_total{kind="unavailable"}'] > 0
    assert metrics['appban_gate_store_poll_failures_total{kind="error"}'] == 0
    assert metrics['appban_gate_store_poll_failures_total{kind="busy"}'] == 0
    assert metrics['appban_gate_evaluation_state{state="store_unreachable"}'] == 1
    assert gate.health()["following"] == "ok"
    assert not db.exists(), "the gate must not create a new, empty database"

    bring_back(moved, db)
    _, took = wait_for(lambda: gate.health()["status"] == "ok", timeout=3)
    assert took < 2, f"recovery took {took:.2f}s"
    assert gate.metrics()["appban_gate_store_up"] == 1
    assert gate.health()["table_age_seconds"] < 1
    wait_for(lambda: gate.health()["evaluation"] == "ok", timeout=5)
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


def test_a_copy_that_went_further_along_another_path_is_reloaded(live: tuple[Appban, GateProcess]) -> None:
    """The probe: a copy of the live database (same identity) took more changes than the
    live one after the copy was made, then was put back; the gate, whose counter was
    behind the copy's, followed it incrementally and kept the live database's answers."""
    import sqlite3

    ab, gate = live
    db = Path(ab.db)
    staging = Appban(db.parent)
    staging.db = str(db.parent / "staging.db")
    with sqlite3.connect(db) as src, sqlite3.connect(staging.db) as dst:
        src.backup(dst)  # Jane blocked, Bob clean, in both
    # Live: Jane cleans her phone, Bob installs TikTok.
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES])
    checkin(ab, "BOB-PIXEL", BOB, ["EASBOB1"], [NOTES, TIKTOK])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    reason_becomes(gate, "EASBOB1", "bob.roe", BLOCKED)
    # Staging takes more changes than live did (its counter passes the gate's), none of
    # them to Jane's or Bob's phones.
    for i in range(6):
        checkin(staging, f"ANN-{i}", "ann.lee@example.com", [f"EASANN{i}"], [NOTES])
    with sqlite3.connect(staging.db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # put back in place through SQLite's backup API
    # The gate answers from the copy: Jane blocked again, Bob clean.
    reason_becomes(gate, "EASJANE1", "jane.doe", BLOCKED, timeout=2)
    reason_becomes(gate, "EASBOB1", "bob.roe", "ok", timeout=2)
    assert gate.sync("EASANN5", "ann.lee").reason == "ok"
    assert "history is not the one followed" in "".join(gate.log)


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


# -- another writer holds the lock; another database is put in place -------------------------


def test_the_table_follows_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    # Jane's deadline passed a minute ago and nobody applied it: the gate's own
    # evaluation has work to do, and it needs the write lock, which this test holds
    # (as a long import would) before the gate even starts.
    ab = live_fleet(tmp_path, evaluate=False)
    ann = ab.file(".json", json.dumps(device("ANN-IPHONE", "ann.lee@example.com", ["EASANN1"], [NOTES], at=wall(-1))))
    ws = Workspace(ab.db, now_micros(), create=False)
    gate: GateProcess | None = None
    try:
        with ws.writing():
            import_inventory(ws, "appban", [ann])  # committed with this transaction
            gate = GateProcess(ab.db)
            wait_for(lambda: gate is not None and gate.health().get("evaluation") == "waiting_for_lock", timeout=10)
            health = gate.health()
            assert (health["status"], health["store"]) == ("ok", "up"), health
            assert gate.sync("EASJANE1", "jane.doe").reason == "ok"  # not blocked: the evaluation waits
        # Ann's phone is committed, and the lock taken again at once: the table still
        # follows what was committed, while the evaluation keeps waiting.
        with ws.store.transaction():
            reason_becomes(gate, "EASANN1", "ann.lee", "ok", timeout=1.0)
            health = gate.health()
            assert (health["status"], health["store"], health["following"]) == ("ok", "up", "ok"), health
            assert gate.metrics()["appban_gate_store_up"] == 1
        # Released: the evaluation catches up by itself.
        reason_becomes(gate, "EASJANE1", "jane.doe", BLOCKED, timeout=3.0)
        wait_for(lambda: gate is not None and gate.health()["evaluation"] == "ok", timeout=5)
        metrics = gate.metrics()
        assert metrics['appban_gate_evaluation_runs_total{result="waiting_for_lock"}'] >= 1
        assert metrics['appban_gate_evaluation_runs_total{result="failing"}'] == 0
        assert metrics['appban_gate_store_poll_failures_total{kind="unavailable"}'] == 0
        assert metrics["appban_gate_evaluation_changes_total"] >= 1
        log = "".join(gate.log)
        assert "waits for another writer's lock" in log
        assert "unreachable" not in log and "Traceback" not in log
    finally:
        if gate is not None:
            gate.stop()
        ws.close()


def test_a_different_database_put_in_place_is_loaded_whole(live: tuple[Appban, GateProcess], tmp_path: Path) -> None:
    ab, gate = live
    db = Path(ab.db)
    # Another install: Jane's phone is clean there, Ann has one, Bob has none; and it
    # has seen more changes, so its change counter is ahead of the one the gate knows.
    other = Appban(tmp_path / "other")
    other.root.mkdir()
    other.init(now=wall(-7200))
    other.people(PEOPLE, now=wall(-7200))
    fillers = [device(f"FILLER-{i}", "ann.lee@example.com", [f"EASFILL{i}"], [NOTES], at=wall(-60)) for i in range(20)]
    other.ingest(
        device("JANE-IPHONE", JANE, ["EASJANE1"], [NOTES], at=wall(-60)),
        device("ANN-IPHONE", "ann.lee@example.com", ["EASANN1"], [NOTES], at=wall(-60)),
        *fillers,
        now=wall(-30),
    )
    mine, theirs = (int(a.sql("SELECT value FROM meta WHERE key = 'gate_seq'")[0][0]) for a in (ab, other))
    assert theirs > mine
    assert gate.sync("EASBOB1", "bob.roe").reason == "ok"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    bring_back(Path(other.db), db)  # with its log: what it holds may not be checkpointed yet
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok", timeout=2)
    # Nothing of the old database survives: Bob's phone is not in this one.
    reason_becomes(gate, "EASBOB1", "bob.roe", "unknown_device", timeout=2)
    assert gate.sync("EASANN1", "ann.lee").reason == "ok"
    assert gate.health()["table_devices"] == 22
    assert gate.metrics()["appban_gate_table_reloads_total"] == 1
    assert "a different database is in place" in "".join(gate.log)


# -- in-process: a bug, an outage and a lock, told apart ----------------------------------------


class Broken:
    """The follower's store, with every poll failing as a bug would."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def gate_seq(self) -> int:
        raise TypeError("a bug in following")


def test_a_bug_while_following_is_not_an_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ab = live_fleet(tmp_path)
    table = DecisionTable()
    follower = Follower(ab.db, table, CredentialCache(), evaluate_every=None)
    follower.load()
    assert follower._store is not None
    follower._store = Broken(follower._store)
    with caplog.at_level(logging.ERROR, logger="appban.gate"):
        follower._step()
    assert (follower.store_up, follower.following) == (True, "failing")
    assert follower.failures == {"busy": 0, "unavailable": 0, "error": 1}
    assert any(r.exc_info and r.exc_info[0] is TypeError for r in caplog.records)
    doc = json.loads(Gate(table, CredentialCache(), follower).health().split(b"\r\n\r\n", 1)[1])
    assert (doc["status"], doc["store"], doc["following"], doc["evaluation"]) == ("degraded", "up", "failing", "off")
    follower._step()  # a new connection: following again
    assert (follower.store_up, follower.following) == (True, "ok")
    follower.stop()


class FailingEvaluation(Evaluation):
    def _evaluate(self) -> int:
        raise KeyError("a bug in evaluating")


def test_evaluation_tells_a_lock_an_outage_and_a_bug_apart(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path, evaluate=False)  # Jane's deadline is due
    evaluation = Evaluation(ab.db, clock=now_micros, interval=0.1)
    other = sqlite3.connect(ab.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer, for longer than the evaluation waits
        evaluation.run_once()
        assert (evaluation.state, evaluation.runs["waiting_for_lock"]) == ("waiting_for_lock", 1)
        other.execute("ROLLBACK")
        evaluation.run_once()
        assert evaluation.state == "ok" and evaluation.changes >= 1
        assert ab.show("JANE-IPHONE", now=wall())["decision"] == "deny"
    finally:
        other.close()
        evaluation._close()

    moved = take_away(Path(ab.db))
    evaluation.run_once()
    assert evaluation.state == "store_unreachable" and evaluation.error
    bring_back(moved, Path(ab.db))
    evaluation.run_once()
    assert evaluation.state == "ok"
    evaluation._close()

    broken = FailingEvaluation(ab.db, clock=now_micros, interval=0.1)
    broken.run_once()
    assert broken.state == "failing" and "KeyError" in broken.error
    assert broken.runs == {"ok": 0, "waiting_for_lock": 0, "store_unreachable": 0, "failing": 1}


def test_a_bare_name_follows_who_else_has_it(live: tuple[Appban, GateProcess]) -> None:
    """Without mail domains, ``jane.doe`` names Jane only while no one else the gate knows
    has that local part: the gate learns of a namesake, and of one leaving, from the store."""
    ab, gate = live
    checkin(ab, "JANE-IPHONE", JANE, ["EASJANE1"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    # Another jane.doe, at another domain, gets a phone: the bare name names no one.
    checkin(ab, "OTHER-JANE", "jane.doe@other.example", ["EASOTHER1"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "user_mismatch")
    assert gate.sync("EASOTHER1", "jane.doe").reason == "user_mismatch"
    assert gate.sync("EASOTHER1", "jane.doe@other.example").reason == "ok"
    # Her phone goes to Bob: Jane is the only jane.doe again.
    checkin(ab, "OTHER-JANE", BOB, ["EASOTHER1"], [NOTES])
    reason_becomes(gate, "EASJANE1", "jane.doe", "ok")
    assert gate.sync("EASOTHER1", "bob.roe").reason == "ok"


def test_a_gate_started_on_shared_names_knows_them(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    checkin(ab, "OTHER-JANE", "jane.doe@other.example", ["EASOTHER1"], [NOTES])
    with GateProcess(ab.db) as gate:
        assert gate.sync("EASBOB1", "bob.roe").reason == "ok"
        assert gate.sync("EASOTHER1", "jane.doe").reason == "user_mismatch"
        assert gate.sync("EASOTHER1", "jane.doe@other.example").reason == "ok"


def test_linked_and_unlinked_records_reach_the_gate_within_a_second(live: tuple[Appban, GateProcess]) -> None:
    """A mail server's record of a phone (its DeviceId, no apps) is joined by the MDM's
    record of it (apps, the same DeviceId): the gate blocks that DeviceId; unlinking
    the pair gives the mail server's record its own answer again."""
    ab, gate = live
    mail = device("EASANN7", "ann.lee@example.com", ["EASANN7"], [], at=wall(-1))
    mail["source"] = "mail"
    mail["device"]["inventory_scope"] = "managed"
    ab.ingest(mail, now=wall())
    reason_becomes(gate, "EASANN7", "ann.lee", "ok")  # unverified, and the policy allows that
    tables = gate.health()["table_devices"]
    checkin(ab, "ANN-IPHONE", "ann.lee@example.com", ["EASANN7"], [TIKTOK])
    reason_becomes(gate, "EASANN7", "ann.lee", BLOCKED)
    assert gate.health()["table_devices"] == tables  # one phone, one entry
    [record] = [r["record"] for r in ab.show("EASANN7", wall())["records"] if r["source"] == "mail"]
    ab("device", "unlink", record, now=wall())
    # Both records hold the DeviceId again, each its own device: the gate answers as
    # `gate decide` does from the store.
    _decision, expected = ab.decide("EASANN7", "ann.lee", wall())
    reason_becomes(gate, "EASANN7", "ann.lee", expected)
    assert len(ab("device", "list", now=wall())["devices"]) == 4
    assert "Traceback" not in "".join(gate.log)
