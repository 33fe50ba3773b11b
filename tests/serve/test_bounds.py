"""Bounds applied before any handler runs: small bodies where no credential is checked
yet, and connections closed after an answer given before the body was read."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers_serve import CHECKINS, Database, ServeProcess, ThreadServer, bearer, checkin

ENROLL = "/api/v1/osquery/enroll"
SMALL = ["/api/v1/osquery/enroll", "/api/v1/osquery/config", "/api/v1/osquery/distributed/read"]


def raw_head(path: str, *lines: str) -> bytes:
    return (
        "\r\n".join([f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *lines]) + "\r\n\r\n"
    ).encode()


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-cased names) and what followed them, of the answer on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0][9:12]), headers, rest


def closed_by_server(sock: socket.socket, within: float = 10.0) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds, whatever the client
    still sends (kept open, the server would read and discard it all)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            sock.sendall(b" " * 65536)
        except OSError:
            return True
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


# -- small bodies where no credential is checked yet --------------------------------------------


@pytest.mark.parametrize("path", SMALL)
def test_a_large_declared_body_is_refused_before_it_is_sent(server: ThreadServer, path: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw_head(path, "Content-Length: 1000000000"))
        status, headers, rest = read_head(sock)
        assert status == 413
        assert headers["connection"] == "close"
        assert b"APPBAN_SERVE_SMALL_BODY_BYTES" in rest
        assert closed_by_server(sock)


@pytest.mark.parametrize("path", SMALL)
def test_a_streamed_or_gzipped_body_is_counted_as_it_comes(server: ThreadServer, path: str) -> None:
    doc = json.dumps({"enroll_secret": "x", "host_identifier": "h", "pad": " " * 100_000}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for at in range(0, len(doc), 8192):
            yield doc[at : at + 8192]

    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["field"] == "APPBAN_SERVE_SMALL_BODY_BYTES"
        packed = gzip.compress(doc)
        assert len(packed) < 64 * 1024  # small on the wire, counted decompressed
        r = c.post(path, content=packed, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 413 and r.json()["error"]["field"] == "APPBAN_SERVE_SMALL_BODY_BYTES"


def test_a_small_body_reaches_the_handler_whole(server: ThreadServer) -> None:
    """Read ahead by the guard, the body is given to the handler as sent (gzip too)."""
    doc = json.dumps({"enroll_secret": "not a live secret", "host_identifier": "h", "pad": "x" * 60_000}).encode()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for headers in ({}, {"Content-Encoding": "gzip"}):
            body = gzip.compress(doc) if headers else doc
            r = c.post(ENROLL, content=body, headers={"Content-Type": "application/json", **headers})
            assert (r.status_code, r.json()) == (401, {"node_invalid": True})
        r = c.post(ENROLL, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400


def test_the_small_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    monkeypatch.setenv("APPBAN_SERVE_SMALL_BODY_BYTES", "100")
    body = json.dumps({"enroll_secret": "x", "host_identifier": "h" * 100}).encode()
    with ThreadServer(database.path) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(ENROLL, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's memory")
def test_an_enroll_body_of_millions_of_objects_is_never_decoded(database: Database) -> None:
    """31 MB of "{}," gzipped to 30 KB, sent without any credential: decoded, it took
    about 870 MB. Refused before the handler, it takes next to nothing."""
    body = gzip.compress(b'{"enroll_secret":"x","host_identifier":"h","x":[' + b"{}," * 10_500_000 + b"{}]}", 9)
    with ServeProcess(database.path, "--port", "0") as proc, httpx.Client(base_url=proc.url, timeout=60) as c:
        before = peak_rss_mb(proc.proc.pid)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        for _ in range(3):
            r = c.post(ENROLL, content=body, headers=headers)
            assert r.status_code == 413, r.text[:200]
        grew = peak_rss_mb(proc.proc.pid) - before
        assert c.get("/healthz").status_code == 200
    assert grew < 100, grew


# -- an answer before the body is read closes the connection ------------------------------------


def test_a_401_before_a_huge_body_closes_the_connection(server: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw_head(CHECKINS, "Content-Length: 1000000000"))
        status, headers, _ = read_head(sock)
        assert status == 401 and headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_401_before_a_body_that_never_ends_closes_the_connection(server: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw_head(CHECKINS, "Transfer-Encoding: chunked") + b"1\r\n \r\n")
        status, headers, _ = read_head(sock)
        assert status == 401 and headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_415_or_429_before_the_body_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch, database: Database
) -> None:
    monkeypatch.setenv("APPBAN_SERVE_CHECKIN_RATE", "1")
    monkeypatch.setenv("APPBAN_SERVE_CHECKIN_BURST", "1")
    auth = f"Authorization: Bearer {database.token}"
    with ThreadServer(database.path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw_head(CHECKINS, auth, "Content-Length: 1000000000").replace(b"json", b"xml", 1))
            status, headers, _ = read_head(sock)
            assert status == 415 and headers["connection"] == "close"
            assert closed_by_server(sock)
        with httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
            assert c.post(CHECKINS, json=[checkin("RATE-1"), checkin("RATE-2")]).status_code == 202
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw_head(CHECKINS, auth, "Content-Length: 1000000000"))
            status, headers, _ = read_head(sock)
            assert status == 429 and headers["connection"] == "close"
            assert closed_by_server(sock)


def test_an_answer_after_the_whole_body_keeps_the_connection(server: ThreadServer, database: Database) -> None:
    with httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
        for n in range(3):
            r = c.post(CHECKINS, json=checkin(f"KEEP-{n}"))
            assert r.status_code == 202 and "connection" not in r.headers
        r = c.post(CHECKINS, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "connection" not in r.headers


# -- connections: a deadline and a size for a request's head, a cap on their number -------------


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch, database: Database) -> Iterator[ThreadServer]:
    monkeypatch.setenv("APPBAN_SERVE_HEADER_TIMEOUT", "1")
    monkeypatch.setenv("APPBAN_SERVE_MAX_HEADER_BYTES", "8192")
    with ThreadServer(database.path) as server:
        yield server


def answer_or_close(sock: socket.socket, within: float = 10.0) -> bytes:
    """What the server sends until it closes ``sock``; fails if it keeps it open ``within`` s."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open {within} s") from None
    except ConnectionResetError:
        pass
    return data


