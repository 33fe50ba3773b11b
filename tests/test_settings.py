"""Every setting is declared once, in settings.py, and read only through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import appban
from appban import settings
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
