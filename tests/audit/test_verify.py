"""``appban audit verify``: the hash chain catches edited, removed and reordered entries,
and says which; an intact log passes."""

from __future__ import annotations

import pytest

from helpers_semantics import AFTER, NEXT_DAY, TIKTOK_ANDROID, Appban, checkin, run_subprocess


@pytest.fixture
def logged(ab: Appban) -> Appban:
    """A log with catalog, import, policy, state, decision, exemption and withdraw entries."""
    ab.ingest(checkin("a", apps=[TIKTOK_ANDROID]), checkin("b", owner="bob@example.com"))
    ab.apply()
    ab("evaluate", now=AFTER)
    ab(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--device",
        "b",
        "--until",
        "2020-08-01T00:00:00Z",
        "--reason",
        "test",
        now=AFTER,
    )
    ab("policy", "withdraw", "tiktok-mail", "--reason", "error", now=NEXT_DAY)
    assert ab.sql("SELECT count(*) FROM audit_log")[0][0] >= 10
    return ab


def verify(ab: Appban) -> tuple[int, dict[str, object]]:
    result = ab.run("audit", "verify", now=NEXT_DAY)
    return result.code, result.json


def seqs(doc: dict[str, object]) -> set[int]:
    return {p["seq"] for p in doc["problems"]}  # type: ignore[index, union-attr]


def test_an_intact_log_verifies(logged: Appban) -> None:
    code, doc = verify(logged)
    count = logged.sql("SELECT count(*) FROM audit_log")[0][0]
    assert (code, doc) == (0, {"ok": True, "entries": count, "problems": []})
    actions = [a for (a,) in logged.sql("SELECT action FROM audit_log ORDER BY seq")]
    for action in (
        "catalog",
        "import",
        "policy.apply",
        "state",
        "decision",
        "exemption",
        "policy.withdraw",
    ):
        assert action in actions


def test_the_real_command_exits_0_then_1(logged: Appban) -> None:
    ok = run_subprocess("audit", "verify", db=logged.db, now=NEXT_DAY)
    assert (ok.code, ok.err) == (0, "")
    assert "intact" in ok.out
    logged.write_sql("UPDATE audit_log SET subject = 'tiktok-mail/dev-9' WHERE seq = 5")
    bad = run_subprocess("audit", "verify", db=logged.db, now=NEXT_DAY)
    assert bad.code == 1
    assert "entry 5" in bad.out and "edited" in bad.out
    assert "Traceback" not in bad.err


@pytest.mark.parametrize("column", ["data", "action", "subject", "at"])
def test_an_edited_entry_is_named(logged: Appban, column: str) -> None:
    value = {
        "data": '\'{"reason":"nothing to see"}\'',
        "action": "'noop'",
        "subject": "'x'",
        "at": "at + 1",
    }[column]
    logged.write_sql(f"UPDATE audit_log SET {column} = {value} WHERE seq = 4")
    code, doc = verify(logged)
    assert code == 1 and doc["ok"] is False
    assert doc["problems"][0]["seq"] == 4 and "edited" in doc["problems"][0]["problem"]


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(logged: Appban) -> None:
    from appban.audit.log import entry_hash

    [(seq, at, action, subject, prev)] = logged.sql(
        "SELECT seq, at, action, subject, prev_hash FROM audit_log WHERE seq = 4"
    )
    forged = entry_hash(seq, at, action, subject, "{}", prev)
    logged.write_sql(f"UPDATE audit_log SET data = '{{}}', hash = '{forged}' WHERE seq = 4")
    code, doc = verify(logged)
    assert code == 1
    assert seqs(doc) == {5}
    assert "link" in doc["problems"][0]["problem"]


def test_a_removed_entry_is_named(logged: Appban) -> None:
    logged.write_sql("DELETE FROM audit_log WHERE seq = 3")
    code, doc = verify(logged)
    assert code == 1
    assert doc["problems"][0]["seq"] == 4
    assert "3 removed" in doc["problems"][0]["problem"]


def test_several_removed_entries_are_named_as_a_range(logged: Appban) -> None:
    logged.write_sql("DELETE FROM audit_log WHERE seq IN (3, 4, 5)")
    code, doc = verify(logged)
    assert code == 1 and "3-5 removed" in doc["problems"][0]["problem"]


def test_entries_cut_off_the_end_are_seen(logged: Appban) -> None:
    last = logged.sql("SELECT max(seq) FROM audit_log")[0][0]
    logged.write_sql(f"DELETE FROM audit_log WHERE seq >= {last - 1}")
    code, doc = verify(logged)
    assert code == 1
    assert doc["problems"][-1]["seq"] == last
    assert "cut off" in doc["problems"][-1]["problem"]


def test_the_first_entry_removed_is_seen(logged: Appban) -> None:
    logged.write_sql("DELETE FROM audit_log WHERE seq = 1")
    code, doc = verify(logged)
    assert code == 1 and doc["problems"][0]["seq"] == 2


def test_reordered_entries_are_named(logged: Appban) -> None:
    # Swap entries 4 and 5 (sequence numbers stay in place, contents change places).
    logged.write_sql(
        "UPDATE audit_log SET seq = -4 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = -4",
    )
    code, doc = verify(logged)
    assert code == 1
    assert {4, 5} <= seqs(doc)


