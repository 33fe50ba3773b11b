"""Every setting is declared once, in settings.py, and read only through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import appban
from appban import settings
from appban.errors import BadInput
from helpers_cli import assert_bad_input, run

SRC = Path(appban.__file__).parent


def test_only_settings_py_reads_the_environment() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "settings.py" and path.parent == SRC:
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            # A message may name a variable for the admin (e.g. "APPBAN_BUSY_TIMEOUT");
            # reading one is what is forbidden.
            if re.search(r"\bos\.environ\b|\bgetenv\(", code):
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, found


def test_every_variable_a_message_names_is_declared() -> None:
    declared = {s.env for s in settings.SETTINGS.values()}
    named = set()
    for path in sorted(SRC.rglob("*.py")):
        named |= set(re.findall(r"\bAPPBAN_[A-Z_]+\b", path.read_text("utf-8")))
    assert named - declared == set()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APPBAN_BUSY_TIMEOUT", "soon"),
        ("APPBAN_BUSY_TIMEOUT", "nan"),
        ("APPBAN_SQLITE_SYNCHRONOUS", "off"),
        ("APPBAN_QUERY_USER", "maybe"),
        ("APPBAN_UNKNOWN_DEVICE", "perhaps"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    """``gate decide`` reads the store's settings and the gate's (it answers as the gate would)."""
    db = str(tmp_path / "appban.db")
    assert run("--db", db, "init", "--now", "2020-07-10T15:00:00Z").code == 0
    result = run(
        "--db",
        db,
        "gate",
        "decide",
        "--eas-device-id",
        "X",
        "--user",
        "jane.doe@example.com",
        "--now",
        "2020-07-10T15:00:00Z",
        env={variable: value},
    )
    assert_bad_input(result, variable)


def test_debug_is_a_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_DEBUG", "0")
    assert settings.get("debug") is False
    monkeypatch.setenv("APPBAN_DEBUG", "yes")
    assert settings.get("debug") is True


def test_a_bad_import_setting_is_refused_naming_the_variable(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    assert run("--db", db, "init", "--now", "2020-07-10T15:00:00Z").code == 0
    checkin = tmp_path / "checkin.json"
    checkin.write_text(
        '{"device": {"id": "A", "platform": "ios", "owner": "jane.doe@example.com"},'
        ' "observed_at": "2020-07-10T15:00:00Z", "apps": []}',
        encoding="utf-8",
    )
    for variable, value in (("APPBAN_KEEP_FULL_INVENTORY", "sometimes"), ("APPBAN_CLOCK_SKEW", "soon")):
        result = run(
            "--db", db, "import", "appban", str(checkin), "--now", "2020-07-10T15:00:00Z", env={variable: value}
        )
        assert_bad_input(result, variable)


# -- every parser says, in appban's words, what it expects and what it got ------------------

NUMERIC = [
    name
    for name, s in settings.SETTINGS.items()
    if isinstance(s.default, (int, float)) and not isinstance(s.default, bool)
]
# What Python's own parsers say: never shown to an admin.
PYTHON_WORDING = ("could not convert", "invalid literal", "base 10", "OverflowError", "cannot convert")


def test_every_number_has_a_parser() -> None:
    assert {"busy_timeout", "max_apps", "max_checkin_bytes", "gate_port", "auth_wait"} <= set(NUMERIC)


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize(
    "value", ["inf", "-inf", "nan", "1e999", "-1", "99999999999999999999999", "soon", "", "1_0x", "٣"]
)
def test_a_number_out_of_range_or_not_a_number_is_refused_in_appbans_words(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(settings.SETTINGS[name].env, value)
    with pytest.raises(BadInput) as caught:
        settings.get(name)
    message = str(caught.value)
    assert settings.SETTINGS[name].env in message
    assert "expected" in message and repr(value[:40]) in message, message
    assert not any(words in message for words in PYTHON_WORDING), message


@pytest.mark.parametrize("name", NUMERIC)
def test_the_default_is_accepted_when_written_out(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    default = settings.SETTINGS[name].default
    monkeypatch.setenv(settings.SETTINGS[name].env, f"{default:g}" if isinstance(default, float) else str(default))
    assert settings.get(name) == default


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("busy_timeout", "86401"),  # seconds are bounded: at most a day for a timeout
        ("gate_header_timeout", "0"),
        ("gate_idle_timeout", "1e6"),
        ("max_apps", "0"),
        ("max_checkin_bytes", "0"),
        ("max_checkin_bytes", str(1 << 40)),
        ("gate_max_connections", "0"),
        ("gate_port", "65536"),
        ("auth_wait", "3601"),
        ("mail_failure_window", "0"),
    ],
)
def test_bounds(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(settings.SETTINGS[name].env, value)
    with pytest.raises(BadInput):
        settings.get(name)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("busy_timeout", "0", 0.0),
        ("busy_timeout", " 2.5 ", 2.5),
        ("mail_user_failures", "0", 0),  # 0: no limit, as its help says
        ("gate_port", "0", 0),
        ("max_apps", "1", 1),
    ],
)
def test_values_at_the_edges_are_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(settings.SETTINGS[name].env, value)
    assert settings.get(name) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [("APPBAN_BUSY_TIMEOUT", "inf"), ("APPBAN_BUSY_TIMEOUT", "1e999"), ("APPBAN_BUSY_TIMEOUT", "-1")],
)
def test_an_infinite_busy_timeout_is_bad_input_not_an_internal_error(tmp_path: Path, variable: str, value: str) -> None:
    db = str(tmp_path / "appban.db")
    assert run("--db", db, "init", "--now", "2020-07-10T15:00:00Z").code == 0
    result = run("--db", db, "status", "--now", "2020-07-10T15:00:00Z", env={variable: value})
    line = assert_bad_input(result, variable, "seconds")
    assert "internal error" not in line


@pytest.mark.parametrize("value", ["-1", "0", "lots", "1e3"])
def test_a_count_must_be_positive(tmp_path: Path, value: str) -> None:
    db = str(tmp_path / "appban.db")
    assert run("--db", db, "init", "--now", "2020-07-10T15:00:00Z").code == 0
    checkin = tmp_path / "checkin.json"
    checkin.write_text(
        '{"device": {"id": "A", "platform": "ios", "owner": "jane.doe@example.com"},'
        ' "observed_at": "2020-07-10T15:00:00Z", "apps": []}',
        encoding="utf-8",
    )
    for variable in ("APPBAN_MAX_APPS", "APPBAN_MAX_CHECKIN_BYTES"):
        result = run(
            "--db", db, "import", "appban", str(checkin), "--now", "2020-07-10T15:00:00Z", env={variable: value}
        )
        assert_bad_input(result, variable, "whole number")


def test_an_empty_db_variable_is_refused(tmp_path: Path) -> None:
    """An unset variable's mistake (APPBAN_DB= appban init) must not make a throwaway database."""
    result = run("init", "--now", "2020-07-10T15:00:00Z", env={"APPBAN_DB": ""})
    assert_bad_input(result, "APPBAN_DB")
    result = run("init", "--now", "2020-07-10T15:00:00Z", env={"APPBAN_DB": "  "})
    assert_bad_input(result, "APPBAN_DB")
