"""``POST /api/v1/webhooks/apple-mdm`` on a real socket, with events shaped as MicroMDM
and NanoMDM post them.

MicroMDM (workflow/webhook/webhook.go, acknowledge.go, http_post.go): ``json.MarshalIndent``
of ``{topic, event_id, created_at, acknowledge_event: {udid, enrollment_id, status,
command_uuid, url_params, raw_payload}}``, ``Content-Type: application/json;
charset=utf-8``; a status of 400 or more is a failure. NanoMDM (service/webhook/event.go,
service.go): ``json.Marshal`` of the generated ``EventJson`` (fields in alphabetical
order, ``ids`` with the enrollment's type); any status but 200 is a failure. Both put
Basic credentials of the webhook URL in ``Authorization`` (Go's HTTP client does).
"""

from __future__ import annotations

import base64
import json
import plistlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from helpers_serve import Database, ThreadServer

from helpers_cli import run

WEBHOOK = "/api/v1/webhooks/apple-mdm"
UDID = "00008030-001A2D3C0E91802E"
EAS = "V2UVOT7J157L7C1FLLSAABSOV4"
TIKTOK = {"Identifier": "com.zhiliaoapp.musically", "Name": "TikTok", "ShortVersion": "16.5.0", "Version": "165010"}
NOTES = {"Identifier": "com.example.notes", "Name": "Notes", "ShortVersion": "1.0", "Version": "1"}
GO_JSON = "application/json; charset=utf-8"


def go_time(at: datetime) -> str:
    """A Go time.Time as encoding/json writes it (RFC 3339, nanoseconds)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def information(udid: str = UDID, product: str = "iPhone12,1") -> bytes:
    """A device's answer to DeviceInformation, as it posts it to the MDM server."""
    return plistlib.dumps(
        {
            "CommandUUID": "0002_DeviceInformation",
            "QueryResponses": {
                "DeviceName": "Jane's iPhone",
                "EASDeviceIdentifier": EAS,
                "IsSupervised": False,
                "Model": "MWLT2LL/A",
                "ModelName": "iPhone",
                "OSVersion": "13.5.1",
                "ProductName": product,
                "SerialNumber": "F2LZK0ABN72J",
            },
            "Status": "Acknowledged",
            "UDID": udid,
        }
    )


def installed(*apps: dict[str, str], udid: str = UDID) -> bytes:
    return plistlib.dumps(
        {
            "CommandUUID": "0003_InstalledApplicationList",
            "InstalledApplicationList": list(apps),
            "Status": "Acknowledged",
            "UDID": udid,
        }
    )


def micromdm(raw: bytes, at: datetime, *, status: str = "Acknowledged", udid: str = UDID) -> bytes:
    event = {
        "topic": "mdm.Connect",
        "event_id": "5ee634b5-bd58-4b3e-8b77-3f764d087787",
        "created_at": go_time(at),
        "acknowledge_event": {
            "udid": udid,
            "status": status,
            "command_uuid": "0003_InstalledApplicationList",
            "raw_payload": base64.b64encode(raw).decode(),
        },
    }
    return json.dumps(event, indent=2).encode()


def nanomdm(raw: bytes, at: datetime, *, udid: str = UDID) -> bytes:
    event = {
        "acknowledge_event": {
            "command_uuid": "76eda240-5488-4989-8339-f2ae160113c4",
            "ids": {"id": udid, "type": "Device"},
            "raw_payload": base64.b64encode(raw).decode(),
            "status": "Acknowledged",
            "udid": udid,
        },
        "created_at": go_time(at),
        "event_id": "test_event_id",
        "topic": "mdm.Connect",
    }
    return json.dumps(event, separators=(",", ":")).encode()


def checkin_event(at: datetime) -> bytes:
    raw = plistlib.dumps({"MessageType": "Authenticate", "Topic": "com.apple.mgmt.External.x", "UDID": UDID})
    event = {
        "topic": "mdm.Authenticate",
        "event_id": "e1",
        "created_at": go_time(at),
        "checkin_event": {"udid": UDID, "url_params": None, "raw_payload": base64.b64encode(raw).decode()},
    }
    return json.dumps(event, indent=2).encode()


@pytest.fixture
def mdm(database: Database) -> str:
    """A token of source ``mdm``."""
    return database.token_for("mdm")


def post(server: ThreadServer, body: bytes, token: str, *, basic: bool = True) -> httpx.Response:
    auth = ("micromdm", token) if basic else None
    headers = {"Content-Type": GO_JSON, "User-Agent": "Go-http-client/1.1"}
    if not basic:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(server.url + WEBHOOK, content=body, headers=headers, auth=auth, timeout=30)


