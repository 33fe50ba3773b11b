"""What the gate saw: every (DeviceId, user, DeviceType, protocol) it answers, written off
the request path, listed by ``device list --unseen``, and evidence of mail access only
when the user is the device's owner.

The end-to-end tests run ``appban gate serve`` as a child process on a socket (with a
short flush interval) and wait for the store to show what was sent; none depends on
how long anything takes. The buffer and the flusher are also driven directly, with a
clock of the test's choosing, for expiry and a store that is busy.
"""

from __future__ import annotations

import base64
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers_auth import basic
from helpers_gate import NOTES, TIKTOK, GateProcess, live_fleet, wait_for, wall

from appban.clock import now_micros, parse_duration, parse_time
from appban.gate.credentials import CredentialCache
from appban.gate.server import Gate
from appban.gate.sightings import Sightings, SightingsFlusher, stored_text
from appban.gate.table import DecisionTable
from appban.gate.users import UserNames
from appban.inventory.checkin import App, Checkin, Device
from appban.inventory.ingest import Ingestor
from appban.store.records import GateRow
from appban.text import identifiers_clean
from appban.workspace import Workspace
from helpers_semantics import Appban

FAST = {"APPBAN_GATE_SIGHTINGS_INTERVAL": "0.05"}
ANN = "ann.lee@example.com"
PATH = "/Microsoft-Server-ActiveSync"


def sync_uri(eas: str, user: str = "", device_type: str = "iPhone") -> str:
    query = f"Cmd=Sync&DeviceId={quote(eas, safe='')}&DeviceType={quote(device_type, safe='')}"
    return f"{PATH}?{query}" + (f"&User={quote(user, safe='')}" if user else "")


def base64_uri(eas: bytes, user: bytes, device_type: bytes) -> str:
    """MS-ASHTTP's base64 query (2.2.1.1.1.1): version, command, locale, DeviceId,
    PolicyKey, DeviceType, then the User parameter (tag 8)."""
    raw = bytes([141, 0]) + struct.pack("<H", 0x0409)
    for field in (eas, b"", device_type):
        raw += bytes([len(field)]) + field
    raw += bytes([8, len(user)]) + user
    return f"{PATH}?{base64.b64encode(raw).decode()}"


def sightings(ab: Appban) -> dict[tuple[str, str, str, str], int]:
    rows = ab.sql("SELECT eas_id, username, device_type, protocol, count FROM sightings")
    return {(r[0], r[1], r[2], r[3]): r[4] for r in rows}


def stored(ab: Appban, key: tuple[str, str, str, str], count: int = 1) -> dict[tuple[str, str, str, str], int]:
    """Wait until the store holds ``key`` with at least ``count``; every row then."""
    found, _ = wait_for(lambda: sightings(ab) if sightings(ab).get(key, 0) >= count else None, timeout=15)
    return found


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Appban, GateProcess]]:
    ab = live_fleet(tmp_path)
    with GateProcess(ab.db, env=FAST) as gate:
        yield ab, gate


# -- through a real gate ---------------------------------------------------------------------


