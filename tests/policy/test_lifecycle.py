"""Policies, exemptions and attestations through the real CLI: apply, update, dry run,
withdraw; incremental and time-driven re-evaluation; the history of every change."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from appban.clock import format_time, parse_time
from helpers_semantics import (
    AFTER,
    APPLIED,
    BEFORE,
    DEADLINE,
    EFFECTIVE,
    HARMLESS,
    JUST_BEFORE_DEADLINE,
    NEXT_DAY,
    TIKTOK_ANDROID,
    Appban,
    checkin,
)

FOO = {"id": "com.example.foo", "name": "Foo", "version": "3.1"}


def _fleet(ab: Appban) -> None:
    """ann: android with TikTok; bob: clean android; cat: iphone with TikTok, no mail."""
    ab.ingest(
        checkin("ann-phone", apps=[*HARMLESS, TIKTOK_ANDROID]),
        checkin("bob-phone", owner="bob@example.com"),
        checkin(
            "cat-phone",
            owner="cat@example.com",
            platform="ios",
            eas=[],
            apps=[{"id": "com.zhiliaoapp.musically", "name": "TikTok"}],
        ),
    )


def _audit(ab: Appban, action: str) -> list[tuple[str, str]]:
    return ab.sql("SELECT subject, data FROM audit_log WHERE action = ? ORDER BY seq", (action,))


# -- apply ----------------------------------------------------------------------------------


def test_apply_creates_evaluates_and_audits(ab: Appban) -> None:
    _fleet(ab)
    doc = ab.apply()
    assert (doc["action"], doc["revision"], doc["status"]) == ("created", 1, "active")
    assert doc["state_changes"] == 3
    assert ab.state("ann-phone", APPLIED) == "violating"
    assert ab.state("bob-phone", APPLIED) == "compliant"
    assert ab.state("cat-phone", APPLIED) == "out_of_scope"  # no mail access
    shown = ab("policy", "show", "tiktok-mail", now=APPLIED)
    assert (shown["status"], shown["revision"], shown["deadline"]) == ("active", 1, DEADLINE)
    [(subject, data)] = _audit(ab, "policy.apply")
    assert subject == "tiktok-mail" and json.loads(data)["revision"] == 1
    # The states were stored by apply itself, with their time and cause.
    assert ab.sql("SELECT device_id, new_state, at, cause FROM state_history ORDER BY device_id") == [
        (1, "violating", 1594395000000000, "policy"),
        (2, "compliant", 1594395000000000, "policy"),
        (3, "out_of_scope", 1594395000000000, "policy"),
    ]


def test_applying_the_same_file_again_changes_nothing(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    before = ab.dump()
    doc = ab.apply(now=APPLIED)
    assert (doc["action"], doc["revision"]) == ("unchanged", 1)
    assert ab.dump() == before


def test_an_update_is_a_new_revision_audited_and_re_evaluated(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    assert ab.decide("EAS-ann-phone", "ann", APPLIED) == ("allow", "ok")
    # The deadline moves forward to now: ann is blocked at once, without `evaluate`.
    doc = ab.apply(now="2020-07-10T17:00:00Z", deadline="2020-07-10T17:00:00Z")
    assert (doc["action"], doc["revision"], doc["changed"]) == ("updated", 2, ["deadline"])
    assert ab.sql("SELECT state, deny FROM states WHERE device_id = 1") == [("blocked", "blocked:tiktok-mail")]
    assert ab.sql("SELECT decision, reason FROM devices WHERE id = 1") == [("deny", "blocked:tiktok-mail")]
    assert ab.decide("EAS-ann-phone", "ann", "2020-07-10T17:00:00Z") == (
        "deny",
        "blocked:tiktok-mail",
    )
    revisions = [json.loads(d)["revision"] for _s, d in _audit(ab, "policy.apply")]
    assert revisions == [1, 2]
    # Widening the scope to devices without mail brings cat in.
    ab.apply(now="2020-07-10T17:00:00Z", deadline="2020-07-10T17:00:00Z", scope={"mail_access": "any"})
    assert ab.state("cat-phone", "2020-07-10T17:00:00Z") == "blocked"


def test_switching_to_monitor_mode_lifts_blocks(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:tiktok-mail")
    ab.apply(now=AFTER, mode="monitor")
    assert ab.sql("SELECT state, deny FROM states WHERE device_id = 1") == [("violating", "")]
    assert ab.sql("SELECT decision FROM devices WHERE id = 1") == [("allow",)]


def test_dry_run_reports_the_impact_and_writes_nothing(ab: Appban) -> None:
    _fleet(ab)
    before = ab.dump()
    doc = ab.apply(now=APPLIED, dry_run=True)
    assert ab.dump() == before
    assert doc["dry_run"] is True and doc["action"] == "created"
    assert doc["states"]["violating"] == 1 and doc["states"]["compliant"] == 1
    assert doc["states"]["out_of_scope"] == 1
    assert doc["states_at_deadline"]["blocked"] == 1
    assert doc["would_be_denied_at_deadline"] == 1
    assert doc["people"] == ["ann@example.com"]
    assert [d["device"] for d in doc["denied_at_deadline"]] == ["dev-1"]
    assert ab.sql("SELECT count(*) FROM policies") == [(0,)]


def test_dry_run_at_a_later_time_writes_nothing_either(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    before = ab.dump()
    doc = ab.apply(now=NEXT_DAY, dry_run=True, deadline=NEXT_DAY)
    assert ab.dump() == before
    assert doc["action"] == "updated"
    assert doc["states"]["blocked"] == 1


def test_dry_run_of_an_explicit_identifier_writes_nothing(ab: Appban) -> None:
    """Applying would add the identifier to the catalog; previewing must not."""
    _fleet(ab)
    before = ab.dump()
    doc = ab.apply(dry_run=True, id="foo-ban", apps=["android:com.example.foo"])
    assert ab.dump() == before
    # Snapshots filtered before the catalog knew the app cannot prove its absence.
    assert doc["states"]["unverified"] == 2


def test_draft_policies_have_no_states(ab: Appban) -> None:
    _fleet(ab)
    r = ab.run("policy", "apply", ab.policy_file(), "--draft", now=APPLIED)
    assert r.code == 0 and r.json["status"] == "draft"
    assert ab.sql("SELECT count(*) FROM states") == [(0,)]


# -- incremental evaluation -----------------------------------------------------------------


def test_a_check_in_re_evaluates_its_device_in_the_same_command(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:tiktok-mail")
    ab.ingest(checkin("ann-phone", at="2020-07-11T07:05:00Z"), now="2020-07-11T07:05:00Z")
    assert ab.sql("SELECT state, since, deny FROM states WHERE device_id = 1") == [("compliant", 1594451100000000, "")]
    assert ab.sql("SELECT decision, reason FROM devices WHERE id = 1") == [("allow", "ok")]
    assert ab.decide("EAS-ann-phone", "ann", "2020-07-11T07:05:00Z") == ("allow", "ok")
    history = ab.show("ann-phone", "2020-07-11T07:05:00Z")["history"]
    assert [(h["from"], h["to"], h["at"], h["cause"]) for h in history] == [
        (None, "violating", APPLIED, "policy"),
        ("violating", "blocked", DEADLINE, "time"),
        ("blocked", "compliant", "2020-07-11T07:05:00Z", "inventory"),
    ]
    decisions = [json.loads(d) for _s, d in _audit(ab, "decision")]
    assert [(d["decision"], d["reason"], d["cause"]) for d in decisions] == [
        ("deny", "blocked:tiktok-mail", "time"),
        ("allow", "ok", "inventory"),
    ]


def test_a_new_device_is_evaluated_when_it_first_checks_in(ab: Appban) -> None:
    ab.apply()
    ab.ingest(checkin("dan-phone", owner="dan@example.com", apps=[TIKTOK_ANDROID]), now=AFTER)
    assert ab.sql("SELECT state, deny FROM states") == [("blocked", "blocked:tiktok-mail")]
    assert ab.decide("EAS-dan-phone", "dan", AFTER) == ("deny", "blocked:tiktok-mail")


def test_people_groups_change_scope(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab.people([("ann@example.com", "Ann", "Sales", "staff;security-research", "UTC")], now=EFFECTIVE)
    assert ab.sql("SELECT state FROM states WHERE device_id = 1") == [("out_of_scope",)]
    ab.people([("ann@example.com", "Ann", "Sales", "staff", "UTC")], now="2020-07-10T17:00:00Z")
    assert ab.sql("SELECT state FROM states WHERE device_id = 1") == [("violating",)]
    causes = ab.sql("SELECT new_state, cause FROM state_history WHERE device_id = 1 ORDER BY id")
    assert causes == [("violating", "policy"), ("out_of_scope", "people"), ("violating", "people")]


def test_include_groups_from_the_people_file(ab: Appban) -> None:
    ab.people(
        [
            ("ann@example.com", "Ann", "Sales", "pilot", "UTC"),
            ("bob@example.com", "Bob", "Sales", "staff", "UTC"),
        ]
    )
    ab.ingest(
        checkin("ann-phone", apps=[TIKTOK_ANDROID]),
        checkin("bob-phone", owner="bob@example.com", apps=[TIKTOK_ANDROID]),
    )
    ab.apply(scope={"include_groups": ["pilot"]})
    assert ab.state("ann-phone", APPLIED) == "violating"
    assert ab.state("bob-phone", APPLIED) == "out_of_scope"


# -- time-driven evaluation --------------------------------------------------------------------


def test_evaluate_records_each_change_at_the_moment_it_happened(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    assert ab("evaluate", now=JUST_BEFORE_DEADLINE)["state_changes"] == 0
    assert ab.sql("SELECT state FROM states WHERE device_id = 1") == [("violating",)]
    doc = ab("evaluate", now=NEXT_DAY)
    assert doc["state_changes"] == 1
    assert ab.sql("SELECT state, since, deny FROM states WHERE device_id = 1") == [
        ("blocked", 1594450740000000, "blocked:tiktok-mail")  # the deadline, not NEXT_DAY
    ]
    assert ab("evaluate", now=NEXT_DAY)["state_changes"] == 0  # idempotent


def test_evaluate_ages_inventories_past_max_inventory_age(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(max_inventory_age="2d", on_unverified="block")
    stale = "2020-07-12T15:00:00.000001Z"  # first moment older than BEFORE + 2 days
    ab("evaluate", now="2020-07-12T14:59:59Z")
    assert ab.sql("SELECT state FROM states WHERE device_id = 2") == [("compliant",)]
    ab("evaluate", now="2020-07-20T00:00:00Z")
    assert ab.sql("SELECT state, since, deny FROM states WHERE device_id = 2") == [
        ("unverified", 1594566000000001, "unverified:tiktok-mail")
    ]
    assert ab.show("bob-phone", "2020-07-20T00:00:00Z")["policies"]["tiktok-mail"]["since"] == stale
    assert ab.decide("EAS-bob-phone", "bob", "2020-07-20T00:00:00Z") == (
        "deny",
        "unverified:tiktok-mail",
    )


def test_evaluate_full_agrees_with_evaluate(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(max_inventory_age="1d")
    ab("evaluate", now=NEXT_DAY)
    due = ab.sql("SELECT policy_id, device_id, state, deny FROM states ORDER BY device_id")
    assert ab("evaluate", "--full", now=NEXT_DAY)["state_changes"] == 0
    assert ab.sql("SELECT policy_id, device_id, state, deny FROM states ORDER BY device_id") == due


# -- withdraw -------------------------------------------------------------------------------


def test_withdraw_lifts_every_block_at_once(ab: Appban) -> None:
    _fleet(ab)
    ab.ingest(checkin("eve-phone", owner="eve@example.com", apps=[TIKTOK_ANDROID]))
    ab.apply()
    ab("evaluate", now=AFTER)
    assert ab.sql("SELECT count(*) FROM devices WHERE decision = 'deny'") == [(2,)]
    doc = ab("policy", "withdraw", "tiktok-mail", "--reason", "sent in error", now=NEXT_DAY)
    assert (doc["action"], doc["decisions_changed"]) == ("withdrawn", 2)
    assert ab.sql("SELECT count(*) FROM devices WHERE decision = 'deny'") == [(0,)]
    assert ab.sql("SELECT count(*) FROM states WHERE deny != ''") == [(0,)]
    assert ab.decide("EAS-ann-phone", "ann", NEXT_DAY) == ("allow", "ok")
    show = ab.show("ann-phone", NEXT_DAY)
    assert (show["decision"], show["reason"]) == ("allow", "ok")
    assert ab("policy", "show", "tiktok-mail", now=NEXT_DAY)["status"] == "withdrawn"
    [(_subject, data)] = _audit(ab, "policy.withdraw")
    assert json.loads(data)["reason"] == "sent in error"
    # A withdrawn policy decides nothing, whatever arrives later or however late it is.
    ab.ingest(
        checkin("ann-phone", at="2020-07-12T10:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-12T10:00:00Z",
    )
    ab("evaluate", now="2020-08-01T00:00:00Z")
    assert ab.decide("EAS-ann-phone", "ann", "2020-08-01T00:00:00Z") == ("allow", "ok")
    again = ab("policy", "withdraw", "tiktok-mail", "--reason", "again", now="2020-08-01T00:00:00Z")
    assert again["action"] == "unchanged"


def test_withdraw_needs_a_reason_and_a_policy(ab: Appban) -> None:
    ab.apply()
    assert ab.run("policy", "withdraw", "tiktok-mail", "--reason", " ", now=AFTER).code == 2
    assert ab.run("policy", "withdraw", "nope", "--reason", "x", now=AFTER).code == 2
    assert ab("policy", "show", "tiktok-mail", now=AFTER)["status"] == "active"


def test_re_applying_a_withdrawn_policy_enforces_it_again(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("policy", "withdraw", "tiktok-mail", "--reason", "error", now=EFFECTIVE)
    doc = ab.apply(now=AFTER)
    assert (doc["action"], doc["status"], doc["revision"]) == ("updated", "active", 2)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:tiktok-mail")
    assert ab("policy", "show", "tiktok-mail", now=AFTER)["withdrawn_at"] is None


# -- exemptions -----------------------------------------------------------------------------


def test_a_person_exemption_covers_their_devices_until_it_expires(ab: Appban) -> None:
    _fleet(ab)
    ab.ingest(checkin("ann-tablet", platform="android", apps=[TIKTOK_ANDROID]))
    ab.apply()
    doc = ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--person",
        "Ann@Example.com",
        "--until",
        "2020-07-13T00:00:00Z",
        "--reason",
        "travelling",
        now=EFFECTIVE,
    )
    assert (doc["person"], doc["devices"]) == ("ann@example.com", 2)
    assert ab.sql("SELECT device_id, state FROM states WHERE device_id IN (1, 4) ORDER BY device_id") == [
        (1, "exempt"),
        (4, "exempt"),
    ]
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("allow", "ok")
    assert ab.state("ann-phone", "2020-07-12T23:59:59Z") == "exempt"
    # Expiry: exactly at --until the exemption is over; evaluate records it at that time.
    assert ab.state("ann-phone", "2020-07-13T00:00:00Z") == "blocked"
    ab("evaluate", now="2020-07-14T00:00:00Z")
    assert ab.sql("SELECT state, since FROM states WHERE device_id = 1") == [("blocked", 1594598400000000)]
    assert ab.decide("EAS-ann-tablet", "ann", "2020-07-14T00:00:00Z") == (
        "deny",
        "blocked:tiktok-mail",
    )
    evidence = ab.show("ann-phone", "2020-07-14T00:00:00Z")["policies"]["tiktok-mail"]["evidence"]
    assert {
        "kind": "exemption",
        "starts": EFFECTIVE,
        "until": "2020-07-13T00:00:00Z",
        "reason": "travelling",
    } in evidence


def test_a_device_exemption_covers_only_that_device(ab: Appban) -> None:
    _fleet(ab)
    ab.ingest(checkin("ann-tablet", apps=[TIKTOK_ANDROID]))
    ab.apply()
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-tablet",
        "--until",
        "2020-07-13T00:00:00Z",
        "--reason",
        "lab device",
        now=EFFECTIVE,
    )
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-tablet", "ann", AFTER) == ("allow", "ok")
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:tiktok-mail")


def test_an_exemption_added_after_the_block_lifts_it_at_once(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        "dev-1",
        "--until",
        "2020-07-20T00:00:00Z",
        "--reason",
        "ceo",
        now=NEXT_DAY,
    )
    assert ab.sql("SELECT state, deny FROM states WHERE device_id = 1") == [("exempt", "")]
    assert ab.sql("SELECT decision FROM devices WHERE id = 1") == [("allow",)]


def test_an_exemption_must_end_in_the_future(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    r = ab.run(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        "dev-1",
        "--until",
        APPLIED,
        "--reason",
        "x",
        now=APPLIED,
    )
    assert r.code == 2
    assert ab.sql("SELECT count(*) FROM exemptions") == [(0,)]


# -- attestations ---------------------------------------------------------------------------


def test_attestation_makes_a_byod_phone_compliant(ab: Appban) -> None:
    ab.ingest(checkin("ann-byod", platform="ios", ownership="personal", inventory_scope="managed", apps=[]))
    ab.apply(on_unverified="block")
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-byod", "ann", AFTER) == ("deny", "unverified:tiktok-mail")
    doc = ab(
        "attest",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-byod",
        "--person",
        "ann@example.com",
        now=NEXT_DAY,
    )
    assert doc["state"] == "compliant"
    assert ab.decide("EAS-ann-byod", "ann", NEXT_DAY) == ("allow", "ok")
    evidence = ab.show("ann-byod", NEXT_DAY)["policies"]["tiktok-mail"]["evidence"]
    assert {"kind": "attestation", "person": "ann@example.com", "attested_at": NEXT_DAY} in evidence
    # Still compliant much later: an attestation does not age.
    ab("evaluate", now="2020-09-01T00:00:00Z")
    assert ab.decide("EAS-ann-byod", "ann", "2020-09-01T00:00:00Z") == ("allow", "ok")


def test_a_later_inventory_showing_the_app_overrides_the_attestation(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    ab(
        "attest",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-phone",
        "--person",
        "ann@example.com",
        now=NEXT_DAY,
    )
    assert ab.decide("EAS-ann-phone", "ann", NEXT_DAY) == ("allow", "ok")
    # A snapshot taken before the attestation, arriving late, does not override it...
    ab.ingest(
        checkin("ann-phone", at="2020-07-12T08:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-12T10:00:00Z",
    )
    assert ab.sql("SELECT state FROM states WHERE device_id = 1") == [("compliant",)]
    # ...one taken after it does.
    ab.ingest(
        checkin("ann-phone", at="2020-07-12T11:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-12T11:00:00Z",
    )
    assert ab.sql("SELECT state, deny FROM states WHERE device_id = 1") == [("blocked", "blocked:tiktok-mail")]
    assert ab.decide("EAS-ann-phone", "ann", "2020-07-12T11:00:00Z") == (
        "deny",
        "blocked:tiktok-mail",
    )


def test_only_the_owner_can_attest(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    r = ab.run(
        "attest",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-phone",
        "--person",
        "bob@example.com",
        now=AFTER,
    )
    assert r.code == 2 and "own" in r.err
    assert ab.sql("SELECT count(*) FROM attestations") == [(0,)]


# -- policies naming identifiers directly ---------------------------------------------------


def test_an_explicit_identifier_joins_the_catalog_and_old_snapshots_are_unverified(
    ab: Appban,
) -> None:
    ab.ingest(checkin("ann-phone", apps=[*HARMLESS, FOO]), checkin("bob-phone", owner="bob@example.com"))
    # Minimised: com.example.foo was not in the catalog, so it was not kept.
    assert ab.sql("SELECT app_id FROM observations") == []
    doc = ab.apply(id="foo-ban", apps=["android:com.example.foo"], on_unverified="block")
    assert doc["action"] == "created"
    assert ab("catalog", "list", now=APPLIED)["version"] == 2
    for device in ("ann-phone", "bob-phone"):
        policy = ab.show(device, APPLIED)["policies"]["foo-ban"]
        assert policy["state"] == "unverified"
        assert "catalog" in policy["detail"]
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-bob-phone", "bob", AFTER) == ("deny", "unverified:foo-ban")
    # The next snapshots are filtered against v2: they prove presence and absence.
    ab.ingest(
        checkin("ann-phone", at="2020-07-11T08:00:00Z", apps=[*HARMLESS, FOO]),
        checkin("bob-phone", at="2020-07-11T08:00:00Z", owner="bob@example.com"),
        now="2020-07-11T08:00:00Z",
    )
    assert ab.sql("SELECT app_id, match_kind, confidence FROM observations") == [
        ("com.example.foo", "android", "identifier")
    ]
    assert ab.sql("SELECT catalog_version FROM devices ORDER BY id") == [(2,), (2,)]
    assert ab.state("ann-phone", "2020-07-11T08:00:00Z", "foo-ban") == "blocked"
    assert ab.state("bob-phone", "2020-07-11T08:00:00Z", "foo-ban") == "compliant"
    assert ab.decide("EAS-bob-phone", "bob", "2020-07-11T08:00:00Z") == ("allow", "ok")


def test_an_explicit_identifier_only_matches_its_platform(ab: Appban) -> None:
    ab.apply(id="foo-ban", apps=["android:com.example.foo"])
    ab.ingest(
        checkin("ann-iphone", platform="ios", apps=[FOO]),
        checkin("bob-phone", owner="bob@example.com", apps=[FOO]),
        now=AFTER,
    )
    assert ab.state("ann-iphone", AFTER, "foo-ban") == "compliant"
    assert ab.state("bob-phone", AFTER, "foo-ban") == "blocked"


def test_with_full_inventories_an_explicit_identifier_is_known_at_once(ab: Appban) -> None:
    """A snapshot kept whole already holds the app: the policy sees it without a new one."""
    ab.ingest(
        checkin("ann-phone", apps=[*HARMLESS, FOO]),
        checkin("bob-phone", owner="bob@example.com"),
        keep_full=True,
    )
    ab.apply(id="foo-ban", apps=["android:com.example.foo"])
    assert ab.state("ann-phone", APPLIED, "foo-ban") == "violating"
    assert ab.state("bob-phone", APPLIED, "foo-ban") == "compliant"
    ab("evaluate", now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:foo-ban")
    assert ab.decide("EAS-bob-phone", "bob", AFTER) == ("allow", "ok")


def test_two_policies_decide_together(ab: Appban) -> None:
    _fleet(ab)
    ab.ingest(
        checkin("ann-phone", at="2020-07-10T15:10:00Z", apps=[TIKTOK_ANDROID, FOO]),
        now="2020-07-10T15:10:00Z",
    )
    ab.apply()
    ab.apply(id="foo-ban", apps=["android:com.example.foo"], deadline="2020-07-12T00:00:00Z")
    assert ab.show("ann-phone", APPLIED)["policies"]["foo-ban"]["state"] == "unverified"
    ab.ingest(checkin("ann-phone", at=AFTER, apps=[TIKTOK_ANDROID, FOO]), now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("deny", "blocked:tiktok-mail")
    ab("policy", "withdraw", "tiktok-mail", "--reason", "error", now=AFTER)
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("allow", "ok")
    ab("evaluate", now=NEXT_DAY)
    assert ab.decide("EAS-ann-phone", "ann", NEXT_DAY) == ("deny", "blocked:foo-ban")
    assert ab.sql("SELECT reason FROM devices WHERE id = 1") == [("blocked:foo-ban",)]


def _audited_changes(ab: Appban) -> list[tuple[str, str | None, str, int, str]]:
    """(policy/device, from, to, at, cause) of every state change in the audit log, whether
    audited one by one ("state") or in a batch per sweep ("states")."""
    out = []
    for action, subject, at, data in ab.sql(
        "SELECT action, subject, at, data FROM audit_log WHERE action IN ('state', 'states') ORDER BY seq"
    ):
        body = json.loads(data)
        if action == "state":
            out.append((subject, body["from"], body["to"], at, body["cause"]))
        else:
            out += [(f"{subject}/{dev}", old, new, when, body["cause"]) for dev, old, new, when in body["changes"]]
    return out


def test_state_changes_are_in_the_audit_log(ab: Appban) -> None:
    _fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    ab.ingest(checkin("ann-phone", at=NEXT_DAY), now=NEXT_DAY)
    assert [c for c in _audited_changes(ab) if c[0] == "tiktok-mail/dev-1"] == [
        ("tiktok-mail/dev-1", None, "violating", 1594395000000000, "policy"),
        ("tiktok-mail/dev-1", "violating", "blocked", 1594450740000000, "time"),  # at the deadline
        ("tiktok-mail/dev-1", "blocked", "compliant", 1594544400000000, "inventory"),
    ]
    history = ab.sql("SELECT policy_id, device_id, old_state, new_state, at, cause FROM state_history ORDER BY id")
    assert len(_audited_changes(ab)) == len(history)
    assert ab("audit", "verify", now=NEXT_DAY)["ok"] is True


def test_unchanged_checkins_before_the_policy_exist(ab: Appban) -> None:
    """Inventory that arrives before any policy is stored and judged when one is applied."""
    ab.ingest(checkin("ann-phone", apps=[TIKTOK_ANDROID]), now=BEFORE)
    assert ab.sql("SELECT count(*) FROM states") == [(0,)]
    ab.apply(now=AFTER)
    assert ab.sql("SELECT state FROM states") == [("blocked",)]


def test_dry_run_sees_an_explicit_identifier_in_kept_inventories(ab: Appban) -> None:
    """The preview must say what applying would: the kept app is found, not proved absent."""
    ab.ingest(
        checkin("ann-phone", apps=[*HARMLESS, FOO]),
        checkin("bob-phone", owner="bob@example.com"),
        keep_full=True,
    )
    before = ab.dump()
    doc = ab.apply(dry_run=True, id="foo-ban", apps=["android:com.example.foo"])
    assert ab.dump() == before
    assert (doc["states"]["violating"], doc["states"]["compliant"]) == (1, 1)
    assert doc["people"] == ["ann@example.com"]
    applied = ab.apply(id="foo-ban", apps=["android:com.example.foo"])
    assert applied["state_changes"] == 2
    assert ab.sql("SELECT device_id, state FROM states ORDER BY device_id") == [
        (1, "violating"),
        (2, "compliant"),
    ]


# -- stored states are the state function's answer ------------------------------------------


def _check_stored_states_are_exact(ab: Appban, now: str, devices: list[str]) -> None:
    """After ``evaluate --now``, every stored state and decision is what the state function
    says for that moment (``device show`` computes it afresh, without reading states)."""
    active = [p["id"] for p in ab("policy", "list", now=now)["policies"] if p["status"] == "active"]
    for ref in devices:
        shown = ab.show(ref, now)
        device_id = int(shown["id"][4:])
        stored = {
            p: (s, d)
            for p, s, d in ab.sql("SELECT policy_id, state, deny FROM states WHERE device_id = ?", (device_id,))
        }
        for policy in active:
            state = shown["policies"][policy]["state"]
            assert stored[policy][0] == state, (
                now,
                ref,
                policy,
                stored[policy],
                shown["policies"][policy],
            )
        assert ab.sql("SELECT decision, reason FROM devices WHERE id = ?", (device_id,)) == [
            (shown["decision"], shown["reason"])
        ], (now, ref)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_stored_states_stay_exact_through_a_random_story(ab: Appban, seed: int) -> None:
    rng = random.Random(seed)
    people = ["ann", "bob", "cat", "dan"]
    ab.people(
        [
            (
                f"{p}@example.com",
                p,
                "Unit",
                rng.choice(["staff", "staff;security-research", "pilot"]),
                "UTC",
            )
            for p in people
        ]
    )
    devices = [f"d{i}" for i in range(6)]
    owner = {d: rng.choice(people) for d in devices}
    platform = {d: rng.choice(["android", "ios", "macos"]) for d in devices}
    clock = parse_time("2020-07-10T15:00:00Z")

    def at(t: int) -> str:
        return format_time(t) or ""

    def snapshot(d: str, t: int) -> dict[str, Any]:
        apps = [*HARMLESS, TIKTOK_ANDROID] if rng.random() < 0.4 else list(HARMLESS)
        if rng.random() < 0.3:
            apps.append(FOO)
        return checkin(
            d,
            at=at(t),
            apps=apps,
            platform=platform[d],
            owner=f"{owner[d]}@example.com",
            eas=[] if rng.random() < 0.15 else None,
            inventory_scope="managed" if rng.random() < 0.2 else "full",
        )

    ab.ingest(*(snapshot(d, clock) for d in devices), now=at(clock))
    policies: dict[str, dict[str, Any]] = {}
    for _step in range(14):
        clock += rng.choice([1, 3, 7, 20]) * 3_600_000_000
        now = at(clock)
        action = rng.choice(["ingest", "ingest", "apply", "apply", "exempt", "attest", "withdraw", "none"])
        if action == "ingest":
            ab.ingest(*(snapshot(d, clock) for d in rng.sample(devices, 3)), now=now)
        elif action == "apply" or not policies:
            pid = rng.choice(["tiktok-mail", "foo-ban"])
            fields = {
                "id": pid,
                "apps": ["tiktok"] if pid == "tiktok-mail" else ["android:com.example.foo", "tiktok"],
                "deadline": at(clock + rng.choice([-5, 2, 10, 30]) * 3_600_000_000),
                "effective": at(clock - 100 * 3_600_000_000),
                "mode": rng.choice(["enforce", "enforce", "monitor"]),
                "on_unverified": rng.choice(["allow", "block"]),
                "max_inventory_age": rng.choice(["12h", "2d", "7d"]),
                "scope": {
                    "mail_access": rng.choice(["required", "any"]),
                    "include_groups": rng.choice([[], ["pilot", "staff"]]),
                },
            }
            policies[pid] = fields
            ab.apply(now=now, **fields)
        elif action == "exempt":
            pid = rng.choice(sorted(policies))
            until = at(clock + rng.choice([2, 9, 40]) * 3_600_000_000)
            who = (
                ["--device", rng.choice(devices)]
                if rng.random() < 0.5
                else ["--person", f"{rng.choice(people)}@example.com"]
            )
            ab(
                "exempt",
                "add",
                "--policy",
                pid,
                *who,
                "--until",
                until,
                "--reason",
                "story",
                now=now,
            )
        elif action == "attest":
            d = rng.choice(devices)
            ab(
                "attest",
                "--policy",
                rng.choice(sorted(policies)),
                "--device",
                d,
                "--person",
                f"{owner[d]}@example.com",
                now=now,
            )
        elif action == "withdraw":
            ab("policy", "withdraw", rng.choice(sorted(policies)), "--reason", "story", now=now)
        ab("evaluate", now=now)
        _check_stored_states_are_exact(ab, now, devices)
    # And a full re-evaluation finds nothing to change.
    assert ab("evaluate", "--full", now=at(clock))["state_changes"] == 0


def test_evaluate_walks_through_every_change_time_brought(ab: Appban) -> None:
    """An exemption ends before the deadline; one late evaluate records both changes,
    each at its own time."""
    _fleet(ab)
    ab.apply()
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-phone",
        "--until",
        "2020-07-10T20:00:00Z",
        "--reason",
        "a few hours",
        now=EFFECTIVE,
    )
    ab("evaluate", now="2020-07-15T00:00:00Z")
    changes = ab.sql("SELECT old_state, new_state, at, cause FROM state_history WHERE device_id = 1 ORDER BY id")
    assert changes == [
        (None, "violating", 1594395000000000, "policy"),
        ("violating", "exempt", 1594395000000000, "exemption"),  # at EFFECTIVE
        ("exempt", "violating", 1594411200000000, "time"),  # 20:00, the exemption's end
        ("violating", "blocked", 1594450740000000, "time"),  # the deadline
    ]


def test_a_person_exemption_covers_a_device_that_checks_in_later(ab: Appban) -> None:
    ab.apply()
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--person",
        "ann@example.com",
        "--until",
        "2020-07-20T00:00:00Z",
        "--reason",
        "on leave",
        now=EFFECTIVE,
    )
    ab.ingest(checkin("ann-new", at=AFTER, apps=[TIKTOK_ANDROID]), now=AFTER)
    assert ab.sql("SELECT state FROM states") == [("exempt",)]
    assert ab.decide("EAS-ann-new", "ann", AFTER) == ("allow", "ok")


def test_an_attestation_under_a_draft_policy_counts_once_it_is_active(ab: Appban) -> None:
    _fleet(ab)
    assert ab.run("policy", "apply", ab.policy_file(), "--draft", now=APPLIED).code == 0
    ab(
        "attest",
        "--policy",
        "tiktok-mail",
        "--device",
        "ann-phone",
        "--person",
        "ann@example.com",
        now=EFFECTIVE,
    )
    assert ab.sql("SELECT count(*) FROM states") == [(0,)]
    ab.apply(now=AFTER)
    assert ab.sql("SELECT state FROM states WHERE device_id = 1") == [("compliant",)]
    assert ab.decide("EAS-ann-phone", "ann", AFTER) == ("allow", "ok")


def test_what_counts_as_mail_access(ab: Appban) -> None:
    ab.ingest(
        checkin("eas-only", apps=[TIKTOK_ANDROID]),
        checkin("said-so", eas=[], mail_access=True, apps=[TIKTOK_ANDROID]),
        checkin("eas-but-said-no", mail_access=False, apps=[TIKTOK_ANDROID]),
        checkin("no-mail", eas=[], mail_access=False, apps=[TIKTOK_ANDROID]),
        checkin("unknown", eas=[], apps=[TIKTOK_ANDROID]),
    )
    ab.apply()
    required = {d: ab.state(d, AFTER) for d in ("eas-only", "said-so", "eas-but-said-no", "no-mail", "unknown")}
    assert required == {
        "eas-only": "blocked",
        "said-so": "blocked",
        "eas-but-said-no": "blocked",
        "no-mail": "out_of_scope",
        "unknown": "out_of_scope",
    }
    ab.apply(now=AFTER, scope={"mail_access": "any"})
    assert ab.sql("SELECT count(*) FROM states WHERE state = 'blocked'") == [(5,)]


def test_a_policy_applied_before_it_is_effective_holds_no_one_until_then(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(now=BEFORE, effective=APPLIED)
    early = ab.status(BEFORE)
    assert early["states"]["out_of_scope"] == 3 and early["people_affected"] == 0
    assert ab.decide("EAS-ann-phone", "ann", BEFORE) == ("allow", "ok")
    # At effective every state is computed, and recorded at that moment.
    ab("evaluate", now=AFTER)
    assert ab.state("ann-phone", AFTER) == "blocked"
    assert ab.sql("SELECT old_state, new_state, at FROM state_history WHERE device_id = 1 ORDER BY id") == [
        (None, "out_of_scope", 1594393200000000),
        ("out_of_scope", "violating", 1594395000000000),
        ("violating", "blocked", 1594450740000000),
    ]


def test_a_dry_run_before_effective_shows_whom_it_will_hit(ab: Appban) -> None:
    _fleet(ab)
    doc = ab.apply(now=BEFORE, dry_run=True, effective=APPLIED)
    assert doc["states_as_of"] == APPLIED
    assert (doc["violating_now"], doc["people_affected"], doc["would_be_denied_at_deadline"]) == (1, 1, 1)
