"""Reading osquery result logs as appban serve and appban import do: snapshots ordered
by time (osquery does not count snapshot runs), replays harmless, a TLS logger body's
entries filed under the host of the node key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin
from appban.inventory.osquery import tls_results
from helpers_cli import run

NOW = 1594400400000000  # 2020-07-10T17:00:00Z
OPTIONS = ReadOptions(now=NOW, max_bytes=1 << 20)
TIKTOK = {"bundle_identifier": "com.zhiliaoapp.musically", "display_name": "TikTok", "bundle_short_version": "1"}
SAFARI = {"bundle_identifier": "com.apple.Safari", "display_name": "Safari", "bundle_short_version": "13"}


def snapshot(at: int, rows: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    # As scheduler.cpp logs a snapshot query: epoch and counter are always 0.
    base = {"action": "snapshot", "snapshot": rows, "name": "apps", "hostIdentifier": "h1", "unixTime": at}
    return {**base, "epoch": 0, "counter": 0, "numerics": False, **fields}


def test_a_later_snapshot_with_counter_0_replaces_the_earlier(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    first, later = tmp_path / "first.log", tmp_path / "later.log"
    first.write_text(json.dumps(snapshot(1594393200, [TIKTOK, SAFARI])) + "\n")
    later.write_text(json.dumps(snapshot(1594396800, [SAFARI])) + "\n")
    now = ["--now", "2020-07-10T17:00:00Z"]
    assert run("--db", db, "init", *now).code == 0
    for path in (first, first, later, later):  # each file twice: the second changes nothing
        done = run("--db", db, *now, "import", "osquery", str(path))
        assert done.code == 0, done.err
    shown = json.loads(run("--db", db, *now, "device", "show", "h1/apps", "--json").out)
    assert shown["observed_at"] == "2020-07-10T16:00:00Z"


def results(data: list[Any], host: str = "node-host", **decorations: str) -> dict[int, Checkin | BadInput]:
    return dict(tls_results(data, OPTIONS, host=host, decorations=decorations))


def test_every_entry_is_the_node_host_s_whatever_it_says() -> None:
    entry = snapshot(1594393200, [TIKTOK], hostIdentifier="someone-else", hostname="someone-else")
    entry["decorations"] = {"email": "jane.doe@example.com", "hardware_serial": "FORGED"}
    (only,) = results([entry], serial="ignored", hardware_serial="C02REAL").values()
    assert isinstance(only, Checkin)
    assert only.device.id == "node-host/apps"
    assert only.device.owner is None
    assert ("serial", "C02REAL") in only.device.identifiers and ("host", "node-host") in only.device.identifiers
    assert (only.epoch, only.counter) == (None, None)


def test_bad_entries_are_refused_alone_and_event_rows_gathered() -> None:
    rows = [
        {"action": "added", "columns": TIKTOK, "name": "apps", "unixTime": 1594393200, "epoch": 3, "counter": 4},
        "not an entry",
        {"action": "added", "columns": SAFARI, "name": "apps", "unixTime": 1594393200, "epoch": 3, "counter": 4},
        snapshot(1594393200, [{**SAFARI, "display_name": ["a list"]}], name="pack_apps"),
        {"name": "uptime", "action": "snapshot", "snapshot": [{"days": "1"}], "unixTime": 1594393200},
    ]
    found = results(rows)
    assert set(found) == {0, 1, 3}  # entry 2 joined entry 0's run; uptime is not read
    run_of = found[0]
    assert isinstance(run_of, Checkin) and [a.id for a in run_of.apps] == [
        TIKTOK["bundle_identifier"],
        SAFARI["bundle_identifier"],
    ]
    assert isinstance(found[1], BadInput) and found[1].field == "data[1]"
    assert isinstance(found[3], BadInput) and found[3].field == "data[3].snapshot[0].display_name"


def test_a_snapshot_logged_one_row_a_line_is_one_partial_report() -> None:
    """--logger_snapshot_event_type: every row its own entry, "action": "snapshot" and
    "columns", no "snapshot" list. Gathered by run (query, time); over TLS a request may
    hold part of the run, so the report is partial, never the host's whole set."""
    rows = [
        {"action": "snapshot", "columns": row, "name": "appban_apps", "unixTime": 1594393200, "epoch": 0, "counter": 0}
        for row in (SAFARI, TIKTOK)
    ]
    later = {**rows[0], "unixTime": 1594393800}
    found = results([*rows, later])
    assert set(found) == {0, 2}
    first, second = found[0], found[2]
    assert isinstance(first, Checkin) and isinstance(second, Checkin)
    assert [a.id for a in first.apps] == [SAFARI["bundle_identifier"], TIKTOK["bundle_identifier"]]
    assert first.removed is None and first.partial and second.partial
    assert (first.epoch, first.counter) == (None, None)
