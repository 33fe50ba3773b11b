"""``appban import apple-mdm``: MDM command results, as property lists and as webhook events.

Golden files (tests/inventory/golden/apple_mdm/): each input beside ``*.expected.json``,
the check-ins it must give.
"""

from __future__ import annotations

import base64
import contextlib
import json
import plistlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.errors import BadInput
from appban.inventory import apple_mdm
from appban.inventory.apple_mdm import MAX_DEPTH, AppleMdmFormat
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, where

GOLDEN = Path(__file__).parent / "golden" / "apple_mdm"
NOW = 1594382400000000  # 2020-07-10T12:00:00Z
OPTIONS = ReadOptions(now=NOW, max_bytes=1 << 20)


def read(path: Path, options: ReadOptions = OPTIONS) -> list[dict[str, object]]:
    out = []
    for line, checkin in AppleMdmFormat().read(str(path), options):
        assert line is None
        record = json.loads(msgspec.json.encode(checkin))
        record.pop("app_ids")
        out.append(record)
    return out


def expected(name: str) -> object:
    return json.loads((GOLDEN / name).read_text())


def test_micromdm_webhook_events() -> None:
    """MicroMDM's webhook events, one a line: a check-in event (skipped), DeviceInformation,
    a NotNow answer (skipped) and InstalledApplicationList, combined into one iPhone.

    Event envelope: https://github.com/micromdm/micromdm/blob/main/docs/user-guide/api-and-webhooks.md
    Results: https://developer.apple.com/documentation/devicemanagement/installedapplicationlistresponse
    and https://developer.apple.com/documentation/devicemanagement/deviceinformationresponse
    """
    got = read(GOLDEN / "micromdm-webhook.jsonl")
    assert got == expected("micromdm-webhook.expected.json")
    (phone,) = got
    device = phone["device"]
    assert device["inventory_scope"] == "full" and device["ownership"] == "corporate"
    # The EAS identifier every iPhone has is not evidence that it reads mail.
    assert device["eas_device_ids"] == [] and device["mail_access"] is None
    assert ["imei", "353160046563455"] in device["identifiers"]  # Apple's grouped digits, joined
    ids = [a["id"] for a in phone["apps"]]
    assert "com.example.failed" not in ids and "com.zhiliaoapp.musically" in ids


def test_nanomdm_webhook_events() -> None:
    """NanoMDM's events (an array): a User Enrollment's apps are managed only, and
    ManagedApplicationList lists only apps on the device.

    Event schema: https://github.com/micromdm/nanomdm/blob/main/service/webhook/event.json
    ManagedApplicationList: https://developer.apple.com/documentation/devicemanagement/managedapplicationlistresponse
    """
    got = read(GOLDEN / "nanomdm-webhook.json")
    assert got == expected("nanomdm-webhook.expected.json")
    personal, managed = got
    assert personal["device"]["inventory_scope"] == "managed"
    assert personal["device"]["ownership"] == "personal"
    assert personal["device"]["identifiers"] == [["enrollment_id", "F3A2D1C0-77B4-4E39-9C52-0A2B3C4D5E6F"]]
    assert managed["device"]["inventory_scope"] == "managed"
    assert [a["id"] for a in managed["apps"]] == ["com.microsoft.Office.Outlook"]


def test_binary_device_information_alone_lists_no_apps() -> None:
    """A Mac's DeviceInformation as a binary property list: a record of scope none, at
    the command's clock. https://developer.apple.com/documentation/devicemanagement/deviceinformationresponse
    """
    got = read(GOLDEN / "mac-device-information.bplist")
    assert got == expected("mac-device-information.expected.json")
    assert got[0]["device"]["inventory_scope"] == "none" and got[0]["observed_at"] == NOW


def test_an_app_list_without_device_information_is_refused() -> None:
    """Apple's iOS InstalledApplicationList example alone: its platform cannot be told.
    https://developer.apple.com/documentation/devicemanagement/installedapplicationlistresponse
    """
    with pytest.raises(BadInput) as caught:
        read(GOLDEN / "installed-application-list.plist")
    assert caught.value.field == "UDID" and "platform is unknown" in str(caught.value)


