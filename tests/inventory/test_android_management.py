"""``appban import android-management``: Android Management API ``Device`` resources.

Golden files (tests/inventory/golden/android_management/): ``devices.page1.json`` is two
``enterprises.devices.list`` pages concatenated, shaped as the Device resource is
documented; ``devices.expected.json`` is what appban reads from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from test_google_directory import FUZZ, assert_reads_or_refuses, mutated, options, read

from appban.errors import BadInput
from appban.inventory.android_management import AndroidManagementFormat, signing_sha256
from helpers_cli import Fleet, assert_bad_input, where

GOLDEN = Path(__file__).parent / "golden" / "android_management"
PAGES = GOLDEN / "devices.page1.json"
# The TikTok report's SHA-256 fingerprint, given in base64 in the golden file.
TIKTOK_SHA256 = "194c0a9d62ae05f7d4d5e1d2b7e2a8f7f1b3e6c901a3498ae6f71cd11dda5814"


def pages() -> list[dict[str, Any]]:
    text = PAGES.read_text()
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        doc, end = decoder.raw_decode(text, at)
        docs.append(doc)
        at = end + (len(text[end:]) - len(text[end:].lstrip()))
    return docs


def test_the_documented_devices_read_as_the_golden_file() -> None:
    """Devices shaped as documented at
    https://developers.google.com/android/management/reference/rest/v1/enterprises.devices
    and list pages as at
    https://developers.google.com/android/management/reference/rest/v1/enterprises.devices/list
    (``devices``, ``nextPageToken``); ApplicationReport fields as at
    https://developers.google.com/android/management/reference/rest/v1/enterprises.devices#applicationreport
    """
    expected = json.loads((GOLDEN / "devices.expected.json").read_text())
    assert read(AndroidManagementFormat(), PAGES) == expected


def test_scope_ownership_and_identifiers() -> None:
    by_id = {d["id"].rsplit("/", 1)[1]: d for d in read(AndroidManagementFormat(), PAGES)}
    owned, personal, provisioning = by_id["3a6fbb9dc6d0b3f1"], by_id["3d91a0c7b25e4f18"], by_id["35c2f0b4a1d6e7c9"]
    assert "30a1b2c3d4e5f607" not in by_id  # DELETED: the device's last report
    assert (owned["inventory_scope"], owned["ownership"]) == ("full", "corporate")  # DEVICE_OWNER
    assert (personal["inventory_scope"], personal["ownership"]) == ("managed", "personal")  # PROFILE_OWNER
    assert provisioning["inventory_scope"] == "none"  # no applicationReports
    # Android 12+ personal devices report the enterprise-specific id as serial number.
    assert personal["identifiers"] == [["android_id", "9C4F1E0D2B7A3865"]]
    assert ["android_id", "7NPR3B6QJK2M4WXZ"] in owned["identifiers"]
    assert personal["owner"] is None  # accountIdentifier is an enterprise user id, not an e-mail
    apps = {a[0]: a for a in owned["apps"]}
    assert "com.example.oldchat" not in apps  # state REMOVED
    assert apps["com.zhiliaoapp.musically"][3] == TIKTOK_SHA256  # its SHA-256 form, from base64
    assert apps["com.google.android.gm"][3] is None  # a SHA-1 fingerprint only


@pytest.mark.parametrize(
    ("fingerprints", "expected"),
    [
        (["38918a453d07199354f8b19af05ec6562ced5788"], None),
        (["38:91:8A:45:3D:07:19:93:54:F8:B1:9A:F0:5E:C6:56:2C:ED:57:88"], None),
        (["OJGKRT0HGZNU+LGa8F7GVizdV4g="], None),
        (["A" * 64], "a" * 64),
        ([":".join(["AB"] * 32)], "ab" * 32),
        (
            ["GUwKnWKuBffU1eHSt+Ko9/Gz5skBo0mK5vcc0R3aWBQ="],
            TIKTOK_SHA256,
        ),
        (
            ["GUwKnWKuBffU1eHSt-Ko9_Gz5skBo0mK5vcc0R3aWBQ"],
            TIKTOK_SHA256,
        ),
        (["38918a453d07199354f8b19af05ec6562ced5788", "b" * 64, "c" * 64], "b" * 64),
    ],
)
def test_signing_fingerprints_are_normalised(fingerprints: list[str], expected: str | None) -> None:
    assert signing_sha256(fingerprints, "r") == expected


@pytest.mark.parametrize("bad", ["abc", "38918a453d07199354f8b19af05ec6562ced57", "!" * 44, "QUJD", 12])
def test_a_fingerprint_that_is_no_digest_is_refused(bad: object) -> None:
    with pytest.raises(BadInput) as caught:
        signing_sha256(["a" * 64, bad], "devices[0].applicationReports[1].signingKeyCertFingerprints")
    assert caught.value.field == "devices[0].applicationReports[1].signingKeyCertFingerprints[1]"


def test_import_end_to_end(fleet: Fleet) -> None:
    """The company-owned, fully managed device of the documented page, whose
    ``user.accountIdentifier`` is an e-mail, imported with its owner and full inventory.
    A Device says nothing of mail: TikTok is evidence, and the state waits for a record
    that knows the phone reads mail."""
    page = pages()[0]
    path = fleet.write("devices.json", json.dumps(page))
    result = fleet.run("--json", "import", "android-management", str(path))
    assert result.code == 0, result.err
    listed = json.loads(fleet.run("--json", "device", "list").out)["devices"]
    (ref,) = [d["id"] for d in listed if d["source"] == "android-management"]
    shown = json.loads(fleet.run("--json", "device", "show", ref).out)
    assert shown["owner"] == "jane.doe@example.com"
    assert shown["inventory_scope"] == "full"
    evidence = shown["policies"]["tiktok-mail"]["evidence"]
    assert any(e.get("app") == "com.zhiliaoapp.musically" and e["present"] for e in evidence)


def _device(change: dict[str, Any]) -> dict[str, Any]:
    page = pages()[0]
    page["devices"][0].update(change)
    return page


@pytest.mark.parametrize(
    ("change", "field", "detail"),
    [
        ({"name": None}, "devices[0].name", "missing"),
        ({"lastStatusReportTime": "10/07/2020"}, "devices[0].lastStatusReportTime", ""),
        ({"hardwareInfo": ["Pixel"]}, "devices[0].hardwareInfo", "expected an object"),
        ({"applicationReports": {"packageName": "x"}}, "devices[0].applicationReports", "expected a list"),
        (
            {"applicationReports": [{"packageName": "a.b", "signingKeyCertFingerprints": ["xyz"]}]},
            "devices[0].applicationReports[0].signingKeyCertFingerprints[0]",
            "fingerprint",
        ),
        ({"user": {"accountIdentifier": ["jane"]}}, "devices[0].user.accountIdentifier", "expected a string"),
    ],
)
def test_bad_devices_name_file_record_and_field(fleet: Fleet, change: dict[str, Any], field: str, detail: str) -> None:
    path = fleet.write("bad.json", json.dumps(_device(change)))
    assert_bad_input(fleet.run("import", "android-management", str(path)), where(path), field, detail)
    fleet.assert_unchanged()


@FUZZ
@given(mutated(pages()[0]))
def test_fuzzed_devices_read_or_are_refused(data: bytes) -> None:
    assert_reads_or_refuses(AndroidManagementFormat(), data)


def test_an_app_named_with_markup_is_kept_made_safe(tmp_path: Path) -> None:
    """An app's name is its maker's: markup in it costs the device nothing."""
    page = _device({"applicationReports": [{"packageName": "com.example.htmleditor", "displayName": "<b>x</b>"}]})
    path = tmp_path / "page.json"
    path.write_text(json.dumps(page), encoding="utf-8")
    checkins = [c for _line, c in AndroidManagementFormat().read(str(path), options())]
    apps = [(a.id, a.name) for a in checkins[0].apps]
    assert apps == [("com.example.htmleditor", "\u2039b\u203ax\u2039/b\u203a")]
