"""What an osquery agent's records may change about a device other sources report, on a
real socket. Whoever holds the enroll secret can enroll a host that claims any serial
number or UUID: its records must never change another device's platform, nor clear
what another source saw on it."""

from __future__ import annotations

import base64
import json
import plistlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_osquery import SAFARI, TIKTOK, Agent, snapshot, statuses
from helpers_serve import Database, ThreadServer, new_database

from helpers_cli import run

JANE = "jane.doe@example.com"
MAC_SERIAL = "C02XL0GYJGH5"
MAC_EAS = "EASJANEMAC1"
PHONE_UDID = "00008030-001A2D3C0E91802E"
PHONE_SERIAL = "F2LZK0ABN72J"
POLICY = """\
id: tiktok
title: TikTok is not permitted on devices that read company email
reason: Security risks
apps: [tiktok, "macos:com.zhiliaoapp.musically"]
scope:
  platforms: [ios, ipados, macos]
  mail_access: any
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""


def intune_mac(apps: list[str], at: datetime) -> list[dict[str, Any]]:
    """Jane's Mac as Intune reports it, with the apps it detected (by name)."""
    return [
        {
            "id": "9f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
            "managedDeviceOwnerType": "company",
            "lastSyncDateTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "operatingSystem": "macOS",
            "osVersion": "10.15.5",
            "easActivated": True,
            "easDeviceId": MAC_EAS,
            "emailAddress": JANE,
            "userPrincipalName": JANE,
            "model": "MacBookPro16,1",
            "serialNumber": MAC_SERIAL,
            "detectedApps": [{"id": f"app-{i}", "displayName": name, "version": "1.0"} for i, name in enumerate(apps)],
        }
    ]


