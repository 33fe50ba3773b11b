"""``appban gate decide``: every SPEC reason code, and who counts as the device's owner."""

from __future__ import annotations

import pytest

from helpers_semantics import (
    AFTER,
    APPLIED,
    JUST_BEFORE_DEADLINE,
    TIKTOK_ANDROID,
    Appban,
    checkin,
    run_subprocess,
)


@pytest.fixture
def gate(ab: Appban) -> Appban:
    ab.ingest(
        checkin("clean", owner="jane.doe@example.com", eas=["EASCLEAN"]),
        checkin(
            "tiktok",
            owner="jane.doe@example.com",
            eas=["EASTIKTOK", "EASTIKTOK2"],
            apps=[TIKTOK_ANDROID],
        ),
        checkin(
            "byod",
            owner="bob@example.com",
            platform="ios",
            inventory_scope="managed",
            eas=["EASBYOD"],
            apps=[],
        ),
    )
    ab.apply(on_unverified="block")
    return ab


def decide(ab: Appban, eas: str, user: str, now: str = AFTER, *extra: str) -> dict[str, str]:
    return ab("gate", "decide", "--eas-device-id", eas, "--user", user, *extra, now=now)


def test_ok(gate: Appban) -> None:
    # Exactly SPEC's document: nothing more.
    assert decide(gate, "EASCLEAN", "jane.doe@example.com") == {"decision": "allow", "reason": "ok"}


def test_blocked_after_the_deadline_only(gate: Appban) -> None:
    assert decide(gate, "EASTIKTOK", "jane.doe", JUST_BEFORE_DEADLINE)["decision"] == "allow"
    doc = decide(gate, "EASTIKTOK", "jane.doe")
    assert (doc["decision"], doc["reason"]) == ("deny", "blocked:tiktok-mail")
    # Every DeviceId of the device answers the same.
    assert decide(gate, "EASTIKTOK2", "jane.doe")["reason"] == "blocked:tiktok-mail"


def test_unverified_after_the_deadline_when_the_policy_says_block(gate: Appban) -> None:
    assert decide(gate, "EASBYOD", "bob", JUST_BEFORE_DEADLINE)["reason"] == "ok"
    doc = decide(gate, "EASBYOD", "bob")
    assert (doc["decision"], doc["reason"]) == ("deny", "unverified:tiktok-mail")


def test_unknown_device(gate: Appban) -> None:
    assert decide(gate, "EASNOBODY", "jane.doe") == {"decision": "deny", "reason": "unknown_device"}
    allowed = decide(gate, "EASNOBODY", "jane.doe", AFTER, "--unknown-device", "allow")
    assert allowed == {"decision": "allow", "reason": "unknown_device"}


