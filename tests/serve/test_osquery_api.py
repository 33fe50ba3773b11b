"""osquery's remote API on a real socket: an osquery-shaped client enrolls, gets its
config, posts snapshot and differential logs (and a batch again, as osquery resends
after a failed send), and the device's state and the gate's decision follow.

The client (helpers_osquery) sends what osquery's tls plugins send.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_osquery import (
    EAS,
    JANE,
    OSQUERY,
    SAFARI,
    SERIAL,
    TIKTOK,
    UUID,
    Agent,
    batch,
    event,
    snapshot,
    statuses,
)
from helpers_serve import Database, ThreadServer, new_database

from helpers_cli import run

POLICY = """\
id: tiktok-mac
title: TikTok is not permitted on Macs that read company email
reason: Security risks
apps: ["macos:com.zhiliaoapp.musically"]
scope:
  platforms: [macos]
  mail_access: required
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""
# Jane's Mac as Intune reports it: its ActiveSync DeviceId (Outlook reads her mail) and
# the serial number that links it to the osquery agent's records.
INTUNE = [
    {
        "id": "9f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        "deviceName": "Jane's MacBook",
        "managedDeviceOwnerType": "company",
        "lastSyncDateTime": "2020-07-10T14:00:00Z",
        "operatingSystem": "macOS",
        "osVersion": "10.15.5",
        "easActivated": True,
        "easDeviceId": EAS,
        "emailAddress": JANE,
        "userPrincipalName": JANE,
        "model": "MacBookPro16,1",
        "manufacturer": "Apple",
        "serialNumber": SERIAL,
        "imei": "",
        "meid": "",
    }
]


@pytest.fixture
def fleet(tmp_path: Path) -> Database:
    """A database with Jane, a policy banning TikTok on Macs, Jane's Mac from Intune,
    and an enroll secret of source osquery."""
    database = new_database(tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(f"email,name,org_unit,groups,timezone\n{JANE},Jane Doe,Sales,staff,Europe/London\n")
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "intune.json").write_text(json.dumps(INTUNE))
    for args in (
        ("people", "import", str(people)),
        ("policy", "apply", str(tmp_path / "policy.yaml")),
        ("import", "intune", str(tmp_path / "intune.json")),
    ):
        done = run("--db", database.path, *args)
        assert done.code == 0, done.err
    return database


@pytest.fixture
def secret(fleet: Database) -> str:
    return str(fleet.appban("source", "osquery-secret", "create")["token"])


@pytest.fixture
def server(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadServer]:
    monkeypatch.setenv("APPBAN_OSQUERY_INTERVAL", "120")
    with ThreadServer(fleet.path) as running:
        yield running


@pytest.fixture
def agent(server: ThreadServer) -> Iterator[Agent]:
    client = Agent(server.url)
    yield client
    client.close()


def decide(fleet: Database) -> str:
    doc = fleet.appban("gate", "decide", "--eas-device-id", EAS, "--user", JANE)
    return f"{doc['decision']}:{doc['reason']}"


def state(fleet: Database) -> str:
    return str(fleet.appban("device", "show", f"intune:{INTUNE[0]['id']}")["policies"]["tiktok-mac"]["state"])


