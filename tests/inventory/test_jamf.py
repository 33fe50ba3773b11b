"""``appban import jamf``: Jamf Pro's mobile devices, Classic API XML and Jamf Pro API JSON.

Golden files in golden/jamf/ are built from Jamf's documented examples; each
``NAME`` has its expected check-ins in ``NAME.expected.json``.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.inventory import _vendor, jamf
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin
from appban.inventory.jamf import JamfFormat
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, count, where

GOLDEN = Path(__file__).parent / "golden" / "jamf"
NOW = parse_time("2020-07-12T12:00:00Z")
OPTIONS = ReadOptions(now=NOW, max_bytes=4 << 20)


def summary(checkin: Checkin) -> dict[str, Any]:
    """A check-in as the expected files write it."""
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


def read(path: Path, options: ReadOptions = OPTIONS) -> list[dict[str, Any]]:
    return [summary(c) for _line, c in JamfFormat().read(str(path), options)]


def expected(name: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN / f"{name}.expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# -- golden files --------------------------------------------------------------------------------


def test_classic_api_one_mobile_device() -> None:
    """GET /JSSResource/mobiledevices/id/{id}: the general, location, applications and
    network sections as documented at
    https://developer.jamf.com/jamf-pro/reference/findmobiledevicesbyid (field names
    and example values also in the Classic API's schema, MobileDeviceGeneral:
    last_inventory_update_epoch in milliseconds, last_inventory_update_utc as
    2017-07-07T18:37:04.555-0500, exchange_activesync_device_identifier)."""
    assert read(GOLDEN / "classic_mobile_device.xml") == expected("classic_mobile_device.xml")


def test_classic_api_list_of_full_records() -> None:
    """A <mobile_devices> file of full records
    (https://developer.jamf.com/jamf-pro/reference/findmobiledevicesbyid, one per
    device): a personal device and a User Enrollment iPad list managed apps only, an
    Apple TV is no mobile device, a device with no inventory yet (epoch 0) lists none;
    IMEIs written with spaces are read without them."""
    assert read(GOLDEN / "classic_mobile_devices.xml") == expected("classic_mobile_devices.xml")


def test_jamf_pro_api_inventory_pages() -> None:
    """GET /api/v2/mobile-devices/detail (MobileDeviceInventorySearchResults:
    totalCount, results of mobileDeviceId, deviceType, general, hardware,
    userAndLocation, applications, network), two pages concatenated:
    https://developer.jamf.com/jamf-pro/reference/get_v2-mobile-devices-detail and the
    schema classes MobileDeviceIosInventory, MobileDeviceGeneral
    (deviceOwnershipType: Institutional, PersonalDeviceProfile, UserEnrollment,
    AccountDrivenUserEnrollment) and MobileDeviceApplicationInventoryDetail."""
    assert read(GOLDEN / "pro_mobile_devices_detail.json") == expected("pro_mobile_devices_detail.json")


def test_the_golden_files_import_through_the_command_line(fleet: Fleet) -> None:
    paths = [str(GOLDEN / n) for n in ("classic_mobile_device.xml", "classic_mobile_devices.xml")]
    result = fleet.run("import", "jamf", *paths, "--source", "jamf-eu")
    assert result.code == 0, result.err
    assert count(fleet.db, "devices", "source = 'jamf-eu'") == 4


def test_source_names_the_records() -> None:
    options = ReadOptions(now=NOW, max_bytes=4 << 20, source="jamf-us")
    assert {c["source"] for c in read(GOLDEN / "classic_mobile_device.xml", options)} == {"jamf-us"}


def test_a_time_without_offset_is_read_in_the_timezone(tmp_path: Path) -> None:
    doc = json.loads(_first_page())
    doc["results"][0]["general"]["lastInventoryUpdateDate"] = "2020-07-10T15:00:00"
    path = tmp_path / "naive.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    options = ReadOptions(now=NOW, max_bytes=4 << 20, timezone=ZoneInfo("America/New_York"))
    assert read(path, options)[0]["observed_at"] == "2020-07-10T19:00:00Z"


def test_a_record_without_applications_lists_none(tmp_path: Path) -> None:
    xml = (GOLDEN / "classic_mobile_device.xml").read_text(encoding="utf-8")
    start, end = xml.index("<applications>"), xml.index("</applications>") + len("</applications>")
    path = tmp_path / "noapps.xml"
    path.write_text(xml[:start] + xml[end:], encoding="utf-8")
    [device] = read(path)
    assert device["inventory_scope"] == "none" and device["apps"] == []


def _first_page() -> str:
    text = (GOLDEN / "pro_mobile_devices_detail.json").read_text(encoding="utf-8")
    return text[: text.index("\n}\n") + 2]


# -- bad input -----------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<mobile_device><general><id>&lol2;</id></general></mobile_device>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<mobile_device><general><id>&x;</id></general></mobile_device>
"""
SUMMARY_LIST = """<?xml version="1.0" encoding="UTF-8"?><mobile_devices><size>1</size><mobile_device>
<id>1</id><name>Kathys iPhone</name><udid>270aae10800b6e61a2ee2bbc285eb967050b5984</udid>
<serial_number>C02Q7KHTGFWF</serial_number><model_identifier>iPhone8,1</model_identifier>
</mobile_device></mobile_devices>"""


