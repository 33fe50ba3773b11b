"""The check-in API's benchmarks, one command: ``python bench/serve.py`` (see --help).

- throughput: check-ins per second through ``POST /api/v1/checkins`` (150 apps
  each) from 16 concurrent clients, in batches of 100 and of 1, beside ``appban
  import`` of the same check-ins from a file, in the same run: each on a fresh copy
  of the same database (the TikTok policy applied, nothing imported);
- latency: a single check-in's round trip from one client at a time (below
  saturation), median and p99;
- time to allow: from a clean check-in's 202 until a running gate allows the device
  it had blocked, and back (a check-in with TikTok again, until the gate denies).

The clients speak HTTP/1.1 over raw asyncio streams with keep-alive: a client
library's own cost would otherwise be most of what a batch of one measures. Each
measure runs ``--rounds`` times, interleaved; the medians are reported. Figures
replace the "# Check-in API" section of docs/performance.md; other sections stay.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "tiktok-mail.yaml"
sys.path.insert(0, str(Path(__file__).parent))
import _fleet  # noqa: E402

from gate import free_port, replace_section  # noqa: E402

CLIENTS = 16
OBSERVED = "2020-07-10T15:00:00Z"


def appban(db: str, *args: str, stdin: bytes | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "appban", "--db", db, *args], check=True, capture_output=True, input=stdin
    )
    return out.stdout.decode()


def template_db(tmp: str) -> tuple[str, str]:
    """A database with the TikTok policy and a source ``agent``; and the source's token."""
    db = os.path.join(tmp, "template.db")
    appban(db, "init")
    appban(db, "policy", "apply", str(POLICY))
    appban(db, "source", "add", "agent")
    token = appban(db, "source", "token", "create", "agent").strip()
    return db, token


