"""Slow clients, bodies that never end, and the server answering others meanwhile."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers_serve import CHECKINS, Database, ThreadServer, bearer, checkin


def head(token: str, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {CHECKINS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def quick_timeout(monkeypatch: pytest.MonkeyPatch, database: Database) -> Iterator[ThreadServer]:
    monkeypatch.setenv("APPBAN_SERVE_BODY_TIMEOUT", "1")
    monkeypatch.setenv("APPBAN_SERVE_MAX_BODY_BYTES", "1000000")
    server = ThreadServer(database.path)
    yield server
    server.stop()


def test_a_slow_client_gets_408_and_others_are_served(quick_timeout: ThreadServer, database: Database) -> None:
    answered: list[tuple[int, float]] = []
    with socket.create_connection(("127.0.0.1", quick_timeout.port), timeout=10) as slow:
        slow.sendall(head(database.token, 1000) + b"[")
        started = time.monotonic()

        def trickle() -> None:  # a byte every 0.1 s: 1,000 bytes would take 100 s
            try:
                for _ in range(40):
                    time.sleep(0.1)
                    slow.sendall(b" ")
            except OSError:
                pass  # the server closed the connection

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        # Meanwhile another client posts and is answered at once.
        with httpx.Client(base_url=quick_timeout.url, headers=bearer(database.token)) as c:
            t0 = time.monotonic()
            r = c.post(CHECKINS, json=checkin("FAST-1"))
            answered.append((r.status_code, time.monotonic() - t0))
        answer = read_answer(slow)
        waited = time.monotonic() - started
        sender.join(10)
    assert status_of(answer) == 408
    assert b'"field":"APPBAN_SERVE_BODY_TIMEOUT"' in answer
    assert 0.9 < waited < 5
    assert answered[0][0] == 202 and answered[0][1] < 1.0


def test_a_body_that_never_ends_is_refused(quick_timeout: ThreadServer, database: Database) -> None:
    """Chunks sent as fast as the socket takes them: 413 at the size limit."""
    with socket.create_connection(("127.0.0.1", quick_timeout.port), timeout=10) as sock:
        sock.sendall(head(database.token) + b"1\r\n[\r\n")
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        try:
            for _ in range(1000):  # 16 MB, far past the 1 MB limit
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed
        answer = read_answer(sock)
    assert status_of(answer) == 413


def test_a_body_that_stops_midway_is_408(quick_timeout: ThreadServer, database: Database) -> None:
    """A declared length never reached, and the client silent: answered, not held forever."""
    with socket.create_connection(("127.0.0.1", quick_timeout.port), timeout=10) as sock:
        sock.sendall(head(database.token, 500) + json.dumps(checkin("HALF")).encode()[:50])
        started = time.monotonic()
        answer = read_answer(sock)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 5
    from helpers_cli import run

    assert run("--db", database.path, "device", "show", "HALF").code == 2


def test_many_concurrent_posts_are_all_answered(server: ThreadServer, database: Database) -> None:
    """Sixteen clients at once, each a few check-ins: every item applied, once."""
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=bearer(database.token), timeout=30) as c:
            for k in range(5):
                r = c.post(CHECKINS, json=[checkin(f"C{n}-{k}-{i}") for i in range(10)])
                if r.status_code != 202 or any(x["status"] != "applied" for x in r.json()["results"]):
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'appban_serve_checkins_total{status="applied"} 800' in metrics
