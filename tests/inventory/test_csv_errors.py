"""Bad inventory CSVs through ``appban import csv FILE``.

Every answer: exit 2, one printable line on stderr naming the file, the line and
the column, no traceback, and nothing written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers_cli import Fleet, Result, assert_bad_input, where

HEADER = "device_id,platform,owner,observed_at,eas_device_ids,mail_access,app_id,app_name,app_version"
ROWS = [
    "NEW-1,android,jane.doe@example.com,2020-07-11T15:00:00Z,EASN1,,com.zhiliaoapp.musically,TikTok,16.5",
    "NEW-1,android,jane.doe@example.com,2020-07-11T15:00:00Z,EASN1,,com.example.notes,Notes,1.0",
    "NEW-2,ios,bob.roe@example.com,2020-07-11T15:00:00Z,,true,,,",
]


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def row(base: int = 2, **cells: str) -> str:
    """Row ``base`` of ROWS (0-based) with some cells replaced."""
    names = HEADER.split(",")
    values = ROWS[base].split(",")
    for name, value in cells.items():
        values[names.index(name)] = value
    return ",".join(values)


def import_csv(fleet: Fleet, path: Path, env: dict[str, str] | None = None) -> Result:
    return fleet.run("import", "csv", str(path), env=env)


def test_the_good_csv_is_accepted(fleet: Fleet) -> None:
    path = fleet.write("good.csv", csv_text(*ROWS))
    result = import_csv(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 4


def test_missing_file(fleet: Fleet) -> None:
    path = fleet.tmp / "absent.csv"
    assert_bad_input(import_csv(fleet, path), where(path), "cannot read")
    fleet.assert_unchanged()


# -- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER + ",colour", ["field column 10", "unknown column 'colour'"]),
        (HEADER.replace("owner", "Owner"), ["unknown column 'Owner'"]),
        (HEADER.replace("owner,", ""), ["missing required column 'owner'"]),
        (HEADER.replace("platform,", ""), ["missing required column 'platform'"]),
        (HEADER + ",app_id", ["column 'app_id' twice"]),
        (HEADER + ",<script>alert(1)</script>", ["unknown column '<script>"]),
        (HEADER + "," + "c" * 10_240, ["unknown column 'ccc"]),
    ],
    ids=["unknown", "case", "no-owner", "no-platform", "twice", "markup", "10KB"],
)
def test_bad_header(fleet: Fleet, header: str, expected: list[str]) -> None:
    rows = [r + ",x" * (len(header.split(",")) - len(HEADER.split(","))) for r in ROWS]
    path = fleet.write("header.csv", csv_text(*rows, header=header))
    assert_bad_input(import_csv(fleet, path), where(path, 1), *expected)
    fleet.assert_unchanged()


# -- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cells", [ROWS[2] + ",extra", ",".join(ROWS[2].split(",")[:-2])], ids=["more", "fewer"])
def test_wrong_number_of_cells(fleet: Fleet, cells: str) -> None:
    path = fleet.write("cells.csv", csv_text(ROWS[0], ROWS[1], cells))
    assert_bad_input(import_csv(fleet, path), where(path, 4), "columns")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("cells", "column", "problem"),
    [
        ({"platform": "symbian"}, "platform", "symbian"),
        ({"platform": ""}, "platform", ""),
        ({"owner": "bob"}, "owner", "e-mail"),
        ({"owner": ""}, "owner", ""),
        ({"owner": "bob roe@example.com"}, "owner", "e-mail"),
        ({"observed_at": "yesterday"}, "observed_at", "ISO-8601"),
        ({"observed_at": "0001-01-01T00:00:00+14:00"}, "observed_at", "years"),
        ({"mail_access": "yes"}, "mail_access", "true, false"),
        ({"device_id": ""}, "device_id", ""),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else v,
)
def test_bad_cell(fleet: Fleet, cells: dict[str, str], column: str, problem: str) -> None:
    path = fleet.write("cells.csv", csv_text(ROWS[0], ROWS[1], row(**cells)))
    assert_bad_input(import_csv(fleet, path), where(path, 4), f"field {column}:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("extra", "value", "column"),
    [
        ("ownership", "stolen", "ownership"),
        ("inventory_scope", "partial", "inventory_scope"),
        ("source", "Agent X", "source"),
        ("signing_sha256", "xyz", "signing_sha256"),
    ],
)
def test_bad_optional_column(fleet: Fleet, extra: str, value: str, column: str) -> None:
    last = row(app_id="com.example.x") + "," + value
    path = fleet.write("optional.csv", csv_text(ROWS[0] + ",", ROWS[1] + ",", last, header=HEADER + "," + extra))
    assert_bad_input(import_csv(fleet, path), where(path, 4), f"field {column}:")
    fleet.assert_unchanged()


def test_duplicate_app_id_in_one_snapshot(fleet: Fleet) -> None:
    again = row(0, app_version="17.0")
    path = fleet.write("dup-app.csv", csv_text(ROWS[2], ROWS[0], ROWS[1], again))
    assert_bad_input(import_csv(fleet, path), where(path, 5), "field app_id:", "duplicate")
    fleet.assert_unchanged()


def test_rows_of_a_snapshot_must_be_consecutive(fleet: Fleet) -> None:
    path = fleet.write("split.csv", csv_text(ROWS[0], ROWS[2], ROWS[1]))
    assert_bad_input(import_csv(fleet, path), where(path, 4), "field device_id:", "consecutive")
    fleet.assert_unchanged()


def test_device_columns_differ_within_a_snapshot(fleet: Fleet) -> None:
    path = fleet.write("differ.csv", csv_text(ROWS[0], row(1, eas_device_ids="EASOTHER"), ROWS[2]))
    assert_bad_input(import_csv(fleet, path), where(path, 3), "field eas_device_ids:", "differs")
    fleet.assert_unchanged()


def test_a_version_without_an_app(fleet: Fleet) -> None:
    path = fleet.write("version.csv", csv_text(ROWS[0], row(1, app_id="", app_name=""), ROWS[2]))
    assert_bad_input(import_csv(fleet, path), where(path, 3), "field app_id:")
    fleet.assert_unchanged()


# -- hostile strings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "column", "problem"),
    [
        ({"device_id": "NEW\x002"}, "device_id", "control character"),
        ({"device_id": "NEW\x1b[2J"}, "device_id", "control character"),
        ({"app_name": "N" * 10_240}, "app_name", "length"),
        ({"device_id": "D" * 10_240}, "device_id", "length"),
        ({"owner": "bob\u200b.roe@example.com"}, "owner", "e-mail"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else v,
)
def test_hostile_string(fleet: Fleet, cells: dict[str, str], column: str, problem: str) -> None:
    cells = {"app_id": "com.example.x", **cells}
    path = fleet.write("hostile.csv", csv_text(ROWS[0], ROWS[1], row(**cells)))
    assert_bad_input(import_csv(fleet, path), where(path, 4), f"field {column}:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("cells", "kept"),
    [
        ({"app_name": "<script>alert(1)</script>"}, ("\u2039script\u203aalert(1)\u2039/script\u203a", "16.5")),
        ({"app_name": "\u202ekoTkiT", "app_version": "1.0\u2066"}, ("\ufffdkoTkiT", "1.0\ufffd")),
    ],
    ids=["markup", "control"],
)
def test_an_app_s_hostile_name_is_kept_made_safe(fleet: Fleet, cells: dict[str, str], kept: tuple[str, str]) -> None:
    """An app's name and version are not the admin's: made safe (or cut), never refused."""
    path = fleet.write("hostile-app.csv", csv_text(row(0, **cells), ROWS[1], ROWS[2]))
    result = import_csv(fleet, path)
    assert result.code == 0, result.err
    shown = json.loads(fleet.run("device", "show", "NEW-1", "--json").out)
    (evidence,) = [e for e in shown["policies"]["tiktok-mail"]["evidence"] if e.get("app")]
    assert (evidence["name"], evidence["version"]) == kept


def test_quoted_newline_keeps_line_numbers_physical(fleet: Fleet) -> None:
    """A quoted cell may span lines; errors name the physical line an editor shows."""
    first = row(0, app_name='"TikTok\n"')  # cells are stripped: the newline is harmless
    path = fleet.write("multiline.csv", csv_text(first, ROWS[1], row(platform="symbian")))
    assert_bad_input(import_csv(fleet, path), where(path, 5), "field platform:")
    fleet.assert_unchanged()


def test_non_utf8_bytes(fleet: Fleet) -> None:
    text = csv_text(*ROWS[:2], *(row(app_id=f"com.example.a{i}", device_id=f"NEW-{i + 3}") for i in range(500)))
    lines = text.encode().split(b"\r\n")
    lines[300] = lines[300].replace(b"android", b"andr\xf6id").replace(b"ios", b"i\xf6s")
    path = fleet.write("latin1.csv", b"\r\n".join(lines))
    assert_bad_input(import_csv(fleet, path), where(path, 301), "UTF-8")
    fleet.assert_unchanged()


def test_unterminated_quote_swallows_the_file_and_is_refused(fleet: Fleet) -> None:
    path = fleet.write("quote.csv", csv_text(ROWS[0], row(1, app_name='"Notes'), ROWS[2]))
    assert_bad_input(import_csv(fleet, path), where(path))
    fleet.assert_unchanged()


def test_binary_garbage(fleet: Fleet) -> None:
    path = fleet.write("garbage.csv", bytes(range(256)) * 64)
    assert_bad_input(import_csv(fleet, path), where(path, 1))
    fleet.assert_unchanged()


# -- sizes -----------------------------------------------------------------------------------------


def test_a_100_mb_line_is_refused_without_reading_it_all(fleet: Fleet) -> None:
    path = fleet.tmp / "huge-line.csv"
    chunk = b"A" * (1 << 20)
    with open(path, "wb") as f:
        f.write((csv_text(ROWS[0]) + "NEW-2,ios,bob.roe@example.com,2020-07-11T15:00:00Z,,,,").encode())
        for _ in range(100):
            f.write(chunk)
        f.write(b",1.0\r\n")
    started = time.monotonic()
    result = import_csv(fleet, path)
    elapsed = time.monotonic() - started
    assert_bad_input(result, where(path, 3), "longer than")
    assert elapsed < 5, f"took {elapsed:.1f}s"
    fleet.assert_unchanged()


@pytest.mark.slow
def test_a_100_mb_csv_whose_last_line_is_bad_writes_nothing(fleet: Fleet) -> None:
    """One big snapshot (a device with ~100 MB of apps, a few per row) and a bad last row."""
    path = fleet.tmp / "huge.csv"
    head = "BIG-1,android,jane.doe@example.com,2020-07-11T15:00:00Z,EASBIG,,"
    name = "n" * 1000
    rows = 1
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER + "\r\n")
        block = []
        while f.tell() < 100 * 1024 * 1024:
            block.clear()
            for _ in range(1000):
                rows += 1
                block.append(f"{head}com.example.a{rows},{name},1\r\n")
            f.write("".join(block))
        rows += 1
        f.write(row(owner="not-an-email") + "\r\n")
    assert path.stat().st_size >= 100 * 1024 * 1024
    result = import_csv(fleet, path, env={"APPBAN_MAX_APPS": "1000000"})
    assert_bad_input(result, where(path, rows), "field owner:")
    fleet.assert_unchanged()


# -- quotes that never close, and files with nothing in them ---------------------------------------


@pytest.mark.parametrize("end", ["\r\n", ""], ids=["newline", "no-newline"])
def test_an_unterminated_quote_at_the_end_of_the_file_is_refused(fleet: Fleet, end: str) -> None:
    """The last cell opens a quote and the file ends: the csv module keeps what it read."""
    text = csv_text(ROWS[0], ROWS[1]) + row(app_id="com.example.x", app_version='"1.0') + end
    path = fleet.write("open-quote.csv", text)
    assert_bad_input(import_csv(fleet, path), where(path, 4), "field app_version:", "never closed")
    fleet.assert_unchanged()


def test_an_unterminated_quote_names_the_line_it_opens_on(fleet: Fleet) -> None:
    text = csv_text(ROWS[0], row(1, app_name='"Notes'), ROWS[2])
    path = fleet.write("open-quote.csv", text)
    assert_bad_input(import_csv(fleet, path), where(path, 3), "field app_name:", "never closed")
    fleet.assert_unchanged()


def test_text_after_a_closing_quote_is_refused(fleet: Fleet) -> None:
    path = fleet.write("after-quote.csv", csv_text(ROWS[0], row(1, app_name='"Notes"Pro'), ROWS[2]))
    assert_bad_input(import_csv(fleet, path), where(path, 3), "field app_name:", "closing quote")
    fleet.assert_unchanged()


def test_quoted_cells_with_doubled_quotes_are_read(fleet: Fleet) -> None:
    path = fleet.write("quoted.csv", csv_text(row(0, app_name='"Tik ""Tok"", the app"'), ROWS[1], ROWS[2]))
    result = import_csv(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 4


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "empty file"), ("\r\n\r\n", "empty file"), (HEADER + "\r\n", "no check-ins"), (HEADER, "no check-ins")],
    ids=["empty", "blank-lines", "header-only", "header-no-newline"],
)
def test_a_file_with_no_check_ins_is_refused(fleet: Fleet, content: str, problem: str) -> None:
    path = fleet.write("empty.csv", content)
    assert_bad_input(import_csv(fleet, path), where(path), problem)
    fleet.assert_unchanged()


# -- identifiers, times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"device_id": "NEW\u200b2"}, "device_id"),
        ({"eas_device_ids": "EASN2;EAS\u2060N3"}, "eas_device_ids"),
        ({"eas_device_ids": "EAS N2"}, "eas_device_ids"),
    ],
    ids=["device", "eas-invisible", "eas-space"],
)
def test_an_invisible_character_in_an_identifier_is_refused(fleet: Fleet, cells: dict[str, str], column: str) -> None:
    path = fleet.write("invisible.csv", csv_text(ROWS[0], ROWS[1], row(**cells)))
    assert_bad_input(import_csv(fleet, path), where(path, 4), f"field {column}:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("observed_at", "problem"),
    [("2099-01-01T00:00:00Z", "future"), ("2020-07-11T15:00:00", "offset"), ("2020-07-11", "date")],
)
def test_bad_times(fleet: Fleet, observed_at: str, problem: str) -> None:
    path = fleet.write("times.csv", csv_text(ROWS[0], ROWS[1], row(observed_at=observed_at)))
    assert_bad_input(import_csv(fleet, path), where(path, 4), "field observed_at:", problem)
    fleet.assert_unchanged()


# -- one snapshot, however its time is written ---------------------------------------------------


def _policy_state(fleet: Fleet, device: str) -> tuple[str, list[str]]:
    shown = fleet.run("device", "show", device, "--json")
    assert shown.code == 0, shown.err
    policy = json.loads(shown.out)["policies"]["tiktok-mail"]
    return policy["state"], [e["app"] for e in policy["evidence"] if e["kind"] == "app" and e["present"]]


@pytest.mark.parametrize(
    "second",
    ["2020-07-11T15:00:00+00:00", "2020-07-11T17:00:00+02:00", "2020-07-11T10:00:00-05:00", "2020-07-11 15:00:00Z"],
)
def test_rows_of_one_instant_written_differently_are_one_snapshot(fleet: Fleet, second: str) -> None:
    """The same time with another offset used to start a second snapshot, "no newer"
    than the first: the banned app on its row was silently dropped."""
    path = fleet.write("offsets.csv", csv_text(ROWS[1], row(0, observed_at=second)))
    result = import_csv(fleet, path)
    assert result.code == 0, result.err
    assert "1 check-in:" in result.out and "0 no newer" in result.out, result.out
    assert _policy_state(fleet, "NEW-1") == ("blocked", ["com.zhiliaoapp.musically"])


def test_the_same_instant_written_differently_after_other_rows_is_a_split_snapshot(fleet: Fleet) -> None:
    later = row(0, observed_at="2020-07-11T17:00:00+02:00")
    path = fleet.write("split-offsets.csv", csv_text(ROWS[1], ROWS[2], later))
    line = assert_bad_input(import_csv(fleet, path), where(path, 4), "field device_id:", "consecutive")
    assert "line 2" in line, line
    fleet.assert_unchanged()


def test_consecutive_rows_of_other_instants_are_two_snapshots(fleet: Fleet) -> None:
    """Different instants are different snapshots, however close: the newer one wins."""
    newer = row(1, observed_at="2020-07-11T15:00:01Z")
    path = fleet.write("two-times.csv", csv_text(ROWS[0], newer))
    result = import_csv(fleet, path)
    assert result.code == 0, result.err
    assert "2 check-ins" in result.out, result.out
    assert _policy_state(fleet, "NEW-1") == ("compliant", [])


def test_a_bad_time_is_named_on_the_row_that_has_it(fleet: Fleet) -> None:
    path = fleet.write("bad-time.csv", csv_text(ROWS[0], row(1, observed_at="2020-07-11T15:00:00+25:00")))
    assert_bad_input(import_csv(fleet, path), where(path, 3), "field observed_at:", "offset +25:00")
    fleet.assert_unchanged()


# -- a duplicate app names the other line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "column"),
    [({"app_version": "17.0"}, "app_id"), ({"app_id": "", "app_name": "Notes"}, "app_name")],
    ids=["id", "name"],
)
def test_a_duplicate_app_names_the_line_of_the_first(fleet: Fleet, cells: dict[str, str], column: str) -> None:
    first = row(1, app_id="") if column == "app_name" else ROWS[0]
    again = row(0, **cells)
    path = fleet.write("dup-line.csv", csv_text(ROWS[2], first, ROWS[1] if column == "app_id" else ROWS[0], again))
    line = assert_bad_input(import_csv(fleet, path), where(path, 5), f"field {column}:", "(also line 3)")
    assert "apps[" not in line, line
    fleet.assert_unchanged()


# -- bytes that are not UTF-8, by their offset -----------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["plain", "byte-order-mark"])
def test_non_utf8_bytes_are_named_by_their_offset_in_the_file(fleet: Fleet, bom: bytes) -> None:
    head = bom + csv_text(ROWS[0].replace("TikTok", "TikTok \u2728"), ROWS[1]).encode()
    bad = row(app_id="com.example.x", app_name="Caf\u00e9").encode().replace("\u00e9".encode(), b"\xe9")
    path = fleet.write("offset.csv", head + bad + b"\r\n")
    offset = len(head) + bad.index(b"\xe9")
    line = assert_bad_input(import_csv(fleet, path), where(path, 4), f"not UTF-8 at byte offset {offset}")
    assert f"(byte {offset})" not in line
    with open(path, "rb") as f:  # the offset a hex viewer shows
        f.seek(offset)
        assert f.read(1) == b"\xe9"
    fleet.assert_unchanged()
