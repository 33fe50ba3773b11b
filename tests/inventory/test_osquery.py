"""``appban import osquery``: result logs, snapshot and differential.

Golden files (tests/inventory/golden/osquery/): each log beside ``*.expected.json``,
the (line, check-in) pairs it must give.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.errors import BadInput
from appban.inventory import osquery
from appban.inventory.base import ReadOptions
from appban.inventory.osquery import OsqueryFormat
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, where

GOLDEN = Path(__file__).parent / "golden" / "osquery"
NOW = 1594382400000000  # 2020-07-10T12:00:00Z
OPTIONS = ReadOptions(now=NOW, max_bytes=1 << 20)
LOGGING = "https://github.com/osquery/osquery/blob/master/docs/wiki/deployment/logging.md"


def read(path: Path, options: ReadOptions = OPTIONS) -> list[dict[str, Any]]:
    out = []
    for line, checkin in OsqueryFormat().read(str(path), options):
        record = json.loads(msgspec.json.encode(checkin))
        record.pop("app_ids")
        assert not checkin.partial  # a file holds every row of a run together
        out.append({"line": line, "checkin": record})
    return out


def test_filesystem_results_log() -> None:
    """Snapshot (apps), event format (programs: a counter-0 run, then a change, with
    another host's line between rows) and batch format (deb_packages), as osquery's
    logging documentation shows them: "Snapshot format", "Event format", "Batch format",
    "Schedule epoch", "Schedule counter". https://github.com/osquery/osquery/blob/master/docs/wiki/deployment/logging.md
    """
    got = read(GOLDEN / "results.log")
    assert got == json.loads((GOLDEN / "results.expected.json").read_text())
    by_id = {}
    for item in got:
        by_id.setdefault(item["checkin"]["device"]["id"], []).append(item["checkin"])
    (mac,) = by_id["jane-mbp.local/pack_inventory_apps"]
    assert mac["removed"] is None and mac["device"]["platform"] == "macos"
    assert ["udid", "4740D59F-699E-5B29-960B-979AAF9BBEEB"] in mac["device"]["identifiers"]
    first, change = by_id["BOB-LAPTOP/programs"]
    assert first["counter"] == 0 and first["removed"] is None  # the full set of its epoch
    assert [a["name"] for a in change["apps"]] == ["7-Zip 23.01 (x64)"]
    assert [a["name"] for a in change["removed"]] == ["7-Zip 19.00 (x64)"]
    (linux,) = by_id["build-01/deb_packages"]
    # openssl changed version: added again, so not removed.
    assert [a["id"] for a in linux["removed"]] == ["telnet"]
    # A Chrome extension list of a host whose platform cannot be told is skipped.
    assert "BOB-LAPTOP/chrome_extensions" not in by_id


def test_tls_logger_bodies() -> None:
    """The TLS logger's POST body (``log_type`` result, ``data``): Chrome extensions, the
    platform from an os_version decoration. https://github.com/osquery/osquery/blob/master/docs/wiki/deployment/remote.md
    """
    got = read(GOLDEN / "tls-logger.jsonl")
    assert got == json.loads((GOLDEN / "tls-logger.expected.json").read_text())


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "apps",
        "hostIdentifier": "h1",
        "unixTime": "1594393200",
        "epoch": "0",
        "counter": "2",
        "numerics": False,
    }
    return {**base, **fields}


def write(tmp_path: Path, *entries: dict[str, Any] | str) -> Path:
    path = tmp_path / "results.log"
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return path


ROW = {"bundle_identifier": "com.example.a", "name": "A.app", "bundle_short_version": "1.0"}


def test_rows_of_one_run_far_apart_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("appban.inventory.osquery._IDLE_LINES", 3)
    filler = [entry(action="snapshot", snapshot=[], hostIdentifier=f"other{i}") for i in range(2000)]
    path = write(
        tmp_path,
        entry(action="added", columns=ROW),
        *filler,
        entry(action="added", columns={**ROW, "bundle_identifier": "com.example.b"}),
    )
    with pytest.raises(BadInput) as caught:
        read(path)
    assert caught.value.line == 2002 and "cannot be told apart" in str(caught.value)


def test_calendar_time_without_offset_is_read_in_the_zone(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    line = entry(action="snapshot", snapshot=[ROW], calendarTime="Fri Jul 10 15:00:00 2020")
    del line["unixTime"]
    path = write(tmp_path, line)
    options = ReadOptions(now=NOW, max_bytes=1 << 20, timezone=ZoneInfo("Europe/Paris"))
    (got,) = read(path, options)
    assert got["checkin"]["observed_at"] == 1594386000000000  # 13:00 UTC


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"severity":"0","filename":"init.cpp","line":"1","message":"osqueryd started"}', None, "status log"),
        ('{"log_type":"status","data":[]}', "log_type", "status logs"),
        ("[1, 2]", None, "JSON object"),
        ("{not json", None, "JSON object"),
        (
            json.dumps(entry(action="snapshot", snapshot=[{**ROW, "bundle_identifier": ["x"]}])),
            "snapshot[0].bundle_identifier",
            "string",
        ),
        (json.dumps(entry(action="snapshot", snapshot=[ROW], unixTime="soon")), "unixTime", "integer"),
        (json.dumps(entry(action="sideways", snapshot=[ROW])), "action", "unknown action"),
        (
            json.dumps(entry(action="snapshot", snapshot=[ROW], decorations={"email": "not-an-email"})),
            "decorations.email",
            "",
        ),
        (
            json.dumps({k: v for k, v in entry(action="snapshot", snapshot=[ROW]).items() if k != "hostIdentifier"}),
            "hostIdentifier",
            "missing",
        ),
    ],
    ids=["status-line", "tls-status", "array", "not-json", "wrong-type", "bad-time", "action", "email", "no-host"],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: str, field: str | None, words: str) -> None:
    good = json.dumps(entry(action="snapshot", snapshot=[ROW]))
    path = write(tmp_path, good, line)
    with pytest.raises(BadInput) as caught:
        read(path)
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(path), 2, field)
    assert words in str(caught.value)


def test_a_line_longer_than_the_bound_is_refused(tmp_path: Path) -> None:
    rows = [{**ROW, "bundle_identifier": f"com.example.a{i}"} for i in range(500)]
    path = write(tmp_path, entry(action="snapshot", snapshot=rows))
    with pytest.raises(BadInput) as caught:
        read(path, ReadOptions(now=NOW, max_bytes=4096))
    assert caught.value.line == 1 and "longer than 4096 bytes" in str(caught.value)


def test_import_through_the_command_line_with_owners(fleet: Fleet) -> None:
    """End to end: a host's snapshot with an owner from ``--owners`` (by serial number)."""
    owners = fleet.write("owners.csv", "key,email\nC02XL0GYJGH5,jane.doe@example.com\n")
    line = entry(action="snapshot", snapshot=[ROW], decorations={"hardware_serial": "C02XL0GYJGH5"})
    path = fleet.write("results.log", json.dumps(line) + "\n")
    result = fleet.run("import", "osquery", str(path), "--owners", str(owners))
    assert result.code == 0, result.err
    listed = json.loads(fleet.run("--json", "device", "list").out)
    mine = [(d["source_id"], d["owner"]) for d in listed["devices"] if d["source"] == "osquery"]
    assert mine == [("h1/apps", "jane.doe@example.com")]


def test_bad_input_through_the_command_line_writes_nothing(fleet: Fleet) -> None:
    path = fleet.write("results.log", json.dumps(entry(action="snapshot", snapshot="rows")) + "\n")
    assert_bad_input(fleet.run("import", "osquery", str(path)), where(path, 1), "snapshot")
    fleet.assert_unchanged()


# -- fuzzing --------------------------------------------------------------------------------

SEED = (GOLDEN / "results.log").read_bytes() + (GOLDEN / "tls-logger.jsonl").read_bytes()


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_logs_give_check_ins_or_bad_input(tmp_path: Path, data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 10))):
        at = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at : at + data.draw(st.integers(1, 32))]
    path = tmp_path / "fuzz.log"
    path.write_bytes(bytes(raw))
    with contextlib.suppress(BadInput):
        read(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
KEYS = ["action", "snapshot", "columns", "diffResults", "name", "hostIdentifier", "unixTime", "calendarTime"]
KEYS += ["epoch", "counter", "decorations", "log_type", "data"]


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=JSON, action=st.sampled_from(["snapshot", "added", "removed", None]))
def test_fuzz_wrong_shapes_give_check_ins_or_bad_input(
    tmp_path: Path, key: str, value: Any, action: str | None
) -> None:
    line = entry(action=action, snapshot=[ROW], columns=ROW)
    if action is None:
        line["diffResults"] = {"added": [ROW], "removed": []}
    line[key] = value
    path = write(tmp_path, line, line)
    with contextlib.suppress(BadInput):
        read(path)


