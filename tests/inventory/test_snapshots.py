"""SPEC's snapshot semantics, data minimisation and catalog matching, through ``appban import``.

Golden files (tests/golden/): ``fleet.csv`` and ``people.csv`` are a real-shaped CSV
import; ``fleet.status.json`` and ``fleet.device-show.json`` are what ``status --json``
and ``device show --json`` must say about it. ``example-checkin.expected.json`` is the
same for SPEC's own example (examples/checkin.json, examples/tiktok-mail.yaml).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_semantics import (
    AFTER,
    APPLIED,
    BEFORE,
    HARMLESS,
    NEXT_DAY,
    TIKTOK_ANDROID,
    Appban,
    checkin,
    subset,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = ROOT / "examples"
T1, T2, T3 = "2020-07-10T10:00:00Z", "2020-07-10T11:00:00Z", "2020-07-10T12:00:00Z"
T1_30 = "2020-07-10T10:30:00Z"
# The snapshot tests look at states between T1 and T3: the policy is effective before them.
EARLY = "2020-07-10T09:00:00Z"
T1_US, T2_US, T3_US = 1594375200000000, 1594378800000000, 1594382400000000


def _observations(ab: Appban) -> list[tuple[object, ...]]:
    return ab.sql(
        "SELECT device_id, app_key, family, match_kind, confidence, first_seen, last_seen, gone_at "
        "FROM observations ORDER BY device_id, app_key"
    )


def _kept(ab: Appban) -> list[tuple[object, ...]]:
    """Everything evaluation and evidence read of devices and apps (not the audit log)."""
    return [
        *ab.sql("SELECT * FROM devices ORDER BY id"),
        *ab.sql("SELECT * FROM observations ORDER BY device_id, app_key"),
        *ab.sql("SELECT * FROM states ORDER BY policy_id, device_id"),
        *ab.sql("SELECT * FROM state_history ORDER BY id"),
    ]


# -- snapshots ------------------------------------------------------------------------------


def test_an_app_absent_from_a_newer_snapshot_is_gone(ab: Appban) -> None:
    ab.apply(now=EARLY, effective=EARLY)
    ab.ingest(checkin(at=T1, apps=[*HARMLESS, TIKTOK_ANDROID]), now=T1)
    assert _observations(ab) == [(1, "com.zhiliaoapp.musically", "tiktok", "android", "identifier", T1_US, T1_US, None)]
    ab.ingest(checkin(at=T2, apps=[*HARMLESS, TIKTOK_ANDROID]), now=T2)
    assert _observations(ab)[0][5:] == (T1_US, T2_US, None)  # first seen kept, last seen moves
    assert ab.state("phone-1", T2) == "violating"
    ab.ingest(checkin(at=T3, apps=HARMLESS), now=T3)
    assert _observations(ab)[0][5:] == (T1_US, T2_US, T3_US)
    assert ab.state("phone-1", T3) == "compliant"
    evidence = ab.show("phone-1", T3)["policies"]["tiktok-mail"]["evidence"]
    assert evidence[0]["present"] is False and evidence[0]["gone_at"] == T3
    assert ab.show("phone-1", T3)["policies"]["tiktok-mail"]["present"] == []


def test_an_app_that_comes_back_is_present_again(ab: Appban) -> None:
    ab.ingest(checkin(at=T1, apps=[TIKTOK_ANDROID]), now=T1)
    ab.ingest(checkin(at=T2, apps=[]), now=T2)
    ab.ingest(checkin(at=T3, apps=[TIKTOK_ANDROID]), now=T3)
    assert _observations(ab)[0][5:] == (T3_US, T3_US, None)
    ab.apply(now=AFTER)
    assert ab.state("phone-1", AFTER) == "blocked"


def test_a_snapshot_older_than_the_stored_one_changes_nothing(ab: Appban) -> None:
    ab.apply(now=EARLY, effective=EARLY)
    ab.ingest(checkin(at=T2, apps=HARMLESS, ownership="corporate"), now=T2)
    before = _kept(ab)
    doc = ab.ingest(checkin(at=T1, apps=[TIKTOK_ANDROID], ownership="personal", owner="eve@example.com"), now=T3)
    assert (doc["new"], doc["updated"], doc["unchanged"]) == (0, 0, 1)
    assert _kept(ab) == before
    show = ab.show("phone-1", T3)
    assert (show["owner"], show["ownership"], show["observed_at"]) == (
        "ann@example.com",
        "corporate",
        T2,
    )
    assert show["policies"]["tiktok-mail"]["state"] == "compliant"


def test_a_snapshot_as_old_as_the_stored_one_changes_nothing(ab: Appban) -> None:
    ab.ingest(checkin(at=T2, apps=HARMLESS), now=T2)
    before = _kept(ab)
    doc = ab.ingest(checkin(at=T2, apps=HARMLESS), now=T3)
    assert doc["unchanged"] == 1
    assert _kept(ab) == before
    # The same instant saying something else is refused (one device, one time, one
    # snapshot: tests/inventory/test_same_snapshot.py), and changes nothing either.
    path = ab.file(".jsonl", json.dumps(checkin(at=T2, apps=[TIKTOK_ANDROID])) + "\n")
    assert ab.run("import", "appban", path, now=T3).code == 2
    assert _kept(ab) == before


def test_importing_the_same_file_twice_changes_nothing(ab: Appban) -> None:
    ab.apply(now=EARLY, effective=EARLY)
    path = ab.file(
        ".jsonl",
        "".join(
            json.dumps(c) + "\n"
            for c in (
                checkin("a", at=T1, apps=[TIKTOK_ANDROID]),
                checkin("b", at=T1, owner="bob@example.com"),
            )
        ),
    )
    first = ab("import", "appban", path, now=T2)
    assert (first["new"], first["unchanged"]) == (2, 0)
    before = _kept(ab)
    second = ab("import", "appban", path, now=T3)
    assert (second["new"], second["updated"], second["unchanged"]) == (0, 0, 2)
    assert _kept(ab) == before


def test_out_of_order_json_lines_keep_the_newest_snapshot(ab: Appban) -> None:
    ab.apply(now=EARLY, effective=EARLY)
    doc = ab.ingest(
        checkin(at=T2, apps=HARMLESS),
        checkin(at=T1, apps=[TIKTOK_ANDROID]),  # older: ignored
        checkin(at=T3, apps=[*HARMLESS, TIKTOK_ANDROID]),
        checkin(at=T1_30, apps=[]),  # older again: ignored
        now=T3,
    )
    assert (doc["checkins"], doc["new"], doc["updated"], doc["unchanged"]) == (4, 1, 1, 2)
    assert ab.sql("SELECT observed_at FROM devices") == [(T3_US,)]
    assert _observations(ab) == [(1, "com.zhiliaoapp.musically", "tiktok", "android", "identifier", T3_US, T3_US, None)]
    assert ab.state("phone-1", T3) == "violating"


def test_sources_keep_separate_snapshots_of_one_device(ab: Appban) -> None:
    """Two sources report one phone (one ActiveSync DeviceId): one device, each source's
    snapshot kept as its record; an app is present while any record's latest snapshot
    lists it."""
    ab.ingest(
        checkin("X1", at=T2, apps=[TIKTOK_ANDROID], source="intune"),
        checkin("X1", at=T1, apps=[], source="agent"),
        now=T2,
    )
    assert ab.sql("SELECT id, source FROM devices ORDER BY id") == [(1, "intune")]
    assert ab.sql("SELECT source, device_id FROM device_records ORDER BY id") == [("intune", 1), ("agent", 1)]
    doc = ab.show("X1", T2)  # the id both sources reported: one device, not ambiguous
    assert doc["id"] == "dev-1"
    assert [(r["source"], r["linked_by"]) for r in doc["records"]] == [
        ("intune", "eas:EAS-X1"),
        ("agent", "eas:EAS-X1"),
    ]
    assert ab.show("agent:X1", T2)["id"] == "dev-1"
    # The older agent snapshot without the app does not hide the newer one that has it;
    # nor does a newer one: one source's report clears its own evidence, never another's.
    assert ab.sql("SELECT count(*) FROM observations WHERE device_id = 1 AND gone_at IS NULL") == [(1,)]
    ab.ingest(checkin("X1", at=T3, apps=[], source="agent"), now=T3)
    assert ab.sql("SELECT count(*) FROM observations WHERE device_id = 1 AND gone_at IS NULL") == [(1,)]
    # The source that saw it says it is gone: gone.
    ab.ingest(checkin("X1", at=T3, apps=[], source="intune"), now=T3)
    assert ab.sql("SELECT count(*) FROM observations WHERE device_id = 1 AND gone_at IS NULL") == [(0,)]


def test_device_facts_follow_the_newest_snapshot(ab: Appban) -> None:
    ab.apply(now=EARLY, effective=EARLY)
    ab.ingest(checkin(at=T1, apps=[TIKTOK_ANDROID]), now=T1)
    assert ab.decide("EAS-phone-1", "ann", T1) == ("allow", "ok")
    ab.ingest(checkin(at=T2, apps=[TIKTOK_ANDROID], eas=["EAS-NEW"], owner="bob@example.com"), now=AFTER)
    assert ab.decide("EAS-phone-1", "ann", AFTER) == ("deny", "unknown_device")
    assert ab.decide("EAS-NEW", "bob", AFTER) == ("deny", "blocked:tiktok-mail")
    assert ab.decide("EAS-NEW", "ann", AFTER) == ("deny", "user_mismatch")


# -- data minimisation ----------------------------------------------------------------------


def test_only_catalog_apps_are_kept_with_the_catalog_version(ab: Appban) -> None:
    apps = [*HARMLESS, TIKTOK_ANDROID, {"id": "com.example.diary", "name": "Private Diary"}]
    ab.ingest(checkin(apps=apps), checkin("clean", apps=HARMLESS))
    assert ab.sql("SELECT device_id, app_id, name FROM observations") == [(1, "com.zhiliaoapp.musically", "TikTok")]
    assert ab.sql("SELECT catalog_version FROM devices ORDER BY id") == [(1,), (1,)]
    evidence = ab.apply(now=APPLIED) and ab.show("phone-1", APPLIED)["policies"]["tiktok-mail"]["evidence"]
    assert {
        "kind": "inventory",
        "source": "agent",
        "observed_at": BEFORE,
        "inventory_scope": "full",
        "catalog_version": 1,
    } in evidence
    assert "Private Diary" not in json.dumps(ab.show("phone-1", APPLIED))


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_full_inventories_are_kept_when_asked(ab: Appban, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apps = [*HARMLESS, TIKTOK_ANDROID]
    if how == "flag":
        ab.ingest(checkin(apps=apps), keep_full=True)
    else:
        monkeypatch.setenv("APPBAN_KEEP_FULL_INVENTORY", "1")
        ab.ingest(checkin(apps=apps))
    assert ab.sql("SELECT app_id, family, confidence FROM observations ORDER BY app_id") == [
        ("com.example.mail", "", ""),
        ("com.zhiliaoapp.musically", "tiktok", "identifier"),
        ("org.example.maps", "", ""),
    ]
    assert ab.sql("SELECT catalog_version FROM devices") == [(None,)]
    # Apps outside the catalog are kept but are not evidence under a policy.
    ab.apply(effective=EARLY)
    evidence = ab.show("phone-1", APPLIED)["policies"]["tiktok-mail"]["evidence"]
    assert [e.get("app") for e in evidence if e["kind"] == "app"] == ["com.zhiliaoapp.musically"]


def test_minimising_again_after_full_inventories(ab: Appban) -> None:
    ab.ingest(checkin(at=T1, apps=[*HARMLESS, TIKTOK_ANDROID]), keep_full=True, now=T1)
    ab.ingest(checkin(at=T2, apps=[*HARMLESS, TIKTOK_ANDROID]), now=T2)
    assert ab.sql("SELECT catalog_version FROM devices") == [(1,)]
    present = ab.sql("SELECT app_id FROM observations WHERE gone_at IS NULL")
    assert present == [("com.zhiliaoapp.musically",)]


# -- catalog matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "app", "matched"),
    [
        ("android", {"id": "com.zhiliaoapp.musically"}, "identifier"),
        ("android", {"id": "com.ss.android.ugc.trill"}, "identifier"),
        ("chromeos", {"id": "com.zhiliaoapp.musically"}, "identifier"),
        ("ios", {"id": "com.zhiliaoapp.musically"}, "identifier"),
        ("ipados", {"id": "835599320"}, "identifier"),
        ("ios", {"name": "TikTok"}, "name"),
        ("android", {"name": "  tiktok  lite "}, "name"),
        ("android", {"id": "com.zhiliaoapp.musically.evil", "name": "TikTok"}, None),
        ("android", {"id": "com.example.tiktok", "name": "TikTok"}, None),
        ("android", {"id": "COM.ZHILIAOAPP.MUSICALLY"}, None),
        ("android", {"id": "com.ss.iphone.ugc.Ame"}, None),  # an iOS bundle id on Android
        ("ios", {"id": "com.zhiliaoapp.musically.go"}, None),  # an Android package on iOS
        ("macos", {"id": "com.zhiliaoapp.musically"}, None),
    ],
)
def test_matching_is_exact_on_identifiers(ab: Appban, platform: str, app: dict[str, str], matched: str | None) -> None:
    ab.ingest(checkin(platform=platform, apps=[app]))
    rows = ab.sql("SELECT family, confidence FROM observations")
    assert rows == ([("tiktok", matched)] if matched else [])
    ab.apply(scope={"platforms": []})
    assert ab.state("phone-1", APPLIED) == ("violating" if matched else "compliant")


def test_a_name_match_is_shown_with_its_lower_confidence(ab: Appban) -> None:
    ab.ingest(checkin(platform="ios", apps=[{"name": "TikTok", "version": "16.0"}]))
    ab.apply(effective=EARLY)
    policy = ab.show("phone-1", AFTER)["policies"]["tiktok-mail"]
    assert policy["state"] == "blocked"
    [app] = [e for e in policy["evidence"] if e["kind"] == "app"]
    assert (app["app"], app["name"], app["match"], app["family"]) == (
        None,
        "TikTok",
        "name",
        "tiktok",
    )


# -- golden files ---------------------------------------------------------------------------


def test_golden_csv_import(ab: Appban) -> None:
    ab("people", "import", str(GOLDEN / "people.csv"), now=BEFORE)
    doc = ab("import", "csv", str(GOLDEN / "fleet.csv"), now="2020-07-10T15:10:00Z")
    assert (doc["checkins"], doc["new"]) == (7, 7)
    ab("policy", "apply", str(EXAMPLES / "tiktok-mail.yaml"), now=APPLIED)
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--person",
        "fay.wu@example.com",
        "--until",
        "2020-07-20T00:00:00Z",
        "--reason",
        "travelling, no laptop",
        now="2020-07-10T17:00:00Z",
    )
    subset(
        ab.status(AFTER, "--by", "org_unit"),
        json.loads((GOLDEN / "fleet.status.json").read_text("utf-8")),
    )
    expected = json.loads((GOLDEN / "fleet.device-show.json").read_text("utf-8"))
    for device, want in expected.items():
        subset(ab.show(device, AFTER), want, f"${device}")
    # Minimised: of nine reported apps, only the four the catalog names were kept.
    assert ab.sql(
        "SELECT d.source_id, o.app_key FROM observations o JOIN devices d ON d.id = o.device_id ORDER BY 1"
    ) == [
        ("ANN-PIXEL", "com.zhiliaoapp.musically"),
        ("DAN-IPHONE", "name:TikTok"),
        ("EVE-TABLET", "com.ss.android.ugc.trill"),
        ("FAY-IPAD", "835599320"),
    ]


def test_golden_spec_example(ab: Appban) -> None:
    expected = json.loads((GOLDEN / "example-checkin.expected.json").read_text("utf-8"))
    ab("import", "appban", str(EXAMPLES / "checkin.json"), now=BEFORE)
    ab("policy", "apply", str(EXAMPLES / "tiktok-mail.yaml"), now=APPLIED)
    for label, now in (("at_effective", "2020-07-10T16:00:00Z"), ("after_deadline", AFTER)):
        subset(ab.status(now), expected[label]["status"], f"${label}.status")
        subset(
            ab.show("00008020-000915083C80012E", now),
            expected[label]["device_show"],
            f"${label}.device_show",
        )


def test_a_catalog_upgrade_makes_older_snapshots_unverified_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An appban upgrade ships a new identifier: snapshots filtered before it cannot prove
    its absence, and states, decisions and reports say so as soon as the catalog changes."""
    from appban.catalog import sync
    from appban.catalog.layers import CatalogData

    shipped = sync.load_shipped

    def without_lite() -> CatalogData:
        data = shipped()
        tiktok = data.families["tiktok"]
        tiktok.identifiers = [i for i in tiktok.identifiers if i.value != "com.tiktok.lite.go"]
        return data

    # The database is made by an appban whose catalog lacked TikTok Lite.
    for name in ("APPBAN_DB", "APPBAN_KEEP_FULL_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sync, "load_shipped", without_lite)
    ab = Appban(tmp_path)
    ab.init()
    ab.ingest(
        checkin("clean"),
        checkin("lite", owner="bob@example.com", apps=[{"id": "com.tiktok.lite.go"}]),
    )
    assert ab.sql("SELECT count(*) FROM observations") == [(0,)]  # not in that catalog: not kept
    ab.apply(on_unverified="block")
    ab("evaluate", now=AFTER)
    assert ab.sql("SELECT state FROM states ORDER BY device_id") == [("compliant",), ("compliant",)]
    # The upgraded appban syncs its catalog on the next command that may write.
    monkeypatch.setattr(sync, "load_shipped", shipped)
    assert ab("init", now=NEXT_DAY)["catalog_version"] == 2
    assert ab.sql("SELECT state, deny FROM states ORDER BY device_id") == [
        ("unverified", "unverified:tiktok-mail"),
        ("unverified", "unverified:tiktok-mail"),
    ]
    assert ab.sql("SELECT decision FROM devices") == [("deny",), ("deny",)]
    assert ab.status(NEXT_DAY)["states"]["unverified"] == 2
    # The next snapshots, filtered against v2, prove absence and presence.
    ab.ingest(
        checkin("clean", at=NEXT_DAY),
        checkin("lite", at=NEXT_DAY, owner="bob@example.com", apps=[{"id": "com.tiktok.lite.go"}]),
        now=NEXT_DAY,
    )
    assert ab.sql("SELECT state FROM states ORDER BY device_id") == [("compliant",), ("blocked",)]
