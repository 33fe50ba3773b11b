"""``appban demo``: the whole campaign on a small synthetic company, through the real CLI.

The demo's numbers are read back from the store; these tests check that they agree
with each other, with the commands a user would run next, and from run to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appban.policy.states import STATES
from helpers_cli import assert_bad_input, run, run_process, snapshot

EMPLOYEES = "200"
SEED = "7"
END = "2020-07-18T23:59:59Z"  # the demo's clock stops at the end of its last day
DEADLINE_DAY = 5  # 2020-07-15


def demo_json(db: Path, *args: str) -> dict[str, Any]:
    result = run("--db", str(db), "--json", "demo", "--employees", EMPLOYEES, "--seed", SEED, *args)
    assert result.code == 0, result.err
    assert result.err == ""
    return json.loads(result.out)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    return db, demo_json(db)


def cli_json(db: Path, *args: str) -> dict[str, Any]:
    result = run("--db", str(db), "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without what may differ between two equal runs: time taken, paths."""
    out = {k: v for k, v in summary.items() if k not in ("elapsed_seconds", "db", "hints")}
    out["notices"] = {k: v for k, v in summary["notices"].items() if k != "delivered_to"}
    return out


# -- the story -----------------------------------------------------------------------------


def test_the_summary_has_a_row_per_day(demo: tuple[Path, dict[str, Any]]) -> None:
    _db, s = demo
    days = s["days"]
    assert [d["day"] for d in days] == list(range(9))
    assert [d["date"] for d in days][:2] == ["2020-07-10", "2020-07-11"]
    for d in days:
        assert set(d["states"]) == set(STATES)
        for key in ("removed", "restored", "blocked", "notified", "reminded", "people_affected"):
            assert isinstance(d[key], int) and d[key] >= 0, (key, d)
    assert s["employees"] == int(EMPLOYEES) and s["seed"] == int(SEED)
    assert s["fleet"]["people"] == int(EMPLOYEES)


def test_states_add_up_to_the_fleet_every_day(demo: tuple[Path, dict[str, Any]]) -> None:
    _db, s = demo
    devices = s["fleet"]["devices"]
    assert devices > int(EMPLOYEES)  # phones, tablets and laptops
    for d in s["days"]:
        assert sum(d["states"].values()) == devices, d
    assert sum(s["final"]["states"].values()) == devices
    assert s["final"]["states"] == s["days"][-1]["states"]
    by = s["final"]["by"]
    for state in STATES:
        assert sum(v["states"][state] for v in by.values()) == s["final"]["states"][state]
    # Laptops read mail but are outside the policy's platforms.
    for platform in ("macos", "windows"):
        if platform in by:
            assert by[platform]["states"]["out_of_scope"] == sum(by[platform]["states"].values())


def test_the_campaign_runs_its_course(demo: tuple[Path, dict[str, Any]]) -> None:
    _db, s = demo
    days, t = s["days"], s["totals"]
    before, after = days[:DEADLINE_DAY], days[DEADLINE_DAY:]
    # The memo reaches exactly the people the dry run counted, delivered at the launch;
    # people who join the audience later get it then; nobody twice.
    assert s["dry_run"]["memo"] == t["memo_at_launch"] > 0
    assert days[0]["notified"] >= t["memo_at_launch"]
    assert t["memo"] == s["notices"]["sent"]["memo"] >= t["memo_at_launch"]
    assert all(d["states"]["blocked"] == 0 for d in before)
    assert all(d["states"]["violating"] == 0 for d in after)
    assert days[4]["reminded"] > 0 and days[DEADLINE_DAY]["reminded"] > 0
    assert days[4]["reminded"] <= t["memo"]
    # People remove the app: the violating count only falls before the deadline.
    violating = [d["states"]["violating"] for d in before]
    assert violating == sorted(violating, reverse=True)
    assert t["removed_before_deadline"] > 0
    assert t["blocked_at_deadline"] > 0
    assert days[DEADLINE_DAY]["blocked"] == t["blocked_at_deadline"]
    assert t["restored"] <= t["blocked_at_deadline"]
    assert t["still_blocked"] == t["blocked_at_deadline"] - t["restored"]
    assert sum(d["restored"] for d in days) == t["restored"]
    removed = t["removed_before_deadline"] + t["removed_after_deadline"]
    assert sum(d["removed"] for d in days) == removed
    assert s["final"]["people_affected"] == t["people_still_blocked"]


def test_one_exemption_and_one_attestation(demo: tuple[Path, dict[str, Any]]) -> None:
    _db, s = demo
    assert s["exemption"]["person"] and s["exemption"]["devices"] >= 1
    assert [d["states"]["exempt"] for d in s["days"]][:2] == [0, 1]
    assert s["final"]["states"]["exempt"] == 1
    assert s["attestation"]["state"] == "compliant"
    assert any("attests" in e for d in s["days"] for e in d["events"])


def test_the_demo_explains_its_numbers(demo: tuple[Path, dict[str, Any]]) -> None:
    """The gap between "TikTok on N devices" and "M violate it now" is the devices the policy does
    not hold; unverified devices keep mail because of on_unverified: read from the store."""
    _db, s = demo
    b = s["explain"]["banned_app_devices"]
    assert b["devices"] == s["fleet"]["banned_app_devices"]
    assert sum(b["states"].values()) == b["devices"]
    assert b["states"].get("violating", 0) + b["states"].get("blocked", 0) == s["dry_run"]["violating_now"]
    assert sum(b["out_of_scope"].values()) == b["states"].get("out_of_scope", 0) > 0
    assert set(b["out_of_scope"]) <= {"no_mail", "group:security-research", "platform:macos", "platform:windows"}
    u = s["explain"]["unverified"]
    assert u["devices"] == s["final"]["states"]["unverified"] == sum(u["because"].values()) > 0
    assert u["on_unverified"] == "allow"
    assert set(u["because"]) <= {"managed_inventory", "stale_inventory", "no_inventory", "older_catalog"}