def test_an_agent_enrolls_gets_its_config_and_its_logs_decide_the_gate(
    fleet: Database, secret: str, agent: Agent
) -> None:
    enrolled = agent.enroll(secret)
    assert enrolled.status_code == 200
    assert enrolled.json()["node_invalid"] is False and agent.node_key.startswith("appban-node-")

    config = agent.post("/config", {})
    assert config.status_code == 200 and config.json()["node_invalid"] is False
    schedule = config.json()["schedule"]
    # A Mac: its apps (and Chrome's extensions), snapshots, at the interval the setting says.
    assert set(schedule) == {"appban_apps", "appban_chrome_extensions"}
    assert schedule["appban_apps"] == {
        "query": schedule["appban_apps"]["query"],
        "interval": 120,
        "platform": "darwin",
        "snapshot": True,
    }
    assert "FROM apps" in schedule["appban_apps"]["query"]
    assert decide(fleet) == "allow:ok"  # Intune lists no apps: nothing is known yet

    now = int(time.time())
    # The scheduled snapshot finds TikTok (gzip, as --logger_tls_compress sends it).
    assert statuses(agent.log(snapshot("appban_apps", now - 600, [SAFARI, TIKTOK]), compress=True)) == [(0, "applied")]
    assert state(fleet) == "blocked"
    assert decide(fleet) == "deny:blocked:tiktok-mac"

    # An admin's own pack logs differential results too (osquery's default event format,
    # then the batch format): the rows of run 0, logged one an entry, add to its record.
    pack = "pack_inventory_apps"
    base = [
        event(pack, now - 500, "added", SAFARI, epoch=7, counter=0),
        event(pack, now - 500, "added", TIKTOK, epoch=7, counter=0),
    ]
    assert statuses(agent.log(*base)) == [(0, "applied")]
    # TikTok is removed: the next snapshot no longer lists it, and the pack's run says so.
    gone = batch(pack, now - 300, added=[], removed=[TIKTOK], epoch=7, counter=1)
    assert statuses(agent.log(snapshot("appban_apps", now - 300, [SAFARI]), gone)) == [(0, "applied"), (1, "applied")]
    assert state(fleet) == "compliant"
    assert decide(fleet) == "allow:ok"

    # The send failed on the agent's side: it posts the whole buffered batch again, with a
    # new entry after it. What was seen is ignored, the new entry applied, all in a 200.
    back = event(pack, now - 100, "added", TIKTOK, epoch=7, counter=2)
    again = agent.log(*base, snapshot("appban_apps", now - 300, [SAFARI]), gone, back)
    assert statuses(again) == [(0, "ignored"), (2, "ignored"), (3, "ignored"), (4, "applied")]
    assert decide(fleet) == "deny:blocked:tiktok-mac"
    # And the same batch a third time changes nothing.
    assert {s for _, s in statuses(agent.log(*base, gone, back))} == {"ignored"}
    assert decide(fleet) == "deny:blocked:tiktok-mac"

    # Status logs are counted, not kept.
    status = agent.post("/log", {"log_type": "status", "data": [{"severity": "0", "message": "osqueryd started"}]})
    assert status.status_code == 200 and status.json()["status_logs"] == 1


def test_the_node_key_decides_the_host(fleet: Database, secret: str, server: ThreadServer) -> None:
    jane, bob = Agent(server.url, "jane-mbp.local"), Agent(server.url, "bob-mbp.local")
    try:
        jane.enroll(secret)
        bob.enroll(secret, serial="C02BOB000001", uuid="11111111-2222-3333-4444-555555555555")
        now = int(time.time())
        # Bob's agent claims to be Jane's Mac, in the entry and in a decoration.
        forged = snapshot("appban_apps", now - 60, [TIKTOK])
        forged["hostIdentifier"] = "jane-mbp.local"
        forged["decorations"] = {"hostname": "jane-mbp.local", "hardware_serial": SERIAL, "email": JANE}
        answer = bob.log(forged)
        assert statuses(answer) == [(0, "applied")]
        assert answer.json()["results"][0]["device"] == "bob-mbp.local/appban_apps"
        record = fleet.appban("device", "show", "bob-mbp.local/appban_apps")
        assert record["owner"] is None  # the body's decorations are not the host's facts
        serials = [i for r in record["records"] for i in r["identifiers"] if "serial" in i]
        assert serials == ["serial:C02BOB000001"]
        assert run("--db", fleet.path, "device", "show", "jane-mbp.local/appban_apps").code == 2
        assert decide(fleet) == "allow:ok"
    finally:
        jane.close()
        bob.close()


