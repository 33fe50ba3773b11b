"""``appban serve`` as a process: start-up errors, access log, SIGTERM, TLS, workers."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers_serve import CHECKINS, Database, ServeProcess, bearer, checkin

from helpers_cli import assert_bad_input, run_process


def test_a_missing_database_fails_at_start(tmp_path: Path) -> None:
    result = run_process("--db", str(tmp_path / "none.db"), "serve", "--port", "0", timeout=30)
    assert_bad_input(result, "--db")


def test_a_file_that_is_not_a_database_fails_at_start(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    assert_bad_input(run_process("--db", str(other), "serve", "--port", "0", timeout=30), "--db")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--tls-cert", "cert.pem"], "--tls-key"),
        (["--tls-key", "key.pem"], "--tls-cert"),
        (["--tls-cert", "nowhere.pem", "--tls-key", "nowhere.key"], "--tls-cert"),
        (["--now", "2020-07-10T15:00:00Z"], "--now"),
    ],
)
def test_bad_flags_fail_at_start(database: Database, args: list[str], field: str) -> None:
    assert_bad_input(run_process("--db", database.path, "serve", "--port", "0", *args, timeout=30), field)


def test_a_bad_setting_fails_at_start_naming_it(database: Database) -> None:
    result = run_process("--db", database.path, "serve", env={"APPBAN_SERVE_MAX_ITEMS": "lots"}, timeout=30)
    assert_bad_input(result, "APPBAN_SERVE_MAX_ITEMS")


def test_access_log_health_metrics_and_sigterm(database: Database) -> None:
    with ServeProcess(database.path, "--port", "0") as proc:
        with httpx.Client(base_url=proc.url) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            body = json.dumps(checkin("LOG-1")).encode()
            r = c.post(
                CHECKINS + "?secret=hunter2",
                content=body,
                headers={**bearer(database.token), "Content-Type": "application/json"},
            )
            assert r.status_code == 202
            assert c.post(CHECKINS, content=body, headers={"Content-Type": "application/json"}).status_code == 401
            metrics = c.get("/metrics").text
        assert 'appban_serve_requests_total{route="/api/v1/checkins",status="202"} 1' in metrics
        assert 'appban_serve_requests_total{route="/api/v1/checkins",status="401"} 1' in metrics
        assert 'appban_serve_checkins_total{status="applied"} 1' in metrics
        assert "appban_serve_writer_queue 0" in metrics
        assert 'appban_serve_request_seconds_bucket{le="+Inf"}' in metrics
        assert proc.stop() == 0
    entries = proc.access_log()
    posted = [e for e in entries if e["method"] == "POST"]
    assert [e["status"] for e in posted] == [202, 401]
    first = posted[0]
    assert set(first) == {"time", "method", "path", "status", "duration_ms", "source", "bytes_in"}
    assert first["path"] == CHECKINS  # never the query
    assert first["source"] == "agent" and posted[1]["source"] is None
    assert first["bytes_in"] == len(body)
    assert not any("hunter2" in line for line in proc.log)
    assert not any("Traceback" in line for line in proc.log)


def test_sigterm_lets_a_request_in_flight_finish(database: Database) -> None:
    proc = ServeProcess(database.path, "--port", "0")
    try:
        body = json.dumps(checkin("INFLIGHT-1")).encode()
        head = (
            f"POST {CHECKINS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {database.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            sock.sendall(head + body[:20])
            time.sleep(0.3)  # the request is in flight: its body half sent
            proc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(body[20:])
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
        started = time.monotonic()
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.stop()
    # New connections are no longer taken.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proc.port), timeout=2).close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_tls_with_a_self_signed_certificate(database: Database, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    with ServeProcess(database.path, "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)) as proc:
        assert proc.scheme == "https"
        with httpx.Client(base_url=proc.url, verify=ssl.create_default_context(cafile=str(cert))) as c:
            r = c.post(CHECKINS, json=checkin("TLS-1"), headers=bearer(database.token))
            assert r.status_code == 202 and r.json()["results"][0]["status"] == "applied"
        with pytest.raises(httpx.TransportError):  # plain HTTP is not answered on the TLS port
            httpx.get(f"http://127.0.0.1:{proc.port}/healthz", timeout=5)
        assert proc.stop() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workers_share_the_port_and_the_database(database: Database) -> None:
    port = free_port()
    with ServeProcess(database.path, "--port", str(port), "--workers", "2", wait=False) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "".join(proc.log)
            time.sleep(0.1)
        done: list[int] = []

        def post(n: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(database.token)) as c:
                for k in range(5):
                    r = c.post(CHECKINS, json=[checkin(f"W{n}-{k}")])
                    done.append(r.status_code)

        threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert done == [202] * 20
        assert proc.stop() == 0
    listed = database.appban("device", "list")["devices"]
    assert sorted(d["source_id"] for d in listed) == sorted(f"W{n}-{k}" for n in range(4) for k in range(5))
