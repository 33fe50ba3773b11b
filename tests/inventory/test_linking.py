"""One physical device, however many sources report it, through ``appban import``.

An Android phone seen by the Android Management API (its apps, no e-mail) and by the
Directory API (its owner, and that it syncs mail) is one device, evaluated on the
union; records that name different owners are listed as conflicts, never merged;
placeholders and crowded values never link; ``device unlink`` is remembered.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers_semantics import AFTER, APPLIED, BEFORE, TIKTOK_ANDROID, TIKTOK_IOS, Appban, checkin

TIKTOK = "com.zhiliaoapp.musically"
LATER = "2020-07-10T16:00:00Z"


def amapi(serial: str, *apps: str, device: str = "d1", at: str = "2020-07-10T14:00:00Z", **extra: Any) -> dict:
    """An Android Management API Device resource: apps, no e-mail."""
    return {
        "name": f"enterprises/LC00/devices/{device}",
        "managementMode": "DEVICE_OWNER",
        "ownership": "COMPANY_OWNED",
        "state": "ACTIVE",
        "lastStatusReportTime": at,
        "hardwareInfo": {"serialNumber": serial, "model": "Pixel 3a", "brand": "google"},
        "softwareInfo": {"androidVersion": "10"},
        "applicationReports": [{"packageName": p, "versionName": "1.0", "state": "INSTALLED"} for p in apps],
        **extra,
    }


def directory(serial: str, email: str, *, resource: str = "r1", at: str = "2020-07-10T14:30:00Z") -> dict:
    """A Directory API mobile device: its owner, and that it syncs the Workspace account."""
    return {
        "kind": "admin#directory#mobiledevice",
        "resourceId": resource,
        "deviceId": f"dev-{resource}",
        "email": [email],
        "model": "Pixel 3a",
        "os": "Android 10",
        "type": "ANDROID",
        "status": "APPROVED",
        "serialNumber": serial,
        "lastSync": at,
        "managedAccountIsOnOwnerProfile": False,
        "applications": [],
    }


def import_amapi(ab: Appban, *devices: dict, now: str = BEFORE, more: tuple[str, ...] = ()) -> Any:
    path = ab.file(".jsonl", "".join(json.dumps(d) + "\n" for d in devices))
    return ab("import", "android-management", path, *more, now=now)


def import_directory(ab: Appban, *devices: dict, now: str = BEFORE, more: tuple[str, ...] = ()) -> Any:
    page = {"kind": "admin#directory#mobiledevices", "mobiledevices": list(devices)}
    return ab("import", "google-directory", ab.file(".json", json.dumps(page)), *more, now=now)


@pytest.fixture
def fleet(ab: Appban) -> Appban:
    ab.init()
    ab.apply(scope={"platforms": ["ios", "android"], "mail_access": "required"})
    return ab


def devices(ab: Appban) -> list[dict]:
    return list(ab("device", "list", now=LATER)["devices"])


def test_an_mdm_record_and_a_mail_record_of_one_phone_are_one_device(fleet: Appban) -> None:
    import_amapi(fleet, amapi("94DAY0BK2X", TIKTOK), now=LATER)
    # Alone, the MDM's record has no owner and no known mail access: out of scope.
    [alone] = devices(fleet)
    assert alone["owner"] is None
    assert fleet.state(alone["id"], LATER) == "out_of_scope"
    import_directory(fleet, directory("94DAY0BK2X", "Jane.Doe@example.com"), now=LATER)
    [one] = devices(fleet)
    assert one["id"] == alone["id"] and one["records"] == 2
    doc = fleet.show(one["id"], LATER)
    assert doc["owner"] == "jane.doe@example.com"
    assert [(r["source"], r["linked_by"]) for r in doc["records"]] == [
        ("android-management", "serial:94DAY0BK2X"),
        ("google-directory", "serial:94DAY0BK2X"),
    ]
    # The union: the MDM's apps, the directory's owner and mail access.
    assert doc["policies"]["tiktok-mail"]["state"] == "violating"
    evidence = doc["policies"]["tiktok-mail"]["evidence"]
    assert [e["source"] for e in evidence if e["kind"] == "app"] == ["android-management"]
    assert fleet.status(LATER)["states"]["violating"] == 1
    assert sum(fleet.status(LATER)["states"].values()) == 1  # one phone, counted once
    # Either source's id finds it.
    assert fleet.show("r1", LATER)["id"] == one["id"]
    assert fleet("device", "list", "--ownerless", now=LATER)["devices"] == []


def test_the_link_holds_in_either_order_and_blocks_after_the_deadline(fleet: Appban) -> None:
    import_directory(fleet, directory("SER-2", "bob@example.com"), now=LATER)
    import_amapi(fleet, amapi("SER-2", TIKTOK), now=LATER)
    [one] = devices(fleet)
    assert one["owner"] == "bob@example.com" and one["records"] == 2
    fleet("evaluate", now=AFTER)
    assert fleet.state(one["id"], AFTER) == "blocked"


def test_records_naming_different_owners_are_a_conflict_not_a_device(fleet: Appban) -> None:
    import_directory(fleet, directory("SER-3", "ann@example.com", resource="ra"), now=LATER)
    import_directory(fleet, directory("SER-3", "bob@example.com", resource="rb"), now=LATER)
    assert len(devices(fleet)) == 2
    doc = fleet("device", "conflicts", now=LATER)
    assert doc["count"] == 1
    [conflict] = doc["conflicts"]
    assert conflict["identifier"] == "serial:SER-3"
    assert sorted(r["owner"] for r in conflict["records"]) == ["ann@example.com", "bob@example.com"]
    # A third record without an owner sharing the serial links to neither: which one?
    import_amapi(fleet, amapi("SER-3", TIKTOK), now=LATER)
    owners = sorted((d["owner"] or "") for d in devices(fleet))
    assert owners == ["", "ann@example.com", "bob@example.com"]


@pytest.mark.parametrize("serial", ["0000000000", "Unknown", "N/A", "FFFFFFFF", ""])
def test_placeholders_never_link(fleet: Appban, serial: str) -> None:
    import_amapi(fleet, amapi(serial, TIKTOK, device="a"), amapi(serial, device="b"), now=LATER)
    assert len(devices(fleet)) == 2


def test_a_value_shared_by_many_devices_links_none_of_them(fleet: Appban) -> None:
    many = [amapi("SHARED-SN", device=f"d{i}") for i in range(7)]
    import_amapi(fleet, *many, now=LATER)
    # The first few linked while the value was still rare; by the end of the import more
    # than a handful share it, and those links are undone.
    listed = devices(fleet)
    assert len(listed) == 7 and all(d["records"] == 1 for d in listed)
    import_directory(fleet, directory("SHARED-SN", "jane@example.com"), now=LATER)
    assert len(devices(fleet)) == 8
    assert fleet("audit", "verify", now=LATER)["ok"] is True


def test_a_value_that_becomes_crowded_in_a_later_import_undoes_its_links(fleet: Appban) -> None:
    import_amapi(fleet, amapi("LATER-SN", TIKTOK, device="a"), now=LATER)
    import_directory(fleet, directory("LATER-SN", "jane@example.com"), now=LATER)
    assert len(devices(fleet)) == 1
    import_amapi(fleet, *[amapi("LATER-SN", device=f"x{i}") for i in range(6)], now=LATER)
    assert len(devices(fleet)) == 8


def test_unlink_is_audited_evaluated_and_remembered(fleet: Appban) -> None:
    import_amapi(fleet, amapi("SER-4", TIKTOK), now=LATER)
    import_directory(fleet, directory("SER-4", "jane@example.com"), now=LATER)
    [one] = devices(fleet)
    record = fleet.show(one["id"], LATER)["records"][1]["record"]
    done = fleet("device", "unlink", record, now=LATER)
    assert done["from"] == one["id"]
    listed = devices(fleet)
    assert len(listed) == 2 and all(d["records"] == 1 for d in listed)
    # The MDM's phone has no owner or mail again; the directory's has no apps.
    states = {d["id"]: fleet.state(d["id"], LATER) for d in listed}
    assert sorted(states.values()) == ["out_of_scope", "unverified"]
    # A newer report of either source does not link them again.
    import_amapi(fleet, amapi("SER-4", TIKTOK, at="2020-07-10T15:00:00Z"), now=LATER)
    import_directory(fleet, directory("SER-4", "jane@example.com", at="2020-07-10T15:10:00Z"), now=LATER)
    assert len(devices(fleet)) == 2
    actions = [e["action"] for e in fleet("audit", "list", now=LATER)]
    assert "link" in actions and "unlink" in actions
    assert fleet("audit", "verify", now=LATER)["ok"] is True


def test_unlink_refuses_what_is_not_a_linked_record(fleet: Appban) -> None:
    import_amapi(fleet, amapi("SER-5"), now=LATER)
    result = fleet.run("device", "unlink", "rec-99", now=LATER)
    assert result.code == 2 and "rec-99" in result.err
    result = fleet.run("device", "unlink", "enterprises/LC00/devices/d1", now=LATER)
    assert result.code == 2 and "linked" in result.err


def test_owners_mapping_names_the_owner_by_serial(fleet: Appban) -> None:
    owners = fleet.file(".csv", "key,email\nser-6,Jane@Example.com\n")
    import_amapi(fleet, amapi("SER-6", TIKTOK), now=LATER, more=("--owners", owners))
    [one] = devices(fleet)
    assert one["owner"] == "jane@example.com"
    assert fleet("device", "list", "--ownerless", now=LATER)["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("email,key\nx,jane@example.com\n", "key,email"),
        ("key,email\nSER-6,not-an-address\n", "email"),
        ("key,email\nSER-6,a@example.com\nser-6,b@example.com\n", "email"),
        ("key,email\n", "no mappings"),
    ],
)
def test_a_bad_owners_file_is_refused_and_nothing_written(fleet: Appban, body: str, field: str) -> None:
    before = fleet.dump()
    owners = fleet.file(".csv", body)
    path = fleet.file(".jsonl", json.dumps(amapi("SER-7")) + "\n")
    result = fleet.run("import", "android-management", path, "--owners", owners, now=LATER)
    assert result.code == 2 and owners in result.err and field in result.err
    assert result.err.count("\n") == 1
    assert fleet.dump() == before


def test_an_ownerless_device_is_kept_evaluated_and_listed(fleet: Appban) -> None:
    import_amapi(fleet, amapi("SER-8", TIKTOK, device="x"), now=LATER)
    doc = fleet("device", "list", "--ownerless", now=LATER)
    assert doc["count"] == 1 and doc["devices"][0]["owner"] is None
    assert fleet.show(doc["devices"][0]["id"], LATER)["policies"]["tiktok-mail"]["state"] == "out_of_scope"


def test_a_source_name_keeps_two_tenants_apart(fleet: Appban) -> None:
    import_amapi(fleet, amapi("SER-9", device="same"), now=LATER, more=("--source", "tenant-a"))
    import_amapi(fleet, amapi("SER-10", device="same"), now=LATER, more=("--source", "tenant-b"))
    assert sorted(d["source"] for d in devices(fleet)) == ["tenant-a", "tenant-b"]
    result = fleet.run("import", "android-management", fleet.file(".jsonl", "{}\n"), "--source", "Bad Name", now=LATER)
    assert result.code == 2


def test_linking_on_an_activesync_device_id_changes_the_gate_answer(fleet: Appban) -> None:
    """The Exchange-style record (a DeviceId) joins the MDM's (apps): the gate denies
    that DeviceId once the deadline passes."""
    fleet.ingest(
        {
            "source": "mdm",
            "device": {"id": "M1", "platform": "ios", "owner": "jane@example.com", "eas_device_ids": ["EASJ1"]},
            "observed_at": "2020-07-10T14:00:00Z",
            "apps": [{"id": TIKTOK, "name": "TikTok"}],
        },
        {
            "source": "mail",
            "device": {
                "id": "EASJ1",
                "platform": "ios",
                "owner": "jane@example.com",
                "eas_device_ids": ["EASJ1"],
                "inventory_scope": "managed",
            },
            "observed_at": "2020-07-10T14:10:00Z",
            "apps": [],
        },
        now=APPLIED,
    )
    assert len(devices(fleet)) == 1
    fleet("evaluate", now=AFTER)
    assert fleet.decide("EASJ1", "jane@example.com", AFTER) == ("deny", "blocked:tiktok-mail")


def test_a_crowded_value_leaves_each_device_what_it_had(fleet: Appban) -> None:
    """Undoing a crowded value's links gives the first device back its own record, with
    the exemption granted to it before the crowd came."""
    import_amapi(fleet, amapi("CROWD-SN", TIKTOK, device="first"), now=LATER)
    [first] = devices(fleet)
    fleet(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        first["id"],
        "--until",
        "2020-08-01T00:00:00Z",
        "--reason",
        "field trial",
        now=LATER,
    )
    import_amapi(fleet, *[amapi("CROWD-SN", device=f"n{i}") for i in range(6)], now=LATER)
    listed = {d["id"]: d for d in devices(fleet)}
    assert len(listed) == 7
    assert listed[first["id"]]["source_id"] == "enterprises/LC00/devices/first"
    exemptions = fleet("exempt", "list", now=LATER)
    assert [e["device"] for e in exemptions["exemptions"]] == [first["id"]]


def test_unlinked_records_stay_apart_when_a_third_record_shares_both(fleet: Appban) -> None:
    import_amapi(fleet, amapi("BRIDGE-SN", TIKTOK), now=LATER)
    import_directory(fleet, directory("BRIDGE-SN", "jane@example.com"), now=LATER)
    [one] = devices(fleet)
    record = fleet.show(one["id"], LATER)["records"][1]["record"]
    fleet("device", "unlink", record, now=LATER)
    # A third source sees the phone: it may join one of the two, never both.
    import_amapi(fleet, amapi("BRIDGE-SN", device="other"), now=LATER, more=("--source", "second-mdm"))
    assert all(d["records"] <= 2 for d in devices(fleet))
    assert len(devices(fleet)) >= 2


def test_a_record_whose_owner_changes_leaves_the_linked_device(fleet: Appban) -> None:
    import_amapi(fleet, amapi("HANDED-SN", TIKTOK), now=LATER)
    import_directory(fleet, directory("HANDED-SN", "jane@example.com"), now=LATER)
    import_directory(fleet, directory("HANDED-SN", "jane@example.com"), now=LATER, more=("--source", "tenant-b"))
    [one] = devices(fleet)
    assert one["records"] == 3
    # One directory now says the phone is Bob's, the other still Jane's: they disagree,
    # so the record that changed leaves, and the pair is a conflict.
    import_directory(fleet, directory("HANDED-SN", "bob@example.com", at="2020-07-10T15:00:00Z"), now=LATER)
    listed = sorted((d["owner"], d["records"]) for d in devices(fleet))
    assert listed == [("bob@example.com", 1), ("jane@example.com", 2)]
    assert fleet("device", "conflicts", now=LATER)["count"] == 1
    assert fleet("audit", "verify", now=LATER)["ok"] is True


def test_an_owner_handed_over_is_followed_when_no_record_disagrees(fleet: Appban) -> None:
    import_amapi(fleet, amapi("HANDED-2", TIKTOK), now=LATER)
    import_directory(fleet, directory("HANDED-2", "jane@example.com"), now=LATER)
    import_directory(fleet, directory("HANDED-2", "bob@example.com", at="2020-07-10T15:00:00Z"), now=LATER)
    [one] = devices(fleet)
    assert one["owner"] == "bob@example.com" and one["records"] == 2


def test_owners_mapping_two_people_for_one_device_is_refused(fleet: Appban) -> None:
    owners = fleet.file(".csv", "key,email\nSER-11,jane@example.com\nenterprises/LC00/devices/d1,bob@example.com\n")
    path = fleet.file(".jsonl", json.dumps(amapi("SER-11")) + "\n")
    before = fleet.dump()
    result = fleet.run("import", "android-management", path, "--owners", owners, now=LATER)
    assert result.code == 2 and "--owners" in result.err and path in result.err
    assert fleet.dump() == before


@pytest.mark.parametrize("eas", ["Unknown", "0000000000"])
def test_placeholder_activesync_ids_are_dropped(fleet: Appban, eas: str) -> None:
    fleet.ingest(
        *[
            {
                "source": "mdm",
                "device": {"id": f"P{i}", "platform": "ios", "owner": "jane@example.com", "eas_device_ids": [eas]},
                "observed_at": "2020-07-10T14:00:00Z",
                "apps": [],
            }
            for i in range(2)
        ],
        now=LATER,
    )
    assert len(devices(fleet)) == 2


def test_ids_of_devices_folded_away_are_never_given_again(fleet: Appban) -> None:
    import_amapi(fleet, amapi("FOLD-SN", TIKTOK), now=LATER)
    import_directory(fleet, directory("FOLD-SN", "jane@example.com"), now=LATER)  # dev-2 folded into dev-1
    [one] = devices(fleet)
    import_amapi(fleet, amapi("OTHER-SN", device="new"), now=LATER)
    ids = sorted(int(d["id"][4:]) for d in devices(fleet))
    assert ids == [int(one["id"][4:]), 3]
    assert fleet.run("device", "show", "dev-" + "9" * 40, now=LATER).code == 2
    assert fleet.run("device", "unlink", "rec-" + "9" * 40, now=LATER).code == 2


# -- what a record may change -------------------------------------------------------------------


def test_records_of_different_platforms_never_link(ab: Appban) -> None:
    """A record that claims another kind of device's identifier (a Mac with an iPhone's
    ActiveSync DeviceId, whoever sent it) stays a device of its own: linked, it would
    make the phone a Mac, out of a phone policy's scope, and the phone would be allowed."""
    ab.init()
    ab.apply(scope={"platforms": ["ios", "ipados"], "mail_access": "required"})
    phone = checkin("IPHONE-1", platform="ios", apps=[TIKTOK_IOS], eas=["EAS-PHONE"], source="mdm")
    ab.ingest(phone, now=LATER)
    assert ab.state("mdm:IPHONE-1", AFTER) == "blocked"
    fake = checkin("FAKE-MAC", platform="macos", apps=[], eas=["EAS-PHONE"], source="osquery", at=LATER)
    ab.ingest(fake, now=LATER)
    shown = ab.show("mdm:IPHONE-1", AFTER)
    assert shown["platform"] == "ios" and [r["source"] for r in shown["records"]] == ["mdm"]
    assert ab.state("mdm:IPHONE-1", AFTER) == "blocked"
    assert ab.decide("EAS-PHONE", "ann", AFTER) == ("deny", "blocked:tiktok-mail")
    # An iPad record of the same DeviceId is the same family: it links, and the device
    # stays what it was.
    ab.ingest(checkin("IPAD-VIEW", platform="ipados", apps=[], eas=["EAS-PHONE"], source="exchange"), now=LATER)
    shown = ab.show("mdm:IPHONE-1", AFTER)
    assert shown["platform"] == "ios" and sorted(r["source"] for r in shown["records"]) == ["exchange", "mdm"]


