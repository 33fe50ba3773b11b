"""The limits a framework would give the gate's raw server, against hostile clients.

Each test starts a real ``appban gate serve`` with small limits (settings ``gate_*``
from the environment), attacks it over real sockets, and checks that answers keep
flowing to a well-behaved client, that the attacker's connections are cut, and that
the gate's memory (VmRSS) stays bounded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from helpers_gate import (
    SYNC,
    GateProcess,
    legacy_credential,
    live_fleet,
    parse_responses,
    wait_for,
)

from helpers_semantics import Appban

BOB = "bob.roe@example.com"
OLD_PASSWORD = "an-old-argon2-password"
# Generous: a well-behaved client's answer under attack, and the attack's memory.
PROMPT = 1.0
RSS_GROWTH_MB = 50
# Every failed login is verified: the failure limits would otherwise answer most of a
# flood as throttled without verifying anything (tested with the mail throttles).
NO_THROTTLE = {"APPBAN_MAIL_USER_FAILURES": "0", "APPBAN_MAIL_CLIENT_FAILURES": "0"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Appban:
    ab = live_fleet(tmp_path_factory.mktemp("limits"))
    # An old-style mail password: each wrong guess at it costs an argon2 verification
    # (tens of milliseconds), off the event loop; requests behind it queue.
    legacy_credential(ab.db, "BOB-PIXEL", OLD_PASSWORD)
    return ab


def nginx_request(eas: str = "EASBOB1", user: str = BOB) -> bytes:
    uri = SYNC.format(user=user, eas=eas)
    return f"GET /auth/nginx HTTP/1.1\r\nHost: gate\r\nX-Original-URI: {uri}\r\n\r\n".encode()


def mail_request(password: str, client: int = 7) -> bytes:
    return (
        "GET /auth/mail HTTP/1.1\r\nHost: gate\r\nAuth-Method: plain\r\n"
        f"Auth-User: {BOB}\r\nAuth-Pass: {password}\r\nAuth-Protocol: imap\r\n"
        f"Client-IP: 192.0.2.{client}\r\n\r\n"
    ).encode()


def timed_sync(conn: socket.socket) -> float:
    """One nginx auth_request on a keep-alive socket, answered 204; the seconds it took."""
    started = time.perf_counter()
    conn.sendall(nginx_request())
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        chunk = conn.recv(65536)
        assert chunk, "the gate closed a well-behaved client's connection"
        received += chunk
    (answer,) = parse_responses(received)
    assert answer.status == 204, answer
    return time.perf_counter() - started


def closed_by_gate(sock: socket.socket) -> bool:
    """Whether the gate has closed this connection (reading what it said last)."""
    try:
        while chunk := sock.recv(65536, socket.MSG_DONTWAIT):
            assert chunk.startswith(b"HTTP/1.1 408 "), chunk[:80]
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_slowloris_is_cut_off_while_others_are_answered(fleet: Appban, sockets: list[socket.socket]) -> None:
    timeout = 2.0
    with GateProcess(fleet.db, "--no-evaluate", env={"APPBAN_GATE_HEADER_TIMEOUT": str(timeout)}) as gate:
        rss = gate.rss_mb()
        head = b"GET /auth/nginx HTTP/1.1\r\nHost: gate\r\nX-Original-URI: /Microsoft-Server-ActiveSync?DeviceId="
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
            sock.sendall(head)
            sock.setblocking(False)
            sockets.append(sock)
        well = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
        sockets.append(well)
        slow = set(sockets[:-1])
        started = time.monotonic()
        slowest = 0.0
        while slow:
            # Each slow client sends one more byte of a header that never ends...
            for sock in list(slow):
                if closed_by_gate(sock):
                    slow.discard(sock)
                    continue
                with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    sock.send(b"A")
            # ... while a proxy's requests on its keep-alive connection are answered.
            slowest = max(slowest, timed_sync(well))
            assert time.monotonic() - started < timeout + 10, f"{len(slow)} slow connections still open"
            select.select(list(slow), [], [], 0.05)  # until one is closed, or 50 ms
        cut_after = time.monotonic() - started
        assert slowest < PROMPT, f"a well-behaved request took {slowest:.3f}s under slowloris"
        assert gate.rss_mb() - rss < RSS_GROWTH_MB
        metrics = gate.metrics()
        assert metrics['appban_gate_connections_closed_total{cause="header_timeout"}'] >= 300
        assert timeout * 0.9 < cut_after
        timed_sync(well)  # still open: it never stalled


def test_a_full_house_makes_room_for_a_new_client(fleet: Appban, sockets: list[socket.socket]) -> None:
    env = {"APPBAN_GATE_MAX_CONNECTIONS": "50"}
    with GateProcess(fleet.db, "--no-evaluate", env=env) as gate:
        for _ in range(120):  # silent: they never send a byte
            sockets.append(socket.create_connection(("127.0.0.1", gate.port), timeout=5))
        # Beyond the cap a connection is refused (503) while all 50 are fresh; once one
        # has stalled a moment, a proxy's request takes its place.
        wait_for(lambda: gate.sync("EASBOB1", BOB).status == 204, timeout=10, every=0.2)
        metrics = gate.metrics()
        assert metrics["appban_gate_connections"] <= 50
        refused = metrics['appban_gate_connections_closed_total{cause="refused"}']
        evicted = metrics['appban_gate_connections_closed_total{cause="evicted"}']
        assert refused + evicted >= 70 and evicted >= 1, (refused, evicted)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(fleet: Appban) -> None:
    with GateProcess(fleet.db, "--no-evaluate", env={"APPBAN_GATE_IDLE_TIMEOUT": "1"}) as gate:
        with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as sock:
            timed_sync(sock)
            answered = time.monotonic()
            assert sock.recv(65536) == b""  # blocks until the gate closes it
            idle = time.monotonic() - answered
        assert 0.9 < idle < 5, idle
        assert gate.metrics()['appban_gate_connections_closed_total{cause="idle_timeout"}'] >= 1


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (b"POST /auth/envoy/x HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n", b"\x03\x01j\x00" * 16384),
        (b"POST /auth/envoy/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + b"B" * 65536 + b"\r\n"),
        (b"GET /auth/nginx HTTP/1.1\r\nX-Original-URI: /x?", b"A" * 65536),
    ],
    ids=["endless-body", "endless-chunks", "endless-header"],
)
def test_a_request_that_never_ends(fleet: Appban, head: bytes, piece: bytes) -> None:
    timeout = 2.0
    with GateProcess(fleet.db, "--no-evaluate", env={"APPBAN_GATE_HEADER_TIMEOUT": str(timeout)}) as gate:
        rss = gate.rss_mb()
        attacker = socket.create_connection(("127.0.0.1", gate.port), timeout=30)
        ended = threading.Event()

        def flood() -> None:
            try:
                attacker.sendall(head)
                while True:
                    attacker.sendall(piece)
            except OSError:
                ended.set()  # the gate closed it

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        started = time.monotonic()
        slowest = 0.0
        with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as well:
            while not ended.is_set():
                slowest = max(slowest, timed_sync(well))
                assert gate.rss_mb() - rss < RSS_GROWTH_MB
                assert time.monotonic() - started < timeout + 20, "the endless request was never cut off"
                ended.wait(0.05)
        sender.join(10)
        attacker.close()
        assert slowest < PROMPT, slowest
        assert gate.rss_mb() - rss < RSS_GROWTH_MB
        assert gate.sync("EASBOB1", BOB).status == 204


def test_a_pipelined_flood_behind_a_slow_login_is_read_no_faster_than_answered(
    fleet: Appban,
) -> None:
    env = {**NO_THROTTLE, "APPBAN_GATE_MAX_PIPELINE": "16"}
    with GateProcess(fleet.db, "--no-evaluate", env=env) as gate:
        # 300 requests behind one login whose argon2 verification takes a while: all
        # answered, in order, though the gate queued at most a few dozen at a time.
        batch = (
            mail_request("a-wrong-guess") + nginx_request() * 150 + nginx_request("EASJANE1", "jane.doe@example.com")
        )
        batch += nginx_request() * 149
        answers = list(parse_responses(gate.raw(batch, responses=301, timeout=30)))
        assert [a.status for a in answers] == [200] + [204] * 150 + [403] + [204] * 149
        assert answers[0].headers["auth-status"] == "unknown_device"
        metrics = gate.metrics()
        assert metrics["appban_gate_pipeline_pauses_total"] >= 1
        assert metrics["appban_gate_pipeline_queue_max"] <= 16 + 4096 // len(nginx_request()) + 1


def test_a_flood_of_slow_logins_stays_bounded_and_ends_with_its_client(fleet: Appban) -> None:
    env = {**NO_THROTTLE, "APPBAN_GATE_MAX_PIPELINE": "16"}
    with GateProcess(fleet.db, "--no-evaluate", env=env) as gate:
        rss = gate.rss_mb()
        # 30,000 wrong guesses pipelined on one connection: each costs an argon2
        # verification, hours of them. The gate reads them only as fast as it answers.
        one = mail_request("a-wrong-guess")
        flood = one * 30_000
        attacker = socket.create_connection(("127.0.0.1", gate.port), timeout=60)
        sender = threading.Thread(target=_send_quietly, args=(attacker, flood), daemon=True)
        sender.start()
        wait_for(lambda: gate.metrics()["appban_gate_pipeline_paused"] >= 1, timeout=10)
        metrics = gate.metrics()
        assert metrics["appban_gate_pipeline_queue_max"] <= 16 + 4096 // len(one) + 1
        assert gate.rss_mb() - rss < RSS_GROWTH_MB
        with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as well:
            for _ in range(5):
                assert timed_sync(well) < PROMPT
        # The client goes away: what it queued is dropped, nothing more is verified.
        attacker.shutdown(socket.SHUT_RDWR)
        attacker.close()
        sender.join(10)
        wait_for(lambda: gate.metrics()["appban_gate_connections"] <= 1, timeout=10)  # this request's own
        before = gate.metrics()
        assert before["appban_gate_pipeline_dropped_total"] >= 1
        for client in range(3):  # one after another: nothing else is being verified
            answer = gate.get(
                "/auth/mail", {"Auth-User": BOB, "Auth-Pass": "wrong", "Client-IP": f"198.51.100.{client}"}
            )
            assert answer.headers["auth-status"] == "unknown_device"
        after = gate.metrics()
        verified = after["appban_gate_mail_verifications_total"] - before["appban_gate_mail_verifications_total"]
        assert verified == 3, f"{verified} verifications for 3 logins: the dropped queue is still being verified"
        assert gate.rss_mb() - rss < RSS_GROWTH_MB


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # closed under it: the test ended the flood
        sock.sendall(data)