def test_a_connection_that_sends_nothing_is_closed(strict: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        assert answer_or_close(sock) == b""


def test_headers_sent_a_line_at_a_time_are_cut_off_at_the_deadline(strict: ThreadServer) -> None:
    """Slowloris: a header line every 0.2 s keeps bytes coming, never the end of the head."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"POST /api/v1/checkins HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            for n in range(100):
                sock.sendall(b"X-%d: y\r\n" % n)
                time.sleep(0.2)
        except OSError:
            pass  # closed by the server
        answer = answer_or_close(sock)
        assert time.monotonic() - started < 10
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_new_request_on_a_kept_connection_has_its_deadline_too(strict: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_head(sock)
        assert status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert b"HTTP/1.1 408 " in answer_or_close(sock)


def test_an_idle_kept_connection_is_closed(server: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(sock)[0] == 200
        answer_or_close(sock, within=15)


@pytest.mark.parametrize("where", ["header", "url"])
def test_a_head_larger_than_the_limit_is_431_and_never_held(strict: ThreadServer, where: str) -> None:
    """A 16 MB header line, or request line, is not buffered: answered once the limit is
    passed, and the connection closed."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " if where == "header" else b"GET /healthz?q="
        sock.sendall(start)
        try:
            for _ in range(256):
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # closed by the server
        answer = answer_or_close(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_head_within_the_limit_is_served(strict: ThreadServer) -> None:
    with httpx.Client(base_url=strict.url) as c:
        assert c.get("/healthz", headers={"X-Long": "a" * 6000}).status_code == 200


def test_connections_beyond_the_limit_are_refused_at_once(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    """Idle connections cannot use up the process's file descriptors: past the limit a new
    one is answered 503 and closed; once the idle ones time out, the server answers again."""
    monkeypatch.setenv("APPBAN_SERVE_MAX_CONNECTIONS", "20")
    monkeypatch.setenv("APPBAN_SERVE_HEADER_TIMEOUT", "3")
    with ThreadServer(database.path) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        try:
            extra = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
            for sock in extra:
                assert answer_or_close(sock, within=2).startswith(b"HTTP/1.1 503 ")
                sock.close()
            for sock in idle:
                answer_or_close(sock)  # closed at the header deadline
        finally:
            for sock in idle:
                sock.close()
        with httpx.Client(base_url=server.url) as c:
            assert c.get("/healthz").status_code == 200


def test_the_command_runs_with_these_bounds(database: Database) -> None:
    env = {"APPBAN_SERVE_HEADER_TIMEOUT": "1", "APPBAN_SERVE_MAX_CONNECTIONS": "5"}
    with ServeProcess(database.path, "--port", "0", env=env) as proc:
        with socket.create_connection(("127.0.0.1", proc.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert answer_or_close(sock).startswith(b"HTTP/1.1 408 ")
        socks = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(6)]
        try:
            assert answer_or_close(socks[-1], within=5).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in socks:
                sock.close()
