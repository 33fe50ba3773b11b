"""Reports: ``status``, ``device list``, ``device show`` — as of any ``--now``, never writing."""

from __future__ import annotations

import pytest

from helpers_semantics import (
    AFTER,
    APPLIED,
    DEADLINE,
    EFFECTIVE,
    HARMLESS,
    NEXT_DAY,
    TIKTOK_ANDROID,
    TIKTOK_IOS,
    Appban,
    checkin,
)

PEOPLE = [
    ("ann@example.com", "Ann", "Sales", "staff", "UTC"),
    ("bob@example.com", "Bob", "Sales", "staff", "UTC"),
    ("cat@example.com", "Cat", "Engineering", "staff", "UTC"),
    ("dan@example.com", "Dan", "Engineering", "staff;security-research", "UTC"),
]


@pytest.fixture
def fleet(ab: Appban) -> Appban:
    """ann: android+TikTok (Sales); bob: iphone+TikTok, and a clean android (Sales);
    cat: managed iphone (Engineering); dan: excluded group, android+TikTok;
    eve: not in the people file, clean android."""
    ab.people(PEOPLE)
    ab.ingest(
        checkin("ann-1", apps=[*HARMLESS, TIKTOK_ANDROID]),
        checkin("bob-1", owner="bob@example.com", platform="ios", apps=[TIKTOK_IOS]),
        checkin("bob-2", owner="bob@example.com"),
        checkin("cat-1", owner="cat@example.com", platform="ios", inventory_scope="managed", apps=[]),
        checkin("dan-1", owner="dan@example.com", apps=[TIKTOK_ANDROID]),
        checkin("eve-1", owner="eve@example.com"),
    )
    ab.apply()
    return ab


ZERO = dict.fromkeys(("out_of_scope", "compliant", "violating", "blocked", "unverified", "exempt"), 0)


def states(**counts: int) -> dict[str, int]:
    return {**ZERO, **counts}


def test_status_counts_every_state(fleet: Appban) -> None:
    doc = fleet.status(EFFECTIVE)
    assert (doc["policy"], doc["mode"], doc["now"], doc["deadline"]) == (
        "tiktok-mail",
        "enforce",
        EFFECTIVE,
        DEADLINE,
    )
    assert doc["states"] == states(out_of_scope=1, compliant=2, violating=2, unverified=1)
    assert doc["people_affected"] == 2


def test_status_as_of_a_later_time_shows_the_deadline_passed(fleet: Appban) -> None:
    doc = fleet.status(AFTER)
    assert doc["states"] == states(out_of_scope=1, compliant=2, blocked=2, unverified=1)
    assert doc["people_affected"] == 2
    # The stored states were not touched: they still say violating.
    assert fleet.sql("SELECT count(*) FROM states WHERE state = 'violating'") == [(2,)]


def test_status_by_org_unit(fleet: Appban) -> None:
    by = fleet.status(AFTER, "--by", "org_unit")["by"]
    assert sorted(by) == ["", "Engineering", "Sales"]  # eve has no org unit
    assert by["Sales"] == {"states": states(compliant=1, blocked=2), "people_affected": 2}
    assert by["Engineering"] == {
        "states": states(out_of_scope=1, unverified=1),
        "people_affected": 0,
    }
    assert by[""] == {"states": states(compliant=1), "people_affected": 0}


def test_status_by_platform(fleet: Appban) -> None:
    by = fleet.status(AFTER, "--by", "platform")["by"]
    assert by == {
        "android": {"states": states(out_of_scope=1, compliant=2, blocked=1), "people_affected": 1},
        "ios": {"states": states(blocked=1, unverified=1), "people_affected": 1},
    }


def test_status_of_a_named_policy_and_of_several(fleet: Appban) -> None:
    fleet.apply(id="monitor-only", mode="monitor")
    doc = fleet.status(AFTER)
    assert [p["policy"] for p in doc["policies"]] == ["monitor-only", "tiktok-mail"]
    monitor = fleet.status(AFTER, "--policy", "monitor-only")
    assert monitor["states"] == states(out_of_scope=1, compliant=2, violating=2, unverified=1)
    assert fleet.run("status", "--policy", "nope", now=AFTER).code == 2


def test_device_list_by_state(fleet: Appban) -> None:
    doc = fleet("device", "list", "--state", "blocked", now=AFTER)
    assert doc["count"] == 2
    assert [(d["id"], d["owner"], d["state"], d["since"]) for d in doc["devices"]] == [
        ("dev-1", "ann@example.com", "blocked", DEADLINE),
        ("dev-2", "bob@example.com", "blocked", DEADLINE),
    ]
    unverified = fleet("device", "list", "--policy", "tiktok-mail", "--state", "unverified", now=AFTER)
    assert [d["id"] for d in unverified["devices"]] == ["dev-4"]
    assert fleet("device", "list", "--state", "violating", now=AFTER)["count"] == 0
    assert fleet("device", "list", "--state", "violating", now=EFFECTIVE)["count"] == 2
    everything = fleet("device", "list", now=AFTER)
    assert everything["count"] == 6 and everything["devices"][0]["source_id"] == "ann-1"


