"""The ``intune`` format: Microsoft Graph managedDevice / detectedApp pages and the
Intune AppInvRawData export CSV.

Golden files (tests/inventory/golden/intune/) are shaped after the documented
examples; each sits beside ``<name>.expected.json``, the check-ins it must give.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.intune import IntuneFormat
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, run

GOLDEN = Path(__file__).parent / "golden" / "intune"
NOW = parse_time("2020-07-11T12:00:00Z")
OPTIONS = ReadOptions(now=NOW, max_bytes=1 << 20)


def read(path: Path | str, options: ReadOptions = OPTIONS) -> list[dict[str, Any]]:
    """The check-ins of a file as plain data: what a golden file's expected result holds."""
    out = []
    for line, checkin in IntuneFormat().read(str(path), options):
        plain = msgspec.to_builtins(checkin)
        plain["observed_at"] = format_time(checkin.observed_at)
        for derived in ("app_ids", "removed", "epoch", "counter"):
            del plain[derived]
        out.append({"line": line, "checkin": json.loads(json.dumps(plain))})  # pairs as JSON lists
    return out


def expected(name: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN / f"{name}.expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def by_id(checkins: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["checkin"]["device"]["id"]: c["checkin"] for c in checkins}


# -- golden files --------------------------------------------------------------------------------


def test_managed_device_pages_with_detected_apps_expanded() -> None:
    """Two concatenated pages of GET /deviceManagement/managedDevices?$expand=detectedApps,
    shaped as the documented response and resource:
    https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list?view=graph-rest-1.0
    https://learn.microsoft.com/graph/api/resources/intune-devices-manageddevice?view=graph-rest-1.0
    """
    got = read(GOLDEN / "managed-devices-expanded.json")
    assert got == expected("managed-devices-expanded")
    devices = by_id(got)
    jane = devices["705c034c-034c-705c-4c03-5c704c035c70"]["device"]
    # The company's supervised iPhone: every app visible; IMEI without Intune's spaces.
    assert jane["inventory_scope"] == "full"
    assert ["imei", "352099001761481"] in jane["identifiers"]
    # A personal phone: Intune sees managed apps only; placeholders are no identifiers.
    bob = devices["8c2a1f3e-55b1-4e6a-9d0c-3a7b6e5f4d21"]["device"]
    assert (bob["inventory_scope"], bob["identifiers"]) == ("managed", [])
    # A shared iPad that never synced (0001-01-01): no owner, no inventory.
    ipad = devices["c4f1e2d3-b4a5-4678-9abc-def012345678"]
    assert (ipad["device"]["owner"], ipad["device"]["inventory_scope"], ipad["apps"]) == (None, "none", [])
    assert ipad["observed_at"] == "2020-07-09T12:00:00Z"  # its enrolment, not the command's clock


def test_plain_array_without_detected_apps() -> None:
    """A plain array of managedDevice objects (GET /deviceManagement/managedDevices without
    $expand): identifiers and ActiveSync id, but no app list, so scope none:
    https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list?view=graph-rest-1.0
    """
    got = read(GOLDEN / "managed-devices-array.json")
    assert got == expected("managed-devices-array")
    (only,) = got
    assert only["checkin"]["device"]["inventory_scope"] == "none"
    assert only["checkin"]["device"]["eas_device_ids"] == ["EASBOB2IPHONE"]


def test_detected_app_pages_with_their_managed_devices() -> None:
    """detectedApp pages with managedDevices expanded (beta adds publisher and platform),
    then a managedDevices page, in one file; "Unmanaged apps will only appear for devices
    marked as corporate owned":
    https://learn.microsoft.com/graph/api/resources/intune-devices-detectedapp?view=graph-rest-1.0
    https://learn.microsoft.com/graph/api/resources/intune-devices-detectedapp?view=graph-rest-beta
    """
    got = read(GOLDEN / "detected-apps.json")
    assert got == expected("detected-apps")
    devices = by_id(got)
    jane = devices["705c034c-034c-705c-4c03-5c704c035c70"]
    # Apps gathered from both detectedApps; the device's own record gives its details.
    assert [a["name"] for a in jane["apps"]] == ["TikTok", "Microsoft Outlook"]
    assert jane["device"]["eas_device_ids"] == ["V2UVOT7J157L7C1FLLSAABSOV4"]
    # A company device that no detectedApp names has, as far as Intune knows, no app.
    assert devices["9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a"]["apps"] == []


def test_app_inventory_raw_data_export() -> None:
    """The AppInvRawData report of the export API, as a CSV with its documented columns
    (a byte-order mark, every cell quoted, one device's rows not adjacent):
    https://learn.microsoft.com/mem/intune/fundamentals/reports-export-graph-available-reports
    """
    got = read(GOLDEN / "AppInvRawData.csv")
    assert got == expected("AppInvRawData")
    jane = by_id(got)["705c034c-034c-705c-4c03-5c704c035c70"]
    assert [a["name"] for a in jane["apps"]] == ["TikTok", "Microsoft Outlook"]
    # No ownership in the report: absence proves nothing; no time: the command's clock.
    assert {c["checkin"]["device"]["inventory_scope"] for c in got} == {"managed"}
    assert {c["checkin"]["observed_at"] for c in got} == {"2020-07-11T12:00:00Z"}


def test_source_and_timezone_options(tmp_path: Path) -> None:
    page = {"value": [_device(lastSyncDateTime="2020-07-11T08:00:00")]}
    path = _write(tmp_path, page)
    from zoneinfo import ZoneInfo

    options = ReadOptions(now=NOW, max_bytes=1 << 20, source="tenant-b", timezone=ZoneInfo("Europe/Paris"))
    (got,) = read(path, options)
    assert got["checkin"]["source"] == "tenant-b"
    assert got["checkin"]["observed_at"] == "2020-07-11T06:00:00Z"


# -- scope ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "scope"),
    [
        ({}, "full"),
        ({"managedDeviceOwnerType": "personal"}, "managed"),
        ({"managedDeviceOwnerType": "unknown"}, "managed"),
        ({"deviceEnrollmentType": "appleUserEnrollment"}, "managed"),
        ({"deviceEnrollmentType": "androidEnterpriseCorporateWorkProfile", "operatingSystem": "Android"}, "managed"),
        ({"operatingSystem": "AndroidForWork"}, "managed"),
        ({"deviceEnrollmentType": "androidEnterpriseFullyManaged", "operatingSystem": "Android"}, "full"),
        ({"lastSyncDateTime": "0001-01-01T00:00:00Z"}, "none"),
    ],
)
def test_scope(tmp_path: Path, fields: dict[str, Any], scope: str) -> None:
    path = _write(tmp_path, {"value": [_device(**fields)]})
    (got,) = read(path)
    assert got["checkin"]["device"]["inventory_scope"] == scope
    if scope == "none":
        assert got["checkin"]["apps"] == []