def test_a_linked_record_that_reports_another_platform_leaves(ab: Appban) -> None:
    ab.init()
    ab.apply(scope={"platforms": ["android"], "mail_access": "required"})
    ab.ingest(
        checkin("P1", apps=[TIKTOK_ANDROID], eas=["EAS-P1"], source="mdm"),
        checkin("P1-MAIL", apps=[], eas=["EAS-P1"], source="mail", at=LATER),
        now=LATER,
    )
    [one] = devices(ab)
    assert one["records"] == 2
    ab.ingest(checkin("P1-MAIL", platform="windows", apps=[], eas=["EAS-P1"], source="mail", at=AFTER), now=AFTER)
    kinds = sorted((d["platform"], d["records"]) for d in ab("device", "list", now=AFTER)["devices"])
    assert kinds == [("android", 1), ("windows", 1)]
    assert ab.state("mdm:P1", AFTER) == "blocked"


def test_a_newer_clean_report_of_another_source_does_not_clear_an_app(ab: Appban) -> None:
    """The union: a source that never saw TikTok, reporting later and "full", does not
    make a phone on which another source saw it compliant (a forged clean report would
    otherwise unblock anyone); the source that saw it clears it."""
    ab.init()
    ab.apply(scope={"platforms": ["android"], "mail_access": "required"})
    ab.ingest(checkin("P2", apps=[TIKTOK_ANDROID], eas=["EAS-P2"], source="mdm"), now=LATER)
    ab.ingest(checkin("P2-AGENT", apps=[], eas=["EAS-P2"], source="agent", at=LATER), now=LATER)
    shown = ab.show("mdm:P2", AFTER)
    assert len(shown["records"]) == 2 and shown["observed_at"] == LATER
    assert ab.state("mdm:P2", AFTER) == "blocked"
    ab.ingest(checkin("P2", apps=[], eas=["EAS-P2"], source="mdm", at=AFTER), now=AFTER)
    assert ab.state("mdm:P2", AFTER) == "compliant"
