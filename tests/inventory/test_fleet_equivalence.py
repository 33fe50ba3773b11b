"""One fleet, read from the systems that report it, gives the states it gives in appban's format.

The fleet (bench/_vendor_fleet.py, seeded) is phones and laptops. Intune reports every
device with the apps it detected (by name); Exchange reports the mail partnership of
every device that syncs mail, by its ActiveSync DeviceId and its mailbox alias; osquery
reports the laptops' installed programs and apps. The same fleet written as one
check-in per physical device, carrying the union of what the three sources know, must
give the same ``status --json`` counts and the same state for every device.

And every vendor format imports a generated 2,000-device file through the command line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from helpers_cli import NOW, run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _vendor_fleet as vf  # noqa: E402

STATES = ("out_of_scope", "compliant", "violating", "blocked", "unverified", "exempt")
# Phones seen by Intune and (when they sync mail) Exchange; laptops by Intune, osquery
# and (when they sync mail) Exchange.
PLATFORMS = ("ios", "android", "ios", "android", "windows", "macos")
LAPTOPS = ("windows", "macos")
POLICY = """\
id: tiktok-mail
title: TikTok is not permitted on devices that access company email
reason: Security risks
apps: [tiktok]
scope:
  platforms: [ios, ipados, android, windows, macos]
  mail_access: required
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""
# Exchange names a mailbox by its alias: the one mail domain completes it to an address.
ENV = {"APPBAN_MAIL_DOMAINS": "example.com"}


def appban(db: Path, *args: str) -> str:
    result = run("--db", str(db), "--now", NOW, *args, env=ENV)
    assert result.code == 0, (args, result)
    return result.out


def new_database(tmp: Path, name: str) -> Path:
    db = tmp / name
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    appban(db, "init")
    appban(db, "policy", "apply", str(policy))
    return db


def write(path: Path, writer: Callable[[BinaryIO], int]) -> int:
    with open(path, "wb") as f:
        return writer(f)


def states(db: Path) -> tuple[dict[str, int], dict[str, str]]:
    """The policy's counts, and each device's state by its owner (one device each)."""
    status = json.loads(appban(db, "status", "--json"))
    by_owner: dict[str, str] = {}
    for state in STATES:
        listed = json.loads(appban(db, "device", "list", "--policy", "tiktok-mail", "--state", state, "--json"))
        for d in listed["devices"]:
            assert d["owner"] not in by_owner, d
            by_owner[d["owner"]] = state
    return status["states"], by_owner


def intune_sees_mail(d: vf.FleetDevice) -> bool:
    """Intune knows the mail partnership of most devices, not of half the Android
    phones: for those, only Exchange says the phone reads mail, and the IMEI both
    report is what links the two records."""
    return d.platform != "android" or d.index % 4 == 1


def union_checkin(d: vf.FleetDevice) -> bytes:
    """What the three sources together know of ``d``, as one appban check-in: Intune's
    apps (by name), and on a laptop osquery's too, which see every app; on a phone
    Intune sees every app only on a company-owned device."""
    laptop = d.platform in LAPTOPS
    scope = "full" if laptop or d.ownership == "corporate" else "managed"
    apps = [vf.FleetApp(None, a.name, a.version) for a in d.app_list()]  # Intune: names only
    if laptop:
        apps += [a for a in d.app_list() if a not in apps]
    return vf.appban_checkin(d, apps=apps, scope=scope, mail=d.eas_id is not None)


def test_intune_exchange_osquery_give_the_states_of_the_same_fleet_in_appban_format(tmp_path: Path) -> None:
    devices = list(vf.fleet(300, 7, apps=30, tiktok=0.3, platforms=PLATFORMS, mail=0.8))
    laptops = [d for d in devices if d.platform in LAPTOPS]
    files = {
        "intune": tmp_path / "managedDevices.jsonl",
        "exchange": tmp_path / "Get-MobileDevice.csv",
        "osquery": tmp_path / "osqueryd.results.log",
    }
    assert (
        write(files["intune"], lambda f: vf.write_intune(f, iter(devices), page_size=50, mail_known=intune_sees_mail))
        == 300
    )
    partnerships = write(files["exchange"], lambda f: vf.write_exchange(f, iter(devices)))
    assert write(files["osquery"], lambda f: vf.write_osquery(f, iter(laptops))) == len(laptops)
    assert 200 < partnerships < 300  # some devices do not sync mail

    vendors = new_database(tmp_path, "vendors.db")
    for fmt, path in files.items():
        appban(vendors, "import", fmt, str(path))
    own = tmp_path / "fleet.jsonl"
    own.write_bytes(b"".join(union_checkin(d) + b"\n" for d in devices))
    reference = new_database(tmp_path, "appban.db")
    appban(reference, "import", "appban", str(own))

    counts, by_owner = states(vendors)
    expected_counts, expected = states(reference)
    assert by_owner == expected
    assert counts == expected_counts
    # One device per phone or laptop, however many sources report it.
    listed = json.loads(appban(vendors, "device", "list", "--json", "--limit", "1000"))
    assert listed["count"] == 300
    assert {d["records"] for d in listed["devices"]} == {1, 2, 3}
    # The fleet is not trivial (after the deadline, a violating device is blocked).
    assert all(expected_counts[s] > 0 for s in ("out_of_scope", "compliant", "blocked", "unverified")), expected_counts


def _formats() -> Iterator[tuple[str, str, Callable[[BinaryIO, Iterator[vf.FleetDevice], int], int], tuple[str, ...]]]:
    yield "intune", "intune", lambda f, ds, n: vf.write_intune(f, ds), PLATFORMS
    yield "jamf-xml", "jamf", lambda f, ds, n: vf.write_jamf_xml(f, ds, n), ("ios",)
    yield "jamf-json", "jamf", lambda f, ds, n: vf.write_jamf_json(f, ds, n), ("ios",)
    yield "workspace-one", "workspace-one", lambda f, ds, n: vf.write_workspace_one(f, ds, n), ("ios", "android")
    yield "google-directory", "google-directory", lambda f, ds, n: vf.write_google_directory(f, ds), ("android",)
    yield "android-management", "android-management", lambda f, ds, n: vf.write_android_management(f, ds), ("android",)
    yield "apple-mdm", "apple-mdm", lambda f, ds, n: vf.write_apple_mdm(f, ds), ("ios",)
    yield "osquery", "osquery", lambda f, ds, n: vf.write_osquery(f, ds), LAPTOPS
    yield "exchange", "exchange", lambda f, ds, n: vf.write_exchange(f, ds), ("ios", "android")


@pytest.mark.parametrize(
    ("label", "fmt", "writer", "platforms"), list(_formats()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_format_imports_a_generated_fleet(
    tmp_path: Path,
    label: str,
    fmt: str,
    writer: Callable[[BinaryIO, Iterator[vf.FleetDevice], int], int],
    platforms: tuple[str, ...],
) -> None:
    n = 2000
    path = tmp_path / label
    written = write(path, lambda f: writer(f, vf.fleet(n, 11, apps=20, platforms=platforms), n))
    assert written == n
    db = new_database(tmp_path, "fleet.db")
    out = json.loads(appban(db, "import", fmt, str(path), "--json"))
    assert out["checkins"] == n
    listed = json.loads(appban(db, "device", "list", "--json", "--limit", "10000"))
    assert listed["count"] == n
    counts = json.loads(appban(db, "status", "--json"))["states"]
    assert sum(counts.values()) == n
