"""``appban gate serve`` as a command: loud failures at start; settings from flags and env."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers_gate import SYNC, GateProcess, live_fleet

from helpers_cli import Result, assert_bad_input, run_process
from helpers_semantics import Appban


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Appban:
    return live_fleet(tmp_path_factory.mktemp("serve-cli"))


def serve(db: Path | str, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_process("--db", str(db), "gate", "serve", "--port", "0", *args, env=env, timeout=30)


def test_a_missing_database_fails_loudly(tmp_path: Path) -> None:
    db = tmp_path / "nowhere.db"
    result = serve(db)
    assert_bad_input(result, "no database at", str(db))
    assert not db.exists(), "serve must not create an empty database"


def test_a_missing_database_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    result = run_process("gate", "serve", "--port", "0", env={"APPBAN_DB": str(db)}, timeout=30)
    assert_bad_input(result, "no database at", str(db))


def test_not_an_appban_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    assert_bad_input(serve(db), "not an appban database", code=1)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    result = serve(text)
    assert result.code in (1, 2) and "Traceback" not in result.err
    assert result.err.startswith("appban: error: ") and result.err.count("\n") == 1


BAD_SETTINGS = [
    (("--mail-upstream", "localhost"), {}, "--mail-upstream"),
    (("--mail-upstream", "imap=:143"), {}, "--mail-upstream"),
    ((), {"APPBAN_MAIL_UPSTREAM": "imap=host:port"}, "--mail-upstream"),
    ((), {"APPBAN_GATE_POLL_INTERVAL": "soon"}, "APPBAN_GATE_POLL_INTERVAL"),
    (("--poll-interval", "0"), {}, "--poll-interval"),
    (("--unknown-device", "maybe"), {}, "--unknown-device"),
    (("--port", "70000"), {}, "--port"),
]


def test_bad_settings_are_usage_errors(fleet: Appban) -> None:
    # Real processes, started side by side: each is a second of interpreter start-up.
    with ThreadPoolExecutor(len(BAD_SETTINGS)) as pool:
        results = list(pool.map(lambda case: serve(fleet.db, *case[0], env=case[1]), BAD_SETTINGS))
    for (args, env, expected), result in zip(BAD_SETTINGS, results, strict=True):
        try:
            assert_bad_input(result, expected)
        except AssertionError as exc:
            raise AssertionError(f"{args} {env}: {exc}") from None


def test_a_port_in_use(fleet: Appban) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_process("--db", fleet.db, "gate", "serve", "--port", str(port), timeout=30)
    line = assert_bad_input(result, "cannot listen", str(port), code=1)
    assert "appban.gate" not in line


def test_start_up_log_names_the_table(fleet: Appban) -> None:
    with GateProcess(fleet.db, "--poll-interval", "0.05") as gate:
        log = "".join(gate.log)
        found = re.search(r"listening on 127\.0\.0\.1:(\d+) with (\d+) DeviceIds \(seq (\d+)\)", log)
        assert found, log
        assert int(found.group(1)) == gate.port
        assert int(found.group(2)) == 2
        (seq,) = fleet.sql("SELECT value FROM meta WHERE key = 'gate_seq'")[0]
        assert int(found.group(3)) == int(seq)


def test_settings_from_the_environment_and_flags_over_them(fleet: Appban) -> None:
    env = {
        "APPBAN_UNKNOWN_DEVICE": "allow",
        "APPBAN_GATE_USER_HEADER": "X-Remote-User",
        "APPBAN_MAIL_DOMAINS": "example.com",
        "APPBAN_NETBIOS_DOMAINS": "EXAMPLE",
        "APPBAN_MAIL_UPSTREAM": "imap=127.0.0.1:1993, smtp=127.0.0.1:1587",
        "APPBAN_GATE_POLL_INTERVAL": "0.05",
    }
    with GateProcess(fleet.db, env=env) as gate:
        assert gate.sync("EASNOBODY", "x").status == 204
        uri = SYNC.format(user="jane.doe", eas="EASBOB1")
        assert gate.nginx(uri, **{"X-Remote-User": "EXAMPLE\\bob.roe"}).status == 204
        assert gate.sync("EASBOB1", "bob.roe").status == 204  # bob.roe@example.com
        login = {"Auth-User": "bob.roe", "Auth-Pass": "wrong", "Auth-Protocol": "imap"}
        assert gate.get("/auth/mail", login).headers["auth-status"] != "OK"
    with GateProcess(fleet.db, "--unknown-device", "deny", "--user-header", "X-Other", env=env) as gate:
        assert gate.sync("EASNOBODY", "x").reason == "unknown_device"
        assert gate.sync("EASNOBODY", "x").status == 403
        uri = SYNC.format(user="jane.doe", eas="EASBOB1")
        assert gate.nginx(uri, **{"X-Remote-User": "bob.roe"}).reason == "user_mismatch"
        assert gate.nginx(uri, **{"X-Other": "bob.roe"}).status == 204


def test_the_gate_stops_on_sigterm(fleet: Appban) -> None:
    gate = GateProcess(fleet.db)
    try:
        assert gate.get("/healthz").status == 200
    finally:
        gate.stop()
    assert gate.proc.returncode is not None
    assert "Traceback" not in "".join(gate.log)


def test_now_pins_the_clock_the_gate_applies_deadlines_at(tmp_path: Path) -> None:
    import time

    from helpers_gate import wall

    # The deadline passes in real time two seconds from now; a gate serving a replay
    # at a pinned --now before it must not apply it.
    ab = live_fleet(tmp_path, deadline_in=2.0)
    with GateProcess(ab.db, "--now", wall()) as gate:
        assert gate.sync("EASJANE1", "jane.doe").reason == "ok"
        time.sleep(3.5)
        assert gate.sync("EASJANE1", "jane.doe").reason == "ok"