def _classic(**general: str) -> str:
    xml = (GOLDEN / "classic_mobile_device.xml").read_text(encoding="utf-8")
    for key, value in general.items():
        start = xml.index(f"<{key}>") + len(key) + 2
        xml = xml[:start] + value + xml[xml.index(f"</{key}>", start) :]
    return xml


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (BILLION_LAUGHS, ["DTD, entities or external references is refused"]),
        (EXTERNAL, ["DTD, entities or external references is refused"]),
        ("<mobile_device><general><id>1</id></general>", ["not well-formed XML"]),
        ('<?xml version="1.0" encoding="TF-8"?><mobile_device/>', ["unknown character encoding"]),
        ("<computer><general/></computer>", ["expected <mobile_device> or <mobile_devices>, got <computer>"]),
        (SUMMARY_LIST, ["field mobile_device[0]", "no <general> section"]),
        (_classic(supervised="yes"), ["field mobile_device.general.supervised", "expected true or false"]),
        (_classic(last_inventory_update_epoch="yesterday"), ["general.last_inventory_update_epoch"]),
        (_classic(email_address="tina@"), ["field mobile_device.location.email_address"]),
        (_classic(udid="abc&lt;script&gt;"), ["field mobile_device.general.udid", "markup"]),
    ],
    ids=[
        "entities",
        "external",
        "truncated",
        "encoding",
        "root",
        "summary-list",
        "boolean",
        "epoch",
        "email",
        "markup",
    ],
)
def test_bad_xml(fleet: Fleet, content: str, expected: list[str]) -> None:
    path = fleet.write("bad.xml", content)
    assert_bad_input(fleet.run("import", "jamf", str(path)), where(path), *expected)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("mobileDeviceId"), ["field results[0].mobileDeviceId", "missing"]),
        (lambda r: r["general"].update(supervised="maybe"), ["field results[0].general.supervised"]),
        (lambda r: r.update(applications={"identifier": "x"}), ["field results[0].applications", "a list"]),
        (lambda r: r["applications"].append("TikTok"), ["field results[0].applications[2]", "an object"]),
        (lambda r: r["general"].update(lastInventoryUpdateDate="10/07/2020"), ["general.lastInventoryUpdateDate"]),
        (lambda r: r.update(hardware=[]), ["field results[0].hardware", "expected an object"]),
    ],
    ids=["no-id", "boolean", "apps-object", "app-string", "time", "hardware-list"],
)
def test_bad_json(fleet: Fleet, change: Any, expected: list[str]) -> None:
    doc = json.loads(_first_page())
    change(doc["results"][0])
    path = fleet.write("bad.json", json.dumps(doc))
    assert_bad_input(fleet.run("import", "jamf", str(path)), where(path), *expected)
    fleet.assert_unchanged()


def test_a_record_larger_than_the_limit(tmp_path: Path) -> None:
    app = "<application><application_name>A</application_name><identifier>a.{}</identifier></application>"
    xml = _classic().replace("<applications>", "<applications>" + "".join(app.format(i) for i in range(20_000)))
    path = tmp_path / "big.xml"
    path.write_text(xml, encoding="utf-8")
    with pytest.raises(BadInput, match="larger than 200,000 bytes"):
        list(JamfFormat().read(str(path), ReadOptions(now=NOW, max_bytes=200_000)))


def test_text_without_tags_is_bounded_too(tmp_path: Path) -> None:
    path = tmp_path / "text.xml"
    path.write_text("<mobile_devices><mobile_device><general><name>" + "x" * 1_000_000, encoding="utf-8")
    with pytest.raises(BadInput, match="larger than 200,000 bytes"):
        list(JamfFormat().read(str(path), ReadOptions(now=NOW, max_bytes=200_000)))


# -- streaming -----------------------------------------------------------------------------------


def _big_list(path: Path, devices: int) -> None:
    record = (GOLDEN / "classic_mobile_device.xml").read_text(encoding="utf-8")
    record = record[record.index("<mobile_device>") :]
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?><mobile_devices>')
        for i in range(devices):
            f.write(record.replace("<id>1</id>", f"<id>{i + 1}</id>", 1))
        f.write("</mobile_devices>")


def test_a_list_is_read_in_memory_bounded_by_one_record(tmp_path: Path) -> None:
    """Peak memory of reading 200 devices and 2,000 devices differs by far less than
    the 2,000-device file: records are dropped once read."""
    peaks = []
    for devices in (200, 2000):
        path = tmp_path / f"{devices}.xml"
        _big_list(path, devices)
        tracemalloc.start()
        n = sum(1 for _ in JamfFormat().read(str(path), OPTIONS))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert n == devices
    size = (tmp_path / "2000.xml").stat().st_size
    assert peaks[1] - peaks[0] < size / 20, (peaks, size)


