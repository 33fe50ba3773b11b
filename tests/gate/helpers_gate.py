"""A real ``appban gate serve`` for tests: a child process on a free port, driven over TCP.

``GateProcess`` starts ``python -m appban --db DB gate serve --port 0 ...``, learns the
port from the log line it prints when it listens, and offers ``get`` (one request on a
fresh ``http.client`` connection) and ``raw`` (bytes in, bytes out on a plain socket).
``Answer`` is a parsed response. ``wait_for`` polls until a condition holds and says
how long it took, for the "within a second" promises.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from helpers_semantics import Appban

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "tiktok-mail.yaml"
TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
NOTES = {"id": "com.example.notes", "name": "Notes", "version": "1.0"}
SYNC = "/Microsoft-Server-ActiveSync?Cmd=Sync&User={user}&DeviceId={eas}&DeviceType=iPhone"

PEOPLE = [
    ("jane.doe@example.com", "Jane Doe", "Sales", "staff", "Europe/London"),
    ("bob.roe@example.com", "Bob Roe", "Engineering", "staff", "America/New_York"),
    ("ann.lee@example.com", "Ann Lee", "Sales", "staff", "Asia/Singapore"),
]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wall(offset: float = 0.0) -> str:
    """The real clock (the one a running gate uses), ``offset`` seconds away, as ISO-8601."""
    return iso(datetime.now(UTC) + timedelta(seconds=offset))


def device(
    source_id: str,
    owner: str,
    eas: list[str],
    apps: list[dict[str, str]],
    *,
    at: str,
    platform: str = "ios",
) -> dict[str, Any]:
    """One check-in in SPEC's format."""
    return {
        "source": "agent",
        "device": {"id": source_id, "platform": platform, "owner": owner, "eas_device_ids": eas},
        "observed_at": at,
        "apps": apps,
    }


def live_fleet(root: Path, *, deadline_in: float = -60.0, evaluate: bool = True) -> Appban:
    """A database on the real clock: Jane's phone has TikTok, Bob's is clean.

    The policy's deadline is ``deadline_in`` seconds from now (past by default, so
    Jane's phone is blocked at once; with ``evaluate=False`` the passed deadline is
    left for the gate to apply).
    """
    ab = Appban(root)
    ab.init(now=wall(-7200))
    ab.people(PEOPLE, now=wall(-7200))
    ab.ingest(
        device("JANE-IPHONE", "jane.doe@example.com", ["EASJANE1"], [TIKTOK, NOTES], at=wall(-3600)),
        device(
            "BOB-PIXEL",
            "bob.roe@example.com",
            ["EASBOB1"],
            [NOTES],
            at=wall(-3600),
            platform="android",
        ),
        now=wall(-3500),
    )
    ab.apply(now=wall(-3000), effective=wall(-3000), deadline=wall(deadline_in), reminders=[])
    if deadline_in < 0 and evaluate:
        ab("evaluate", now=wall())
    return ab


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def reason(self) -> str:
        return self.headers["x-appban-reason"]


def parse_responses(data: bytes) -> Iterator[Answer]:
    """Split a stream of HTTP/1.1 responses framed by Content-Length (none for a 204)."""
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # A 204 has no body and, per RFC 9110, no Content-Length; every other answer has one.
        if status == "204":
            assert "content-length" not in headers, headers
            length = 0
        else:
            length = int(headers["content-length"])
        yield Answer(int(status), headers, rest[:length])
        data = rest[length:]


class GateProcess:
    """``appban gate serve`` in a child process, on a port the OS chose."""

    def __init__(self, db: str, *args: str, env: Mapping[str, str] | None = None, port: int | None = 0) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}
        environment.update(env or {})
        listen = [] if port is None else ["--port", str(port)]  # None: the port from the settings
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appban", "--db", db, "gate", "serve", *listen, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        self.log: list[str] = []
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._listening.wait(30) or not self.port:
            self.stop()
            raise AssertionError("gate did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.log.append(line)
            found = re.search(r"listening on \S+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self._listening.set()
        self._listening.set()  # exited before listening

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> GateProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- talking to it ------------------------------------------------------------------

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def get(self, path: str, headers: Mapping[str, str] | None = None, method: str = "GET") -> Answer:
        conn = self.connection()
        try:
            return request(conn, path, headers, method)
        finally:
            conn.close()

    def nginx(self, uri: str, **headers: str) -> Answer:
        return self.get("/auth/nginx", {"X-Original-URI": uri, **headers})

    def sync(self, eas: str, user: str) -> Answer:
        """nginx ``auth_request`` for an ActiveSync Sync of this DeviceId and user."""
        return self.nginx(SYNC.format(user=user, eas=eas))

    def raw(self, data: bytes, *, timeout: float = 5.0, until_close: bool = False, responses: int = 1) -> bytes:
        """Send bytes; read until ``responses`` answers arrived (or the server closed)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            received = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if until_close:
                        raise
                    break
                if not chunk:
                    break
                received += chunk
                if not until_close and _complete(received) >= responses:
                    break
            return received

    def metrics(self) -> dict[str, float]:
        return parse_prometheus(self.get("/metrics").body.decode())

    def health(self) -> dict[str, Any]:
        import json

        return dict(json.loads(self.get("/healthz").body))

    def rss_mb(self) -> float:
        """The gate process's resident memory (VmRSS), in MB."""
        return rss_mb(self.proc.pid)


def request(
    conn: http.client.HTTPConnection,
    path: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Answer:
    conn.request(method, path, body=body, headers=dict(headers or {}))
    response = conn.getresponse()
    body = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def _complete(data: bytes) -> int:
    """How many whole responses ``data`` holds."""
    count = 0
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return count
        found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(found.group(1)) if found else 0
        if len(rest) < length:
            return count
        count += 1
        data = rest[length:]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format 0.0.4, strictly: every line a comment or a sample."""
    samples: dict[str, float] = {}
    typed: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        found = _SAMPLE.match(line)
        assert found, f"not a Prometheus sample: {line!r}"
        name, labels, value = found.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"sample without # TYPE: {line!r}"
        key = name + (labels or "")
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    return samples


def wait_for(check: Callable[[], T], *, timeout: float, every: float = 0.02) -> tuple[T, float]:
    """Call ``check`` until it returns something true; (that value, seconds it took)."""
    started = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - started
        if value:
            return value, elapsed
        if elapsed > timeout:
            raise AssertionError(f"not within {timeout}s (last: {value!r})")
        time.sleep(every)


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS of /proc/PID/status), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def legacy_credential(db: str, source_id: str, password: str, *, time_cost: int = 20) -> None:
    """Give a device an old-style (argon2) mail password, as appban once issued them.

    Verifying one takes tens of milliseconds (``time_cost``), off the gate's event loop:
    what the pipelining tests need. Written through the Store, as ``credential issue``
    writes, so the gate follows it like any change.
    """
    from argon2 import PasswordHasher

    from appban.clock import now_micros
    from appban.store import open_store

    digest = PasswordHasher(time_cost=time_cost, memory_cost=8192, parallelism=1).hash(password)
    store = open_store(db, create=False)
    try:
        found = store.get_device_by_key("agent", source_id)
        assert found is not None and found.id is not None, source_id
        with store.transaction():
            seq = store.next_gate_seq()
            store.add_credential(found.id, found.owner, digest, now_micros(), seq)
            store.set_decision(found.id, found.decision, found.reason, seq)
    finally:
        store.close()