def test_a_bad_or_revoked_enroll_secret_is_node_invalid(fleet: Database, secret: str, agent: Agent) -> None:
    for wrong in ("", "appban-enroll-not-a-secret", secret + "x", fleet.token):
        answer = agent.enroll(wrong)
        assert answer.status_code == 401
        assert answer.json() == {"node_invalid": True}
    fleet.appban("source", "osquery-secret", "revoke")
    assert agent.enroll(secret).json() == {"node_invalid": True}
    assert fleet.appban("source", "osquery-node", "list")["nodes"] == []


def test_a_revoked_node_key_is_node_invalid_and_the_agent_enrolls_again(
    fleet: Database, secret: str, agent: Agent
) -> None:
    agent.enroll(secret)
    old = agent.node_key
    (node,) = fleet.appban("source", "osquery-node", "list")["nodes"]
    assert node["host"] == "jane-mbp.local" and node["serial"] == SERIAL and node["platform"] == "darwin"
    revoked = fleet.appban("source", "osquery-node", "revoke", "jane-mbp.local")
    assert revoked["revoked"] == [node["id"]]
    now = int(time.time())
    for endpoint, body in (
        ("/config", {}),
        ("/log", {"log_type": "result", "data": [snapshot("appban_apps", now, [TIKTOK])]}),
        ("/distributed/read", {}),
        ("/distributed/write", {"queries": {}, "statuses": {}}),
    ):
        answer = agent.post(endpoint, body)
        assert answer.status_code == 401, endpoint
        assert answer.json() == {"node_invalid": True}, endpoint
    assert run("--db", fleet.path, "device", "show", "jane-mbp.local/appban_apps").code == 2  # nothing written
    # osquery drops its key and enrolls again: a new key, which works.
    assert agent.enroll(secret).status_code == 200 and agent.node_key != old
    assert agent.post("/config", {}).status_code == 200
    # Enrolling once more replaces that key too: one live key per host.
    first = agent.node_key
    agent.enroll(secret)
    agent.node_key, second = first, agent.node_key
    assert agent.post("/config", {}).json() == {"node_invalid": True}
    agent.node_key = second
    assert agent.post("/config", {}).status_code == 200
    listed = fleet.appban("source", "osquery-node", "list", "--revoked")["nodes"]
    assert [n["revoked_at"] is None for n in listed] == [False, False, True]


def test_only_what_links_is_kept_of_a_host(fleet: Database, secret: str, server: ThreadServer) -> None:
    """Of host_details appban keeps the serial number, the platform and a Mac's hardware
    UUID (its MDM's UDID): not the hostname, nor another machine's UUID, which link nothing."""
    mac, pc = Agent(server.url, "mac-host"), Agent(server.url, "pc-host")
    try:
        mac.enroll(secret)
        pc.enroll(secret, platform="windows", serial="PF1WIN01", uuid="7D0E4A1B-0000-0000-0000-000000000001")
    finally:
        mac.close()
        pc.close()
    with sqlite3.connect(fleet.path) as db:
        rows = db.execute("SELECT host, hostname, serial, uuid, platform FROM osquery_nodes ORDER BY host").fetchall()
    assert rows == [
        ("mac-host", None, SERIAL, UUID, "darwin"),
        ("pc-host", None, "PF1WIN01", None, "windows"),
    ]
    listed = fleet.appban("source", "osquery-node", "list")["nodes"]
    assert all("hostname" not in n for n in listed)


