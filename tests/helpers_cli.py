"""Running the real ``appban`` command line from tests, and proving it wrote nothing.

Fixtures here are registered by ``tests/conftest.py``; plain helpers are imported
directly (``from helpers_cli import ...``).

- ``run(*args)`` runs ``appban.cli.main`` in-process (fast) and returns
  ``Result(code, out, err)``. An exception that escapes ``main`` is caught and its
  traceback put in ``err``, so a test sees a traceback exactly as a user would.
- ``run_process(*args)`` runs ``python -m appban`` as a real process.
- ``fleet`` is a database with people, two devices and an active policy, copied
  from one built per session; ``fleet.snapshot()`` is every row of every table.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import traceback
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

# The fixed clock of every fleet command: after the policy's deadline.
NOW = "2020-07-12T12:00:00Z"

PEOPLE_CSV = """\
email,name,org_unit,groups,timezone
jane.doe@example.com,Jane Doe,Sales,staff,Europe/London
bob.roe@example.com,Bob Roe,Engineering,staff;security-research,America/New_York
"""

DEVICES_JSONL = (
    '{"source":"agent","device":{"id":"JANE-IPHONE","platform":"ios","ownership":"personal",'
    '"owner":"jane.doe@example.com","eas_device_ids":["EASJANE1"]},'
    '"observed_at":"2020-07-10T15:00:00Z",'
    '"apps":[{"id":"com.zhiliaoapp.musically","name":"TikTok","version":"16.5.0"}]}\n'
    '{"source":"agent","device":{"id":"BOB-PIXEL","platform":"android","ownership":"corporate",'
    '"owner":"bob.roe@example.com","eas_device_ids":["EASBOB1"]},'
    '"observed_at":"2020-07-10T15:00:00Z",'
    '"apps":[{"id":"com.example.notes","name":"Notes"}]}\n'
)

POLICY_YAML = """\
id: tiktok-mail
title: TikTok is not permitted on mobile devices that access company email
reason: Security risks
apps: [tiktok]
scope:
  platforms: [ios, ipados, android]
  mail_access: required
  ownership: any
  include_groups: []
  exclude_groups: []
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
reminders: [24h, 2h]
"""


@dataclass(frozen=True)
class Result:
    code: int | None
    out: str
    err: str


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}
    env.update(extra or {})
    return env


def run(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """``appban ARGS`` in this process, with no APPBAN_* setting but those in ``env``."""
    from appban.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | None
    with (
        mock.patch.dict(os.environ, _clean_env(env), clear=True),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what the user would see: a traceback
            err.write(traceback.format_exc())
            code = None
    return Result(code, out.getvalue(), err.getvalue())


def run_process(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """``python -m appban ARGS`` as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "appban", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=_clean_env(env),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_tty(*args: str, columns: int = 80, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """``python -m appban ARGS`` with stdout on a pseudo-terminal ``columns`` wide.

    ``out`` is what the terminal received, with ANSI styling (SGR) removed and line
    ends as ``\n``; anything else a terminal would act on is left in for the test.
    """
    import pty
    import re
    import select

    master, slave = pty.openpty()
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, master)
        proc = subprocess.Popen(
            [sys.executable, "-m", "appban", *args],
            stdout=slave,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**_clean_env(env), "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"},
        )
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise TimeoutError(f"appban {' '.join(args)} wrote nothing for {timeout} s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err_bytes = proc.communicate(timeout=timeout)
        err = err_bytes.decode("utf-8", "replace")
        code = proc.returncode
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return Result(code, re.sub(r"\x1b\[[0-9;]*m", "", text), err)


def assert_bad_input(result: Result, *expected: str, code: int = 2) -> str:
    """The SPEC's answer to bad input: exit ``code``, nothing on stdout, and one short,
    printable line on stderr that contains every ``expected`` text. Returns that line."""
    err = result.err
    assert "Traceback" not in err, err
    assert result.code == code, (result.code, err)
    assert result.out == "", result.out
    assert err.startswith("appban: error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err[:-1]
    # No control or bidi-formatting character reaches the terminal.
    bad = [ch for ch in line if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert not bad, (bad, line)
    assert len(line) < 1000, len(line)
    for text in expected:
        assert text in line, (text, line)
    return line


def where(path: Path | str, line: int | None = None) -> str:
    """How an error names a place in a file: ``PATH`` or ``PATH:LINE``."""
    return str(path) if line is None else f"{path}:{line}"


# -- the database --------------------------------------------------------------------------


def snapshot(db: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal snapshots mean nothing was written."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def count(db: Path | str, table: str, where_sql: str = "1", params: Sequence[Any] = ()) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute(f'SELECT count(*) FROM "{table}" WHERE {where_sql}', params).fetchone()[0])
    finally:
        con.close()


class Fleet:
    """A database in ``tmp`` with two people, two devices and the policy ``tiktok-mail``."""

    def __init__(self, db: Path, tmp: Path) -> None:
        self.db = db
        self.tmp = tmp
        self.before = snapshot(db)

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        """``appban --db DB --now NOW ARGS`` (a ``--now`` in ARGS wins: click takes the last)."""
        return run("--db", str(self.db), "--now", NOW, *args, env=env)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return snapshot(self.db)

    def assert_unchanged(self) -> None:
        after = self.snapshot()
        changed = {t for t in set(after) | set(self.before) if after.get(t) != self.before.get(t)}
        assert not changed, f"tables written: {sorted(changed)}"

    def devices(self) -> int:
        return count(self.db, "devices")

    def people(self) -> int:
        return count(self.db, "people")


def _build_fleet(folder: Path) -> Path:
    db = folder / "fleet.db"
    people = folder / "people.csv"
    people.write_text(PEOPLE_CSV, encoding="utf-8")
    devices = folder / "devices.jsonl"
    devices.write_text(DEVICES_JSONL, encoding="utf-8")
    policy = folder / "policy.yaml"
    policy.write_text(POLICY_YAML, encoding="utf-8")
    for args in (
        ("init",),
        ("people", "import", str(people)),
        ("import", "appban", str(devices)),
        ("policy", "apply", str(policy)),
        ("evaluate",),
    ):
        result = run("--db", str(db), "--now", NOW, *args)
        assert result.code == 0, (args, result)
    # Fold the WAL into the database file so that copying the one file copies everything.
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return db


@pytest.fixture(scope="session")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_fleet(tmp_path_factory.mktemp("fleet-template"))


@pytest.fixture
def fleet(fleet_template: Path, tmp_path: Path) -> Iterator[Fleet]:
    db = tmp_path / "appban.db"
    shutil.copyfile(fleet_template, db)
    yield Fleet(db, tmp_path)