def test_unknown_device_follows_the_setting_as_the_gate_does(gate: Appban, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_UNKNOWN_DEVICE", "allow")
    assert decide(gate, "EASNOBODY", "jane.doe") == {"decision": "allow", "reason": "unknown_device"}
    # The flag wins over the environment.
    denied = decide(gate, "EASNOBODY", "jane.doe", AFTER, "--unknown-device", "deny")
    assert denied == {"decision": "deny", "reason": "unknown_device"}


@pytest.mark.parametrize("eas", ["EASCLEAN\u200b", "EAS\u200dCLEAN", "\ufeffEASCLEAN"])
def test_invisible_characters_in_the_device_id(gate: Appban, eas: str) -> None:
    assert decide(gate, eas, "jane.doe") == {"decision": "deny", "reason": "no_device_id"}


@pytest.mark.parametrize("eas", ["", "   "])
def test_no_device_id(gate: Appban, eas: str) -> None:
    assert decide(gate, eas, "jane.doe") == {"decision": "deny", "reason": "no_device_id"}


@pytest.mark.parametrize(
    "user",
    ["bob", "bob@example.com", "EXAMPLE\\bob", "jane.doe@other.example", "jane", "EXAMPLE\\jane.doe", "\u212aane"],
)
def test_user_mismatch(gate: Appban, user: str) -> None:
    # Even a clean device is denied to someone who does not own it.
    assert decide(gate, "EASCLEAN", user) == {"decision": "deny", "reason": "user_mismatch"}


def test_no_user_is_unverified(gate: Appban) -> None:
    assert decide(gate, "EASCLEAN", "") == {"decision": "deny", "reason": "user_unverified"}


@pytest.mark.parametrize("user", ["jane.doe", "JANE.DOE", "jane.doe@example.com", "Jane.Doe@Example.COM"])
def test_user_forms_of_the_owner(gate: Appban, user: str) -> None:
    assert decide(gate, "EASCLEAN", user)["reason"] == "ok"
    assert decide(gate, "EASTIKTOK", user)["reason"] == "blocked:tiktok-mail"


def test_mail_and_netbios_domains_complete_names(gate: Appban, monkeypatch: pytest.MonkeyPatch) -> None:
    assert decide(gate, "EASCLEAN", "CORP\\jane.doe")["reason"] == "user_mismatch"
    monkeypatch.setenv("APPBAN_MAIL_DOMAINS", "example.com")
    monkeypatch.setenv("APPBAN_NETBIOS_DOMAINS", "CORP")
    assert decide(gate, "EASCLEAN", "jane.doe")["reason"] == "ok"
    assert decide(gate, "EASCLEAN", "CORP\\jane.doe")["reason"] == "ok"
    assert decide(gate, "EASCLEAN", "OTHER\\jane.doe")["reason"] == "user_mismatch"
    monkeypatch.setenv("APPBAN_MAIL_DOMAINS", "other.example")
    assert decide(gate, "EASCLEAN", "jane.doe")["reason"] == "user_mismatch"


def test_a_bare_name_two_people_share_names_neither(gate: Appban) -> None:
    gate.ingest(checkin("other", owner="jane.doe@other.example", eas=["EASOTHER"]), now=AFTER)
    assert decide(gate, "EASCLEAN", "jane.doe")["reason"] == "user_mismatch"
    assert decide(gate, "EASOTHER", "jane.doe")["reason"] == "user_mismatch"
    assert decide(gate, "EASOTHER", "jane.doe@other.example")["reason"] == "ok"
    assert decide(gate, "EASCLEAN", "jane.doe@example.com")["reason"] == "ok"


def test_a_deviceid_shared_by_two_owners_decides_for_the_requesting_user(ab: Appban) -> None:
    ab.ingest(
        checkin("a", owner="ann@example.com", eas=["SHARED"], apps=[TIKTOK_ANDROID]),
        checkin("b", owner="bob@example.com", eas=["SHARED"]),
    )
    ab.apply()
    assert decide(ab, "SHARED", "ann")["reason"] == "blocked:tiktok-mail"
    assert decide(ab, "SHARED", "bob")["reason"] == "ok"
    assert decide(ab, "SHARED", "cat")["reason"] == "user_mismatch"


def test_blocked_wins_over_unverified_across_policies(ab: Appban) -> None:
    ab.ingest(checkin("a", apps=[{"id": "com.example.b"}]))
    ab.apply(id="a-unverified", apps=["android:com.example.a"], on_unverified="block")
    ab.apply(id="z-blocked", apps=["android:com.example.b"])
    # The snapshot predates both identifiers: unverified under both, the first id wins.
    assert decide(ab, "EAS-a", "ann")["reason"] == "unverified:a-unverified"
    ab.ingest(checkin("a", at=AFTER, apps=[{"id": "com.example.b"}]), now=AFTER)
    assert ab.state("a", AFTER, "a-unverified") == "compliant"
    assert decide(ab, "EAS-a", "ann")["reason"] == "blocked:z-blocked"
    # Unverified under one policy (a managed inventory) and blocked under the other.
    later = "2020-07-11T08:00:00Z"
    ab.ingest(checkin("a", at=later, apps=[{"id": "com.example.b"}], inventory_scope="managed"), now=later)
    assert ab.state("a", later, "a-unverified") == "unverified"
    assert decide(ab, "EAS-a", "ann", later)["reason"] == "blocked:z-blocked"


def test_a_device_without_mail_access_is_not_blocked(ab: Appban) -> None:
    # Out of scope (no mail access): a gate that sees it anyway has no reason to deny.
    ab.ingest(checkin("a", eas=[], apps=[TIKTOK_ANDROID]))
    ab.apply()
    assert ab.state("a", AFTER) == "out_of_scope"


def test_the_decision_is_stored_with_the_state(gate: Appban) -> None:
    gate("evaluate", now=AFTER)
    assert gate.sql("SELECT source_id, decision, reason FROM devices ORDER BY id") == [
        ("clean", "allow", "ok"),
        ("tiktok", "deny", "blocked:tiktok-mail"),
        ("byod", "deny", "unverified:tiktok-mail"),
    ]


def test_gate_decide_in_a_real_process(gate: Appban) -> None:
    result = run_subprocess(
        "gate",
        "decide",
        "--eas-device-id",
        "EASTIKTOK",
        "--user",
        "jane.doe",
        "--json",
        db=gate.db,
        now=AFTER,
    )
    assert result.code == 0, result.err
    assert result.json == {"decision": "deny", "reason": "blocked:tiktok-mail"}
    ok = run_subprocess(
        "gate",
        "decide",
        "--eas-device-id",
        "EASCLEAN",
        "--user",
        "jane.doe",
        "--json",
        db=gate.db,
        now=APPLIED,
    )
    assert ok.json["reason"] == "ok"


def test_the_query_user_counts_only_without_credentials_and_as_the_setting_allows(
    gate: Appban, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert decide(gate, "EASCLEAN", "", AFTER, "--query-user", "jane.doe")["reason"] == "ok"
    assert decide(gate, "EASCLEAN", "bob", AFTER, "--query-user", "jane.doe")["reason"] == "user_mismatch"
    monkeypatch.setenv("APPBAN_QUERY_USER", "deny")
    assert decide(gate, "EASCLEAN", "", AFTER, "--query-user", "jane.doe")["reason"] == "user_unverified"
    assert decide(gate, "EASCLEAN", "jane.doe", AFTER, "--query-user", "bob")["reason"] == "ok"