def test_a_key_only_in_the_header_or_only_in_the_body_is_read(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    key, agent.node_key = agent.node_key, ""
    header = agent.http.post(OSQUERY + "/config", json={}, headers={"Authorization": f"NodeKey {key}"})
    body = agent.http.post(OSQUERY + "/config", json={"node_key": key})
    assert header.status_code == body.status_code == 200
    assert agent.http.post(OSQUERY + "/config", json={}).json() == {"node_invalid": True}


def test_hostile_enrollments_are_refused_naming_the_field(fleet: Database, secret: str, agent: Agent) -> None:
    for host, field in (
        ("<script>alert(1)</script>", "host_identifier"),
        ("jane\u202emacbook", "host_identifier"),
        ("x" * 300, "host_identifier"),
    ):
        agent.host = host
        answer = agent.enroll(secret)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == field
    agent.host = "jane-mbp.local"
    answer = agent.enroll(secret, serial="C02\x00XL0")
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "host_details.system_info.hardware_serial"
    assert fleet.appban("source", "osquery-node", "list")["nodes"] == []


def test_a_bad_entry_is_rejected_alone_and_writes_nothing(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    now = int(time.time())
    answer = agent.log(
        snapshot("appban_apps", now - 60, [SAFARI, {**TIKTOK, "display_name": ["a list"]}]),
        {"not": "a result"},
        snapshot("appban_chrome_extensions", now - 60, [{"identifier": "abc", "name": "X", "version": ["1"]}]),
        snapshot("pack_apps_3", now - 60, [SAFARI]),
    )
    results = answer.json()["results"]
    assert statuses(answer) == [(0, "rejected"), (1, "rejected"), (2, "rejected"), (3, "applied")]
    # Fields as the reader names them: the row's place in the entry, then its column.
    assert results[0]["error"]["field"] == "data[0].snapshot[1].display_name"
    assert results[2]["error"]["field"] == "data[2].snapshot[0].version"
    with sqlite3.connect(fleet.path) as db:
        sources = sorted(r[0] for r in db.execute("SELECT source_id FROM device_records"))
        devices = sorted(r[0] for r in db.execute("SELECT source_id FROM devices"))
    assert not any("appban_apps" in s or "chrome" in s for s in sources + devices)


def test_an_app_s_hostile_name_costs_the_host_nothing(fleet: Database, secret: str, agent: Agent) -> None:
    """An app's name is its maker's or the user's (a Mac app can be given any name): one
    with markup, a control character or past the length limit is kept, made harmless,
    and the snapshot still says what it says. Refusing it would let a user evade by
    naming an app, and keep the host's inventory stale forever."""
    agent.enroll(secret)
    now = int(time.time())
    editor = {**SAFARI, "bundle_identifier": "com.example.htmleditor", "display_name": "</> HTML Editor"}
    bidi = {
        **SAFARI,
        "bundle_identifier": "com.example.notes",
        "display_name": "Notes\u202e",
        "bundle_short_version": "x" * 2000,
    }
    long_id = {"identifier": "x" * 300, "name": "<img src=x onerror=alert(1)>", "version": "1"}
    answer = agent.log(
        snapshot("appban_apps", now - 600, [SAFARI, TIKTOK, editor, bidi]),
        snapshot("appban_chrome_extensions", now - 700, [long_id]),
    )
    assert statuses(answer) == [(0, "applied"), (1, "applied")]
    assert decide(fleet) == "deny:blocked:tiktok-mac"
    (evidence,) = [
        e
        for e in fleet.appban("device", "show", "jane-mbp.local/appban_apps")["policies"]["tiktok-mac"]["evidence"]
        if e.get("app")
    ]
    assert evidence["app"] == TIKTOK["bundle_identifier"]
    # TikTok removed: the snapshot with the hostile names clears the Mac.
    assert statuses(agent.log(snapshot("appban_apps", now - 60, [SAFARI, editor, bidi]))) == [(0, "applied")]
    assert decide(fleet) == "allow:ok"


def test_bodies_that_are_not_osquery_s_get_400(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    key = agent.node_key
    for data, field in ((b"{not json", None), (b"[1, 2]", None), (json.dumps({"node_key": key}).encode(), "data")):
        answer = agent.http.post(OSQUERY + "/log", content=data, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == field
    odd = agent.post("/log", {"log_type": "snapshot", "data": []})
    assert odd.status_code == 400 and odd.json()["error"]["field"] == "log_type"


def test_device_refresh_round_trip(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    # Intune's record alone has no osquery agent to ask.
    refused = run("--db", fleet.path, "device", "refresh", f"intune:{INTUNE[0]['id']}")
    assert refused.code == 2 and "no osquery agent" in refused.err and "Traceback" not in refused.err
    now = int(time.time())
    agent.log(snapshot("appban_apps", now - 60, [SAFARI]))
    assert agent.post("/distributed/read", {}).json() == {"queries": {}, "node_invalid": False}

    asked = fleet.appban("device", "refresh", f"intune:{INTUNE[0]['id']}")  # the linked device
    (request,) = asked["requests"]
    assert request["host"] == "jane-mbp.local"
    queries = agent.post("/distributed/read", {}).json()["queries"]
    assert set(queries) == {f"appban_refresh_{request['id']}_apps", f"appban_refresh_{request['id']}_chrome_extensions"}
    assert agent.post("/distributed/read", {}).json()["queries"] == {}  # handed out once

    apps = f"appban_refresh_{request['id']}_apps"
    written = agent.post(
        "/distributed/write",
        {
            "queries": {apps: [SAFARI, TIKTOK], "appban_refresh_999_apps": [], "something_else": [{"a": "b"}]},
            "statuses": {apps: 0, "appban_refresh_999_apps": 0, "something_else": 0},
            "messages": {},
            "stats": {},
        },
    )
    assert written.status_code == 200
    assert written.json() == {
        "node_invalid": False,
        "results": [{"query": apps, "device": "jane-mbp.local/appban_apps", "status": "applied"}],
    }
    assert decide(fleet) == "deny:blocked:tiktok-mac"
    # Answered: a repeat of the same write is not applied again, and nothing more is asked.
    again = agent.post("/distributed/write", {"queries": {apps: []}, "statuses": {apps: 0}})
    assert again.json()["results"] == []
    assert decide(fleet) == "deny:blocked:tiktok-mac"
    assert agent.post("/distributed/read", {}).json()["queries"] == {}


def test_a_failed_refresh_query_applies_nothing(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    now = int(time.time())
    agent.log(snapshot("appban_apps", now - 60, [SAFARI]))
    (asked,) = fleet.appban("device", "refresh", "jane-mbp.local/appban_apps")["requests"]
    name = f"appban_refresh_{asked['id']}_apps"
    assert name in agent.post("/distributed/read", {}).json()["queries"]
    written = agent.post("/distributed/write", {"queries": {name: []}, "statuses": {name: 1}})
    assert written.json()["results"] == []
    assert decide(fleet) == "allow:ok"


def test_entries_of_tables_appban_does_not_read_write_nothing(fleet: Database, secret: str, agent: Agent) -> None:
    agent.enroll(secret)
    with sqlite3.connect(fleet.path) as db:
        before = db.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    uptime = snapshot("pack_uptime", int(time.time()) - 60, [{"days": "3", "hours": "1"}])
    assert statuses(agent.log(uptime)) == []
    with sqlite3.connect(fleet.path) as db:
        assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] == before


def test_a_long_buffered_batch_applies_its_newest_snapshot(fleet: Database, secret: str, agent: Agent) -> None:
    """An agent that could not send for hours posts its whole buffer. A snapshot replaces
    the one before it: only the newest of each query is read and applied, the others are
    answered ignored (so the body's rows are never all decoded at once)."""
    agent.enroll(secret)
    now = int(time.time())
    runs = [snapshot("appban_apps", now - 3600 + 60 * i, [SAFARI, TIKTOK] if i % 2 else [SAFARI]) for i in range(40)]
    runs.insert(10, runs.pop(39))  # the newest need not be the last
    answer = statuses(agent.log(*runs))
    assert answer == [(i, "applied" if i == 10 else "ignored") for i in range(40)]
    assert decide(fleet) == "deny:blocked:tiktok-mac"  # the newest run (39) lists TikTok
    shown = fleet.appban("device", "show", "jane-mbp.local/appban_apps")
    assert shown["observed_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now - 3600 + 60 * 39)))
