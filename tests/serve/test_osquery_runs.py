"""osquery runs that do not come whole, on a real socket: rows logged one a line (the
event format, and snapshots with ``--logger_snapshot_event_type``) cut across requests by
``--logger_tls_max_lines``, an agent reinstalled (its counters start again at 0), a
lost batch. None of them may make a host look clean when it is not; appban asks the
agent for its whole set (a refresh) where it cannot know it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_osquery import SAFARI, TIKTOK, Agent, batch, entry, event, snapshot, statuses
from helpers_serve import Database, ThreadServer, new_database

from helpers_cli import run

POLICY = """\
id: tiktok-mac
title: TikTok is not permitted on Macs
reason: Security risks
apps: ["macos:com.zhiliaoapp.musically"]
scope:
  platforms: [macos]
  mail_access: any
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""
NOTES = {**SAFARI, "bundle_identifier": "com.apple.Notes", "display_name": "Notes", "name": "Notes.app"}
PACK = "pack_inventory_apps"


@pytest.fixture
def fleet(tmp_path: Path) -> Database:
    database = new_database(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    done = run("--db", database.path, "policy", "apply", str(tmp_path / "policy.yaml"))
    assert done.code == 0, done.err
    return database


@pytest.fixture
def agent(fleet: Database) -> Iterator[Agent]:
    secret = str(fleet.appban("source", "osquery-secret", "create")["token"])
    with ThreadServer(fleet.path) as server:
        client = Agent(server.url)
        assert client.enroll(secret).status_code == 200
        yield client
        client.close()


def shown(fleet: Database, query: str) -> tuple[str, list[str], str]:
    """(state, apps present, inventory scope) of the host's device, by one of its records."""
    doc = fleet.appban("device", "show", f"jane-mbp.local/{query}")
    policy = doc["policies"]["tiktok-mac"]
    return policy["state"], policy["present"], doc["inventory_scope"]


def snapshot_rows(name: str, at: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A snapshot as osquery logs it with --logger_snapshot_event_type: one row a line."""
    return [entry(name, at, action="snapshot", columns=row) for row in rows]


def refresh_asked(agent: Agent) -> dict[str, str]:
    queries: dict[str, str] = agent.post("/distributed/read", {}).json()["queries"]
    return queries


def test_a_snapshot_logged_one_row_a_line_is_never_read_as_no_apps(fleet: Database, agent: Agent) -> None:
    now = int(time.time())
    assert statuses(agent.log(snapshot("appban_apps", now - 900, [SAFARI, TIKTOK]))) == [(0, "applied")]
    assert shown(fleet, "appban_apps") == ("blocked", ["com.zhiliaoapp.musically"], "full")
    # The next run, one row a line: gathered into one report, TikTok still there.
    answer = agent.log(*snapshot_rows("appban_apps", now - 600, [SAFARI, TIKTOK]))
    assert statuses(answer) == [(0, "applied")]
    assert shown(fleet, "appban_apps") == ("blocked", ["com.zhiliaoapp.musically"], "managed")
    # A run cut by --logger_tls_max_lines: its first request lacks TikTok's line. That
    # proves nothing; TikTok's line comes in the next request (and changes nothing, nor
    # does the same request sent again).
    assert statuses(agent.log(*snapshot_rows("appban_apps", now - 300, [SAFARI]))) == [(0, "applied")]
    assert shown(fleet, "appban_apps")[:2] == ("blocked", ["com.zhiliaoapp.musically"])
    assert statuses(agent.log(*snapshot_rows("appban_apps", now - 300, [TIKTOK]))) == [(0, "ignored")]
    assert statuses(agent.log(*snapshot_rows("appban_apps", now - 300, [SAFARI]))) == [(0, "ignored")]
    # Such a host is asked for its whole set, which a distributed query gives in one piece.
    queries = refresh_asked(agent)
    (apps,) = [name for name in queries if name.endswith("_apps")]
    written = agent.post("/distributed/write", {"queries": {apps: [SAFARI]}, "statuses": {apps: 0}})
    assert [r["status"] for r in written.json()["results"]] == ["applied"]
    assert shown(fleet, "appban_apps") == ("compliant", [], "full")


def test_an_entry_that_says_snapshot_with_no_rows_is_refused(fleet: Database, agent: Agent) -> None:
    now = int(time.time())
    agent.log(snapshot("appban_apps", now - 600, [TIKTOK]))
    answer = agent.log(entry("appban_apps", now - 60, action="snapshot"))
    assert statuses(answer) == [(0, "rejected")]
    assert answer.json()["results"][0]["error"]["field"] == "data[0].snapshot"
    assert shown(fleet, "appban_apps")[0] == "blocked"


def test_a_differential_run_cut_across_requests_is_applied_whole(fleet: Database, agent: Agent) -> None:
    """osquery's default: the event format, at most 1024 lines a request. A run of 2,500
    rows comes in three requests; TikTok's row is in the second."""
    now = int(time.time())
    rows = [{**SAFARI, "bundle_identifier": f"com.example.app{i}", "display_name": f"App {i}"} for i in range(2500)]
    rows[2000] = TIKTOK
    lines = [event(PACK, now - 600, "added", row, epoch=1, counter=0) for row in rows]
    parts = [statuses(agent.log(*lines[start : start + 1024])) for start in range(0, 2500, 1024)]
    # The last part names no app the catalog knows: it changes nothing appban keeps.
    assert parts == [[(0, "applied")], [(0, "applied")], [(0, "ignored")]]
    # Every part applied; none of them is known to be the whole set.
    assert shown(fleet, PACK) == ("blocked", ["com.zhiliaoapp.musically"], "managed")
    # The next run adds Notes and removes TikTok, and is cut between its two rows.
    assert statuses(agent.log(event(PACK, now - 300, "added", NOTES, epoch=1, counter=1))) == [(0, "applied")]
    assert shown(fleet, PACK)[0] == "blocked"
    assert statuses(agent.log(event(PACK, now - 300, "removed", TIKTOK, epoch=1, counter=1))) == [(0, "applied")]
    assert shown(fleet, PACK)[:2] == ("unverified", [])


def test_a_reinstalled_agent_s_new_whole_set_replaces_the_old(fleet: Database, agent: Agent) -> None:
    """Counters start again at 0 in the same epoch after a reinstall: the new run 0, newer
    in time, is the whole set (it was ignored as no newer than counter 5)."""
    now = int(time.time())
    assert statuses(agent.log(batch(PACK, now - 3000, added=[TIKTOK, SAFARI], removed=[], epoch=0, counter=0)))
    for counter in range(1, 6):
        agent.log(batch(PACK, now - 3000 + 60 * counter, added=[], removed=[], epoch=0, counter=counter))
    assert shown(fleet, PACK) == ("blocked", ["com.zhiliaoapp.musically"], "full")
    answer = agent.log(batch(PACK, now - 100, added=[SAFARI], removed=[], epoch=0, counter=0))
    assert statuses(answer) == [(0, "applied")]
    assert shown(fleet, PACK) == ("compliant", [], "full")
    assert statuses(agent.log(batch(PACK, now - 40, added=[], removed=[], epoch=0, counter=1))) == [(0, "applied")]
    assert shown(fleet, PACK) == ("compliant", [], "full")
    # The old run 0, sent again, is older: it changes nothing.
    old = batch(PACK, now - 3000, added=[TIKTOK, SAFARI], removed=[], epoch=0, counter=0)
    assert statuses(agent.log(old)) == [(0, "ignored")]


def test_a_lost_run_asks_the_agent_for_its_whole_set(fleet: Database, agent: Agent) -> None:
    """Run 1, which removed TikTok, was lost; run 2 comes. The record cannot be known
    whole until an epoch changes (osquery never does it by itself): appban asks the agent
    for its apps, and the whole set it writes back clears what the lost run removed."""
    now = int(time.time())
    agent.log(batch(PACK, now - 3000, added=[SAFARI, TIKTOK], removed=[], epoch=0, counter=0))
    assert refresh_asked(agent) == {}
    assert statuses(agent.log(batch(PACK, now - 2000, added=[], removed=[], epoch=0, counter=2))) == [(0, "applied")]
    assert shown(fleet, PACK) == ("blocked", ["com.zhiliaoapp.musically"], "managed")
    queries = refresh_asked(agent)
    (apps,) = [name for name in queries if name.endswith("_apps")]
    assert "FROM apps" in queries[apps]
    written = agent.post("/distributed/write", {"queries": {apps: [SAFARI, NOTES]}, "statuses": {apps: 0}})
    assert [r["status"] for r in written.json()["results"]] == ["applied"]
    # The refresh's record is whole; the pack's record lost TikTok (and gained nothing:
    # the pack's query may read part of the table only).
    assert shown(fleet, PACK) == ("compliant", [], "full")
    # The runs go on from the counter stored; no more questions.
    assert statuses(agent.log(batch(PACK, now - 1000, added=[], removed=[], epoch=0, counter=3))) == [(0, "applied")]
    assert refresh_asked(agent) == {}


def test_a_refresh_query_that_failed_on_the_agent_stays_open(fleet: Database, agent: Agent) -> None:
    now = int(time.time())
    agent.log(snapshot("appban_apps", now - 600, [SAFARI, TIKTOK]))
    (asked,) = fleet.appban("device", "refresh", "jane-mbp.local/appban_apps")["requests"]
    name = f"appban_refresh_{asked['id']}_apps"
    assert name in refresh_asked(agent)
    failed = agent.post("/distributed/write", {"queries": {name: []}, "statuses": {name: 1}})
    assert failed.json()["results"] == []
    with sqlite3.connect(fleet.path) as db:
        (done,) = db.execute("SELECT done_at FROM osquery_refreshes WHERE id = ?", (asked["id"],)).fetchone()
    assert done is None  # handed out again after a while, not taken as answered
    # The agent runs it again and it works: applied.
    written = agent.post("/distributed/write", {"queries": {name: [SAFARI]}, "statuses": {name: 0}})
    assert [r["status"] for r in written.json()["results"]] == ["applied"]
    assert shown(fleet, "appban_apps")[0] == "compliant"
