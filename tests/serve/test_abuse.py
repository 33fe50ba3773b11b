"""Slow clients, bodies that never end, and the server answering others meanwhile."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers_serve import CHECKINS, Database, ServeProcess, ThreadServer, bearer, checkin

from helpers_cli import count as count_rows


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


def test_a_batch_of_100000_is_applied_when_allowed(
    monkeypatch: pytest.MonkeyPatch, database: Database, tmp_path: Path
) -> None:
    """With the item limit raised, 100,000 check-ins in one gzipped JSON Lines body: every
    one answered in order, and a small request from another client answered meanwhile."""
    monkeypatch.setenv("APPBAN_SERVE_MAX_ITEMS", "100000")
    count = 100_000
    lines = [json.dumps(checkin(f"H-{i}", apps=[])).encode() for i in range(count)]
    lines[5] = b'{"device": 1}'  # one bad item among them
    body = gzip.compress(b"\n".join(lines))
    small: list[tuple[int, float]] = []
    other_token = database.token_for("mdm")  # the agent source's own bucket is empty after 100,000
    with ThreadServer(database.path) as server:
        headers = {**bearer(database.token), "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}

        def other() -> None:
            time.sleep(0.2)  # while the big one is being read, decoded or applied
            t0 = time.monotonic()
            with httpx.Client(base_url=server.url, headers=bearer(other_token), timeout=60) as c:
                r = c.post(CHECKINS, json=checkin("SMALL-1"))
            small.append((r.status_code, time.monotonic() - t0))

        side = threading.Thread(target=other)
        side.start()
        with httpx.Client(base_url=server.url, timeout=120) as c:
            r = c.post(CHECKINS, content=body, headers=headers)
        side.join(60)
    assert r.status_code == 202, r.text[:300]
    results = r.json()["results"]
    assert len(results) == count
    assert [x["index"] for x in results] == list(range(count))
    assert sum(x["status"] == "applied" for x in results) == count - 1
    assert results[5]["status"] == "rejected"
    status, took = small[0]
    assert status == 202
    assert took < 10  # behind at most the transactions already started (about 0.2 s here)
    assert count_devices(database.path) == count  # 99,999 and the small one


def count_devices(db: str) -> int:
    return count_rows(db, "devices")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's memory")
def test_millions_of_tiny_items_are_refused_without_a_gigabyte(database: Database) -> None:
    """32 MB of "[0,0,0,..." (16 million items) or of one item holding 10 million empty
    lists: refused or rejected in seconds, in far less memory than decoding them all."""
    tiny = gzip.compress(b"[" + b"0," * 15_999_999 + b"0]")
    nested = gzip.compress(b'[{"apps":[' + b"[]," * 9_999_999 + b"[]]}]")
    with ServeProcess(database.path, "--port", "0") as proc, httpx.Client(base_url=proc.url, timeout=60) as c:
        before = peak_rss_mb(proc.proc.pid)
        headers = {**bearer(database.token), "Content-Type": "application/json", "Content-Encoding": "gzip"}
        t0 = time.monotonic()
        r = c.post(CHECKINS, content=tiny, headers=headers)
        assert r.status_code == 413 and r.json()["error"]["field"] == "APPBAN_SERVE_MAX_ITEMS"
        r = c.post(CHECKINS, content=nested, headers=headers)
        assert r.status_code == 202 and r.json()["results"][0]["status"] == "rejected"
        took = time.monotonic() - t0
        grew = peak_rss_mb(proc.proc.pid) - before
        assert c.post(CHECKINS, json=checkin("AFTER-TINY"), headers=bearer(database.token)).status_code == 202
    assert took < 15
    # The bodies themselves are 32 and 30 MB; decoding 16 million items would take about 1 GB.
    assert grew < 300, grew