# -- through the command line ------------------------------------------------------------------


def test_import_blocks_the_corporate_phone_with_tiktok(fleet: Fleet) -> None:
    page = {"value": [_device(id="INTUNE-JANE", easDeviceId="EASINTUNE1")]}
    path = fleet.write("intune.json", json.dumps(page))
    result = fleet.run("import", "intune", str(path))
    assert result.code == 0, result.err
    shown = json.loads(fleet.run("device", "show", "INTUNE-JANE", "--json").out)
    assert shown["source"] == "intune"
    assert shown["policies"]["tiktok-mail"]["state"] == "blocked"
    decide = fleet.run("gate", "decide", "--eas-device-id", "EASINTUNE1", "--user", "jane.doe@example.com", "--json")
    assert json.loads(decide.out)["decision"] == "deny"


def test_a_personal_phone_without_tiktok_is_not_compliant(fleet: Fleet) -> None:
    device = _device(id="INTUNE-BOB", emailAddress="bob.roe@example.com", managedDeviceOwnerType="personal")
    device["detectedApps"] = [{"displayName": "Microsoft Outlook", "version": "4.1"}]
    device["easDeviceId"] = "EASINTUNE2"
    path = fleet.write("intune.json", json.dumps({"value": [device]}))
    assert fleet.run("import", "intune", str(path)).code == 0
    shown = json.loads(fleet.run("device", "show", "INTUNE-BOB", "--json").out)
    assert shown["policies"]["tiktok-mail"]["state"] == "unverified"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"value": [{"id": "X", "operatingSystem": "iOS", "serialNumber": {"a": 1}}]}, ["value[0].serialNumber"]),
        ({"value": [{"id": "X", "operatingSystem": "BeOS"}]}, ["value[0].operatingSystem", "BeOS"]),
        ({"value": [{"operatingSystem": "iOS"}]}, ["value[0].id", "missing"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "emailAddress": "not mail"}]}, ["value[0].emailAddress"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "lastSyncDateTime": "yesterday"}]}, ["lastSyncDateTime"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "easActivated": "maybe"}]}, ["value[0].easActivated"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "managedDeviceOwnerType": "shared"}]}, ["OwnerType"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "detectedApps": [{"version": "1"}]}]}, ["detectedApps[0]"]),
        (
            {"value": [{"displayName": "TikTok", "managedDevices": [{"id": "X"}]}]},
            ["managedDevices[0].operatingSystem"],
        ),
        ({"value": [{"@odata.type": "#microsoft.graph.user", "id": "X"}]}, ["value[0].@odata.type"]),
        ({"value": [{"id": "X", "operatingSystem": "iOS", "model": "<b>x</b>"}]}, ["value[0].model", "markup"]),
    ],
    ids=["type", "os", "no-id", "email", "time", "bool", "owner", "app", "app-device", "odata-type", "markup"],
)
def test_bad_graph_records(fleet: Fleet, content: dict[str, Any], expected: list[str]) -> None:
    path = fleet.write("bad.json", json.dumps(content))
    assert_bad_input(fleet.run("import", "intune", str(path)), str(path), *expected)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DeviceName,Platform\nX,iOS\n", ["no DeviceId column"]),
        ("DeviceId,ApplicationName,Platform\nX,TikTok,iOS\nY,,Android\n", [":3", "ApplicationName"]),
        ("DeviceId,ApplicationName,Platform\nX,TikTok,Symbian\n", [":2", "Platform", "Symbian"]),
        ("DeviceId,ApplicationName,Platform,EmailAddress\nX,TikTok,iOS,nobody\n", [":2", "EmailAddress"]),
        ("DeviceId,ApplicationName,Platform\nX,TikTok\n", [":2", "2 columns"]),
        ('DeviceId,ApplicationName,Platform\nX,"TikTok,iOS\n', ["never closed"]),
    ],
    ids=["header", "no-name", "platform", "email", "columns", "quote"],
)
def test_bad_report_rows(fleet: Fleet, text: str, expected: list[str]) -> None:
    path = fleet.write("bad.csv", text)
    assert_bad_input(fleet.run("import", "intune", str(path)), str(path), *expected)
    fleet.assert_unchanged()


