"""``appban import workspace-one``: Workspace ONE UEM device search pages with each
device's apps response joined under ``DeviceApps``.

Golden files in golden/workspace_one/ are built from the documented responses; each
``NAME`` has its expected check-ins in ``NAME.expected.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.inventory import workspace_one
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin
from appban.inventory.workspace_one import WorkspaceOneFormat
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, count, where

GOLDEN = Path(__file__).parent / "golden" / "workspace_one"
NOW = parse_time("2020-07-12T12:00:00Z")
LONDON = ReadOptions(now=NOW, max_bytes=4 << 20, timezone=ZoneInfo("Europe/London"))


def summary(checkin: Checkin) -> dict[str, Any]:
    d = checkin.device
    return {
        "source": checkin.source,
        "id": d.id,
        "platform": d.platform,
        "owner": d.owner,
        "ownership": d.ownership,
        "inventory_scope": d.inventory_scope,
        "observed_at": format_time(checkin.observed_at),
        "model": d.model,
        "os_version": d.os_version,
        "eas_device_ids": d.eas_device_ids,
        "mail_access": d.mail_access,
        "identifiers": [list(pair) for pair in d.identifiers],
        "apps": [[a.id, a.name, a.version] for a in checkin.apps],
    }


def read(path: Path, options: ReadOptions = LONDON) -> list[dict[str, Any]]:
    return [summary(c) for _line, c in WorkspaceOneFormat().read(str(path), options)]


def page() -> dict[str, Any]:
    """The golden file's first page."""
    text = (GOLDEN / "devices_search.json").read_text(encoding="utf-8")
    return json.loads(text[: text.index("\n}\n") + 2])  # type: ignore[no-any-return]


def test_device_search_pages_with_apps() -> None:
    """GET /API/mdm/devices/search ({"Devices", "Page", "PageSize", "Total"}; Id.Value,
    Udid, SerialNumber, Imei, EasId, EasIds, UserEmailAddress, Ownership C/E/S/Undefined,
    Platform, Model, OperatingSystem, LastSeen without an offset) and
    GET /API/mdm/devices/{id}/apps ({"DeviceApps": [{ApplicationName, Version,
    BuildVersion, Status, Size, ApplicationIdentifier, Type, IsManaged}], "Page",
    "PageSize", "Total"}), as in the VMware AirWatch REST API Guide
    (https://usermanual.wiki/Pdf/VMware20AirWatch20REST20API20Guide91.2048355394/help,
    "Search Devices" and "Retrieve Device Apps") and the attribute reference
    https://docs.pingidentity.com/integrations/workspaceone-uem/pf_workspaceone_uem_ik_supported_attributes_reference.html.
    LastSeen is read in --timezone (here Europe/London, summer time); an app "Not
    Installed" is not on the device; an Apple TV is no device a policy names."""
    assert read(GOLDEN / "devices_search.json") == json.loads(
        (GOLDEN / "devices_search.json.expected.json").read_text(encoding="utf-8")
    )


def test_the_golden_file_imports_through_the_command_line(fleet: Fleet) -> None:
    path = GOLDEN / "devices_search.json"
    result = fleet.run("import", "workspace-one", str(path), "--source", "ws1-eu", "--timezone", "Europe/London")
    assert result.code == 0, result.err
    assert count(fleet.db, "devices", "source = 'ws1-eu'") == 3


def test_naive_times_default_to_utc() -> None:
    options = ReadOptions(now=NOW, max_bytes=4 << 20)
    assert read(GOLDEN / "devices_search.json", options)[0]["observed_at"] == "2020-07-10T15:00:00.150000Z"


def test_devices_one_per_line(tmp_path: Path) -> None:
    devices = page()["Devices"]
    path = tmp_path / "devices.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in devices), encoding="utf-8")
    assert [d["id"] for d in read(path)] == ["5614", "5615", "5616"]


