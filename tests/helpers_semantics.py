"""Shared helpers of the semantics tests: a throw-away database driven through the CLI.

``Appban`` runs ``appban.cli.main`` in-process (the same code path as the console
script, exit codes included) with ``--db`` pointing at a temporary database and an
explicit ``--now``, so every test replays a fixed timeline. ``run_subprocess`` is the
real ``python -m appban`` for the few tests that want a separate process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from appban.cli import main

# The timeline of SPEC's example policy.
BEFORE = "2020-07-10T15:00:00Z"  # first check-ins
APPLIED = "2020-07-10T15:30:00Z"  # the policy is applied
EFFECTIVE = "2020-07-10T15:30:00Z"  # = APPLIED: states are computed from here (SPEC)
DEADLINE = "2020-07-11T06:59:00Z"
JUST_BEFORE_DEADLINE = "2020-07-11T06:58:59.999999Z"
AFTER = "2020-07-11T07:00:00Z"
NEXT_DAY = "2020-07-12T09:00:00Z"

TIKTOK_ANDROID = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
TIKTOK_IOS = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
HARMLESS = [
    {"id": "com.example.mail", "name": "Mail", "version": "1.0"},
    {"id": "org.example.maps", "name": "Maps", "version": "2.3"},
]

POLICY: dict[str, Any] = {
    "id": "tiktok-mail",
    "title": "TikTok is not permitted on mobile devices that access company email",
    "reason": "Security risks",
    "apps": ["tiktok"],
    "scope": {
        "platforms": ["ios", "ipados", "android"],
        "mail_access": "required",
        "ownership": "any",
        "include_groups": [],
        "exclude_groups": ["security-research"],
    },
    "effective": EFFECTIVE,
    "deadline": DEADLINE,
    "mode": "enforce",
    "on_unverified": "allow",
    "max_inventory_age": "7d",
    "reminders": ["24h", "2h"],
}

_ENV = (
    "APPBAN_DB",
    "APPBAN_KEEP_FULL_INVENTORY",
    "APPBAN_MAIL_DOMAIN",
    "APPBAN_MAX_CHECKIN_BYTES",
    "APPBAN_MAX_FIELD_CHARS",
    "APPBAN_MAX_APPS",
    "APPBAN_DEBUG",
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def checkin(
    device: str = "phone-1",
    *,
    at: str = BEFORE,
    apps: list[dict[str, Any]] | None = None,
    platform: str = "android",
    owner: str = "ann@example.com",
    eas: list[str] | None = None,
    source: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One check-in in SPEC's format; ``eas`` defaults to one DeviceId derived from ``device``."""
    body: dict[str, Any] = {
        "device": {
            "id": device,
            "platform": platform,
            "owner": owner,
            "eas_device_ids": [f"EAS-{device}"] if eas is None else eas,
            **extra,
        },
        "observed_at": at,
        "apps": list(HARMLESS) if apps is None else apps,
    }
    if source is not None:
        body["source"] = source
    return body


class Appban:
    """The CLI against one temporary database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = str(root / "appban.db")
        self._files = 0

    # -- running commands -----------------------------------------------------------

    def run(self, *args: str, now: str | None = None, as_json: bool = True) -> Result:
        argv = ["--db", self.db, *args]
        if as_json:
            argv.append("--json")
        if now is not None:
            argv += ["--now", now]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Result(code, out.getvalue(), err.getvalue())

    def __call__(self, *args: str, now: str | None = None, expect: int = 0) -> Any:
        """Run a command with --json; check its exit status; the parsed document."""
        result = self.run(*args, now=now)
        assert result.code == expect, f"appban {' '.join(args)} -> {result.code}\n{result.out}\n{result.err}"
        return result.json if result.out.strip() else None

    # -- inputs -----------------------------------------------------------------------

    def file(self, suffix: str, text: str) -> str:
        self._files += 1
        path = self.root / f"input-{self._files}{suffix}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def init(self, now: str = "2020-07-01T00:00:00Z") -> Any:
        return self("init", now=now)

    def ingest(self, *checkins: dict[str, Any], now: str = BEFORE, keep_full: bool = False) -> Any:
        """Import check-ins as one JSON Lines file, in the order given."""
        path = self.file(".jsonl", "".join(json.dumps(c) + "\n" for c in checkins))
        args = ["import", "appban", path] + (["--keep-full-inventory"] if keep_full else [])
        return self(*args, now=now)

    def policy_file(self, **overrides: Any) -> str:
        body = {**POLICY, **overrides}
        if "scope" in overrides:
            body["scope"] = {**POLICY["scope"], **overrides["scope"]}
        return self.file(".yaml", yaml.safe_dump(body, sort_keys=False))

    def apply(self, now: str = APPLIED, *, dry_run: bool = False, **overrides: Any) -> Any:
        args = ["policy", "apply", self.policy_file(**overrides)] + (["--dry-run"] if dry_run else [])
        return self(*args, now=now)

    def people(self, rows: list[tuple[str, str, str, str, str]], now: str = BEFORE) -> Any:
        lines = ["email,name,org_unit,groups,timezone"] + [",".join(r) for r in rows]
        return self("people", "import", self.file(".csv", "\n".join(lines) + "\n"), now=now)

    # -- reading results ----------------------------------------------------------------

    def show(self, device: str, now: str) -> Any:
        return self("device", "show", device, now=now)

    def state(self, device: str, now: str, policy: str = "tiktok-mail") -> str:
        return str(self.show(device, now)["policies"][policy]["state"])

    def decide(self, eas: str, user: str, now: str, *extra: str) -> tuple[str, str]:
        doc = self("gate", "decide", "--eas-device-id", eas, "--user", user, *extra, now=now)
        return doc["decision"], doc["reason"]

    def status(self, now: str, *extra: str) -> Any:
        return self("status", *extra, now=now)

    # -- the database itself ------------------------------------------------------------

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    def dump(self) -> list[str]:
        """Every row of every table, for before/after comparisons."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    def write_sql(self, *statements: str) -> None:
        con = sqlite3.connect(self.db, isolation_level=None)
        try:
            for s in statements:
                con.execute(s)
        finally:
            con.close()


def run_subprocess(*args: str, db: str, now: str | None = None) -> Result:
    """The real ``python -m appban`` in a child process."""
    argv = [sys.executable, "-m", "appban", "--db", db, *args]
    if now is not None:
        argv += ["--now", now]
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def subset(actual: Any, expected: Any, path: str = "$") -> None:
    """Assert that ``expected`` is contained in ``actual``: dict keys recursively, lists whole."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}: missing {key!r} in {sorted(actual)}"
            subset(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            subset(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.fixture
def ab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Appban:
    """An initialised, empty appban database, no APPBAN_* settings from the environment."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    app = Appban(tmp_path)
    app.init()
    return app
