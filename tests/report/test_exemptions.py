"""``appban exempt list`` and ``exempt revoke``: exemptions as of --now; a revocation is
audited and re-evaluates the devices it covered in the same command."""

from __future__ import annotations

import pytest

from helpers_semantics import AFTER, NEXT_DAY, TIKTOK_ANDROID, Appban, checkin

UNTIL = "2020-08-01T00:00:00Z"
LATER = "2020-07-20T00:00:00Z"  # the exemptions are still running
AFTER_UNTIL = "2020-08-02T00:00:00Z"


def exempt(ab: Appban, *who: str, until: str = UNTIL, now: str = AFTER) -> int:
    doc = ab("exempt", "add", "--policy", "tiktok-mail", *who, "--until", until, "--reason", "travel", now=now)
    return int(doc["exemption"])


@pytest.fixture
def blocked(ab: Appban) -> Appban:
    """Ann's two phones and Bob's phone have TikTok; the deadline has passed."""
    ab.ingest(
        checkin("a1", apps=[TIKTOK_ANDROID]),
        checkin("a2", apps=[TIKTOK_ANDROID]),
        checkin("b1", owner="bob@example.com", apps=[TIKTOK_ANDROID]),
    )
    ab.apply()
    ab("evaluate", now=AFTER)
    return ab


def test_list_shows_active_ones_by_default_and_every_one_with_all(blocked: Appban) -> None:
    person = exempt(blocked, "--person", "ann@example.com")
    device = exempt(blocked, "--device", "b1", until="2020-07-15T00:00:00Z")
    revoked = exempt(blocked, "--device", "a1")
    blocked("exempt", "revoke", str(revoked), now=NEXT_DAY)
    active = blocked("exempt", "list", now=LATER)
    assert [e["id"] for e in active["exemptions"]] == [person]
    assert active["exemptions"][0] == {
        "id": person,
        "policy": "tiktok-mail",
        "person": "ann@example.com",
        "device": None,
        "from": AFTER,
        "until": UNTIL,
        "reason": "travel",
        "status": "active",
        "created_at": AFTER,
        "revoked_at": None,
    }
    every = blocked("exempt", "list", "--all", now=LATER)
    assert {e["id"]: e["status"] for e in every["exemptions"]} == {
        person: "active",
        device: "expired",
        revoked: "revoked",
    }
    assert every["exemptions"][1]["device"] == "dev-3"
    # As of an earlier moment: the device exemption was running, none had been revoked.
    then = blocked("exempt", "list", "--all", now="2020-07-11T12:00:00Z")
    assert [e["status"] for e in then["exemptions"]] == ["active", "active", "active"]
    before = blocked("exempt", "list", "--all", now="2020-07-11T06:00:00Z")
    assert [e["status"] for e in before["exemptions"]] == ["not_yet"] * 3
    assert blocked("exempt", "list", "--policy", "tiktok-mail", now=AFTER_UNTIL)["exemptions"] == []


def test_revoking_a_device_exemption_blocks_it_again_at_once(blocked: Appban) -> None:
    number = exempt(blocked, "--device", "b1")
    assert blocked.state("b1", AFTER) == "exempt"
    assert blocked.decide("EAS-b1", "bob@example.com", AFTER) == ("allow", "ok")
    doc = blocked("exempt", "revoke", str(number), "--reason", "back from travel", now=NEXT_DAY)
    assert doc["states"] == {"dev-3": "blocked"} and doc["devices"] == 1
    # Stored by the revoking command itself: the gate sees it without an evaluate.
    assert blocked.sql("SELECT state FROM states WHERE device_id = 3") == [("blocked",)]
    assert blocked.decide("EAS-b1", "bob@example.com", NEXT_DAY) == ("deny", "blocked:tiktok-mail")
    [(action, subject)] = blocked.sql("SELECT action, subject FROM audit_log WHERE action = 'exemption.revoke'")
    assert subject == "tiktok-mail/dev-3"
    assert blocked("audit", "verify", now=NEXT_DAY)["ok"] is True


def test_revoking_a_person_exemption_re_evaluates_every_device_they_own(blocked: Appban) -> None:
    number = exempt(blocked, "--person", "ann@example.com")
    assert {blocked.state(d, AFTER) for d in ("a1", "a2")} == {"exempt"}
    doc = blocked("exempt", "revoke", str(number), now=NEXT_DAY)
    assert doc["states"] == {"dev-1": "blocked", "dev-2": "blocked"}
    assert {blocked.state(d, NEXT_DAY) for d in ("a1", "a2")} == {"blocked"}


@pytest.mark.parametrize("ref", ["99", "0", "abc", "+1", "1.5", "١"])
def test_revoking_an_unknown_exemption_names_it(blocked: Appban, ref: str) -> None:
    exempt(blocked, "--device", "b1")
    before = blocked.dump()
    result = blocked.run("exempt", "revoke", ref, now=NEXT_DAY)
    assert result.code == 2 and result.out == ""
    assert "field ID" in result.err and result.err.count("\n") == 1
    assert blocked.dump() == before


def test_revoking_twice_is_refused(blocked: Appban) -> None:
    number = exempt(blocked, "--device", "b1")
    blocked("exempt", "revoke", str(number), now=NEXT_DAY)
    before = blocked.dump()
    result = blocked.run("exempt", "revoke", str(number), now=NEXT_DAY)
    assert result.code == 2 and f"exemption {number} was already revoked" in result.err
    assert "field ID" in result.err
    assert blocked.dump() == before
