"""How an import applies: checked whole first, applied in short transactions, resumable;
differential streams (osquery) applied in order; vendor times read in --timezone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appban.inventory import importer
from appban.inventory.ingest import Ingestor
from helpers_semantics import Appban

NOW = "2020-07-10T18:00:00Z"
TIKTOK = "com.zhiliaoapp.musically"


def line(action: str, rows: Any, *, epoch: int, counter: int, at: int, host: str = "mac-1") -> str:
    """One osquery result-log line of the ``apps`` table (macOS)."""
    body: dict[str, Any] = {
        "name": "pack_inventory_apps",
        "hostIdentifier": host,
        "calendarTime": "Fri Jul 10 15:00:00 2020 UTC",
        "unixTime": at,
        "epoch": epoch,
        "counter": counter,
        "numerics": False,
        "decorations": {"hardware_serial": f"SN-{host}"},
    }
    if action == "snapshot":
        body.update(action="snapshot", snapshot=rows)
    elif action == "batch":
        body["diffResults"] = rows
    else:
        body.update(action=action, columns=rows)
    return json.dumps(body) + "\n"


def app(bundle: str, name: str) -> dict[str, str]:
    return {"name": f"{name}.app", "bundle_identifier": bundle, "bundle_short_version": "1.0", "path": f"/A/{name}.app"}


T0 = 1594393200  # 2020-07-10T15:00:00Z


def present(ab: Appban) -> list[str]:
    return [r[0] for r in ab.sql("SELECT app_key FROM observations WHERE gone_at IS NULL ORDER BY app_key")]


@pytest.fixture
def mac(ab: Appban) -> Appban:
    ab.init()
    return ab


def test_a_differential_stream_changes_the_app_set_in_order(mac: Appban) -> None:
    tiktok, notes = app(TIKTOK, "TikTok"), app("com.example.notes", "Notes")
    keep = ("--keep-full-inventory",)
    mac("import", "osquery", mac.file(".log", line("snapshot", [notes], epoch=7, counter=1, at=T0)), *keep, now=NOW)
    assert present(mac) == ["com.example.notes"]
    diff = {"added": [tiktok], "removed": [notes]}
    mac("import", "osquery", mac.file(".log", line("batch", diff, epoch=7, counter=2, at=T0 + 60)), *keep, now=NOW)
    assert present(mac) == [TIKTOK]
    # A row of an older epoch, or an earlier count of this one, changes nothing.
    stale = line("batch", {"added": [notes], "removed": []}, epoch=6, counter=9, at=T0 + 120)
    again = line("batch", {"added": [notes], "removed": []}, epoch=7, counter=2, at=T0 + 120)
    doc = mac("import", "osquery", mac.file(".log", stale + again), *keep, now=NOW)
    assert doc["unchanged"] == 2 and present(mac) == [TIKTOK]
    # A new epoch starts again from its first (counter 0) result: the whole set.
    fresh = line("batch", {"added": [notes], "removed": []}, epoch=8, counter=0, at=T0 + 180)
    mac("import", "osquery", mac.file(".log", fresh), *keep, now=NOW)
    assert present(mac) == ["com.example.notes"]


def test_vendor_times_without_an_offset_are_read_in_the_given_zone(mac: Appban) -> None:
    """Workspace ONE's LastSeen has no offset."""
    page = {
        "Devices": [
            {
                "Id": {"Value": 17},
                "Udid": "00008020-000915083C80012E",
                "SerialNumber": "F2LXK0AAAAAA",
                "UserEmailAddress": "jane@example.com",
                "Ownership": "C",
                "Platform": "Apple",
                "Model": "iPhone 11",
                "OperatingSystem": "13.5.1",
                "LastSeen": "2020-07-10T09:00:00",
                "DeviceApps": {"DeviceApps": [], "Page": 0, "PageSize": 500, "Total": 0},
            }
        ],
        "Page": 0,
        "PageSize": 500,
        "Total": 1,
    }
    path = mac.file(".json", json.dumps(page))
    mac("import", "workspace-one", path, "--timezone", "America/New_York", now=NOW)
    [(observed,)] = mac.sql("SELECT observed_at FROM devices")
    assert observed == 1594386000 * 1_000_000  # 09:00 in New York is 13:00 UTC
    result = mac.run("import", "workspace-one", path, "--timezone", "Mars/Olympus", now=NOW)
    assert result.code == 2 and "--timezone" in result.err