def test_reordered_times_are_named(logged: Appban) -> None:
    [(at4,), (at6,)] = logged.sql("SELECT at FROM audit_log WHERE seq IN (4, 6) ORDER BY seq")
    logged.write_sql(
        f"UPDATE audit_log SET at = {at6} WHERE seq = 4",
        f"UPDATE audit_log SET at = {at4} WHERE seq = 6",
    )
    code, doc = verify(logged)
    assert code == 1 and seqs(doc) == {4, 6}


def test_the_log_grows_intact_across_commands(logged: Appban) -> None:
    logged.ingest(checkin("a", at=NEXT_DAY, apps=[]), now=NEXT_DAY)
    logged.apply(now="2020-07-13T00:00:00Z")
    code, doc = verify(logged)
    assert (code, doc["ok"]) == (0, True)
    assert doc["entries"] == logged.sql("SELECT count(*) FROM audit_log")[0][0]


def test_a_failed_command_leaves_the_log_intact(logged: Appban) -> None:
    before = logged.sql("SELECT count(*) FROM audit_log")
    bad = logged.file(".jsonl", '{"device": {"id": "x"}}\n')
    assert logged.run("import", "appban", bad, now=NEXT_DAY).code == 2
    assert logged.sql("SELECT count(*) FROM audit_log") == before
    logged.ingest(checkin("c", at=NEXT_DAY), now=NEXT_DAY)
    assert verify(logged)[0] == 0


# -- whatever a tampered database holds is a problem named, never an internal error ---------


@pytest.mark.parametrize(
    ("statement", "seq", "expected"),
    [
        ("UPDATE audit_log SET at = 'abc' WHERE seq = 2", 2, "time is not a time"),
        ("UPDATE audit_log SET at = 99999999999999999999 WHERE seq = 2", 2, "time is not a time"),
        ("UPDATE audit_log SET at = -99999999999999999 WHERE seq = 2", 2, "time is not a time"),
        ("UPDATE audit_log SET data = x'ff' WHERE seq = 3", 3, "data is not text"),
    ],
    ids=["text-time", "huge-time", "before-year-1", "blob-data"],
)
def test_a_value_of_the_wrong_kind_is_named(logged: Appban, statement: str, seq: int, expected: str) -> None:
    logged.write_sql(statement)
    result = logged.run("audit", "verify", now=NEXT_DAY)
    assert result.code == 1 and "Traceback" not in result.err and "internal error" not in result.err, result.err
    doc = result.json
    assert doc["ok"] is False
    assert any(p["seq"] == seq and expected in p["problem"] for p in doc["problems"]), doc
    text = logged.run("audit", "verify", now=NEXT_DAY, as_json=False)
    assert text.code == 1 and f"entry {seq}: edited" in text.out
    # The other commands that read the log show it as stored.
    assert logged.run("audit", "list", now=NEXT_DAY).code == 0
    assert logged.run("audit", "list", "--device", "a", now=NEXT_DAY).code == 0
    assert logged.run("audit", "export", "-", now=NEXT_DAY, as_json=False).code == 0


@pytest.mark.parametrize("value", ["garbage", "12", "x:" + "0" * 64, "99999999999999999999999:abc"])
def test_a_malformed_recorded_head_is_named(logged: Appban, value: str) -> None:
    logged.write_sql(f"UPDATE meta SET value = '{value}' WHERE key = 'audit_head'")
    code, doc = verify(logged)
    assert code == 1
    assert "recorded head" in doc["problems"][-1]["problem"], doc


def test_a_deleted_head_with_entries_is_not_intact(logged: Appban) -> None:
    logged.write_sql("DELETE FROM meta WHERE key = 'audit_head'")
    code, doc = verify(logged)
    assert code == 1 and doc["ok"] is False
    assert "head is missing" in doc["problems"][-1]["problem"]


def test_entries_after_the_recorded_head_are_named(logged: Appban) -> None:
    [(seq,)] = logged.sql("SELECT max(seq) FROM audit_log")
    logged.write_sql(
        f"UPDATE meta SET value = (SELECT seq || ':' || hash FROM audit_log WHERE seq = {seq - 1}) "
        "WHERE key = 'audit_head'"
    )
    code, doc = verify(logged)
    assert code == 1 and "after the recorded head" in doc["problems"][-1]["problem"]


def test_one_removed_entry_is_singular(logged: Appban) -> None:
    logged.write_sql("DELETE FROM audit_log WHERE seq = 3")
    text = logged.run("audit", "verify", now=NEXT_DAY, as_json=False).out
    assert "entry 4: entry 3 removed" in text
    assert "entries 3 " not in text


def test_a_planted_entry_before_the_first_is_named_once(logged: Appban) -> None:
    """An entry moved to a negative sequence number: named as not part of the chain, and the
    gap it left named as one removed entry (not "entries -3-0")."""
    logged.write_sql("UPDATE audit_log SET seq = -4 WHERE seq = 3")
    code, doc = verify(logged)
    assert code == 1
    problems = [p["problem"] for p in doc["problems"]]
    assert any("-4" in p and "not part of the chain" in p for p in problems), problems
    assert any(p == "entry 3 removed" for p in problems), problems
    assert not any("--" in p or "-3-" in p or "-0" in p for p in problems), problems
    # Entry 1 still links to the start: only the gap breaks the chain.
    assert {p["seq"] for p in doc["problems"]} == {None, 4}