@pytest.fixture
def fleet(tmp_path: Path) -> Database:
    database = new_database(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    done = run("--db", database.path, "policy", "apply", str(tmp_path / "policy.yaml"))
    assert done.code == 0, done.err
    return database


@pytest.fixture
def secret(fleet: Database) -> str:
    return str(fleet.appban("source", "osquery-secret", "create")["token"])


@pytest.fixture
def server(fleet: Database) -> Iterator[ThreadServer]:
    with ThreadServer(fleet.path) as running:
        yield running


def import_intune(fleet: Database, tmp_path: Path, apps: list[str], at: datetime) -> None:
    path = tmp_path / f"intune-{at.timestamp():.0f}.json"
    path.write_text(json.dumps(intune_mac(apps, at)))
    done = run("--db", fleet.path, "import", "intune", str(path))
    assert done.code == 0, done.err


def mdm_event(payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    raw = base64.b64encode(plistlib.dumps(payload)).decode()
    acknowledged = {"udid": PHONE_UDID, "status": "Acknowledged", "raw_payload": raw}
    return {"topic": "mdm.Connect", "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "acknowledge_event": acknowledged}


def state(fleet: Database, device: str) -> str:
    return str(fleet.appban("device", "show", device)["policies"]["tiktok"]["state"])


def test_a_host_claiming_an_iphone_s_serial_and_udid_cannot_make_it_a_mac(
    fleet: Database, secret: str, server: ThreadServer
) -> None:
    token = fleet.token_for("mdm")
    now = datetime.now(UTC)
    info = {
        "UDID": PHONE_UDID,
        "Status": "Acknowledged",
        "RequestType": "DeviceInformation",
        "QueryResponses": {"ProductName": "iPhone12,1", "SerialNumber": PHONE_SERIAL, "OSVersion": "13.5"},
    }
    apps = {
        "UDID": PHONE_UDID,
        "Status": "Acknowledged",
        "RequestType": "InstalledApplicationList",
        "InstalledApplicationList": [{"Identifier": "com.zhiliaoapp.musically", "Name": "TikTok", "ShortVersion": "1"}],
    }
    events = [mdm_event(info, now - timedelta(hours=2)), mdm_event(apps, now - timedelta(minutes=110))]
    posted = httpx.post(
        server.url + "/api/v1/webhooks/apple-mdm", json=events, headers={"Authorization": f"Bearer {token}"}
    )
    assert [r["status"] for r in posted.json()["results"]] == ["applied", "applied"]
    phone = f"mdm:{PHONE_UDID}"
    assert state(fleet, phone) == "blocked"

    fake = Agent(server.url, "jane-laptop-fake")
    try:
        assert fake.enroll(secret, serial=PHONE_SERIAL, uuid=PHONE_UDID).status_code == 200
        answer = fake.log(snapshot("appban_apps", int(time.time()) - 60, [SAFARI]))
        assert statuses(answer) == [(0, "applied")]
    finally:
        fake.close()
    shown = fleet.appban("device", "show", phone)
    assert shown["platform"] == "ios"
    assert [r["source"] for r in shown["records"]] == ["mdm"]
    assert shown["policies"]["tiktok"]["state"] == "blocked"
    # The fake host is a Mac of its own, linked to nothing.
    assert fleet.appban("device", "show", "jane-laptop-fake/appban_apps")["platform"] == "macos"


def test_a_clean_snapshot_linked_to_a_mac_does_not_clear_what_intune_saw(
    fleet: Database, secret: str, server: ThreadServer, tmp_path: Path
) -> None:
    """Same platform, same serial: the records link, and the device is the union of
    them. A newer clean snapshot from a host claiming the Mac's serial (or from the
    Mac's own agent) leaves Intune's TikTok standing until Intune reports it gone."""
    now = datetime.now(UTC)
    import_intune(fleet, tmp_path, ["TikTok", "Microsoft Outlook"], now - timedelta(hours=3))
    mac = "intune:9f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    assert state(fleet, mac) == "blocked"
    fake = Agent(server.url, "not-janes-mac")
    try:
        fake.enroll(secret, serial=MAC_SERIAL, uuid="11111111-2222-3333-4444-555555555555")
        assert statuses(fake.log(snapshot("appban_apps", int(time.time()) - 60, [SAFARI]))) == [(0, "applied")]
    finally:
        fake.close()
    shown = fleet.appban("device", "show", mac)
    assert sorted(r["source"] for r in shown["records"]) == ["intune", "osquery"]  # linked by the serial
    assert shown["policies"]["tiktok"]["state"] == "blocked"
    decided = fleet.appban("gate", "decide", "--eas-device-id", MAC_EAS, "--user", JANE)
    assert (decided["decision"], decided["reason"]) == ("deny", "blocked:tiktok")
    # Intune's next inventory no longer lists TikTok: now the Mac is clean.
    import_intune(fleet, tmp_path, ["Microsoft Outlook"], now - timedelta(minutes=1))
    assert state(fleet, mac) == "compliant"


def test_the_tables_of_one_host_do_not_hide_each_other(
    fleet: Database, secret: str, server: ThreadServer, tmp_path: Path
) -> None:
    """A host's apps and its Chrome extensions are two records of one device: a snapshot
    of one (at the same second, or later) never hides what the other lists."""
    import_intune(fleet, tmp_path, [], datetime.now(UTC) - timedelta(hours=3))
    mac = "intune:9f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    agent = Agent(server.url, "jane-mbp.local")
    try:
        agent.enroll(secret, serial=MAC_SERIAL)
        now = int(time.time())
        extension = {"identifier": "cjpalhdlnbpafiamejdnhcphjbkeiagm", "name": "uBlock Origin", "version": "1.0"}
        answer = agent.log(
            snapshot("appban_apps", now - 120, [SAFARI, TIKTOK]),
            snapshot("appban_chrome_extensions", now - 120, [extension]),
        )
        assert statuses(answer) == [(0, "applied"), (1, "applied")]
        assert state(fleet, mac) == "blocked"
        assert statuses(agent.log(snapshot("appban_chrome_extensions", now - 60, [extension]))) == [(0, "applied")]
        assert state(fleet, mac) == "blocked"
        assert statuses(agent.log(snapshot("appban_apps", now - 30, [SAFARI]))) == [(0, "applied")]
        assert state(fleet, mac) == "compliant"
    finally:
        agent.close()