def test_what_the_gate_answers_is_in_the_store_after_a_flush(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    assert gate.sync("EASBOB1", "bob.roe").reason == "ok"
    assert gate.nginx(sync_uri("EASSHADOW1", "carol")).reason == "unknown_device"
    assert gate.nginx(sync_uri("EASSHADOW1", "carol")).reason == "unknown_device"
    # The base64 form of the query, through Envoy's prefix and Traefik's header.
    assert gate.get("/auth/envoy" + base64_uri(b"EASB64", b"dave", b"SAMSUNGSMG991B")).status == 403
    assert gate.get("/auth/traefik", {"X-Forwarded-Uri": sync_uri("EASSHADOW1", "carol")}).status == 403
    # A mail login carries no DeviceId: its user and protocol.
    mail = gate.get("/auth/mail", {"Auth-User": "jane.doe", "Auth-Pass": "wrong", "Auth-Protocol": "imap"})
    assert mail.headers["auth-status"] == "unknown_device"
    # Unreadable requests and requests without a DeviceId name nothing to record.
    assert gate.nginx(f"{PATH}?Cmd=Sync&DeviceId=A&DeviceId=B&User=x").reason == "ambiguous_device_id"
    assert gate.nginx(f"{PATH}?Cmd=Options&User=carol").reason == "no_device_id"

    rows = stored(ab, ("EASSHADOW1", "carol", "iPhone", "activesync-query"), count=3)
    rows = stored(ab, ("", "jane.doe", "", "imap"))
    assert rows == {
        ("EASBOB1", "bob.roe", "iPhone", "activesync-query"): 1,
        ("EASSHADOW1", "carol", "iPhone", "activesync-query"): 3,
        ("EASB64", "dave", "SAMSUNGSMG991B", "activesync-query"): 1,
        ("", "jane.doe", "", "imap"): 1,
    }
    first, last = ab.sql("SELECT first_seen, last_seen FROM sightings WHERE eas_id = 'EASSHADOW1'")[0]
    assert now_micros() - 60_000_000 < first <= last <= now_micros()
    metrics = gate.metrics()
    assert metrics["appban_gate_sightings_dropped_total"] == 0
    assert metrics["appban_gate_sightings_written_total"] >= 4
    assert gate.health()["sightings"] == {"state": "ok", "pending": 0, "dropped": 0, "refused": 0}


def test_device_list_unseen_shows_device_ids_no_inventory_knows(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    gate.sync("EASBOB1", "bob.roe")
    gate.sync("EASJANE1", "jane.doe")
    gate.nginx(sync_uri("EASSHADOW1", "carol"))
    gate.nginx(sync_uri("EASSHADOW2", "", device_type="Android"))
    stored(ab, ("EASSHADOW2", "", "Android", "activesync"))
    stored(ab, ("EASSHADOW1", "carol", "iPhone", "activesync-query"))
    stored(ab, ("EASJANE1", "jane.doe", "iPhone", "activesync-query"))
    doc = ab("device", "list", "--unseen", now=wall())
    listed = {d["eas_device_id"]: d for d in doc["devices"]}
    assert set(listed) == {"EASSHADOW1", "EASSHADOW2"}
    assert doc["count"] == 2 and doc["sightings_refused"] == 0
    assert listed["EASSHADOW1"]["user"] == "carol"
    assert listed["EASSHADOW1"]["protocol"] == "activesync-query"
    assert listed["EASSHADOW1"]["count"] == 1
    assert listed["EASSHADOW2"]["user"] is None and listed["EASSHADOW2"]["device_type"] == "Android"
    assert parse_time(listed["EASSHADOW1"]["first_seen"]) <= parse_time(doc["now"])
    # A DeviceId an inventory then reports is no longer unseen.
    ab.ingest(
        {
            "source": "agent",
            "device": {"id": "CAROL-PHONE", "platform": "ios", "owner": ANN, "eas_device_ids": ["EASSHADOW1"]},
            "observed_at": wall(-1),
            "apps": [NOTES],
        },
        now=wall(),
    )
    assert [d["eas_device_id"] for d in ab("device", "list", "--unseen", now=wall())["devices"]] == ["EASSHADOW2"]
    # As of a time before it was seen, nothing was; the table form; filters refused.
    assert ab("device", "list", "--unseen", now=wall(-3600))["devices"] == []
    table = ab.run("device", "list", "--unseen", now=wall(), as_json=False)
    assert table.code == 0 and "EASSHADOW2" in table.out and "Android" in table.out and "EASBOB1" not in table.out
    refused = ab.run("device", "list", "--unseen", "--ownerless", now=wall())
    assert refused.code == 2 and "--unseen" in refused.err and "Traceback" not in refused.err


def test_a_full_buffer_drops_new_keys_counts_them_and_the_rest_is_written_at_stop(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    env = {"APPBAN_GATE_SIGHTINGS_BUFFER": "3", "APPBAN_GATE_SIGHTINGS_INTERVAL": "60"}
    with GateProcess(ab.db, env=env) as gate:
        for i in range(5):
            assert gate.nginx(sync_uri(f"EASFLOOD{i}", "mallory")).reason == "unknown_device"
        gate.nginx(sync_uri("EASFLOOD0", "mallory"))  # a held key still counts
        metrics = gate.metrics()
        assert metrics["appban_gate_sightings_pending"] == 3
        assert metrics["appban_gate_sightings_dropped_total"] == 2
        detail = gate.health()["sightings"]
        assert (detail["pending"], detail["dropped"]) == (3, 2)
        assert gate.health()["status"] == "ok"
        assert sightings(ab) == {}  # nothing flushed yet: the interval is a minute
    # SIGTERM: the gate writes what it holds before it exits.
    assert gate.proc.returncode == 0
    assert sightings(ab) == {
        ("EASFLOOD0", "mallory", "iPhone", "activesync-query"): 2,
        ("EASFLOOD1", "mallory", "iPhone", "activesync-query"): 1,
        ("EASFLOOD2", "mallory", "iPhone", "activesync-query"): 1,
    }


def test_past_the_store_cap_new_keys_are_refused_and_counted(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    with GateProcess(ab.db, env={**FAST, "APPBAN_SIGHTINGS_MAX_ROWS": "2"}) as gate:
        for i in range(4):
            gate.nginx(sync_uri(f"EASCAP{i}", "mallory"))
        wait_for(lambda: gate.metrics()["appban_gate_sightings_refused_total"] == 2, timeout=15)
        assert len(sightings(ab)) == 2
        # Known keys are still counted.
        gate.nginx(sync_uri(next(k[0] for k in sightings(ab)), "mallory"))
        wait_for(lambda: sum(sightings(ab).values()) == 3, timeout=15)
        assert gate.health()["sightings"]["refused"] == 2
    doc = ab("device", "list", "--unseen", now=wall())
    assert (doc["sightings_held"], doc["sightings_refused"], doc["count"]) == (2, 2, 2)


def test_hostile_device_ids_and_users_are_stored_so_they_can_be_shown(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    script = "<script>alert(1)</script>"
    assert gate.nginx(sync_uri(script, "carol", device_type="<b>x</b>")).reason == "unknown_device"
    assert gate.nginx(sync_uri("ÉAS1", "carol")).reason == "unknown_device"
    assert gate.nginx(sync_uri("100%SURE", "carol")).reason == "unknown_device"
    # Controls in a DeviceId, or 10 KB of one: unreadable (no_device_id), not recorded.
    assert gate.nginx(sync_uri("EAS\x01X", "carol")).reason == "no_device_id"
    assert gate.nginx(sync_uri("A" * 10_240, "carol")).reason == "no_device_id"
    # Users from Authorization: a control, markup, and 300 characters.
    for user in (b"ev\x01il", b"<i>x</i>", b"u" * 300):
        answer = gate.nginx(sync_uri("EASHOSTILE", ""), Authorization=basic(user + b":pw").decode())
        assert answer.reason == "unknown_device"
    rows = stored(ab, ("EASHOSTILE", "u" * 256, "iPhone", "activesync"))
    rows = stored(ab, ("%3Cscript%3Ealert(1)%3C/script%3E", "carol", "%3Cb%3Ex%3C/b%3E", "activesync-query"))
    assert ("ÉAS1", "carol", "iPhone", "activesync-query") in rows
    assert ("100%25SURE", "carol", "iPhone", "activesync-query") in rows
    assert ("EASHOSTILE", "ev%01il", "iPhone", "activesync") in rows
    assert ("EASHOSTILE", "%3Ci%3Ex%3C/i%3E", "iPhone", "activesync") in rows
    assert not any("EAS\x01" in k[0] or k[0].startswith("AAAA") for k in rows)
    for key in rows:
        for text in key:
            assert len(text) <= 256 and identifiers_clean(text), key
    table = ab.run("device", "list", "--unseen", now=wall(), as_json=False)
    assert table.code == 0 and "%3Cscript%3E" in table.out and "<" not in table.out
    assert gate.health()["status"] == "ok"
    assert "Traceback" not in "".join(gate.log)


def jamf_phone(ab: Appban, eas: str, apps: list[dict[str, str]]) -> None:
    """Ann's phone as Jamf reports it: its ActiveSync DeviceId an identifier, not a sign of mail."""
    now = now_micros()
    ws = Workspace(ab.db, now, create=False)
    try:
        device = Device(id="jamf-ann", platform="ios", owner=ANN, identifiers=[("eas", eas)])
        checkin = Checkin("jamf", device, now - 1_000_000, [App(**a) for a in apps], [a["id"] for a in apps])
        with ws.writing():
            Ingestor(ws.store, ws.evaluator, keep_full=False).ingest(checkin, ws.now)
    finally:
        ws.close()


def test_a_sighting_by_the_owner_makes_a_device_read_mail_by_anyone_else_not(
    live: tuple[Appban, GateProcess],
) -> None:
    ab, gate = live
    jamf_phone(ab, "EASANNJAMF", [TIKTOK])
    assert ab.state("jamf-ann", now=wall()) == "out_of_scope"  # nothing says it reads mail
    # Someone else's user with Ann's DeviceId proves nothing.
    gate.nginx(sync_uri("EASANNJAMF", ""), Authorization=basic(b"bob.roe:pw").decode())
    stored(ab, ("EASANNJAMF", "bob.roe", "iPhone", "activesync"))
    # Nor does Ann's name in the query alone, without credentials: anyone can write it.
    gate.nginx(sync_uri("EASANNJAMF", "ann.lee"))
    stored(ab, ("EASANNJAMF", "ann.lee", "iPhone", "activesync-query"))
    assert ab.sql("SELECT mail_seen FROM devices WHERE source_id = 'jamf-ann'") == [(None,)]
    assert ab.state("jamf-ann", now=wall()) == "out_of_scope"
    assert gate.metrics()["appban_gate_sightings_mail_seen_total"] == 0
    # A DeviceId a device names is not unseen, whoever used it.
    assert ab("device", "list", "--unseen", now=wall())["devices"] == []
    # Ann, as the gate reads her credentials (a bare name completes to her address): evidence.
    gate.nginx(sync_uri("EASANNJAMF", ""), Authorization=basic(b"ann.lee:pw").decode())
    wait_for(lambda: ab.sql("SELECT mail_seen FROM devices WHERE source_id = 'jamf-ann'") != [(None,)], timeout=15)
    shown = ab.show("jamf-ann", now=wall())
    assert shown["mail_access"] is True
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"
    assert shown["decision"] == "deny"
    causes = ab.sql(
        "SELECT new_state, cause FROM state_history WHERE device_id = (SELECT id FROM devices "
        "WHERE source_id = 'jamf-ann') ORDER BY id"
    )
    assert causes[-1] == ("blocked", "mail_seen")
    assert ab.sql("SELECT count(*) FROM audit_log WHERE action = 'mail_seen'") == [(1,)]
    assert gate.metrics()["appban_gate_sightings_mail_seen_total"] == 1
    assert ab("audit", "verify", now=wall())["ok"] is True
    # A later inventory from Jamf says nothing of mail: the device still reads it.
    jamf_phone(ab, "EASANNJAMF", [TIKTOK, NOTES])
    assert ab.state("jamf-ann", now=wall()) == "blocked"


# -- the buffer and the flusher, driven directly ----------------------------------------------


def test_the_buffer_coalesces_repeats_and_drops_new_keys_past_its_capacity() -> None:
    buffer = Sightings(2)
    for eas in ("A", "B", "A", "C", "A", "D"):
        buffer.add(eas, "ann", "iPhone", "activesync")
    assert len(buffer) == 2 and buffer.dropped == 2
    assert buffer.take() == {("A", "ann", "iPhone", "activesync"): 3, ("B", "ann", "iPhone", "activesync"): 1}
    assert len(buffer) == 0
    buffer.add("C", "x" * 10_000, "", "activesync")
    assert [len(k[1]) for k in buffer.take()] == [256]  # no address that long receives mail
    off = Sightings(0)
    off.add("A", "ann", "iPhone", "activesync")
    assert len(off) == 0 and off.dropped == 0


def test_the_gate_adds_the_user_it_trusts_and_mail_logins_by_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    table = DecisionTable()
    table.apply([GateRow(1, "ann@example.com", ("EAS1",), "allow", "ok", 1)], track=False)
    buffer = Sightings(100)
    monkeypatch.setenv("APPBAN_QUERY_USER", "deny")
    gate = Gate(table, CredentialCache(), None, sightings=buffer)
    assert gate.activesync("nginx", sync_uri("EAS1", "ann"), {}) == gate._answer("nginx", "user_unverified")
    gate.activesync("nginx", sync_uri("EAS1", "ann"), {b"authorization": basic(b"ann@example.com:pw")})
    monkeypatch.setenv("APPBAN_QUERY_USER", "allow")
    trusting = Gate(table, CredentialCache(), None, sightings=buffer)
    trusting.activesync("nginx", sync_uri("EAS1", "ann"), {})  # the query alone names her
    gate.mail_quick({b"auth-user": b"ann", b"auth-pass": b"pw", b"auth-protocol": b"pop3"})
    gate.mail_quick({b"auth-user": b"ann", b"auth-pass": b"pw", b"auth-protocol": b"gopher"})
    gate.mail_quick({b"auth-pass": b"pw"})  # no user: nothing to record
    assert buffer.take() == {
        ("EAS1", "", "iPhone", "activesync"): 1,  # the query's User= is not trusted here
        ("EAS1", "ann@example.com", "iPhone", "activesync"): 1,
        ("EAS1", "ann", "iPhone", "activesync-query"): 1,  # listed, never evidence
        ("", "ann", "", "pop3"): 1,
        ("", "ann", "", "other"): 1,
    }


@pytest.mark.parametrize(
    ("text", "limit", "kept"),
    [
        ("V2UVOT7J157L7C1FLLSAABSOV4", 256, "V2UVOT7J157L7C1FLLSAABSOV4"),
        ("jane.doe@example.com", 256, "jane.doe@example.com"),
        ("Pixel 4a", 128, "Pixel 4a"),
        ("ÉAS", 256, "ÉAS"),
        ("<script>", 256, "%3Cscript%3E"),
        ("a%b", 256, "a%25b"),
        ("ev\x01il", 256, "ev%01il"),
        ("zero\u200bwidth", 256, "zero%E2%80%8Bwidth"),
        ("x" * 300, 256, "x" * 256),
        ("<bb" + "\x01" * 200, 256, "%3Cbb" + "%01" * 83),  # cut before an escape, not into one
    ],
)
def test_stored_text(text: str, limit: int, kept: str) -> None:
    assert stored_text(text, limit) == kept
    assert identifiers_clean(stored_text(text, limit))


def flusher_db(tmp_path: Path) -> Appban:
    ab = Appban(tmp_path)
    ab.init(now="2020-07-10T00:00:00Z")
    return ab


def test_a_busy_store_keeps_the_batch_for_the_next_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ab = flusher_db(tmp_path)
    monkeypatch.setenv("APPBAN_BUSY_TIMEOUT", "0.05")
    at = parse_time("2020-07-10T12:00:00Z")
    buffer = Sightings(10)
    flusher = SightingsFlusher(ab.db, buffer, UserNames(), clock=lambda: at, interval=1.0)
    buffer.add("EAS1", "ann", "iPhone", "activesync")
    other = sqlite3.connect(ab.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the store
        flusher.flush()
        assert (buffer.state, buffer.failures["busy"]) == ("waiting_for_lock", 1)
        assert buffer.detail()["state"] == "waiting_for_lock"
        buffer.add("EAS1", "ann", "iPhone", "activesync")
        buffer.add("EAS2", "ann", "iPhone", "activesync")
        other.execute("COMMIT")
        flusher.flush()
    finally:
        other.close()
        flusher._close()
    assert buffer.state == "ok" and buffer.written == 2
    assert sightings(ab) == {("EAS1", "ann", "iPhone", "activesync"): 2, ("EAS2", "ann", "iPhone", "activesync"): 1}


def test_rows_not_seen_for_the_max_age_expire(tmp_path: Path) -> None:
    ab = flusher_db(tmp_path)
    clock = [parse_time("2020-07-10T12:00:00Z")]
    buffer = Sightings(10)
    flusher = SightingsFlusher(
        ab.db, buffer, UserNames(), clock=lambda: clock[0], interval=1.0, max_age=parse_duration("30d")
    )
    try:
        buffer.add("OLD", "ann", "iPhone", "activesync")
        buffer.add("KEPT", "ann", "iPhone", "activesync")
        flusher.flush()
        clock[0] += parse_duration("20d")
        buffer.add("KEPT", "ann", "iPhone", "activesync")
        flusher.flush()
        assert len(sightings(ab)) == 2
        clock[0] += parse_duration("10d") + 1  # OLD was last seen 30 days and a moment ago
        flusher.flush()  # nothing new seen: the flush only expires
    finally:
        flusher._close()
    assert sightings(ab) == {("KEPT", "ann", "iPhone", "activesync"): 2}
    assert ab.sql("SELECT value FROM meta WHERE key = 'sightings_rows'") == [("1",)]


def test_rows_that_expire_make_room_under_the_cap_in_the_same_flush(tmp_path: Path) -> None:
    ab = flusher_db(tmp_path)
    clock = [parse_time("2020-07-10T12:00:00Z")]
    buffer = Sightings(10)
    flusher = SightingsFlusher(
        ab.db, buffer, UserNames(), clock=lambda: clock[0], interval=1.0, max_rows=1, max_age=parse_duration("30d")
    )
    try:
        buffer.add("OLD", "ann", "iPhone", "activesync")
        flusher.flush()
        clock[0] += parse_duration("31d")  # OLD expires in the flush that brings NEW
        buffer.add("NEW", "ann", "iPhone", "activesync")
        flusher.flush()
    finally:
        flusher._close()
    assert sightings(ab) == {("NEW", "ann", "iPhone", "activesync"): 1}
    assert buffer.refused == 0


def test_a_gate_with_nothing_seen_writes_nothing(tmp_path: Path) -> None:
    ab = flusher_db(tmp_path)
    watcher = sqlite3.connect(ab.db, isolation_level=None)
    buffer = Sightings(10)
    flusher = SightingsFlusher(ab.db, buffer, UserNames(), clock=lambda: parse_time("2020-07-10T12:00:00Z"))
    try:
        version = watcher.execute("PRAGMA data_version").fetchone()
        flusher.flush()
        flusher.flush()
        unchanged = watcher.execute("PRAGMA data_version").fetchone() == version
        buffer.add("EAS1", "ann", "iPhone", "activesync")
        flusher.flush()
        changed = watcher.execute("PRAGMA data_version").fetchone() != version
    finally:
        watcher.close()
        flusher._close()
    # data_version changes when another connection commits: the first two flushes did not.
    assert unchanged and changed
    assert buffer.written == 1