def _event(payload: bytes, created: str = "2020-07-10T14:00:00Z") -> str:
    raw = base64.b64encode(payload).decode()
    ack = {"udid": "U1", "status": "Acknowledged", "raw_payload": raw}
    return json.dumps({"topic": "mdm.Connect", "created_at": created, "acknowledge_event": ack})


INFO = {
    "QueryResponses": {"ProductName": "iPhone12,1", "SerialNumber": "F2LZK0ABN72J", "OSVersion": "13.5.1"},
    "Status": "Acknowledged",
    "UDID": "U1",
}


def _apps(*items: dict[str, object]) -> dict[str, object]:
    return {"InstalledApplicationList": list(items), "Status": "Acknowledged", "UDID": "U1"}


def test_the_newest_app_list_of_a_device_is_its_check_in(tmp_path: Path) -> None:
    older = _apps({"Identifier": "com.example.old"})
    newer = _apps({"Identifier": "com.example.new"})
    path = tmp_path / "events.jsonl"
    lines = [
        _event(plistlib.dumps(newer), "2020-07-10T15:00:00Z"),
        _event(plistlib.dumps(older), "2020-07-10T14:00:00Z"),
        _event(plistlib.dumps(INFO)),
    ]
    path.write_text("\n".join(lines) + "\n")
    (checkin,) = read(path)
    assert [a["id"] for a in checkin["apps"]] == ["com.example.new"]


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (b"not a plist at all", "[0].acknowledge_event.raw_payload", "well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<plist><dict><key>Status</key><string>&b;</string></dict></plist>",
            "[0].acknowledge_event.raw_payload",
            "entities",
        ),
        (
            b"<plist>" + b"<array>" * (MAX_DEPTH + 2) + b"</array>" * (MAX_DEPTH + 2) + b"</plist>",
            "[0].acknowledge_event.raw_payload:" + "[0]" * (MAX_DEPTH + 1),
            "deeper",
        ),
        (
            plistlib.dumps(_apps({"Identifier": 12, "Name": ["x"]})),
            "[0].acknowledge_event.raw_payload:InstalledApplicationList[0].Name",
            "expected a string",
        ),
        (plistlib.dumps(_apps("x")), "[0].acknowledge_event.raw_payload:InstalledApplicationList[0]", "object"),
        (
            b"<plist><dict><key>InstalledApplicationList</key><array><dict><key>BundleSize</key><integer>1"
            b"</integer></dict><dict><key>BundleSize</key><integer>big</integer></dict></array></dict></plist>",
            "[0].acknowledge_event.raw_payload:InstalledApplicationList[1].BundleSize",
            "not a number",
        ),
        (
            b"<plist><dict><key>odd key</key><dict><key>a</key><array><string><b/></string></array></dict>"
            b"</dict></plist>",
            "[0].acknowledge_event.raw_payload:['odd key'].a[0]",
            "holding elements",
        ),
    ],
    ids=["garbage", "entities", "depth", "wrong-type", "not-a-dict", "deep-number", "odd-key"],
)
def test_bad_results_name_file_record_and_field(tmp_path: Path, payload: bytes, field: str, words: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(_event(payload) + "\n" + _event(plistlib.dumps(INFO)) + "\n")
    with pytest.raises(BadInput) as caught:
        read(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_binary_plist_that_shares_containers_is_bounded(tmp_path: Path) -> None:
    """Each level refers twice to the one below: 2**24 visits if walked naively, in a 120-byte file."""
    objects = [b"\x50"]  # object 0: an empty ascii string
    for level in range(1, 25):
        objects.append(bytes([0xA2, level - 1, level - 1]))  # an array of two refs to the level below
    top = len(objects)
    objects.append(bytes([0xD1, top + 1, top - 1]))  # {"Status": the top level}
    objects.append(b"\x56Status")
    body = b"bplist00"
    offsets = []
    for obj in objects:
        offsets.append(len(body))
        body += obj
    table = len(body)
    body += bytes(offsets)  # one byte per offset: the file is under 256 bytes
    trailer = b"\x00" * 6 + bytes([1, 1]) + (len(objects)).to_bytes(8, "big") + top.to_bytes(8, "big")
    body += trailer + table.to_bytes(8, "big")
    path = tmp_path / "shared.bplist"
    path.write_bytes(body)
    with pytest.raises(BadInput) as caught:
        read(path)
    assert "same container" in str(caught.value)


def test_a_result_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.plist"
    path.write_bytes(plistlib.dumps(_apps(*({"Identifier": f"com.example.a{i}"} for i in range(2000)))))
    with pytest.raises(BadInput) as caught:
        read(path, ReadOptions(now=NOW, max_bytes=10_000))
    assert "larger than 10000 bytes" in str(caught.value)


def test_import_through_the_command_line_with_owners(fleet: Fleet) -> None:
    """End to end: the MDM names no owner; ``--owners`` maps the serial number to one."""
    owners = fleet.write("owners.csv", "key,email\nF2LZK0ABN72J,jane.doe@example.com\n")
    path = str(GOLDEN / "micromdm-webhook.jsonl")
    result = fleet.run("import", "apple-mdm", path, "--owners", str(owners))
    assert result.code == 0, result.err
    listed = json.loads(fleet.run("--json", "device", "list").out)
    mine = [d for d in listed["devices"] if d["source"] == "apple-mdm"]
    assert [(d["source_id"], d["owner"]) for d in mine] == [("00008030-001A2D3C0E91802E", "jane.doe@example.com")]


def test_bad_input_through_the_command_line_writes_nothing(fleet: Fleet) -> None:
    path = fleet.write("bad.jsonl", _event(b"<plist><dict><key>Status</key></dict></plist>") + "\n")
    assert_bad_input(fleet.run("import", "apple-mdm", str(path)), where(path), "raw_payload")
    fleet.assert_unchanged()


# -- fuzzing --------------------------------------------------------------------------------

SEEDS = [(GOLDEN / name).read_bytes() for name in ("micromdm-webhook.jsonl", "mac-device-information.bplist")]
SEEDS.append(plistlib.dumps(_apps({"Identifier": "com.example.a", "Name": "A"})))
SEEDS.append(plistlib.dumps(INFO, fmt=plistlib.FMT_BINARY))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_fuzz_mutated_files_give_check_ins_or_bad_input(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    with contextlib.suppress(BadInput):
        read(path)


# XML property lists cannot hold control characters: plistlib refuses to write them.
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=30,
    ),
    key=st.sampled_from(["InstalledApplicationList", "ManagedApplicationList", "QueryResponses", "UDID", "Status"]),
    binary=st.booleans(),
)
def test_fuzz_wrong_shapes_give_check_ins_or_bad_input(tmp_path: Path, value: object, key: str, binary: bool) -> None:
    result = {**INFO, **_apps({"Identifier": "com.example.a"}), key: value}
    cleaned = json.loads(json.dumps(result, default=lambda b: b.hex()))  # plists have no null
    cleaned = _no_nulls(cleaned)
    fmt = plistlib.FMT_BINARY if binary else plistlib.FMT_XML
    path = tmp_path / "fuzz.jsonl"
    path.write_text(_event(plistlib.dumps(cleaned, fmt=fmt)) + "\n")
    with contextlib.suppress(BadInput):
        read(path)


def _no_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value if v is not None]
    return value


FLAG = st.sampled_from([None, False, False, True, "true", []])
TEXT = st.sampled_from(["", "", "Slack", "4.1", None, 0, []])
APP = st.fixed_dictionaries(
    {"DownloadFailed": FLAG, "DownloadCancelled": FLAG}
    | dict.fromkeys(["Identifier", "Name", "ShortVersion", "Version"], TEXT)
)


@settings(max_examples=examples(300), deadline=None)
@given(apps=st.lists(st.sampled_from([APP, APP, APP, TEXT]).flatmap(lambda app: app), max_size=3))
def test_apps_read_at_once_are_read_as_one_at_a_time(apps: list[Any]) -> None:
    """The quick reading of plain apps gives the apps, or the error, of the careful one."""

    def outcome(read: Any) -> Any:
        try:
            return read()
        except BadInput as exc:
            return (exc.detail, exc.field)

    def careful() -> list[App]:
        read = (apple_mdm._installed_app(app, f"r:InstalledApplicationList[{i}]") for i, app in enumerate(apps))
        return [app for app in read if app is not None]

    quick = outcome(lambda: apple_mdm._installed({"InstalledApplicationList": apps}, "r:"))
    assert quick == outcome(careful)
