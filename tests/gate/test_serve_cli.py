"""``appban gate serve`` as a command: loud failures at start; settings from flags and env."""

from __future__ import annotations

import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers_gate import SYNC, GateProcess, live_fleet, request, wait_for, wall

from appban.gate.server import Upstreams
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
    assert_bad_input(serve(db), "not an appban database", str(db))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    assert_bad_input(serve(text), str(text))


BAD_SETTINGS = [
    (("--mail-upstream", "localhost"), {}, "--mail-upstream"),
    (("--mail-upstream", "imap=:143"), {}, "--mail-upstream"),
    ((), {"APPBAN_MAIL_UPSTREAM": "imap=host:port"}, "field APPBAN_MAIL_UPSTREAM"),
    # nginx's mail proxy takes Auth-Server as an address; it does not resolve names.
    (("--mail-upstream", "imap=mail.example.com:143"), {}, "--mail-upstream"),
    (("--mail-upstream", "smtp=localhost:25"), {}, "not an IP address"),
    ((), {"APPBAN_MAIL_UPSTREAM": "imap=127.0.0.1:143,smtp=smtp.example.com:25"}, "field APPBAN_MAIL_UPSTREAM"),
    (("--mail-upstream", "imap=::1:143"), {}, "--mail-upstream"),  # IPv6 goes in brackets
    (("--mail-upstream", "imap=127.0.0.1:70000"), {}, "--mail-upstream"),
    (("--mail-upstream", "imapx=127.0.0.1:143"), {}, "--mail-upstream"),
    # nginx parses Auth-Server as a bare address: a zone (%eth0) makes it unusable.
    (("--mail-upstream", "smtp=[fe80::1%eth0]:25"), {}, "IPv6 zone"),
    ((), {"APPBAN_MAIL_UPSTREAM": "imap=[fe80::1%2]:143"}, "field APPBAN_MAIL_UPSTREAM"),
    ((), {"APPBAN_GATE_POLL_INTERVAL": "soon"}, "APPBAN_GATE_POLL_INTERVAL"),
    ((), {"APPBAN_GATE_POLL_INTERVAL": "0"}, "APPBAN_GATE_POLL_INTERVAL"),
    (("--poll-interval", "0"), {}, "--poll-interval"),
    ((), {"APPBAN_GATE_EVALUATE_INTERVAL": "0"}, "APPBAN_GATE_EVALUATE_INTERVAL"),
    (("--evaluate-interval", "-1"), {}, "--evaluate-interval"),
    (("--unknown-device", "maybe"), {}, "--unknown-device"),
    (("--port", "70000"), {}, "--port"),
    ((), {"APPBAN_AUTH_WAIT": "soon"}, "APPBAN_AUTH_WAIT"),
    ((), {"APPBAN_GATE_HEADER_TIMEOUT": "0"}, "APPBAN_GATE_HEADER_TIMEOUT"),
    ((), {"APPBAN_GATE_MAX_CONNECTIONS": "none"}, "APPBAN_GATE_MAX_CONNECTIONS"),
    ((), {"APPBAN_GATE_MAX_PIPELINE": "0"}, "APPBAN_GATE_MAX_PIPELINE"),
    ((), {"APPBAN_GATE_MAX_PIPELINE_BYTES": "64k"}, "APPBAN_GATE_MAX_PIPELINE_BYTES"),
    ((), {"APPBAN_GATE_MAX_HEADER_BYTES": "100"}, "APPBAN_GATE_MAX_HEADER_BYTES"),
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


@pytest.mark.parametrize("value", ["mail.example.com:143", "[fe80::1%eth0]:993", "smtp=10.0.0.1"])
def test_a_bad_mail_upstream_from_the_environment_names_the_variable(fleet: Appban, value: str) -> None:
    result = serve(fleet.db, env={"APPBAN_MAIL_UPSTREAM": value})
    line = assert_bad_input(result, "field APPBAN_MAIL_UPSTREAM")
    assert "--mail-upstream" not in line  # the flag was not given: the variable was


def test_an_ipv6_zone_is_refused_in_every_form() -> None:
    for spec in ("[fe80::1%eth0]:143", "imap=[fe80::1%25eth0]:143", "pop3=[::1%lo]:110"):
        with pytest.raises(ValueError, match="IPv6 zone"):
            Upstreams.parse([spec])
    assert Upstreams.parse(["[fe80::1]:143"]).get("imap") == ("fe80::1", 143)


@pytest.mark.parametrize("value", ["70000", "eighty", "-1"])
def test_a_bad_port_from_the_environment(fleet: Appban, value: str) -> None:
    result = run_process("--db", fleet.db, "gate", "serve", env={"APPBAN_GATE_PORT": value}, timeout=30)
    assert_bad_input(result, "APPBAN_GATE_PORT")


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


def test_host_and_port_from_the_environment_and_flags_over_them(fleet: Appban) -> None:
    env = {"APPBAN_GATE_HOST": "127.0.0.2", "APPBAN_GATE_PORT": str(free_port("127.0.0.2"))}
    with GateProcess(fleet.db, env=env, port=None) as gate:
        assert f"listening on 127.0.0.2:{env['APPBAN_GATE_PORT']} " in "".join(gate.log)
    port = free_port("127.0.0.3")
    with GateProcess(fleet.db, "--host", "127.0.0.3", "--port", str(port), env=env, port=None) as gate:
        assert f"listening on 127.0.0.3:{port} " in "".join(gate.log)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_auth_wait_from_the_environment_and_the_flag_over_it(fleet: Appban) -> None:
    login = {"Auth-User": "bob.roe@example.com", "Auth-Pass": "wrong", "Auth-Protocol": "imap"}
    with GateProcess(fleet.db, "--no-evaluate", env={"APPBAN_AUTH_WAIT": "7"}) as gate:
        assert gate.get("/auth/mail", login).headers["auth-wait"] == "7"
    with GateProcess(fleet.db, "--no-evaluate", "--auth-wait", "2", env={"APPBAN_AUTH_WAIT": "7"}) as gate:
        assert gate.get("/auth/mail", login).headers["auth-wait"] == "2"


def test_an_ipv6_mail_upstream_is_named_as_nginx_reads_it(fleet: Appban) -> None:
    password = fleet("device", "credential", "issue", "BOB-PIXEL", now=wall())["password"]
    login = {"Auth-User": "bob.roe@example.com", "Auth-Pass": password, "Auth-Protocol": "imap"}
    with GateProcess(fleet.db, "--no-evaluate", "--mail-upstream", "imap=[::1]:1143") as gate:
        answer = gate.get("/auth/mail", login)
    assert answer.headers["auth-status"] == "OK"
    assert (answer.headers["auth-server"], answer.headers["auth-port"]) == ("::1", "1143")


def evaluations(gate: GateProcess) -> float:
    return sum(v for k, v in gate.metrics().items() if k.startswith("appban_gate_evaluation_runs_total"))


def test_the_evaluation_interval_from_the_environment_and_the_flag_over_it(fleet: Appban) -> None:
    env = {"APPBAN_GATE_EVALUATE_INTERVAL": "0.05", "APPBAN_GATE_POLL_INTERVAL": "0.05"}
    with GateProcess(fleet.db, env=env) as gate:
        # Twenty checks take a second at 0.05 s, twenty seconds at the default.
        wait_for(lambda: evaluations(gate) >= 20, timeout=10)
    with GateProcess(fleet.db, "--evaluate-interval", "3600", env=env) as gate:
        wait_for(lambda: gate.metrics()["appban_gate_store_polls_total"] >= 20, timeout=10)
        assert evaluations(gate) == 0
    with GateProcess(fleet.db, "--no-evaluate", env=env) as gate:
        assert gate.health()["evaluation"] == "off"
        assert gate.metrics()['appban_gate_evaluation_state{state="off"}'] == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_gate_stops_cleanly_on_a_signal(fleet: Appban, signum: signal.Signals) -> None:
    gate = GateProcess(fleet.db)
    clients = []
    try:
        for _ in range(5):  # keep-alive connections, as nginx holds them
            conn = gate.connection()
            assert request(conn, "/healthz").status == 200
            clients.append(conn)
        half = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        half.sendall(b"GET /auth/nginx HTTP/1.1\r\nX-Orig")  # and one in the middle of a request
        sent = time.monotonic()
        gate.proc.send_signal(signum)
        code = gate.proc.wait(10)
        took = time.monotonic() - sent
        assert half.recv(65536) == b""  # closed, not left hanging
        half.close()
    finally:
        for conn in clients:
            conn.close()
        gate.stop()
    log = "".join(gate.log)
    assert code == 0, log
    assert took < 5, f"stopping took {took:.2f}s"
    assert "stopped" in log and "Traceback" not in log


def test_now_pins_the_clock_the_gate_applies_deadlines_at(tmp_path: Path) -> None:
    # The deadline passes in real time two seconds from now; a gate serving a replay
    # at a pinned --now before it must not apply it.
    deadline = time.time() + 2.0
    ab = live_fleet(tmp_path, deadline_in=2.0)
    with GateProcess(ab.db, "--now", wall(), "--evaluate-interval", "0.1") as gate:
        assert gate.sync("EASJANE1", "jane.doe@example.com").reason == "ok"
        wait_for(lambda: time.time() > deadline, timeout=10)
        # Checks for due changes made after the real deadline passed find none.
        after = evaluations(gate)
        wait_for(lambda: evaluations(gate) >= after + 5, timeout=10)
        assert gate.sync("EASJANE1", "jane.doe@example.com").reason == "ok"
