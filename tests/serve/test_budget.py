"""The work a request may cost: bytes decoded at once across requests, apps in one
request, and the exact reader's explanations of rejected items."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_serve import CHECKINS, Database, ServeProcess, ThreadServer, bearer, checkin

from appban.inventory import _json_text
from appban.serve import checkins
from appban.serve.budget import ByteBudget

JSON = {"Content-Type": "application/json"}

# -- the budget itself ----------------------------------------------------------------------


def test_the_budget_is_shared_in_order_and_given_back() -> None:
    async def scenario() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []

        async def use(name: str, size: int, hold: float) -> None:
            async with budget.hold(size):
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(use("a", 60, 0.05))
        await asyncio.sleep(0)
        big = asyncio.create_task(use("big", 500, 0))  # more than all of it: waits for all of it
        await asyncio.sleep(0)
        small = asyncio.create_task(use("b", 10, 0))  # fits now, but comes after big
        await asyncio.gather(first, big, small)
        assert budget.free == 100
        return order

    assert asyncio.run(scenario()) == ["a", "big", "b"]


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        async with budget.hold(100):
            waiter = asyncio.create_task(budget.hold(50).__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with budget.hold(100):
            pass
        return budget.free

    assert asyncio.run(scenario()) == 100


# -- on a server ------------------------------------------------------------------------------


def tiny_apps_body(items: int, apps: int, prefix: str) -> bytes:
    """Check-ins of many tiny apps: the most objects per byte a check-in can hold."""
    app_list = ",".join(f'{{"id":"{j}"}}' for j in range(apps))
    return (
        "["
        + ",".join(
            f'{{"device":{{"id":"{prefix}{i}","platform":"android","owner":"a@example.com"}},'
            f'"observed_at":"2020-07-10T15:00:00Z","apps":[{app_list}]}}'
            for i in range(items)
        )
        + "]"
    ).encode()


def test_requests_decode_within_the_budget_together(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    """Six concurrent bodies of about 375 KB under an 800 KB budget: never more than two
    are decoded (or waiting to be applied) at once, and all are applied."""
    monkeypatch.setenv("APPBAN_SERVE_DECODE_BYTES", "800000")
    bodies = [tiny_apps_body(3, 9000, f"BUDGET-{n}-") for n in range(6)]
    assert all(350_000 < len(b) < 400_000 for b in bodies)
    busy = 0
    most = 0
    lock = threading.Lock()
    read_items = checkins.read_items

    def slow_read_items(body: bytes, *args: Any) -> Any:
        nonlocal busy, most
        with lock:
            busy += len(body)
            most = max(most, busy)
        try:
            time.sleep(0.3)  # long enough for the other requests to arrive meanwhile
            return read_items(body, *args)
        finally:
            with lock:
                busy -= len(body)

    monkeypatch.setattr(checkins, "read_items", slow_read_items)
    answers: list[int] = []
    with ThreadServer(database.path) as server:

        def post(body: bytes) -> None:
            with httpx.Client(base_url=server.url, headers=bearer(database.token), timeout=60) as c:
                answers.append(c.post(CHECKINS, content=body, headers=JSON).status_code)

        threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert answers == [202] * 6
    assert 0 < most <= 800_000, most


def test_more_apps_in_one_request_than_allowed_is_413(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    monkeypatch.setenv("APPBAN_SERVE_MAX_REQUEST_APPS", "20000")
    with ThreadServer(database.path) as server, httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
        r = c.post(CHECKINS, content=tiny_apps_body(3, 9000, "APPS-"), headers=JSON)
        assert r.status_code == 413
        assert r.json()["error"]["field"] == "APPBAN_SERVE_MAX_REQUEST_APPS"
        r = c.post(CHECKINS, content=tiny_apps_body(2, 9000, "APPS-"), headers=JSON)
        assert r.status_code == 202
    assert r.json()["results"][0]["status"] == "applied"


def failing_item(device_id: str, apps: int) -> bytes:
    """A check-in the fast decoder refuses only at its very end (an unknown field)."""
    item = json.loads(tiny_apps_body(1, apps, device_id))[0]
    return json.dumps(item, separators=(",", ":")).encode()[:-1] + b',"x":1}'


def test_the_exact_reader_explains_a_bounded_share_of_a_request(
    monkeypatch: pytest.MonkeyPatch, server: ThreadServer, database: Database
) -> None:
    """Ten failing items of about 1 MB: each took the exact reader about 0.7 s (23.6 s of
    CPU for ten of 3.3 MB). Now a request gets exact explanations for its first 256 KiB of
    rejected items; the rest are rejected in a few words."""
    read: list[int] = []
    parse = _json_text.parse

    def counting_parse(data: bytes) -> Any:
        read.append(len(data))
        return parse(data)

    monkeypatch.setattr(_json_text, "parse", counting_parse)
    small = failing_item("SMALL-", 10)
    big = [failing_item(f"BIG-{n}-", 90_000) for n in range(10)]
    assert all(len(b) > 900_000 for b in big)
    body = b"[" + b",".join([small, *big, json.dumps(checkin("FINE-1")).encode()]) + b"]"
    with httpx.Client(base_url=server.url, headers=bearer(database.token), timeout=120) as c:
        r = c.post(CHECKINS, content=body, headers=JSON)
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["rejected"] * 11 + ["applied"]
    assert results[0]["error"]["field"] == "x"  # the small one: explained exactly
    assert all(x["error"]["message"] for x in results[1:11])
    assert sum(read) <= 256 * 1024, read


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's memory")
def test_concurrent_bodies_of_tiny_apps_stay_within_memory(database: Database) -> None:
    """Eight gzipped bodies of 33 MB (263 check-ins of 9,000 tiny apps each: about 400 MB
    decoded apiece, 3.9 GB for sixteen) posted at once: refused for their app count before
    they are decoded whole, and the server's memory stays far from the sum."""
    body = gzip.compress(tiny_apps_body(263, 9000, "MEM-"))
    answers: list[int] = []
    with ServeProcess(database.path, "--port", "0") as proc:
        before = peak_rss_mb(proc.proc.pid)

        def post() -> None:
            with httpx.Client(base_url=proc.url, headers=bearer(database.token), timeout=120) as c:
                headers = {**JSON, "Content-Encoding": "gzip"}
                answers.append(c.post(CHECKINS, content=body, headers=headers).status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        grew = peak_rss_mb(proc.proc.pid) - before
    assert answers == [413] * 8
    assert grew < 800, grew


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's memory")
def test_concurrent_large_bodies_are_decoded_in_turn(database: Database) -> None:
    """With the app count allowed, six such bodies posted at once are decoded and applied
    one after another (APPBAN_SERVE_DECODE_BYTES of 40 MB holds one): about 0.7 GB in all
    here, where decoding them side by side took about 1.6 GB."""
    body = gzip.compress(tiny_apps_body(263, 9000, "TURN-"))
    env = {"APPBAN_SERVE_MAX_REQUEST_APPS": "3000000", "APPBAN_SERVE_DECODE_BYTES": str(40 << 20)}
    answers: list[int] = []
    with ServeProcess(database.path, "--port", "0", env=env) as proc:
        before = peak_rss_mb(proc.proc.pid)

        def post() -> None:
            with httpx.Client(base_url=proc.url, headers=bearer(database.token), timeout=300) as c:
                headers = {**JSON, "Content-Encoding": "gzip"}
                answers.append(c.post(CHECKINS, content=body, headers=headers).status_code)

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        grew = peak_rss_mb(proc.proc.pid) - before
    assert answers == [202] * 6
    assert grew < 1200, grew