def results(answer: httpx.Response) -> list[tuple[str | None, str]]:
    assert answer.status_code == 200, answer.text  # NanoMDM takes nothing else
    return [(r["device"], r["status"]) for r in answer.json()["results"]]


def apps_of(database: Database, device: str) -> list[str]:
    doc = database.appban("device", "show", device)
    return sorted(e["app"] for p in doc["policies"].values() for e in p["evidence"] if e.get("kind") == "app")


def held(database: Database) -> list[tuple[str, str, list[Any]]]:
    with sqlite3.connect(database.path) as db:
        rows = db.execute("SELECT source, device_key, apps FROM mdm_held_apps ORDER BY device_key").fetchall()
    return [(s, k, json.loads(a)) for s, k, a in rows]


def kept(database: Database, device: str) -> dict[str, Any]:
    return dict(database.appban("device", "show", device))


POLICY = """\
id: tiktok-mail
title: TikTok is not permitted on mobile devices that access company email
reason: Security risks
apps: [tiktok]
scope:
  platforms: [ios, ipados, android]
  mail_access: any
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""


@pytest.fixture
def policy(database: Database, tmp_path: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    done = run("--db", database.path, "policy", "apply", str(path))
    assert done.code == 0, done.err


def test_micromdm_information_then_apps(server: ThreadServer, database: Database, mdm: str, policy: None) -> None:
    now = datetime.now(UTC)
    assert results(post(server, micromdm(information(), now - timedelta(minutes=5)), mdm)) == [(UDID, "applied")]
    shown = kept(database, f"mdm:{UDID}")
    assert (shown["platform"], shown["model"], shown["inventory_scope"]) == ("ios", "iPhone12,1", "none")

    answer = post(server, micromdm(installed(TIKTOK, NOTES), now - timedelta(minutes=4)), mdm)
    assert results(answer) == [(UDID, "applied")]
    assert apps_of(database, f"mdm:{UDID}") == ["com.zhiliaoapp.musically"]
    shown = kept(database, f"mdm:{UDID}")
    assert shown["platform"] == "ios" and shown["inventory_scope"] == "full"
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"
    # The stored facts came with the app list: the serial still links, the UDID still names it.
    (record,) = shown["records"]
    assert {"serial:F2LZK0ABN72J", f"udid:{UDID}"} <= set(record["identifiers"])

    # The same event again (MicroMDM retries nothing, but a proxy may): no newer, ignored.
    assert results(post(server, micromdm(installed(TIKTOK, NOTES), now - timedelta(minutes=4)), mdm)) == [
        (UDID, "ignored")
    ]
    # TikTok removed: the next list says so.
    assert results(post(server, micromdm(installed(NOTES), now - timedelta(minutes=1)), mdm)) == [(UDID, "applied")]
    assert kept(database, f"mdm:{UDID}")["policies"]["tiktok-mail"]["state"] == "compliant"


def test_nanomdm_apps_before_information_are_held_then_applied(
    server: ThreadServer, database: Database, mdm: str, policy: None
) -> None:
    now = datetime.now(UTC)
    answer = post(server, nanomdm(installed(TIKTOK, NOTES), now - timedelta(minutes=3)), mdm, basic=False)
    assert results(answer) == [(UDID, "held")]
    assert run("--db", database.path, "device", "show", f"mdm:{UDID}").code == 2  # no device without a platform
    # Privacy: only what the catalog may name waits, not the whole list.
    assert held(database) == [
        ("mdm", UDID, [{"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}])
    ]

    answer = post(server, nanomdm(information(), now - timedelta(minutes=2)), mdm, basic=False)
    assert results(answer) == [(UDID, "applied")]
    assert held(database) == []
    shown = kept(database, f"mdm:{UDID}")
    assert shown["platform"] == "ios" and shown["inventory_scope"] == "full"
    # The app list's own time, not the DeviceInformation's.
    assert shown["observed_at"].startswith((now - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M"))
    assert apps_of(database, f"mdm:{UDID}") == ["com.zhiliaoapp.musically"]
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"


@pytest.mark.parametrize("before", [timedelta(milliseconds=200), timedelta(0)], ids=["just-before", "same-time"])
def test_an_app_list_dated_before_the_first_device_information_is_applied(
    server: ThreadServer, database: Database, mdm: str, policy: None, before: timedelta
) -> None:
    """The device answered InstalledApplicationList, then DeviceInformation a moment
    later; the webhooks arrive the other way round. Only facts were stored (no apps):
    the app list is compared with the last app list (none), not with the facts."""
    listed_at = datetime.now(UTC) - timedelta(minutes=11)
    info = information()
    assert results(post(server, micromdm(info, listed_at + before), mdm)) == [(UDID, "applied")]
    assert results(post(server, micromdm(installed(TIKTOK, NOTES), listed_at), mdm)) == [(UDID, "applied")]
    shown = kept(database, f"mdm:{UDID}")
    assert (shown["inventory_scope"], shown["model"], shown["os_version"]) == ("full", "iPhone12,1", "13.5.1")
    assert shown["observed_at"].startswith(listed_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"
    # Now a list is stored: an older one than it changes nothing.
    older = micromdm(installed(NOTES), listed_at - timedelta(minutes=1))
    assert results(post(server, older, mdm)) == [(UDID, "ignored")]
    # A newer DeviceInformation keeps the apps, with their time.
    assert results(post(server, micromdm(info, listed_at + timedelta(minutes=5)), mdm)) == [(UDID, "applied")]
    shown = kept(database, f"mdm:{UDID}")
    assert shown["inventory_scope"] == "full" and shown["policies"]["tiktok-mail"]["state"] == "blocked"


def test_events_not_about_apps_are_ignored(server: ThreadServer, database: Database, mdm: str) -> None:
    now = datetime.now(UTC)
    profiles = plistlib.dumps({"CommandUUID": "p", "ProfileList": [], "Status": "Acknowledged", "UDID": UDID})
    not_now = plistlib.dumps({"CommandUUID": "0003_InstalledApplicationList", "Status": "NotNow", "UDID": UDID})
    tv = information(product="AppleTV5,3")
    for body in (
        checkin_event(now),
        micromdm(not_now, now, status="NotNow"),
        micromdm(profiles, now),
        micromdm(tv, now),
    ):
        assert [s for _, s in results(post(server, body, mdm))] == ["ignored"]
    assert database.appban("device", "list")["devices"] == []
    assert held(database) == []


def test_forged_or_missing_credentials_get_401(server: ThreadServer, database: Database, mdm: str) -> None:
    body = micromdm(information(), datetime.now(UTC))
    for token in ("appban-src-forged", database.token + "x", ""):
        answer = post(server, body, token)
        assert answer.status_code == 401
        assert answer.json()["error"]["status"] == 401
        assert "Basic" in answer.headers["WWW-Authenticate"]
    no_auth = httpx.post(server.url + WEBHOOK, content=body, headers={"Content-Type": GO_JSON})
    assert no_auth.status_code == 401
    database.appban("source", "token", "revoke", "mdm")
    assert post(server, body, mdm).status_code == 401
    assert database.appban("device", "list")["devices"] == []


def test_garbage_is_rejected_per_event_and_nothing_is_written(
    server: ThreadServer, database: Database, mdm: str
) -> None:
    now = datetime.now(UTC)
    garbage = micromdm(b"this is not a property list", now)
    (result,) = post(server, garbage, mdm).json()["results"]
    assert result["status"] == "rejected"
    assert result["error"]["field"] == "acknowledge_event.raw_payload"
    # A batch: the bad events beside a good one, each answered alone.
    bad_base64 = json.loads(micromdm(information(), now))
    bad_base64["acknowledge_event"]["raw_payload"] = "%%% not base64 %%%"
    hostile = installed({**TIKTOK, "Identifier": ["com.zhiliaoapp.musically"]}, udid="00008030-00000000000000AA")
    events = [json.loads(micromdm(information(), now)), bad_base64, json.loads(micromdm(hostile, now)), "nope"]
    answer = post(server, json.dumps(events).encode(), mdm)
    assert [s for _, s in results(answer)] == ["applied", "rejected", "rejected", "rejected"]
    fields = [r.get("error", {}).get("field") for r in answer.json()["results"]]
    assert fields[1:] == [
        "[1].acknowledge_event.raw_payload",
        "[2].acknowledge_event.raw_payload:InstalledApplicationList[0].Identifier",
        "[3]",
    ]
    (device,) = database.appban("device", "list")["devices"]
    assert device["source_id"] == UDID
    assert held(database) == []
    # A body that is not JSON at all: 400, the error shape.
    answer = post(server, b"<plist>", mdm)
    assert answer.status_code == 400 and answer.json()["error"]["status"] == 400


def test_a_single_event_s_error_names_its_field_without_a_leading_dot(
    server: ThreadServer, database: Database, mdm: str
) -> None:
    now = datetime.now(UTC)
    post(server, micromdm(information(), now - timedelta(minutes=2)), mdm)
    nameless = installed({"ShortVersion": "1.0"})
    (result,) = post(server, micromdm(nameless, now), mdm).json()["results"]
    assert result["status"] == "rejected"
    assert result["error"]["field"] == "acknowledge_event.raw_payload:InstalledApplicationList[0]"
    bad_time = json.loads(micromdm(installed(NOTES), now))
    bad_time["created_at"] = "yesterday"
    (result,) = post(server, json.dumps(bad_time).encode(), mdm).json()["results"]
    assert result["error"]["field"] == "created_at"


def test_an_app_s_hostile_name_costs_the_device_nothing(
    server: ThreadServer, database: Database, mdm: str, policy: None
) -> None:
    """An app's name is its maker's or the user's: one with markup (a real App Store
    name, "</> HTML Editor") is kept, made harmless, and the rest of the list applies.
    Refusing it would keep the device blocked (or stale) forever, or let a user name an
    app to evade."""
    now = datetime.now(UTC)
    editor = {"Identifier": "com.example.htmleditor", "Name": "</> HTML Editor", "ShortVersion": "2.1"}
    post(server, micromdm(information(), now - timedelta(minutes=50)), mdm)
    assert results(post(server, micromdm(installed(TIKTOK), now - timedelta(minutes=40)), mdm)) == [(UDID, "applied")]
    assert kept(database, f"mdm:{UDID}")["policies"]["tiktok-mail"]["state"] == "blocked"
    scripted = {**NOTES, "Name": "<script>alert(1)</script>", "ShortVersion": "1\u202e0"}
    answer = post(server, micromdm(installed(TIKTOK, editor, scripted), now - timedelta(minutes=30)), mdm)
    assert results(answer) == [(UDID, "applied")]
    # The user removes TikTok; the list with the hostile names clears the device.
    assert results(post(server, micromdm(installed(editor, scripted), now - timedelta(minutes=20)), mdm)) == [
        (UDID, "applied")
    ]
    assert kept(database, f"mdm:{UDID}")["policies"]["tiktok-mail"]["state"] == "compliant"


def test_a_held_list_waits_no_longer_than_its_setting(
    database: Database, mdm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPBAN_MDM_HOLD_MAX_AGE", "1s")
    with ThreadServer(database.path) as server:
        now = datetime.now(UTC)
        other = "00008030-00000000000000BB"
        assert results(post(server, micromdm(installed(TIKTOK, udid=other), now), mdm)) == [(other, "held")]
        time.sleep(1.2)
        assert results(post(server, micromdm(information(), now), mdm)) == [(UDID, "applied")]
        assert held(database) == []  # dropped when the next request came
        assert results(post(server, micromdm(information(udid=other), now), mdm)) == [(other, "applied")]
        assert kept(database, f"mdm:{other}")["inventory_scope"] == "none"


def test_held_lists_are_capped_per_source(database: Database, mdm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token's holder cannot make appban keep app lists for any number of devices it
    may never describe: past APPBAN_MDM_HOLD_MAX_LISTS, a list of another unknown device
    is rejected; a newer list of a device already waiting still replaces its own."""
    monkeypatch.setenv("APPBAN_MDM_HOLD_MAX_LISTS", "2")
    udids = [f"00008030-0000000000000{i:03d}" for i in range(3)]
    with ThreadServer(database.path) as server:
        now = datetime.now(UTC)
        events = [json.loads(micromdm(installed(TIKTOK, udid=u), now - timedelta(minutes=5), udid=u)) for u in udids]
        answer = post(server, json.dumps(events).encode(), mdm)
        assert results(answer) == [(udids[0], "held"), (udids[1], "held"), (udids[2], "rejected")]
        assert "APPBAN_MDM_HOLD_MAX_LISTS" in answer.json()["results"][2]["error"]["message"]
        newer = micromdm(installed(NOTES, udid=udids[0]), now, udid=udids[0])
        assert results(post(server, newer, mdm)) == [(udids[0], "held")]
    assert [k for _, k, _ in held(database)] == udids[:2]


def test_the_webhook_is_in_the_openapi_document(server: ThreadServer) -> None:
    doc = httpx.get(server.url + "/api/openapi.json").json()
    post_op = doc["paths"][WEBHOOK]["post"]
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert "acknowledge_event" in body["properties"]
    assert set(post_op["responses"]) == {"200", "400", "401", "413"}
    statuses = post_op["responses"]["200"]["content"]["application/json"]["schema"]
    assert msgspec.json.decode(json.dumps(statuses))["properties"]["results"]["type"] == "array"
