"""One device, one time, one snapshot: across files and across imports.

The probe: ``import appban a.json b.json`` with the same device and observed_at in
both files, TikTok in the second, kept the first and dropped TikTok ("1 no newer than
stored"); which file won depended on the order the admin typed them in.
"""

from __future__ import annotations

import json

from helpers_cli import Fleet, assert_bad_input, where

TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok"}
NOTES = {"id": "com.example.notes", "name": "Notes"}


def _checkin(apps: list[dict[str, str]], **device: object) -> str:
    body = {
        "device": {"id": "NEW-PHONE", "platform": "android", "owner": "bob.roe@example.com", **device},
        "observed_at": "2020-07-12T10:00:00Z",
        "apps": apps,
    }
    return json.dumps(body) + "\n"


def test_two_files_that_disagree_about_one_snapshot_are_refused(fleet: Fleet) -> None:
    clean = fleet.write("clean.jsonl", _checkin([]))
    banned = fleet.write("banned.jsonl", _checkin([TIKTOK]))
    result = fleet.run("import", "appban", str(clean), str(banned))
    assert_bad_input(result, where(banned, 1), "field apps")
    fleet.assert_unchanged()


def test_a_later_import_that_disagrees_with_the_stored_snapshot_is_refused(fleet: Fleet) -> None:
    first = fleet.write("first.jsonl", _checkin([TIKTOK], eas_device_ids=["EASNEW"]))
    assert fleet.run("import", "appban", str(first)).code == 0
    stored = fleet.snapshot()
    for name, text, field in (
        ("apps.jsonl", _checkin([], eas_device_ids=["EASNEW"]), "field apps"),
        ("owner.jsonl", _checkin([TIKTOK], eas_device_ids=["EASNEW"], owner="jane.doe@example.com"), "device.owner"),
        ("eas.jsonl", _checkin([TIKTOK], eas_device_ids=["EASOTHER"]), "device.eas_device_ids"),
    ):
        path = fleet.write(name, text)
        assert_bad_input(fleet.run("import", "appban", str(path)), where(path, 1), field)
        assert fleet.snapshot() == stored


def test_the_same_snapshot_again_is_harmless(fleet: Fleet) -> None:
    text = _checkin([TIKTOK, NOTES], eas_device_ids=["EASNEW"])
    once = fleet.write("once.jsonl", text)
    again = fleet.write("again.jsonl", _checkin([NOTES, TIKTOK], eas_device_ids=["EASNEW"]))
    result = fleet.run("import", "appban", str(once), str(again), str(once), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["unchanged"] == 2
    # Apps appban does not keep (not in the catalog, named by no policy) may differ:
    # they are not stored, so there is nothing to contradict.
    other = fleet.write("other.jsonl", _checkin([TIKTOK, {"id": "com.example.maps"}], eas_device_ids=["EASNEW"]))
    assert fleet.run("import", "appban", str(other)).code == 0