def test_device_show_evidence(fleet: Appban) -> None:
    doc = fleet.show("bob-1", AFTER)
    assert {k: doc[k] for k in ("id", "platform", "owner", "eas_device_ids", "decision", "reason")} == {
        "id": "dev-2",
        "platform": "ios",
        "owner": "bob@example.com",
        "eas_device_ids": ["EAS-bob-1"],
        "decision": "deny",
        "reason": "blocked:tiktok-mail",
    }
    policy = doc["policies"]["tiktok-mail"]
    assert (policy["state"], policy["since"]) == ("blocked", DEADLINE)
    app, inventory = policy["evidence"]
    assert (
        app["kind"],
        app["source"],
        app["app"],
        app["family"],
        app["match"],
        app["first_seen"],
        app["present"],
    ) == (
        "app",
        "agent",
        "com.zhiliaoapp.musically",
        "tiktok",
        "identifier",
        "2020-07-10T15:00:00Z",
        True,
    )
    assert inventory == {
        "kind": "inventory",
        "source": "agent",
        "observed_at": "2020-07-10T15:00:00Z",
        "inventory_scope": "full",
        "catalog_version": 1,
    }
    # By appban id too.
    assert fleet.show("dev-2", AFTER)["source_id"] == "bob-1"
    assert fleet.run("device", "show", "no-such-device", now=AFTER).code == 2


def test_device_show_as_of_an_earlier_time(fleet: Appban) -> None:
    fleet("evaluate", now=NEXT_DAY)
    earlier = fleet.show("ann-1", EFFECTIVE)
    assert (earlier["decision"], earlier["policies"]["tiktok-mail"]["state"]) == (
        "allow",
        "violating",
    )
    assert fleet.status(EFFECTIVE)["states"]["violating"] == 2


def test_reports_as_of_a_later_time_write_nothing(fleet: Appban) -> None:
    before = fleet.dump()
    for args in (
        ("status",),
        ("status", "--by", "org_unit"),
        ("status", "--by", "platform"),
        ("device", "list"),
        ("device", "list", "--state", "blocked"),
        ("device", "show", "ann-1"),
        ("gate", "decide", "--eas-device-id", "EAS-ann-1", "--user", "ann"),
        ("policy", "list"),
        ("policy", "show", "tiktok-mail"),
        ("catalog", "list"),
        ("catalog", "show", "tiktok"),
        ("audit", "verify"),
    ):
        for now in (AFTER, "2021-01-01T00:00:00Z", "2019-01-01T00:00:00Z"):
            fleet(*args, now=now)
    assert fleet.dump() == before


def test_a_report_agrees_with_the_evaluation_it_previews(fleet: Appban) -> None:
    later = "2020-07-20T00:00:00Z"  # past the deadline and past max_inventory_age
    preview_status = fleet.status(later, "--by", "platform")
    preview_list = fleet("device", "list", "--state", "unverified", now=later)
    preview_show = fleet.show("bob-2", later)
    fleet("evaluate", now=later)
    assert fleet.status(later, "--by", "platform") == preview_status
    assert fleet("device", "list", "--state", "unverified", now=later) == preview_list
    after = fleet.show("bob-2", later)
    assert [h["to"] for h in after.pop("history")] == ["compliant", "unverified"]
    assert [h["to"] for h in preview_show.pop("history")] == ["compliant"]  # a preview records nothing
    assert after == preview_show
    assert preview_status["states"] == states(out_of_scope=1, blocked=2, unverified=3)


def test_status_of_a_withdrawn_policy(fleet: Appban) -> None:
    fleet("policy", "withdraw", "tiktok-mail", "--reason", "error", now=AFTER)
    doc = fleet.status(NEXT_DAY)
    assert (doc["status"], doc["withdraw_reason"], doc["withdrawn_at"]) == (
        "withdrawn",
        "error",
        AFTER,
    )
    show = fleet.show("ann-1", NEXT_DAY)
    assert (show["decision"], show["reason"]) == ("allow", "ok")
    assert show["policies"]["tiktok-mail"]["policy_status"] == "withdrawn"


def test_device_list_state_needs_a_policy_when_several_are_active(fleet: Appban) -> None:
    fleet.apply(id="second")
    r = fleet.run("device", "list", "--state", "blocked", now=AFTER)
    assert r.code == 2 and "--policy" in r.err


def test_no_policy_yet(ab: Appban) -> None:
    ab.ingest(checkin())
    assert ab.status(APPLIED) == {"now": APPLIED, "policies": []}
    assert ab.show("phone-1", APPLIED)["policies"] == {}
    assert ab.decide("EAS-phone-1", "ann", APPLIED) == ("allow", "ok")
