"""Bad command arguments (SPEC: Command line).

Exit 2 for bad input or usage, with one line on stderr that names the option,
argument or setting; exit 1 for anything else; never a traceback; nothing written.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from helpers_cli import (
    DEVICES_JSONL,
    NOW,
    PEOPLE_CSV,
    POLICY_YAML,
    Fleet,
    assert_bad_input,
    run,
    run_process,
    snapshot,
    where,
)

LATER = "2020-08-01T00:00:00Z"
EXEMPT = ["exempt", "add", "--policy", "tiktok-mail", "--until", LATER, "--reason", "travelling"]


def test_the_good_commands_work(fleet: Fleet) -> None:
    """The baseline of the tests below: the same commands, correctly given, succeed."""
    for args in (
        ["--json", "status"],
        ["--json", "device", "list", "--state", "blocked"],
        ["--json", "device", "show", "JANE-IPHONE"],
        ["--json", "policy", "show", "tiktok-mail"],
        ["--json", "catalog", "show", "tiktok"],
        [
            "--json",
            "gate",
            "decide",
            "--eas-device-id",
            "EASJANE1",
            "--user",
            "jane.doe@example.com",
        ],
        ["--json", "audit", "verify"],
    ):
        result = fleet.run(*args)
        assert result.code == 0, (args, result.err)
        json.loads(result.out)
    assert json.loads(fleet.run("--json", "device", "show", "dev-1").out)["decision"] == "deny"
    assert fleet.run(*EXEMPT, "--device", "dev-1").code == 0
    assert (
        fleet.run(
            "attest",
            "--policy",
            "tiktok-mail",
            "--device",
            "BOB-PIXEL",
            "--person",
            "bob.roe@example.com",
        ).code
        == 0
    )


# -- --now --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2020-02-30T00:00:00Z",
        "2020-07-12 25:00",
        "1594555200",
        "0001-01-01T00:00:00+14:00",
        "9" * 10_240,
        "2020-07-12T12:00:00Z\x1b[2J",
        "2020-07-12T12:00:00\u202eZ",
    ],
    ids=["words", "empty", "feb-30", "hour-25", "epoch", "before-year-1", "10KB", "escape", "bidi"],
)
@pytest.mark.parametrize("position", ["global", "command"])
def test_bad_now(fleet: Fleet, value: str, position: str) -> None:
    args = ["--now", value, "--json", "status"] if position == "global" else ["--json", "status", "--now", value]
    assert_bad_input(fleet.run(*args), "--now")
    fleet.assert_unchanged()


def test_bad_now_on_a_writing_command_writes_nothing(fleet: Fleet) -> None:
    path = fleet.write(
        "ok.jsonl",
        '{"device":{"id":"N1","platform":"ios","owner":"jane.doe@example.com"},'
        '"observed_at":"2020-07-11T00:00:00Z","apps":[]}\n',
    )
    assert_bad_input(fleet.run("import", "appban", str(path), "--now", "next tuesday"), "--now")
    assert_bad_input(fleet.run("evaluate", "--now", "next tuesday"), "--now")
    fleet.assert_unchanged()


# -- usage ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["frobnicate"], "frobnicate"),
        (["status", "--colour"], "--colour"),
        (["device", "list", "--state", "sleeping"], "--state"),
        (["device", "list", "--state", "<script>alert(1)</script>"], "--state"),
        (["device", "list", "--limit", "0"], "--limit"),
        (["device", "list", "--limit", "many"], "--limit"),
        (["status", "--by", "country"], "--by"),
        (["demo", "--employees", "5"], "--employees"),
        (["gate", "decide", "--unknown-device", "maybe"], "--unknown-device"),
        (["policy", "withdraw", "tiktok-mail"], "--reason"),
        (
            [
                "exempt",
                "add",
                "--policy",
                "tiktok-mail",
                "--person",
                "jane.doe@example.com",
                "--until",
                LATER,
            ],
            "--reason",
        ),
        (["attest", "--policy", "tiktok-mail", "--device", "dev-1"], "--person"),
        (["import", "appban"], "FILES"),
        (["policy", "apply"], "FILE"),
        (["device", "show"], "ID"),
    ],
    ids=[
        "command",
        "option",
        "state",
        "state-markup",
        "limit-0",
        "limit-word",
        "by",
        "employees",
        "unknown-device",
        "withdraw-reason",
        "exempt-reason",
        "attest-person",
        "import-files",
        "apply-file",
        "show-id",
    ],
)
def test_usage_error(fleet: Fleet, args: list[str], named: str) -> None:
    assert_bad_input(fleet.run("--json", *args), named)
    fleet.assert_unchanged()


# -- things that do not exist ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "show", "no-such-policy"],
        ["status", "--policy", "no-such-policy"],
        ["device", "list", "--policy", "no-such-policy"],
        ["policy", "withdraw", "no-such-policy", "--reason", "mistake"],
        [
            "exempt",
            "add",
            "--policy",
            "no-such-policy",
            "--device",
            "dev-1",
            "--until",
            LATER,
            "--reason",
            "x",
        ],
        [
            "attest",
            "--policy",
            "no-such-policy",
            "--device",
            "dev-1",
            "--person",
            "jane.doe@example.com",
        ],
    ],
    ids=["show", "status", "device-list", "withdraw", "exempt", "attest"],
)
def test_unknown_policy(fleet: Fleet, args: list[str]) -> None:
    assert_bad_input(fleet.run("--json", *args), "no-such-policy")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("ref", "shown"),
    [
        ("NO-SUCH-DEVICE", "NO-SUCH-DEVICE"),
        ("dev-999", "dev-999"),
        ("agent:NO-SUCH", "agent:NO-SUCH"),
        ("<script>alert(1)</script>", "<script>"),
        ("DEV\x00\x1b[2J\u202eX", "DEV"),
        ("D" * 10_240, "DDDD"),
    ],
    ids=["source-id", "appban-id", "source-key", "markup", "control", "10KB"],
)
@pytest.mark.parametrize("command", ["show", "exempt", "attest"])
def test_unknown_device(fleet: Fleet, ref: str, shown: str, command: str) -> None:
    args = {
        "show": ["device", "show", ref],
        "exempt": [*EXEMPT, "--device", ref],
        "attest": [
            "attest",
            "--policy",
            "tiktok-mail",
            "--device",
            ref,
            "--person",
            "jane.doe@example.com",
        ],
    }[command]
    assert_bad_input(fleet.run("--json", *args), "device", shown)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "family",
    ["snapchat", "<b>x</b>", "x\x1b[31m\u202e", "f" * 10_240],
    ids=["unknown", "markup", "control", "10KB"],
)
def test_unknown_app_family(fleet: Fleet, family: str) -> None:
    assert_bad_input(fleet.run("--json", "catalog", "show", family), "FAMILY", "no app family")
    fleet.assert_unchanged()


# -- exemptions and attestations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--person", "jane.doe@example.com", "--device", "dev-1"], "--person"),
        ([], "--person"),
        (["--person", "jane"], "--person"),
        (["--person", "jane\u202e@example.com"], "--person"),
        (["--person", "<jane@example.com>"], "--person"),
    ],
    ids=["both", "neither", "not-email", "bidi-email", "bracketed-email"],
)
def test_exempt_who(fleet: Fleet, extra: list[str], named: str) -> None:
    assert_bad_input(fleet.run("--json", *EXEMPT, *extra), named)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--until", "soon"),
        ("--until", "2020-07-01T00:00:00Z"),  # before --now
        ("--until", NOW),  # not in the future
        ("--reason", ""),
        ("--reason", "   "),
        ("--reason", "<script>alert(1)</script>"),
        ("--reason", "travel\x00ling"),
        ("--reason", "travel\u202eling"),
        ("--reason", "r" * 10_240),
    ],
    ids=[
        "until-words",
        "until-past",
        "until-now",
        "reason-empty",
        "reason-blank",
        "reason-markup",
        "reason-nul",
        "reason-bidi",
        "reason-10KB",
    ],
)
def test_exempt_bad_value(fleet: Fleet, option: str, value: str) -> None:
    args = list(EXEMPT)
    args[args.index(option) + 1] = value
    assert_bad_input(fleet.run("--json", *args, "--device", "dev-1"), option)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("person", "says"),
    [
        ("bob.roe@example.com", "only its owner"),
        ("nobody@example.com", "only its owner"),
        ("jane", "not an e-mail address"),
        ("jane.doe@example.com\u202e", "not an e-mail address"),
        (" ", "not an e-mail address"),
    ],
    ids=["other-person", "stranger", "not-email", "bidi", "blank"],
)
def test_attest_by_a_non_owner(fleet: Fleet, person: str, says: str) -> None:
    result = fleet.run("--json", "attest", "--policy", "tiktok-mail", "--device", "JANE-IPHONE", "--person", person)
    assert_bad_input(result, "--person", says)
    fleet.assert_unchanged()


def test_withdraw_needs_a_real_reason(fleet: Fleet) -> None:
    for reason in ("", "  "):
        assert_bad_input(fleet.run("--json", "policy", "withdraw", "tiktok-mail", "--reason", reason), "--reason")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "reason",
    ["<script>alert(1)</script>", "oops\x1b[2J", "oops\u202e", "r" * 10_240],
    ids=["markup", "escape", "bidi", "10KB"],
)
def test_withdraw_with_a_hostile_reason(fleet: Fleet, reason: str) -> None:
    assert_bad_input(fleet.run("--json", "policy", "withdraw", "tiktok-mail", "--reason", reason), "--reason")
    fleet.assert_unchanged()


# -- import formats and files -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xml", "APPBAN", "", "<script>", "csv\x00"])
def test_unknown_import_format(fleet: Fleet, fmt: str) -> None:
    path = fleet.write("x.jsonl", "")
    assert_bad_input(fleet.run("--json", "import", fmt, str(path)), "FORMAT", "unknown format")
    fleet.assert_unchanged()


VENDOR_FORMATS = [
    "intune",
    "jamf",
    "workspace-one",
    "google-directory",
    "android-management",
    "apple-mdm",
    "osquery",
    "exchange",
]


@pytest.mark.parametrize("fmt", VENDOR_FORMATS)
@pytest.mark.parametrize(
    "body", ["{}", "[1, 2", "<x>\n", "\x00\xff garbage"], ids=["empty-object", "cut", "xml", "binary"]
)
def test_vendor_format_refuses_what_it_cannot_read(fleet: Fleet, fmt: str, body: str) -> None:
    """Whatever the bytes, a vendor format answers with one line and exit 2, and writes nothing."""
    path = fleet.write("x.json", body)
    result = fleet.run("--json", "import", fmt, str(path))
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and str(path) in result.err and result.err.count("\n") == 1
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "command",
    [
        ["import", "appban"],
        ["import", "csv"],
        ["people", "import"],
        ["policy", "apply"],
        ["policy", "apply", "--dry-run"],
    ],
    ids=["appban", "csv", "people", "policy", "dry-run"],
)
def test_missing_input_file(fleet: Fleet, command: list[str]) -> None:
    path = fleet.tmp / "no-such-file"
    assert_bad_input(fleet.run("--json", *command, str(path)), where(path), "cannot read")
    fleet.assert_unchanged()


# -- the database --------------------------------------------------------------------------------------


READ_COMMANDS = [
    ["status"],
    ["device", "list"],
    ["device", "show", "dev-1"],
    ["policy", "list"],
    ["policy", "show", "tiktok-mail"],
    ["catalog", "list"],
    ["catalog", "show", "tiktok"],
    ["gate", "decide", "--eas-device-id", "EASJANE1", "--user", "jane.doe@example.com"],
    ["audit", "verify"],
    ["evaluate"],
    ["policy", "withdraw", "tiktok-mail", "--reason", "mistake"],
    [*EXEMPT, "--device", "dev-1"],
    ["attest", "--policy", "tiktok-mail", "--device", "dev-1", "--person", "jane.doe@example.com"],
    ["people", "list"],
    ["exempt", "list"],
    ["exempt", "revoke", "1"],
    ["audit", "list"],
    ["audit", "head"],
    ["audit", "export", "chain.jsonl"],
    ["audit", "verify", "--anchor", "0" * 64],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_database_that_does_not_exist(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "absent.db"
    assert_bad_input(run("--db", str(db), "--now", NOW, "--json", *args), "--db", str(db))
    assert not db.exists(), "a read command created the database"


WRITE_COMMANDS = [
    ["import", "appban", "in.jsonl"],
    ["people", "import", "people.csv"],
    ["policy", "apply", "policy.yaml"],
]


def _inputs(folder: Path) -> None:
    (folder / "in.jsonl").write_text(DEVICES_JSONL, encoding="utf-8")
    (folder / "people.csv").write_text(PEOPLE_CSV, encoding="utf-8")
    (folder / "policy.yaml").write_text(POLICY_YAML, encoding="utf-8")


@pytest.mark.parametrize("args", WRITE_COMMANDS, ids=lambda a: "-".join(a[:2]))
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_only_init_creates_a_database(tmp_path: Path, args: list[str], how: str) -> None:
    """A typo in --db or APPBAN_DB must not start a second, empty database."""
    _inputs(tmp_path)
    db = tmp_path / "apban.db"
    argv = [args[0], *args[1:-1], str(tmp_path / args[-1])]
    if how == "flag":
        result = run("--db", str(db), "--now", NOW, "--json", *argv)
    else:
        result = run("--now", NOW, "--json", *argv, env={"APPBAN_DB": str(db)})
    assert_bad_input(result, str(db), "appban init")
    assert not list(tmp_path.glob("apban.db*")), "a command other than init created the database"
    assert run("--db", str(db), "--now", NOW, "init").code == 0
    assert run("--db", str(db), "--now", NOW, "--json", *argv).code == 0


def test_a_dry_run_previews_against_an_empty_fleet_without_a_database(tmp_path: Path) -> None:
    _inputs(tmp_path)
    db = tmp_path / "absent.db"
    result = run("--db", str(db), "--now", NOW, "--json", "policy", "apply", str(tmp_path / "policy.yaml"), "--dry-run")
    assert result.code == 0, result.err
    assert json.loads(result.out)["in_scope"]["devices"] == 0
    assert not list(tmp_path.glob("absent.db*"))


def _old_database(path: Path) -> int:
    """A database as an earlier appban left it: every migration but the last. Its version."""
    from appban.store.sqlite import migrations

    *older, _ = migrations()
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for _, script in older:
            con.executescript(script)
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(older[-1][0]),))
    finally:
        con.close()
    return older[-1][0]


@pytest.mark.parametrize("args", [["status"], ["import", "appban", "in.jsonl"], ["policy", "apply", "policy.yaml"]])
def test_an_older_schema_asks_for_init(tmp_path: Path, args: list[str]) -> None:
    """Only init upgrades a database (and syncs the shipped catalog with it)."""
    _inputs(tmp_path)
    db = tmp_path / "old.db"
    version = _old_database(db)
    before = snapshot(db)
    argv = [*args[:-1], str(tmp_path / args[-1])] if len(args) > 1 else args
    assert_bad_input(run("--db", str(db), "--now", NOW, "--json", *argv), str(db), f"v{version}", "appban init")
    assert snapshot(db) == before
    upgraded = run("--db", str(db), "--now", NOW, "--json", "init")
    assert upgraded.code == 0, upgraded.err
    assert json.loads(upgraded.out)["schema_version"] > version
    assert run("--db", str(db), "--now", NOW, "--json", *argv).code == 0


def test_database_from_the_environment_that_does_not_exist(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    assert_bad_input(run("--json", "status", env={"APPBAN_DB": str(db)}), str(db))
    assert not db.exists()


@pytest.mark.parametrize(
    "args",
    [["status"], ["device", "list"], ["audit", "verify"], ["evaluate"]],
    ids=lambda a: "-".join(a),
)
@pytest.mark.parametrize(
    "kind",
    [
        "text-file",
        "directory",
        "empty-file",
    ],
)
def test_database_that_is_not_a_database(tmp_path: Path, kind: str, args: list[str]) -> None:
    db = tmp_path / "not.db"
    if kind == "text-file":
        db.write_text("email,name\njane@example.com,Jane\n" * 100)
    elif kind == "directory":
        db.mkdir()
    else:
        db.touch()
    before = db.read_bytes() if db.is_file() else None
    result = run("--db", str(db), "--now", NOW, "--json", *args)
    assert result.code in (1, 2), result
    assert_bad_input(result, str(db), code=result.code)
    assert (db.read_bytes() if db.is_file() else None) == before


@pytest.mark.parametrize("url", ["postgresql://appban@localhost/appban", "postgres://x"])
def test_unsupported_database_url(tmp_path: Path, url: str) -> None:
    assert_bad_input(run("--db", url, "--json", "status"), "--db", "PostgreSQL")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("APPBAN_KEEP_FULL_INVENTORY", "maybe"),
        ("APPBAN_MAX_CHECKIN_BYTES", "lots"),
        ("APPBAN_MAX_APPS", "1e3"),
    ],
)
def test_bad_setting_in_the_environment(fleet: Fleet, setting: str, value: str) -> None:
    path = fleet.write(
        "one.jsonl",
        '{"device":{"id":"N1","platform":"ios","owner":"jane.doe@example.com"},'
        '"observed_at":"2020-07-11T00:00:00Z","apps":[]}\n',
    )
    assert_bad_input(fleet.run("--json", "import", "appban", str(path), env={setting: value}), setting)
    fleet.assert_unchanged()


# -- as a real process ----------------------------------------------------------------------------------


def test_real_process_bad_input_is_one_line_and_exit_2(fleet: Fleet) -> None:
    path = fleet.write(
        "bad.jsonl",
        '{"device":{"id":"N1","platform":"palm","owner":"jane.doe@example.com"},'
        '"observed_at":"2020-07-11T00:00:00Z","apps":[]}\n',
    )
    result = run_process("--db", str(fleet.db), "--now", NOW, "--json", "import", "appban", str(path))
    assert_bad_input(result, where(path, 1), "device.platform")
    result = run_process("--db", str(fleet.tmp / "absent.db"), "--json", "status")
    assert_bad_input(result, "--db")
    result = run_process("--db", str(fleet.db), "--now", "tomorrow", "status")
    assert_bad_input(result, "--now")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("command", "name", "content"),
    [
        (["import", "appban"], "bad.jsonl", '{"device":{"id":"N1"}}\n'),
        (
            ["import", "csv"],
            "bad.csv",
            "device_id,platform,owner,observed_at\nN1,palm,x@example.com,2020-07-11T00:00:00Z\n",
        ),
        (["people", "import"], "bad.csv", "email,name,org_unit,groups,timezone\nnobody,N,O,,UTC\n"),
        (["policy", "apply"], "bad.yaml", "id: x\n"),
    ],
    ids=["appban", "csv", "people", "policy"],
)
def test_bad_input_at_a_later_time_moves_no_clock(fleet: Fleet, command: list[str], name: str, content: str) -> None:
    """A refused command leaves even the store's clock (the latest evaluation time) alone."""
    path = fleet.write(name, content)
    assert_bad_input(fleet.run(*command, str(path), "--now", LATER), where(path))
    fleet.assert_unchanged()