def fresh_copy(template: str, tmp: str, name: str) -> str:
    db = os.path.join(tmp, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copy(template, db)
    return db


def checkins(n: int, start: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps(_fleet.checkin(start + i, rng, observed_at=OBSERVED)).encode() for i in range(n)]


# -- the server -------------------------------------------------------------------------


def start_serve(db: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "appban", "--db", db, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"appban serve exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("appban serve did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Client:
    """One keep-alive HTTP/1.1 connection posting check-ins."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            "POST /api/v1/checkins HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


def batch_body(items: list[bytes]) -> bytes:
    return items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"


async def _post_all(port: int, token: str, bodies: list[bytes], clients: int) -> list[float]:
    """Post ``bodies`` from ``clients`` connections, each taking the next body when free;
    every answer must be a 202 with every item applied. Returns each request's seconds."""
    pending = iter(bodies)
    took: list[float] = []

    async def one() -> None:
        async with Client(port, token) as client:
            for body in pending:
                started = time.perf_counter()
                status, answer = await client.post(body)
                took.append(time.perf_counter() - started)
                results = json.loads(answer)["results"] if status == 202 else None
                if results is None or any(r["status"] != "applied" for r in results):
                    raise RuntimeError(f"{status}: {answer[:300]!r}")

    await asyncio.gather(*(one() for _ in range(clients)))
    return took


def api_rate(template: str, tmp: str, token: str, items: list[bytes], batch: int) -> float:
    db = fresh_copy(template, tmp, f"api-{batch}.db")
    port = free_port()
    server = start_serve(db, port)
    try:
        bodies = [batch_body(items[i : i + batch]) for i in range(0, len(items), batch)]
        started = time.perf_counter()
        asyncio.run(_post_all(port, token, bodies, CLIENTS))
        return len(items) / (time.perf_counter() - started)
    finally:
        stop(server)


def import_rate(template: str, tmp: str, items: list[bytes]) -> float:
    db = fresh_copy(template, tmp, "import.db")
    path = os.path.join(tmp, "checkins.jsonl")
    Path(path).write_bytes(b"\n".join(items) + b"\n")
    started = time.perf_counter()
    appban(db, "import", "appban", path)
    return len(items) / (time.perf_counter() - started)


def single_latency(template: str, tmp: str, token: str, items: list[bytes]) -> list[float]:
    db = fresh_copy(template, tmp, "latency.db")
    port = free_port()
    server = start_serve(db, port)
    try:
        return asyncio.run(_post_all(port, token, items, 1))
    finally:
        stop(server)


# -- from a clean check-in's 202 to the gate's allow --------------------------------------


def time_to_allow(template: str, tmp: str, token: str, trials: int) -> tuple[list[float], list[float]]:
    db = fresh_copy(template, tmp, "allow.db")
    rng = random.Random(7)
    # Device 1 carries TikTok (an Android phone: every TikTok id _fleet picks is Android's)
    # and is blocked: the policy's deadline is long past. Reported two hours ago: an
    # inventory older than the policy's max_inventory_age is unverified (allowed).
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    first = _fleet.checkin(1, rng, observed_at=recent, tiktok=True)
    path = os.path.join(tmp, "blocked.jsonl")
    Path(path).write_text(json.dumps(first) + "\n")
    appban(db, "import", "appban", path)
    api_port, gate_port = free_port(), free_port()
    server = start_serve(db, api_port)
    gate = subprocess.Popen(
        [sys.executable, "-m", "appban", "--db", db, "gate", "serve", "--port", str(gate_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    eas = first["device"]["eas_device_ids"][0]
    uri = f"/Microsoft-Server-ActiveSync?Cmd=Sync&User=user1@example.com&DeviceId={eas}"
    try:
        gate_conn = _wait_for_gate(gate, gate_port)

        def answer() -> int:
            gate_conn.request("GET", "/auth/nginx", headers={"X-Original-URI": uri})
            response = gate_conn.getresponse()
            response.read()
            return response.status

        if answer() != 403:
            raise RuntimeError("the device with TikTok is not blocked")
        allow: list[float] = []
        deny: list[float] = []

        async def run() -> None:
            async with Client(api_port, token) as client:
                base = time.time()
                for trial in range(trials):
                    for tiktok, want, into in ((False, 204, allow), (True, 403, deny)):
                        body = dict(first, apps=_fleet.checkin(1, rng, observed_at=OBSERVED, tiktok=tiktok)["apps"])
                        step = 2 * trial + (0 if not tiktok else 1)
                        body["observed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base - 3600 + step))
                        body["observed_at"] += "Z"
                        status, text = await client.post(json.dumps(body).encode())
                        accepted = time.perf_counter()
                        if status != 202 or json.loads(text)["results"][0]["status"] != "applied":
                            raise RuntimeError(f"{status}: {text[:300]!r}")
                        while answer() != want:
                            if time.perf_counter() - accepted > 10:
                                raise RuntimeError("the gate never changed its answer")
                            await asyncio.sleep(0.001)
                        into.append(time.perf_counter() - accepted)

        asyncio.run(run())
        gate_conn.close()
        return allow, deny
    finally:
        stop(server)
        stop(gate)


def _wait_for_gate(gate: subprocess.Popen[bytes], port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return conn
        except OSError:
            if gate.poll() is not None:
                raise RuntimeError(f"the gate exited with {gate.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError("the gate did not start")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkins", type=int, default=20_000, help="check-ins per batched and import run")
    parser.add_argument("--singles", type=int, default=4_000, help="check-ins posted one a request")
    parser.add_argument("--latency", type=int, default=1_000, help="single check-ins timed one at a time")
    parser.add_argument("--trials", type=int, default=200, help="time-to-allow trials")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each throughput measure, interleaved")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"import": [], "api100": [], "api1": []}
    with tempfile.TemporaryDirectory() as tmp:
        template, token = template_db(tmp)
        items = checkins(args.checkins, 0, seed=1)
        singles = items[: args.singles]
        for r in range(args.rounds):
            print(f"round {r + 1} of {args.rounds} ...", file=sys.stderr)
            runs["import"].append(import_rate(template, tmp, items))
            runs["api100"].append(api_rate(template, tmp, token, items, 100))
            runs["api1"].append(api_rate(template, tmp, token, singles, 1))
        print("single check-in latency ...", file=sys.stderr)
        latency = single_latency(template, tmp, token, checkins(args.latency, 10_000_000, seed=2))
        print("time to allow ...", file=sys.stderr)
        allow, deny = time_to_allow(template, tmp, token, args.trials)
    med = {k: statistics.median(v) for k, v in runs.items()}
    rows = [
        ("appban import of the same check-ins from a file, check-ins/s (baseline)", med["import"]),
        (f"API, batches of 100, {CLIENTS} clients, check-ins/s", med["api100"]),
        (f"API, batches of 1, {CLIENTS} clients, check-ins/s", med["api1"]),
        ("ratio API batches of 100 / import", med["api100"] / med["import"]),
        ("ratio API batches of 1 / import", med["api1"] / med["import"]),
        ("single check-in, one client, median ms", statistics.median(latency) * 1000),
        ("single check-in, one client, p99 ms", quantile(latency, 0.99) * 1000),
        ("clean check-in's 202 to the gate's allow, median ms", statistics.median(allow) * 1000),
        ("clean check-in's 202 to the gate's allow, p99 ms", quantile(allow, 0.99) * 1000),
        ("check-in with TikTok's 202 to the gate's deny, median ms", statistics.median(deny) * 1000),
        ("check-in with TikTok's 202 to the gate's deny, p99 ms", quantile(deny, 0.99) * 1000),
    ]
    lines = [
        f"# Check-in API (`python bench/serve.py`, {time.strftime('%Y-%m-%d')})",
        "",
        "Goals: at least 2,000 check-ins/s batched, and at least 0.5 x `appban import` of the "
        "same check-ins; a single check-in's p99 at most 20 ms below saturation; a clean "
        "check-in's 202 to the gate's allow, p99 at most 1 s.",
        "",
        f"{args.checkins:,} check-ins of 150 apps each (TikTok on about 10%), new devices, into a fresh "
        f"copy of one database each run; batches of 1 post the first {args.singles:,}. Throughput is "
        f"the median of {args.rounds} interleaved runs; the server is one `appban serve` process "
        "(one worker), the clients share the machine's two cores with it. Latency: "
        f"{args.latency:,} single check-ins, one at a time. Time to allow: {args.trials} trials "
        "against a running `appban gate serve` following the same database.",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {value:,.2f} |" for label, value in rows]
    lines.append("")
    lines.append(
        "Each run's throughput (check-ins/s): "
        + "; ".join(f"{k}: " + ", ".join(f"{v:,.0f}" for v in runs[k]) for k in runs)
        + "."
    )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    replace_section(Path(args.out), "# Check-in API (", text)


if __name__ == "__main__":
    main()
