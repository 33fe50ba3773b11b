"""Which notices a policy's life plans, for whom, and when: the outbox rows written by
the same command that changes the states (SPEC: notices; docs/notices.md).

Everything goes through the command line against a real database; the outbox is read
back with SQL. Delivery is tests/notify's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from appban.clock import parse_time
from appban.policy.notices import in_waking_hours
from helpers_semantics import AFTER, APPLIED, BEFORE, DEADLINE, TIKTOK_ANDROID, Appban, checkin

PEOPLE = [
    ("ann@example.com", "Ann Example", "Sales", "staff", "Europe/London"),
    ("bob@example.com", "Bob Example", "Sales", "staff", "America/New_York"),
    ("cara@example.com", "Cara Example", "Ops", "staff", "Asia/Kolkata"),
    ("dan@example.com", "Dan Example", "Ops", "staff", "UTC"),
]


def fleet(ab: Appban) -> None:
    """Ann: three phones with TikTok. Bob: a clean phone. Cara: TikTok on a Mac (out of
    scope). Dan: no device."""
    ab.people(PEOPLE)
    ab.ingest(
        *(checkin(f"ann-{i}", owner="ann@example.com", apps=[TIKTOK_ANDROID]) for i in range(3)),
        checkin("bob-1", owner="bob@example.com"),
        checkin("cara-mac", owner="cara@example.com", platform="macos", apps=[TIKTOK_ANDROID]),
    )


def outbox(ab: Appban, kind: str | None = None) -> list[tuple[Any, ...]]:
    sql = "SELECT person, kind, occasion, channel, devices, state, due_at FROM notices"
    params: tuple[Any, ...] = ()
    if kind is not None:
        sql += " WHERE kind = ?"
        params = (kind,)
    return ab.sql(sql + " ORDER BY kind, person, occasion", params)


def people_told(ab: Appban, kind: str) -> list[str]:
    return [r[0] for r in outbox(ab, kind)]


def micros(text: str) -> int:
    return parse_time(text, field="t")


def test_memo_goes_once_to_each_affected_person_at_apply(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    rows = outbox(ab, "memo")
    # One memo for three phones, to the only person with a banned app in scope.
    assert [(r[0], r[3], r[5]) for r in rows] == [("ann@example.com", "mail", "pending")]
    assert rows[0][6] == micros(APPLIED)
    # Evaluating again, or applying the same file again, plans nothing more.
    ab("evaluate", now="2020-07-10T16:00:00Z")
    ab.apply(now="2020-07-10T16:00:00Z")
    assert len(outbox(ab, "memo")) == 1


@pytest.mark.parametrize(
    ("audience", "told"),
    [
        ("affected", ["ann@example.com"]),
        ("in_scope", ["ann@example.com", "bob@example.com"]),
        ("all", ["ann@example.com", "bob@example.com", "cara@example.com", "dan@example.com"]),
    ],
)
def test_memo_audience(ab: Appban, audience: str, told: list[str]) -> None:
    fleet(ab)
    ab.apply(notices={"audience": audience})
    assert people_told(ab, "memo") == told


def test_memo_waits_for_effective_then_goes_with_time(ab: Appban) -> None:
    fleet(ab)
    ab.apply(effective="2020-07-10T18:00:00Z")
    assert outbox(ab) == []
    ab("evaluate", now="2020-07-10T17:59:59Z")
    assert outbox(ab) == []
    ab("evaluate", now="2020-07-10T18:00:00Z")
    assert people_told(ab, "memo") == ["ann@example.com"]


def test_a_person_who_joins_the_audience_later_gets_the_memo_then_once(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    ab.ingest(
        checkin("bob-1", owner="bob@example.com", at="2020-07-10T17:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T17:00:00Z",
    )
    rows = [r for r in outbox(ab, "memo") if r[0] == "bob@example.com"]
    assert len(rows) == 1 and rows[0][6] == micros("2020-07-10T17:00:00Z")
    ab.ingest(checkin("bob-1", owner="bob@example.com", at="2020-07-10T18:00:00Z"), now="2020-07-10T18:00:00Z")
    ab.ingest(
        checkin("bob-1", owner="bob@example.com", at="2020-07-10T19:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T19:00:00Z",
    )
    assert people_told(ab, "memo") == ["ann@example.com", "bob@example.com"]


def test_people_imported_later_get_the_memo_when_the_audience_is_everyone(ab: Appban) -> None:
    fleet(ab)
    ab.apply(notices={"audience": "all"})
    ab.people([*PEOPLE, ("eve@example.com", "Eve Example", "Ops", "staff", "UTC")], now="2020-07-10T17:00:00Z")
    assert "eve@example.com" in people_told(ab, "memo")
    assert len(people_told(ab, "memo")) == 5


def test_reminders_before_the_memo_are_skipped_later_ones_go_to_who_still_has_the_app(ab: Appban) -> None:
    fleet(ab)
    ab.ingest(
        checkin("bob-1", owner="bob@example.com", at="2020-07-10T15:10:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T15:10:00Z",
    )
    # reminders 24h and 2h before the 06:59 deadline: 24h falls before the memo (15:30).
    ab.apply()
    ab.ingest(checkin("bob-1", owner="bob@example.com", at="2020-07-10T20:00:00Z"), now="2020-07-10T20:00:00Z")
    ab("evaluate", now="2020-07-11T05:00:00Z")
    rows = outbox(ab, "reminder")
    assert [(r[0], r[2]) for r in rows] == [("ann@example.com", str(micros("2020-07-11T04:59:00Z")))]
    # 05:00Z is 06:00 in London, before the waking window; the window opens after the
    # deadline, so the reminder goes now rather than never.
    assert rows[0][6] == micros("2020-07-11T05:00:00Z")
    ab("evaluate", now="2020-07-11T05:30:00Z")
    assert len(outbox(ab, "reminder")) == 1


def test_a_reminder_waits_for_the_persons_waking_hours(ab: Appban) -> None:
    fleet(ab)
    ab.apply(deadline="2020-07-14T12:00:00Z", reminders=["48h"])
    ab("evaluate", now="2020-07-12T12:00:00Z")  # 13:00 in London: inside 08:00-20:00
    assert [r[6] for r in outbox(ab, "reminder")] == [micros("2020-07-12T12:00:00Z")]


def test_waking_hours_in_each_time_zone() -> None:
    hours = (dt.time(8), dt.time(20))
    far = micros("2030-01-01T00:00:00Z")
    # 02:00 UTC is 22:00 the day before in New York: wait for 08:00 there (12:00 UTC).
    assert in_waking_hours(micros("2020-07-12T02:00:00Z"), "America/New_York", far, hours) == micros(
        "2020-07-12T12:00:00Z"
    )
    # ... 07:30 in Kolkata: wait half an hour.
    assert in_waking_hours(micros("2020-07-12T02:00:00Z"), "Asia/Kolkata", far, hours) == micros("2020-07-12T02:30:00Z")
    # ... unless the deadline comes first.
    deadline = micros("2020-07-12T02:10:00Z")
    assert in_waking_hours(micros("2020-07-12T02:00:00Z"), "Asia/Kolkata", deadline, hours) == micros(
        "2020-07-12T02:00:00Z"
    )
    # An unknown zone is UTC.
    assert in_waking_hours(micros("2020-07-12T21:00:00Z"), "Mars/Olympus", far, hours) == micros("2020-07-13T08:00:00Z")


def test_a_reminder_is_cancelled_once_nothing_is_left_to_act_on(ab: Appban) -> None:
    fleet(ab)
    ab.apply(deadline="2020-07-14T12:00:00Z", reminders=["60h"])
    ab("evaluate", now="2020-07-12T00:00:00Z")  # 01:00 in London: waits for 08:00
    assert [r[5] for r in outbox(ab, "reminder")] == ["pending"]
    ab.ingest(
        *(checkin(f"ann-{i}", owner="ann@example.com", at="2020-07-12T01:00:00Z") for i in range(3)),
        now="2020-07-12T01:00:00Z",
    )
    assert [r[5] for r in outbox(ab, "reminder")] == ["cancelled"]


def test_the_deadline_blocks_and_tells_each_owner_once_naming_every_device(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    ab("evaluate", now=AFTER)
    rows = outbox(ab, "blocked")
    assert len(rows) == 1
    person, _kind, occasion, _channel, devices, state, _due = rows[0]
    # The occasion is the moment the decision changed: what tells this block from a later one.
    assert (person, state) == ("ann@example.com", "pending")
    assert micros(DEADLINE) <= int(occasion) <= micros(AFTER)
    ann = [f"dev-{d}" for d in sorted(int(x) for x in devices.split(","))]
    assert len(ann) == 3
    # One phone reports clean: restored, for that phone only.
    ab.ingest(checkin("ann-0", owner="ann@example.com", at="2020-07-11T08:00:00Z"), now="2020-07-11T08:00:00Z")
    restored = outbox(ab, "restored")
    assert [(r[0], r[2]) for r in restored] == [("ann@example.com", str(micros("2020-07-11T08:00:00Z")))]
    assert len(restored[0][4].split(",")) == 1


def test_monitor_mode_sends_memo_and_reminders_never_blocked(ab: Appban) -> None:
    fleet(ab)
    ab.apply(mode="monitor")
    ab("evaluate", now="2020-07-11T05:00:00Z")
    ab("evaluate", now=AFTER)
    kinds = {r[1] for r in outbox(ab)}
    assert kinds == {"memo", "reminder"}


def test_a_moved_deadline_tells_those_already_sent_the_memo(ab: Appban) -> None:
    fleet(ab)
    ab.ingest(
        checkin("bob-1", owner="bob@example.com", at="2020-07-10T15:10:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T15:10:00Z",
    )
    ab.apply()
    # Ann's memo went out; Bob's is still waiting (it will carry the new deadline).
    ab.write_sql("UPDATE notices SET state = 'sent', sent_at = 1 WHERE person = 'ann@example.com'")
    doc = ab.apply(now="2020-07-10T17:00:00Z", deadline="2020-07-12T06:59:00Z")
    assert doc["policy_changed_notices"] == 1
    assert [(r[0], r[2]) for r in outbox(ab, "policy_changed")] == [("ann@example.com", "rev-2")]
    # A title change alone tells no one.
    ab.apply(now="2020-07-10T17:30:00Z", deadline="2020-07-12T06:59:00Z", title="TikTok, again")
    assert len(outbox(ab, "policy_changed")) == 1
    ab.apply(now="2020-07-10T18:00:00Z", deadline="2020-07-12T06:59:00Z", title="TikTok, again", mode="monitor")
    assert [r[2] for r in outbox(ab, "policy_changed")] == ["rev-2", "rev-4"]


def test_withdrawal_cancels_what_waits_and_corrects_everyone_told(ab: Appban) -> None:
    fleet(ab)
    ab.ingest(
        checkin("bob-1", owner="bob@example.com", at="2020-07-10T15:10:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T15:10:00Z",
    )
    ab.apply()
    ab.write_sql("UPDATE notices SET state = 'sent', sent_at = 1 WHERE person = 'ann@example.com'")
    ab("evaluate", now=AFTER)
    doc = ab("policy", "withdraw", "tiktok-mail", "--reason", "sent in error", now="2020-07-11T08:00:00Z")
    assert doc["corrections"] == 1
    by_state = {(r[0], r[1]): r[5] for r in outbox(ab)}
    assert by_state[("ann@example.com", "memo")] == "sent"
    assert by_state[("ann@example.com", "correction")] == "pending"
    assert by_state[("bob@example.com", "memo")] == "cancelled"
    assert by_state[("ann@example.com", "blocked")] == "cancelled"
    assert ("bob@example.com", "correction") not in by_state
    # Lifting the blocks is the correction's news: no restored notices.
    assert outbox(ab, "restored") == []


def test_exemption_tells_the_person_and_warns_before_it_ends(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    doc = ab(
        "exempt", "add", "--policy", "tiktok-mail", "--person", "ann@example.com",
        "--until", "2020-08-10T00:00:00Z", "--reason", "runs the company account", now="2020-07-10T17:00:00Z",
    )  # fmt: skip
    rows = {r[1]: r for r in outbox(ab) if r[1].startswith("exemption")}
    assert rows["exemption"][2] == f"ex-{doc['exemption']}"
    assert rows["exemption_expiring"][6] == micros("2020-08-07T00:00:00Z")
    ab("exempt", "revoke", str(doc["exemption"]), now="2020-07-10T18:00:00Z")
    assert {r[1]: r[5] for r in outbox(ab)}["exemption_expiring"] == "cancelled"


def test_a_policy_with_a_webhook_plans_each_notice_on_both_channels(ab: Appban) -> None:
    fleet(ab)
    ab.apply(notices={"webhook": "https://chat.example.com/hooks/appban"})
    assert sorted(r[3] for r in outbox(ab, "memo")) == ["mail", "webhook"]


def test_a_draft_plans_nothing(ab: Appban) -> None:
    fleet(ab)
    ab("policy", "apply", ab.policy_file(), "--draft", now=APPLIED)
    ab("evaluate", now=AFTER)
    assert outbox(ab) == []


def test_before_apply_nothing_is_planned(ab: Appban) -> None:
    fleet(ab)
    ab("evaluate", now=BEFORE)
    assert outbox(ab) == []


def test_dry_run_says_how_many_notices_of_each_kind_would_go_and_when(ab: Appban) -> None:
    fleet(ab)
    before = ab.dump()
    doc = ab.apply(dry_run=True)
    assert ab.dump() == before
    notices = doc["notices"]
    assert notices["memo"] == {"people": 1, "at": APPLIED}
    # 24h before the deadline falls before the memo: only the 2h reminder would go.
    assert notices["reminder"] == [{"at": "2020-07-11T04:59:00Z", "people": 1}]
    assert notices["blocked"] == {"people": 1, "at": DEADLINE}
    ab.apply()
    assert len(outbox(ab, "memo")) == notices["memo"]["people"]
    ab("evaluate", now="2020-07-11T05:00:00Z")
    assert len(outbox(ab, "reminder")) == 1
    ab("evaluate", now=AFTER)
    assert len(outbox(ab, "blocked")) == notices["blocked"]["people"]
    # Applying it again would plan no second memo.
    assert ab.apply(dry_run=True, now="2020-07-11T08:00:00Z")["notices"]["memo"]["people"] == 0


def test_a_policy_applied_again_after_its_withdrawal_tells_its_audience_again(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    ab.write_sql("UPDATE notices SET state = 'sent', sent_at = 1")
    ab("policy", "withdraw", "tiktok-mail", "--reason", "sent in error", now="2020-07-10T17:00:00Z")
    ab.write_sql("UPDATE notices SET state = 'sent', sent_at = 1 WHERE kind = 'correction'")
    ab.apply(now="2020-07-10T18:00:00Z")
    memos = outbox(ab, "memo")
    assert [(r[0], r[5]) for r in memos] == [("ann@example.com", "sent"), ("ann@example.com", "pending")]
    # Withdrawn again: the second life's correction goes too, to those told in it.
    ab.write_sql("UPDATE notices SET state = 'sent', sent_at = 1 WHERE kind = 'memo'")
    doc = ab("policy", "withdraw", "tiktok-mail", "--reason", "again", now="2020-07-10T19:00:00Z")
    assert doc["corrections"] == 1
    assert len(outbox(ab, "correction")) == 2


def test_everyone_means_device_owners_never_imported_as_people_too(ab: Appban) -> None:
    fleet(ab)
    ab.ingest(checkin("zed-1", owner="zed@example.com", apps=[TIKTOK_ANDROID]))
    doc = ab.apply(dry_run=True, notices={"audience": "all"})
    ab.apply(notices={"audience": "all"})
    told = people_told(ab, "memo")
    assert "zed@example.com" in told and len(told) == 5 == doc["notices"]["memo"]["people"]
    # A device of someone new to appban after the memo: they are told too.
    ab.ingest(checkin("yan-1", owner="yan@example.com", at="2020-07-10T17:00:00Z"), now="2020-07-10T17:00:00Z")
    assert "yan@example.com" in people_told(ab, "memo")


def test_a_violating_phone_handed_to_someone_else_tells_its_new_owner(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    ab.ingest(
        checkin("ann-0", owner="bob@example.com", at="2020-07-10T17:00:00Z", apps=[TIKTOK_ANDROID]),
        now="2020-07-10T17:00:00Z",
    )
    assert people_told(ab, "memo") == ["ann@example.com", "bob@example.com"]


def test_missed_reminder_moments_make_one_reminder_not_one_each(ab: Appban) -> None:
    fleet(ab)
    ab.apply(deadline="2020-07-14T12:00:00Z", reminders=["72h", "48h", "24h", "2h"])
    ab("evaluate", now="2020-07-14T11:00:00Z")  # all four moments passed unseen
    rows = outbox(ab, "reminder")
    assert [r[2] for r in rows] == [str(micros("2020-07-14T10:00:00Z"))]
    ab("evaluate", now="2020-07-14T11:30:00Z")
    assert len(outbox(ab, "reminder")) == 1


def test_a_moved_deadline_drops_the_reminders_waiting_for_the_old_one(ab: Appban) -> None:
    fleet(ab)
    ab.apply(deadline="2020-07-14T12:00:00Z", reminders=["60h"])
    ab("evaluate", now="2020-07-12T00:00:00Z")  # 01:00 in London: waits for 08:00
    assert [r[5] for r in outbox(ab, "reminder")] == ["pending"]
    ab.apply(now="2020-07-12T01:00:00Z", deadline="2020-07-12T06:00:00Z", reminders=["60h"])
    assert [r[5] for r in outbox(ab, "reminder")] == ["cancelled"]
    # The new deadline's reminder moment fell before the change (the policy_changed said it).
    ab("evaluate", now="2020-07-12T02:00:00Z")
    assert [r[5] for r in outbox(ab, "reminder")] == ["cancelled"]


def test_an_extended_exemption_does_not_announce_the_first_ones_end(ab: Appban) -> None:
    fleet(ab)
    ab.apply()

    def grant(until: str, now: str) -> int:
        return int(
            ab(
                "exempt", "add", "--policy", "tiktok-mail", "--person", "ann@example.com",
                "--until", until, "--reason", "runs the company account", now=now,
            )["exemption"]
        )  # fmt: skip

    first = grant("2020-08-10T00:00:00Z", "2020-07-10T17:00:00Z")
    second = grant("2020-09-10T00:00:00Z", "2020-07-10T18:00:00Z")
    expiring = {r[2]: r[5] for r in outbox(ab, "exemption_expiring")}
    assert expiring == {f"ex-{first}": "cancelled", f"ex-{second}": "pending"}


def test_a_draft_tells_no_one_of_an_exemption(ab: Appban) -> None:
    fleet(ab)
    ab("policy", "apply", ab.policy_file(), "--draft", now=APPLIED)
    ab(
        "exempt", "add", "--policy", "tiktok-mail", "--person", "ann@example.com",
        "--until", "2020-08-10T00:00:00Z", "--reason", "later", now="2020-07-10T17:00:00Z",
    )  # fmt: skip
    assert outbox(ab) == []


def test_mail_cut_by_two_policies_tells_both_reasons(ab: Appban) -> None:
    fleet(ab)
    ab.apply()
    ab("policy", "apply", ab.policy_file(id="tiktok-mail-2", title="Second rule"), now=APPLIED)
    ab("evaluate", now=AFTER)
    blocked = ab.sql("SELECT policy_id, person FROM notices WHERE kind = 'blocked' ORDER BY policy_id")
    assert blocked == [("tiktok-mail", "ann@example.com"), ("tiktok-mail-2", "ann@example.com")]


def test_a_rolled_back_transaction_plans_nothing_in_the_next(ab: Appban) -> None:
    """What a failed transaction gathered (a block) must not be written by the next one."""
    from appban.clock import parse_time as at
    from appban.workspace import Workspace

    fleet(ab)
    ab.apply()
    ws = Workspace(ab.db, at(AFTER), create=False)
    try:
        with pytest.raises(RuntimeError), ws.writing():
            ws.evaluator.evaluate_due(ws.now)
            (device,) = ab.sql("SELECT id FROM devices WHERE source_id = 'bob-1'")[0]
            ws.evaluator.notices.decision_changed(device, ("allow", "ok"), ("deny", "blocked:tiktok-mail"), ws.now)
            raise RuntimeError("fails before the commit")
        assert outbox(ab, "blocked") == []
        with ws.writing():
            pass
    finally:
        ws.close()
    assert outbox(ab, "blocked") == []
