"""Command-line edges a reviewer found: bounds on --limit, an empty or unusable --db,
what `device show`, `device list`, `policy list`, `status --by` and `catalog show` print,
and a dry run that answers as the real apply would."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from helpers_cli import NOW, POLICY_YAML, Fleet, assert_bad_input, run, snapshot

HUGE = "99999999999999999999"


# -- --limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["audit", "list"], ["device", "list"], ["people", "list"], ["--json", "audit", "list"]],
    ids=["audit", "devices", "people", "audit-json"],
)
def test_a_limit_too_large_is_bad_input(fleet: Fleet, args: list[str]) -> None:
    line = assert_bad_input(fleet.run(*args, "--limit", HUGE), "--limit")
    assert "internal error" not in line and "Overflow" not in line


def test_the_largest_limit_is_accepted(fleet: Fleet) -> None:
    result = fleet.run("--json", "audit", "list", "--limit", "10000000")
    assert result.code == 0, result.err


# -- --db ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_db_flag_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.chdir(tmp_path)  # where a throwaway database would appear
    assert_bad_input(run("--db", value, "init", "--now", NOW), "--db")
    assert list(tmp_path.iterdir()) == []


def test_a_zero_byte_database_is_not_an_appban_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    line = assert_bad_input(run("--db", str(db), "status", "--now", NOW), str(db), "appban init")
    assert "internal error" not in line
    assert db.read_bytes() == b""


def test_init_makes_a_zero_byte_file_an_appban_database(tmp_path: Path) -> None:
    """An empty file (touch, mktemp) is an empty SQLite database: init creates the schema in it."""
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    assert run("--db", str(db), "init", "--now", NOW).code == 0
    result = run("--db", str(db), "--json", "status", "--now", NOW)
    assert result.code == 0, result.err


@pytest.mark.parametrize("command", [["status"], ["init"], ["audit", "verify"]])
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("my notes, not a database\n" * 100, encoding="utf-8")
    assert_bad_input(run("--db", str(db), *command, "--now", NOW), str(db), "not a SQLite database")
    assert db.read_text(encoding="utf-8").startswith("my notes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", [["status"], ["init"]])
def test_another_programs_sqlite_database_is_never_written(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "places.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE bookmarks (url TEXT)")
    con.execute("INSERT INTO bookmarks VALUES ('https://example.com/')")
    con.commit()
    con.close()
    before = snapshot(db)
    assert_bad_input(run("--db", str(db), *command, "--now", NOW), str(db), "another program")
    assert snapshot(db) == before


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    assert_bad_input(run("--db", str(tmp_path), "init", "--now", NOW), str(tmp_path), "folder")
    assert_bad_input(run("--db", str(tmp_path), "status", "--now", NOW), str(tmp_path), "folder")


def test_init_in_a_missing_folder_names_it(tmp_path: Path) -> None:
    db = tmp_path / "no-such-folder" / "appban.db"
    assert_bad_input(run("--db", str(db), "init", "--now", NOW), str(db.parent))


# -- what commands print --------------------------------------------------------------------


def test_catalog_show_escapes_an_unknown_family_once(fleet: Fleet) -> None:
    line = assert_bad_input(fleet.run("catalog", "show", "tik\x1btok\\"), "FAMILY")
    assert "'tik\\x1btok\\\\'" in line  # repr's escapes, once: the backslash doubled, no more
    assert "\\\\x1b" not in line


def test_empty_listings_say_so(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    assert run("--db", db, "init", "--now", NOW).code == 0
    assert run("--db", db, "device", "list", "--now", NOW).out == "no devices\n"
    assert run("--db", db, "policy", "list", "--now", NOW).out == "no policies\n"


def test_an_empty_state_says_so(fleet: Fleet) -> None:
    out = fleet.run("device", "list", "--policy", "tiktok-mail", "--state", "exempt").out
    assert out == "no devices in state exempt under tiktok-mail\n"


def _device(fleet: Fleet, name: str, platform: str, apps: str) -> None:
    path = fleet.write(
        f"{name}.json",
        f'{{"device":{{"id":"{name}","platform":"{platform}","owner":"jane.doe@example.com",'
        f'"eas_device_ids":["EAS{name}"]}},"observed_at":"2020-07-12T11:00:00Z","apps":{apps}}}',
    )
    result = fleet.run("import", "appban", str(path))
    assert result.code == 0, result.err


def test_device_show_without_a_detail_has_no_dangling_dash(fleet: Fleet) -> None:
    _device(fleet, "LAPTOP", "windows", "[]")  # out of scope: no detail to give
    out = fleet.run("device", "show", "LAPTOP").out
    line = next(x for x in out.splitlines() if x.startswith("tiktok-mail: "))
    assert line.startswith("tiktok-mail: out_of_scope since ")
    assert not line.rstrip().endswith("-") and " - " not in line, line


def test_device_show_names_an_app_reported_without_an_identifier(fleet: Fleet) -> None:
    _device(fleet, "PHONE", "android", '[{"name":"TikTok","version":"1.0"}]')
    out = fleet.run("device", "show", "PHONE").out
    assert "app  (" not in out
    assert "app with no identifier (name: TikTok, version 1.0) from agent, matched by name" in out


def test_status_by_names_its_first_column(fleet: Fleet) -> None:
    for by in ("org_unit", "platform"):
        out = fleet.run("status", "--by", by).out
        header = next(x for x in out.splitlines() if "out_of_scope" in x)
        assert header.split()[0] == by, header


def test_a_dry_run_of_the_stored_policy_is_unchanged(fleet: Fleet) -> None:
    policy = fleet.write("policy.yaml", POLICY_YAML)
    dry = fleet.run("--json", "policy", "apply", str(policy), "--dry-run")
    real = fleet.run("--json", "policy", "apply", str(policy))
    assert (dry.code, real.code) == (0, 0), (dry.err, real.err)
    assert re.search(r'"action":"unchanged"', dry.out) and re.search(r'"action":"unchanged"', real.out)
    changed = fleet.write("changed.yaml", POLICY_YAML.replace("Security risks", "Security risks, again"))
    dry = fleet.run("--json", "policy", "apply", str(changed), "--dry-run")
    assert '"action":"updated"' in dry.out
    draft = fleet.run("--json", "policy", "apply", str(policy), "--dry-run", "--draft")
    assert '"action":"updated"' in draft.out  # active to draft is a change