# Rows as osquery writes them (every column a string, some empty), and one odd cell or row.
TEXT = st.sampled_from(["", " ", "Slack", "4.1", "com.tinyspeck.slackmacgap"])
COLUMNS = ["name", "display_name", "bundle_name", "bundle_identifier", "bundle_short_version", "bundle_version"]
COLUMNS += ["version", "identifier"]
ODD = st.none() | st.integers(-1, 1) | st.booleans() | st.just([]) | st.text(max_size=4) | st.just("absent")


@settings(max_examples=examples(500), deadline=None)
@given(
    table=st.sampled_from(["apps", "programs", "chrome_extensions", "deb_packages", "rpm_packages"]),
    rows=st.lists(st.fixed_dictionaries(dict.fromkeys(COLUMNS, TEXT)), min_size=1, max_size=3),
    odd=st.none() | st.tuples(st.integers(0, 2), st.sampled_from([*COLUMNS, "the row"]), ODD),
)
def test_rows_read_at_once_are_read_as_one_at_a_time(table: str, rows: list[Any], odd: Any) -> None:
    """The quick reading of plain rows gives the apps, or the error, of the careful one."""
    if odd is not None:
        i, column, value = odd
        i %= len(rows)
        if column == "the row":
            rows[i] = value
        elif value == "absent":
            del rows[i][column]
        else:
            rows[i][column] = value

    def outcome(read: Any) -> Any:
        try:
            return read()
        except BadInput as exc:
            return (exc.detail, exc.field)

    careful = outcome(lambda: [osquery._app(table, row, f"snapshot[{i}]") for i, row in enumerate(rows)])
    assert outcome(lambda: osquery._apps(table, rows, "snapshot")) == careful