def fleet_lines(n: int) -> str:
    return "".join(
        line("snapshot", [app(TIKTOK, "TikTok")] if i % 3 == 0 else [], epoch=1, counter=1, at=T0, host=f"h{i}")
        for i in range(n)
    )


def kept(ab: Appban) -> list[tuple[Any, ...]]:
    return ab.sql(
        "SELECT d.source_id, d.observed_at, group_concat(o.app_key) FROM devices d "
        "LEFT JOIN observations o ON o.device_id = d.id AND o.gone_at IS NULL GROUP BY d.id ORDER BY d.source_id"
    )


def test_an_import_cut_short_is_finished_by_running_it_again(
    mac: Appban, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mac.file(".log", fleet_lines(20))
    monkeypatch.setattr(importer, "BATCH_CHECKINS", 4)
    real = Ingestor.ingest
    calls = 0

    def crash(self: Ingestor, c: Any, now: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 11:
            raise KeyboardInterrupt  # the process dies here: a kill, a power cut
        real(self, c, now)

    monkeypatch.setattr(Ingestor, "ingest", crash)
    assert mac.run("import", "osquery", path, now=NOW).code != 0
    # Two short transactions went in; the third did not. The log says an import began.
    assert mac.sql("SELECT count(*) FROM devices") == [(8,)]
    actions = [e["action"] for e in mac("audit", "list", now=NOW)]
    assert "import-started" in actions and "import" not in actions
    monkeypatch.setattr(Ingestor, "ingest", real)
    doc = mac("import", "osquery", path, now=NOW)
    assert doc["new"] == 12 and doc["unchanged"] == 8
    # The same as importing the file once, whole.
    other = Appban(tmp_path / "clean")
    other.root.mkdir()
    other.init()
    other("import", "osquery", path, now=NOW)
    assert kept(mac) == kept(other)
    assert mac("audit", "verify", now=NOW)["ok"] is True


def test_a_file_that_fails_anywhere_writes_nothing(mac: Appban, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file is checked before anything is applied, even in many transactions."""
    monkeypatch.setattr(importer, "BATCH_CHECKINS", 2)
    bad = fleet_lines(9) + '{"action": "snapshot", "name": "apps"}\n'
    before = mac.dump()
    result = mac.run("import", "osquery", mac.file(".log", bad), now=NOW)
    assert result.code == 2 and ":10" in result.err or "[9]" in result.err or "line 10" in result.err
    assert mac.dump() == before


def test_people_from_a_directory_keep_their_groups_and_members_set_one_group(mac: Appban) -> None:
    mac.people([("jane@example.com", "Jane", "Sales", "staff;travel", "Europe/Paris")])
    users = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "value": [
            {"id": "1", "displayName": "Jane Doe", "mail": "Jane@Example.com", "department": "Finance"},
            {"id": "2", "displayName": "Bob Roe", "userPrincipalName": "bob@example.com"},
        ],
    }
    mac("people", "import", mac.file(".json", json.dumps(users)), "--format", "graph", now=NOW)
    people = {p["email"]: p for p in mac("people", "list", now=NOW)["people"]}
    assert people["jane@example.com"]["org_unit"] == "Finance"
    assert people["jane@example.com"]["groups"] == ["staff", "travel"]  # the directory named none
    assert people["jane@example.com"]["timezone"] == "Europe/Paris"
    members = {"value": [{"@odata.type": "#microsoft.graph.user", "id": "2", "mail": "bob@example.com"}]}
    path = mac.file(".json", json.dumps(members))
    doc = mac("people", "import", path, "--format", "graph-members", "--group", "staff", now=NOW)
    assert doc["group"] == "staff" and doc["members"] == 1
    people = {p["email"]: p for p in mac("people", "list", now=NOW)["people"]}
    assert people["bob@example.com"]["groups"] == ["staff"]
    assert people["jane@example.com"]["groups"] == ["travel"]  # left the group: not a member
    result = mac.run("people", "import", path, "--format", "graph-members", now=NOW)
    assert result.code == 2 and "--group" in result.err


def test_apple_mdm_results_in_separate_files_are_one_device(mac: Appban) -> None:
    """An MDM server stores each command result on its own: a device's app list and its
    DeviceInformation are read together when imported together."""
    import plistlib
    from pathlib import Path

    apps = Path(__file__).parent / "golden" / "apple_mdm" / "installed-application-list.plist"
    udid = plistlib.loads(apps.read_bytes())["UDID"]
    info = {
        "UDID": udid,
        "Status": "Acknowledged",
        "CommandUUID": "0001",
        "QueryResponses": {"ProductName": "iPhone12,1", "SerialNumber": "F2LXK0AAAAAA", "OSVersion": "13.5.1"},
    }
    path = mac.root / "info.plist"
    path.write_bytes(plistlib.dumps(info))
    alone = mac.run("import", "apple-mdm", str(apps), now=NOW)
    assert alone.code == 2 and "DeviceInformation" in alone.err
    doc = mac("import", "apple-mdm", str(apps), str(path), now=NOW)
    assert doc["new"] == 1
    [one] = mac("device", "list", now=NOW)["devices"]
    assert one["platform"] == "ios" and one["source_id"] == udid


def test_a_gap_in_a_differential_stream_proves_no_absence(mac: Appban) -> None:
    """A lost or late differential (counter 2 before counter 1): the app set may miss
    what the lost report added, so until the next whole set the host's inventory is
    not full, and a banned app's absence is not proven."""
    mac.apply(apps=[f"macos:{TIKTOK}"], scope={"platforms": ["macos"], "mail_access": "any"}, now=NOW)
    base = line("snapshot", [app("com.example.notes", "Notes")], epoch=3, counter=0, at=T0)
    late = line("batch", {"added": [app(TIKTOK, "TikTok")], "removed": []}, epoch=3, counter=1, at=T0 + 60)
    later = line("batch", {"added": [app("com.example.vim", "Vim")], "removed": []}, epoch=3, counter=2, at=T0 + 120)
    mac("import", "osquery", mac.file(".log", base + later + late), now=NOW)
    [one] = mac("device", "list", now=NOW)["devices"]
    assert mac.state(one["id"], NOW) == "unverified"
    # The next whole set (a new epoch's counter 0) is trusted again.
    whole = line("batch", {"added": [app(TIKTOK, "TikTok")], "removed": []}, epoch=4, counter=0, at=T0 + 180)
    mac("import", "osquery", mac.file(".log", whole), now=NOW)
    assert mac.state(one["id"], NOW) == "violating"


def test_check_ins_waiting_in_a_temporary_file_import_as_from_memory(
    mac: Appban, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past KEEP_PARSED check-ins, what waits between the two phases goes to disk."""
    path = mac.file(".log", fleet_lines(12))
    monkeypatch.setattr(importer, "KEEP_PARSED", 3)
    mac("import", "osquery", path, "--owners", mac.file(".csv", "key,email\nh1,ann@example.com\n"), now=NOW)
    monkeypatch.setattr(importer, "KEEP_PARSED", 1_000)
    other = Appban(tmp_path / "memory")
    other.root.mkdir()
    other.init()
    other("import", "osquery", path, "--owners", other.file(".csv", "key,email\nh1,ann@example.com\n"), now=NOW)
    assert kept(mac) == kept(other)
    assert mac.sql("SELECT owner FROM devices WHERE owner != ''") == [("ann@example.com",)]


def test_every_app_kept_waits_on_disk_past_a_bound_of_apps(
    mac: Appban, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --keep-full-inventory nothing is cut down: the bound is on the apps held."""
    path = mac.file(".log", fleet_lines(6))
    monkeypatch.setattr(importer, "KEEP_PARSED_APPS", 1)
    mac("import", "osquery", path, "--keep-full-inventory", now=NOW)
    monkeypatch.setattr(importer, "KEEP_PARSED_APPS", 1_000)
    other = Appban(tmp_path / "memory")
    other.root.mkdir()
    other.init()
    other("import", "osquery", path, "--keep-full-inventory", now=NOW)
    assert kept(mac) == kept(other)