def test_not_json(fleet: Fleet) -> None:
    path = fleet.write("bad.json", '{"value": [{"id": "X", ')
    assert_bad_input(fleet.run("import", "intune", str(path)), str(path), "not valid JSON")
    fleet.assert_unchanged()


# -- fuzzing -------------------------------------------------------------------------------------

_FUZZ = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _outcome(path: Path) -> None:
    """Check-ins, or appban's own error: nothing else may come out."""
    with contextlib.suppress(BadInput):
        list(IntuneFormat().read(str(path), OPTIONS))


@pytest.mark.parametrize("name", ["managed-devices-expanded.json", "detected-apps.json", "AppInvRawData.csv"])
@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_bytes(tmp_path: Path, name: str, data: st.DataObject) -> None:
    raw = bytearray((GOLDEN / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.sampled_from([b"{", b"]", b'"', b",", b"null", b"\\u0000", b"\xff", b"\r\n"]))
        if not raw:
            raw = bytearray(b"{")
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    _outcome(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_structures(tmp_path: Path, data: st.DataObject) -> None:
    device = _device()
    device["detectedApps"] = [{"displayName": "TikTok", "version": "1"}]
    keys = [*device, "detectedApps", "managedDevices", "@odata.type", "deviceCount"]
    for _ in range(data.draw(st.integers(1, 4))):
        device[data.draw(st.sampled_from(keys))] = data.draw(_JSON)
    page = data.draw(
        st.sampled_from([{"value": [device]}, [device], {"value": [{"displayName": "A", "managedDevices": [device]}]}])
    )
    _outcome(_write(tmp_path, page))


# -- helpers -------------------------------------------------------------------------------------


def _device(**fields: Any) -> dict[str, Any]:
    """A company iPhone with TikTok, as a managedDevice with detectedApps expanded."""
    device: dict[str, Any] = {
        "id": "INTUNE-1",
        "managedDeviceOwnerType": "company",
        "lastSyncDateTime": "2020-07-11T08:00:00Z",
        "operatingSystem": "iOS",
        "osVersion": "13.5.1",
        "easActivated": True,
        "emailAddress": "jane.doe@example.com",
        "model": "iPhone12,1",
        "detectedApps": [{"displayName": "TikTok", "version": "16.5.0"}],
    }
    device.update(fields)
    return device


def _write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "page.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_detected_apps_and_managed_devices_in_separate_files_are_joined(fleet: Fleet, tmp_path: Path) -> None:
    """GET /deviceManagement/detectedApps?$expand=managedDevices and GET
    /deviceManagement/managedDevices saved as files of their own and imported together
    give what the two in one file give: each device its own record's facts and the apps
    whose managedDevices name it."""
    text = (GOLDEN / "detected-apps.json").read_text(encoding="utf-8")
    decoder, pages, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        page, end = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        pages.append(page)
        at = end
    assert len(pages) >= 2
    files = [tmp_path / f"page{n}.json" for n in range(len(pages))]
    for path, page in zip(files, pages, strict=True):
        path.write_text(json.dumps(page), encoding="utf-8")

    def imported(db: Path, *paths: Path) -> list[tuple[Any, ...]]:
        assert run("--db", str(db), "init").code == 0
        result = run("--db", str(db), "--now", "2020-07-12T00:00:00Z", "import", "intune", *map(str, paths))
        assert result.code == 0, result.err
        con = sqlite3.connect(db)
        try:
            return con.execute(
                "SELECT d.source_id, d.owner, d.inventory_scope, group_concat(o.app_key) FROM devices d "
                "LEFT JOIN observations o ON o.device_id = d.id GROUP BY d.id ORDER BY d.source_id"
            ).fetchall()
        finally:
            con.close()

    assert imported(tmp_path / "apart.db", *files) == imported(tmp_path / "whole.db", GOLDEN / "detected-apps.json")


def test_an_app_named_with_markup_or_controls_is_kept_made_safe(tmp_path: Path) -> None:
    """An app's name is its maker's or the user's: one with markup or a control character
    costs the device nothing (the app is kept, made safe), in both of Intune's shapes."""
    apps = [{"displayName": "</> HTML Editor", "version": "2\x00"}, {"displayName": "TikTok", "version": "16.5.0"}]
    got = read(_write(tmp_path, {"value": [_device(detectedApps=apps)]}))
    names = [(a["name"], a["version"]) for a in got[0]["checkin"]["apps"]]
    assert names == [("\u2039/\u203a HTML Editor", "2\ufffd"), ("TikTok", "16.5.0")]
    csv_text = (GOLDEN / "AppInvRawData.csv").read_text("utf-8-sig").replace('"TikTok"', '"<b>TikTok</b>"', 1)
    path = tmp_path / "raw.csv"
    path.write_text(csv_text, encoding="utf-8")
    names_csv = {a["name"] for c in read(path) for a in c["checkin"]["apps"]}
    assert "\u2039b\u203aTikTok\u2039/b\u203a" in names_csv and "<b>TikTok</b>" not in names_csv
