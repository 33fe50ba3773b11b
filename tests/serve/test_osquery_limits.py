"""What osquery sends that is larger, slower or stranger than a check-in, on a real
socket. osquery reads only the answer's body, and treats one with an ``error`` key (or no
answer) as a failed send, which it repeats with the same batch, forever: an agent cut off
for two days would never log again. So a log body appban will not read is answered 200,
without ``error``, counted and logged, and the agent moves on."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_osquery import SAFARI, TIKTOK, Agent, snapshot, statuses
from helpers_serve import Database, ThreadServer, new_database

from helpers_cli import run

POLICY = """\
id: tiktok-mac
title: TikTok is not permitted on Macs
reason: Security risks
apps: ["macos:com.zhiliaoapp.musically"]
scope:
  platforms: [macos]
  mail_access: any
  ownership: any
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: enforce
on_unverified: allow
max_inventory_age: 7d
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Database:
    database = new_database(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert run("--db", database.path, "policy", "apply", str(tmp_path / "policy.yaml")).code == 0
    return database


@pytest.fixture
def server(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadServer]:
    monkeypatch.setenv("APPBAN_OSQUERY_MAX_LOG_BYTES", "300000")
    monkeypatch.setenv("APPBAN_OSQUERY_LOG_TIMEOUT", "1")
    monkeypatch.setenv("APPBAN_SERVE_MAX_ITEMS", "50")
    with ThreadServer(fleet.path) as running:
        yield running


@pytest.fixture
def agent(fleet: Database, server: ThreadServer) -> Iterator[Agent]:
    secret = str(fleet.appban("source", "osquery-secret", "create")["token"])
    client = Agent(server.url)
    assert client.enroll(secret).status_code == 200
    yield client
    client.close()


def backlog(count: int, now: int) -> list[dict[str, Any]]:
    """A day of snapshots of a Mac with 2,500 apps: what an agent cut off sends."""
    apps = [{**SAFARI, "bundle_identifier": f"com.example.app{i}", "display_name": f"App {i}"} for i in range(2500)]
    return [snapshot("appban_apps", now - 900 * (count - i), [*apps, TIKTOK]) for i in range(count)]


def dropped(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert "error" not in doc and doc["node_invalid"] is False and doc["results"] == []
    return str(doc["dropped"])


def dropped_metric(server: ThreadServer) -> int:
    text = httpx.get(server.url + "/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith("appban_osquery_log_dropped_total ")]
    return int(line.split()[1])


def test_a_log_body_over_the_limit_is_dropped_and_the_agent_moves_on(
    fleet: Database, server: ThreadServer, agent: Agent
) -> None:
    now = int(time.time())
    assert "300,000 bytes" in dropped(agent.log(*backlog(3, now)))
    # The limit counts the decompressed bytes: a gzip body is dropped the same way.
    assert "300,000 bytes" in dropped(agent.log(*backlog(3, now), compress=True))
    assert dropped_metric(server) == 2
    # The agent sends what follows, which is read; and it is asked for its apps, in case
    # the dropped body held a differential run.
    assert statuses(agent.log(snapshot("appban_apps", now - 60, [SAFARI, TIKTOK]))) == [(0, "applied")]
    queries = agent.post("/distributed/read", {}).json()["queries"]
    assert any(name.endswith("_apps") for name in queries)
    state = fleet.appban("device", "show", "jane-mbp.local/appban_apps")["policies"]["tiktok-mac"]["state"]
    assert state == "blocked"


def test_more_entries_than_the_item_limit_are_dropped(server: ThreadServer, agent: Agent) -> None:
    now = int(time.time())
    entries = [snapshot("appban_apps", now - 60 - i, [SAFARI]) for i in range(51)]
    assert "51 log entries" in dropped(agent.log(*entries))
    # 50 are read: the newest snapshot applied, the others superseded by it.
    assert statuses(agent.log(*entries[:50])) == [(0, "applied")] + [(i, "ignored") for i in range(1, 50)]


def test_a_host_s_own_queries_are_capped(fleet: Database, server: ThreadServer, agent: Agent) -> None:
    """Each query a host logs is a record (a device, until it links): 5,000 query names
    in one request made 5,000 devices. appban's own queries always count; of the
    host's own, APPBAN_OSQUERY_MAX_QUERIES (4)."""
    now = int(time.time())
    entries = [snapshot(f"q{i}_apps", now - 60, [SAFARI]) for i in range(6)]
    entries.append(snapshot("appban_apps", now - 60, [SAFARI]))
    answer = agent.log(*entries)
    assert statuses(answer) == [(i, "applied") for i in range(4)] + [(4, "rejected"), (5, "rejected"), (6, "applied")]
    assert answer.json()["results"][4]["error"]["field"] == "data[4].name"
    assert "APPBAN_OSQUERY_MAX_QUERIES" in answer.json()["results"][4]["error"]["message"]
    # Known queries go on; a new one is still refused in a later request.
    later = agent.log(snapshot("q0_apps", now - 30, [SAFARI]), snapshot("q9_apps", now - 30, [SAFARI]))
    assert statuses(later) == [(0, "applied"), (1, "rejected")]
    # One host: its five records linked into one device by its host identifier.
    (device,) = fleet.appban("device", "list")["devices"]
    assert device["records"] == 5


def test_a_log_body_slower_than_its_timeout_is_dropped(server: ThreadServer, agent: Agent) -> None:
    body = json.dumps({"node_key": agent.node_key, "log_type": "result", "data": []}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        head = (
            "POST /api/v1/osquery/log HTTP/1.1\r\nHost: appban\r\nContent-Type: application/json\r\n"
            f"Authorization: NodeKey {agent.node_key}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        conn.sendall(head.encode() + body[:10])  # and then nothing, for longer than the timeout
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    doc = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert "error" not in doc and "within 1 s" in doc["dropped"]


def test_a_body_that_is_not_utf8_or_holds_a_lone_surrogate_is_read(fleet: Database, agent: Agent) -> None:
    """A Windows program's name can hold an unpaired surrogate, and a name's bytes may not
    be UTF-8: refused, the whole batch would come back forever. Read with U+FFFD."""
    now = int(time.time())
    log = {"node_key": agent.node_key, "log_type": "result", "data": [snapshot("appban_apps", now - 60, [SAFARI])]}
    raw = json.dumps(log).encode().replace(b'"Safari"', b'"Saf\\ud800ari \xff"', 1)
    headers = {"Content-Type": "application/json", "Authorization": f"NodeKey {agent.node_key}"}
    answer = agent.http.post("/api/v1/osquery/log", content=raw, headers=headers)
    assert statuses(answer) == [(0, "applied")]
    gzipped = agent.http.post(
        "/api/v1/osquery/log", content=gzip.compress(raw), headers={**headers, "Content-Encoding": "gzip"}
    )
    assert statuses(gzipped) == [(0, "ignored")]  # the same snapshot again
    # Bytes that are not UTF-8 alone (no surrogate), in one entry of two; and an entry
    # with a number no integer holds: that entry is refused alone, never a 500.
    log["data"] = [snapshot("appban_apps", now - 30, [SAFARI, TIKTOK]), snapshot("q_apps", now - 30, [SAFARI])]
    raw = json.dumps(log).encode().replace(b'"TikTok"', b'"Tik\xffTok"', 1)
    raw = raw.replace(b'"unixTime": %d' % (now - 30), b'"unixTime": 1' + b"0" * 5000, 1)
    answer = agent.http.post("/api/v1/osquery/log", content=raw, headers=headers)
    assert statuses(answer) == [(0, "rejected"), (1, "applied")]
    assert answer.json()["results"][0]["error"]["field"] == "data[0]"
    raw = json.dumps(log).encode().replace(b'"TikTok"', b'"Tik\xffTok"', 1)
    assert statuses(agent.http.post("/api/v1/osquery/log", content=raw, headers=headers)) == [
        (0, "applied"),
        (1, "ignored"),
    ]


def test_a_revoked_key_in_the_header_is_node_invalid_before_the_body_is_read(fleet: Database, agent: Agent) -> None:
    fleet.appban("source", "osquery-node", "revoke", "jane-mbp.local")
    answer = agent.log(*backlog(3, int(time.time())))
    assert answer.status_code == 401 and answer.json() == {"node_invalid": True}


def test_enrollments_and_logs_are_rate_limited_per_source(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_OSQUERY_ENROLL_RATE", "1")
    monkeypatch.setenv("APPBAN_OSQUERY_ENROLL_BURST", "3")
    monkeypatch.setenv("APPBAN_OSQUERY_LOG_RATE", "1")
    monkeypatch.setenv("APPBAN_OSQUERY_LOG_BURST", "5")
    secret = str(fleet.appban("source", "osquery-secret", "create")["token"])
    run("--db", fleet.path, "source", "add", "lab")
    other = str(fleet.appban("source", "osquery-secret", "create", "--source", "lab")["token"])
    with ThreadServer(fleet.path) as server:
        agents = [Agent(server.url, f"host-{i}") for i in range(5)]
        try:
            answers = [a.enroll(secret) for a in agents[:4]]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            refused = answers[3].json()
            assert refused["error"]["field"] == "APPBAN_OSQUERY_ENROLL_RATE"  # osquery enrolls again later
            assert int(answers[3].headers["Retry-After"]) >= 1
            assert agents[4].enroll(other).status_code == 200  # another source's bucket
            now = int(time.time())
            entries = [snapshot("appban_apps", now - 60 - i, [SAFARI]) for i in range(6)]
            assert agents[0].log(*entries).status_code == 200  # a batch past the burst passes once
            throttled = agents[1].log(snapshot("appban_apps", now - 60, [SAFARI]))
            assert throttled.status_code == 429  # the source is in debt: osquery keeps its batch
            assert throttled.json()["error"]["field"] == "APPBAN_OSQUERY_LOG_RATE"
            assert agents[4].log(snapshot("appban_apps", now - 60, [SAFARI])).status_code == 200
        finally:
            for a in agents:
                a.close()


def test_revoked_node_rows_are_deleted_after_their_age(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_OSQUERY_REVOKED_MAX_AGE", "1s")
    secret = str(fleet.appban("source", "osquery-secret", "create")["token"])
    with ThreadServer(fleet.path) as server:
        agent = Agent(server.url, "host-a")
        try:
            for _ in range(3):
                assert agent.enroll(secret).status_code == 200  # each enrollment revokes the key before
            assert len(fleet.appban("source", "osquery-node", "list", "--revoked")["nodes"]) == 3
            time.sleep(1.2)
            agent.host = "host-b"
            assert agent.enroll(secret).status_code == 200
        finally:
            agent.close()
    nodes = fleet.appban("source", "osquery-node", "list", "--revoked")["nodes"]
    assert sorted((n["host"], n["revoked_at"] is None) for n in nodes) == [("host-a", True), ("host-b", True)]