def test_a_device_never_seen_lists_no_apps(tmp_path: Path) -> None:
    doc = page()
    doc["Devices"][0]["LastSeen"] = "0001-01-01T00:00:00.000"
    path = tmp_path / "never.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    first = read(path)[0]
    assert (first["inventory_scope"], first["apps"], first["observed_at"]) == ("none", [], "2020-07-12T12:00:00Z")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("Id"), ["field Devices[0].Id.Value", "missing"]),
        (lambda d: d.update(Id={"Value": "five"}), ["field Devices[0].Id.Value", "expected an integer"]),
        (lambda d: d.update(LastSeen="yesterday"), ["field Devices[0].LastSeen"]),
        (lambda d: d.update(UserEmailAddress="dummy-email"), ["field Devices[0].UserEmailAddress"]),
        (lambda d: d.update(EasIds={"EasId": [7]}), ["field Devices[0].EasIds.EasId[0]"]),
        (lambda d: d.update(EasId="has space"), ["field Devices[0].EasIds", "ActiveSync"]),
        (lambda d: d["DeviceApps"].update(Total=700), ["field Devices[0].DeviceApps.Total", "every page"]),
        (lambda d: d["DeviceApps"]["DeviceApps"].append(3), ["field Devices[0].DeviceApps.DeviceApps[3]"]),
        (lambda d: d.update(DeviceApps="TikTok"), ["field Devices[0].DeviceApps", "a list"]),
        (lambda d: d.update(Platform=["Apple"]), ["field Devices[0].Platform", "a string"]),
    ],
    ids=[
        "no-id",
        "id-text",
        "time",
        "email",
        "eas-number",
        "eas-space",
        "apps-partial",
        "app-number",
        "apps-text",
        "platform",
    ],
)
def test_bad_device(fleet: Fleet, change: Any, expected: list[str]) -> None:
    doc = page()
    change(doc["Devices"][0])
    path = fleet.write("bad.json", json.dumps(doc))
    assert_bad_input(fleet.run("import", "workspace-one", str(path)), where(path), *expected)
    fleet.assert_unchanged()


def test_not_json(fleet: Fleet) -> None:
    path = fleet.write("bad.json", '{"Devices": [{"Id": {"Value": 1}')
    assert_bad_input(fleet.run("import", "workspace-one", str(path)), where(path), "not valid JSON")
    fleet.assert_unchanged()


SEED = (GOLDEN / "devices_search.json").read_bytes()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(("flip", "delete", "insert", "cut")))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b"null", b"1e999", b"-", b"\xff"]))
        else:
            del data[at:]
        if not data:
            data = bytearray(b" ")
    return bytes(data)


@settings(max_examples=examples(800), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_files_give_checkins_or_bad_input(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.json"
    path.write_bytes(data)
    try:
        for _line, checkin in WorkspaceOneFormat().read(str(path), LONDON):
            assert isinstance(checkin, Checkin)
    except BadInput as exc:
        assert exc.file == str(path)


CELL = st.sampled_from(["", " ", "Slack", "4.1", "", "Installed", "Not Installed", "Removed", None, 0, 1, True, []])
APP = st.fixed_dictionaries(dict.fromkeys(["Status", "ApplicationName", "Version", "ApplicationIdentifier"], CELL))


@settings(max_examples=examples(300), deadline=None)
@given(apps=st.lists(st.sampled_from([APP, APP, APP, CELL]).flatmap(lambda app: app), max_size=3))
def test_apps_read_at_once_are_read_as_one_at_a_time(apps: list[Any]) -> None:
    """The quick reading of plain apps gives the apps, or the error, of the careful one."""

    def outcome(read: Any) -> Any:
        try:
            return read()
        except BadInput as exc:
            return (exc.detail, exc.field)

    def careful() -> list[App]:
        read = (workspace_one._app(app, f"r.DeviceApps[{i}]") for i, app in enumerate(apps))
        return [app for app in read if app is not None]

    quick = outcome(lambda: workspace_one._apps({"DeviceApps": apps}, "r")[0])
    assert quick == outcome(careful)