# -- fuzzing -------------------------------------------------------------------------------------

SEEDS = [(GOLDEN / n).read_bytes() for n in ("classic_mobile_devices.xml", "pro_mobile_devices_detail.json")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(("flip", "delete", "insert", "cut")))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(
                st.sampled_from([b"<", b">", b"&amp;", b'"', b"{", b"]", b"<x>", b"null", b"\x00", b"\xff"])
            )
        else:
            del data[at:]
        if not data:
            data = bytearray(b" ")
    return bytes(data)


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_files_give_checkins_or_bad_input(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(data)
    try:
        for _line, checkin in JamfFormat().read(str(path), OPTIONS):
            assert isinstance(checkin, Checkin)
    except BadInput as exc:
        assert exc.file == str(path)


# -- JSON documents one a line: the quick reader reads what ijson reads ---------------------------

VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from([0, -1, 9223372036854775807, 9223372036854775808, -9223372036854775808, 1.5, 1e300])
    | st.sampled_from(["", "AS0100000000000000000000", ":0000000000000000000", "results", "\u00e9"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "results"]), inner, max_size=2),
    max_leaves=6,
)
PAGE = st.fixed_dictionaries(
    {"totalCount": st.integers(0, 9), "results": st.lists(st.dictionaries(st.sampled_from(["a", "b"]), VALUE))}
)
OTHER = st.dictionaries(st.sampled_from(["results", "totalCount", "a"]), VALUE, max_size=3)
DOCUMENT = st.sampled_from([PAGE, PAGE, PAGE, OTHER, VALUE]).flatmap(lambda document: document)
# Lines as exporters write them, and as they go wrong: a key twice, spaces, an escape,
# a truncated line, two documents on one line, a blank line.
LINE_EDITS = [
    lambda b: b,
    lambda b: b.replace(b'{"totalCount"', b'{"results":[{"a":1}],"totalCount"', 1),
    lambda b: b.replace(b":", b": "),
    lambda b: b.replace(b'"results"', b'"\\u0072esults"', 1),
    lambda b: b.replace(b'{"totalCount"', b'{"\\u0072esults":[{"a":1}],"totalCount"', 1),
    lambda b: b[: len(b) // 2],
    lambda b: b + b" " + b,
    lambda b: b"",
]


@example(lines=[({"totalCount": 1, "results": [{"b": 1}]}, 1)], bom=False, max_bytes=4096)
@example(lines=[({"totalCount": 1, "results": [{"b": 1}]}, 4)], bom=False, max_bytes=4096)
@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.tuples(DOCUMENT, st.sampled_from([0, 0, 0, *range(len(LINE_EDITS))])), min_size=1, max_size=4),
    bom=st.booleans(),
    max_bytes=st.sampled_from([40, 4096, 4096]),
)
def test_lines_read_at_once_are_read_as_ijson_reads_them(
    tmp_path: Path, lines: list[tuple[Any, int]], bom: bool, max_bytes: int
) -> None:
    body = b"\n".join(LINE_EDITS[edit](json.dumps(doc, separators=(",", ":")).encode()) for doc, edit in lines)
    path = tmp_path / "pages.json"
    path.write_bytes(b"\xef\xbb\xbf" * bom + body + b"\n")

    def outcome(records: Any) -> Any:
        try:
            return list(records)
        except BadInput as exc:
            return (exc.detail, exc.file, exc.line, exc.field)

    keys: dict[str, Any] = {"list_keys": ("results",), "page_keys": ("totalCount",)}
    slow = outcome(_vendor.json_records(str(path), **keys))
    assert outcome(_vendor.json_records(str(path), max_bytes=max_bytes, **keys)) == slow


APP_CELL = st.sampled_from(["", " ", "Slack", "4.1", "", " ", "Slack", "4.1", None, 0, 1, True, []])
APP = st.fixed_dictionaries(dict.fromkeys(["identifier", "name", "shortVersion", "version"], APP_CELL))


@settings(max_examples=examples(300), deadline=None)
@given(apps=st.lists(st.sampled_from([APP, APP, APP, APP_CELL]).flatmap(lambda app: app), max_size=3))
def test_apps_read_at_once_are_read_as_one_at_a_time(apps: list[Any]) -> None:
    """The quick reading of plain applications gives the apps, or the error, of the careful one."""

    def outcome(read: Any) -> Any:
        try:
            return read()
        except BadInput as exc:
            return (exc.detail, exc.field)

    careful = outcome(lambda: [jamf._pro_app(app, f"r.applications[{i}]") for i, app in enumerate(apps)])
    assert outcome(lambda: jamf._pro_apps({"applications": apps}, "r")) == careful