# -- the database it leaves -----------------------------------------------------------------


def test_the_cli_sees_what_the_demo_reported(demo: tuple[Path, dict[str, Any]]) -> None:
    db, s = demo
    status = cli_json(db, "status", "--now", END)
    assert status["states"] == s["final"]["states"]
    assert status["people_affected"] == s["final"]["people_affected"]
    blocked = cli_json(db, "device", "list", "--state", "blocked", "--now", END)
    assert blocked["count"] == s["final"]["states"]["blocked"]
    device = cli_json(db, "device", "show", s["attestation"]["device"], "--now", END)
    assert device["policies"]["tiktok-mail"]["state"] == "compliant"
    assert cli_json(db, "audit", "verify")["ok"] is True
    assert s["audit_entries"] > 0
    assert any(f"status --now {END}" in h for h in s["hints"])


def test_blocked_phones_are_denied_at_the_gate(demo: tuple[Path, dict[str, Any]]) -> None:
    db, s = demo
    blocked = cli_json(db, "device", "list", "--state", "blocked", "--now", END)["devices"]
    assert blocked, f"seed {SEED} is chosen to leave devices blocked at the end"
    device = cli_json(db, "device", "show", blocked[0]["id"], "--now", END)
    assert device["decision"] == "deny"
    eas, owner = device["eas_device_ids"][0], device["owner"]
    decision = cli_json(db, "gate", "decide", "--eas-device-id", eas, "--user", owner, "--now", END)
    assert decision["decision"] == "deny"
    assert decision["reason"] == "blocked:tiktok-mail"


# -- runs, seeds and databases ---------------------------------------------------------------


def test_same_seed_same_story_and_the_demo_db_is_replaced(demo: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, first = demo
    again = demo_json(db)  # the same database: the old demo is deleted, not added to
    assert comparable(again) == comparable(first)
    elsewhere = demo_json(tmp_path / "other.db")
    assert comparable(elsewhere) == comparable(first)


def test_another_seed_another_company(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    _db, first = demo
    other = demo_json(tmp_path / "d.db", "--seed", "8")
    assert other["fleet"] != first["fleet"]


def test_the_smallest_company_still_tells_the_story(tmp_path: Path) -> None:
    result = run("--db", str(tmp_path / "d.db"), "--json", "demo", "--employees", "10")
    assert result.code == 0, result.err
    s = json.loads(result.out)
    assert s["fleet"]["people"] == 10
    assert s["final"]["states"]["exempt"] == 1
    assert s["attestation"]["state"] == "compliant"


def test_a_database_with_real_data_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "real.db"
    checkin = tmp_path / "checkin.json"
    checkin.write_text(
        '{"device": {"id": "PHONE-1", "platform": "ios", "owner": "jane.doe@example.com"},'
        ' "observed_at": "2020-07-10T15:00:00Z", "apps": []}',
        encoding="utf-8",
    )
    assert run("--db", str(db), "init").code == 0
    assert run("--db", str(db), "import", "appban", str(checkin)).code == 0
    before = snapshot(db)
    result = run("--db", str(db), "demo", "--employees", "10")
    assert_bad_input(result, "holds real data", "--db", "appban --db demo.db demo")
    assert snapshot(db) == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("my notes, not a database\n" * 100, encoding="utf-8")
    assert_bad_input(run("--db", str(db), "demo", "--employees", "10"), "--db")
    assert db.read_text(encoding="utf-8").startswith("my notes")


def test_an_empty_appban_database_is_used(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    assert run("--db", str(db), "init").code == 0
    result = run("--db", str(db), "--json", "demo", "--employees", "10")
    assert result.code == 0, result.err


# -- for a person -----------------------------------------------------------------------------


def test_piped_output_is_a_plain_day_by_day_report(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = run_process("--db", str(db), "demo", "--employees", EMPLOYEES, "--seed", SEED)
    assert result.code == 0, result.err
    assert result.err == ""  # no progress bar on a pipe
    out = result.out
    header = next(line for line in out.splitlines() if line.startswith("day "))
    assert header.split() == [
        "day",
        "date",
        "violating",
        "blocked",
        "unverified",
        "compliant",
        "exempt",
        "removed",
        "restored",
    ]
    assert len(header.rstrip()) <= 80  # a pipe gets 80 columns: nothing is cut
    assert "memo to" in out and "reminder to" in out and "deadline 06:59Z" in out
    assert "final status of tiktok-mail" in out
    for hint in ("status --now", "device list --state blocked", "audit verify"):
        assert hint in out
    assert "\x1b[" not in out  # no colour codes when piped
    s = demo_json(tmp_path / "again.db")
    b, u = s["explain"]["banned_app_devices"], s["explain"]["unverified"]
    others = b["devices"] - s["dry_run"]["violating_now"]

    def do(n: int) -> str:  # the verb agrees with the count: "1 does not", "2 do not"
        return f"{n:,} {'does' if n == 1 else 'do'}"

    assert f"of the {b['devices']:,} devices with TikTok, {do(others)} not violate it: " in out
    assert f"{do(b['out_of_scope']['no_mail'])} not read company mail" in out
    assert f"{u['devices']:,} unverified devices keep their mail" in out and "on_unverified: allow" in out
    assert "device(s)" not in out
