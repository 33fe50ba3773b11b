"""``appban gate serve`` over a real socket: every endpoint of SPEC's table, as proxies call them.

One gate process serves a database built through the CLI from SPEC's example policy,
replayed after its deadline. ``--no-evaluate`` keeps the gate from applying the real
clock to a 2020 story (inventories from 2020 are stale today); test_follower.py covers
the gate's own evaluation on a database that lives on the real clock.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers_gate import (
    EXAMPLE_POLICY,
    NOTES,
    PEOPLE,
    SYNC,
    TIKTOK,
    Answer,
    GateProcess,
    device,
    parse_responses,
    request,
    wait_for,
)

from helpers_semantics import AFTER, APPLIED, BEFORE, Appban

BLOCKED = "blocked:tiktok-mail"
BINARY_ID = bytes(range(0xA0, 0xB0))  # a protocol 12.1 client's 16-byte DeviceId
IMAP, SMTP = ("127.0.0.1", 1143), ("127.0.0.1", 1025)


@dataclass
class Served:
    ab: Appban
    gate: GateProcess
    passwords: dict[str, str]  # device -> mail password


def basic(user: str, password: str = "secret") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def eas_query(device_id: bytes, user: bytes = b"", *, version: int = 141) -> str:
    """MS-ASHTTP's base64 query: Sync, en-US, the DeviceId, no PolicyKey, SmartPhone, User."""
    raw = bytes([version, 0]) + struct.pack("<H", 0x0409)
    raw += bytes([len(device_id)]) + device_id + b"\x00" + b"\x0aSmartPhone"
    if user:
        raw += bytes([8, len(user)]) + user
    return "/Microsoft-Server-ActiveSync?" + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ab = Appban(tmp_path_factory.mktemp("gate-server"))
    ab.init(now=BEFORE)
    ab.people(PEOPLE, now=BEFORE)
    ab.ingest(
        device("JANE-IPHONE", "jane.doe@example.com", ["EASJANE1", "EASJANE2"], [TIKTOK], at=BEFORE),
        device("BOB-PIXEL", "bob.roe@example.com", ["EASBOB1"], [NOTES], at=BEFORE, platform="android"),
        device("BOB-IPAD", "bob.roe@example.com", ["v140Device"], [NOTES], at=BEFORE),
        device("ANN-IPHONE", "ann.lee@example.com", [BINARY_ID.hex().upper()], [TIKTOK], at=BEFORE),
        now=BEFORE,
    )
    ab("policy", "apply", str(EXAMPLE_POLICY), now=APPLIED)
    ab("evaluate", now=AFTER)
    passwords = {
        ref: ab("device", "credential", "issue", ref, now=AFTER)["password"] for ref in ("BOB-PIXEL", "JANE-IPHONE")
    }
    assert ab.decide("EASJANE1", "jane.doe", AFTER) == ("deny", BLOCKED)
    with GateProcess(
        ab.db,
        "--no-evaluate",
        "--mail-upstream",
        "imap={}:{}".format(*IMAP),
        "--mail-upstream",
        "smtp={}:{}".format(*SMTP),
        env={"APPBAN_MAIL_DOMAINS": "example.com", "APPBAN_NETBIOS_DOMAINS": "EXAMPLE"},
    ) as gate:
        yield Served(ab, gate, passwords)


@pytest.fixture
def gate(served: Served) -> GateProcess:
    return served.gate


# -- nginx auth_request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eas", "user", "status", "reason"),
    [
        ("EASBOB1", "bob.roe", 204, "ok"),
        ("EASJANE1", "jane.doe", 403, BLOCKED),
        ("EASJANE2", "jane.doe", 403, BLOCKED),
        ("EASBOB1", "jane.doe", 403, "user_mismatch"),
        ("EASNOBODY", "jane.doe", 403, "unknown_device"),
        ("", "jane.doe", 403, "no_device_id"),
    ],
)
def test_nginx_reason_codes(gate: GateProcess, eas: str, user: str, status: int, reason: str) -> None:
    answer = gate.sync(eas, user)
    assert (answer.status, answer.reason) == (status, reason)
    assert answer.body == b""


def test_nginx_without_the_original_uri(gate: GateProcess) -> None:
    answer = gate.get("/auth/nginx")
    assert (answer.status, answer.reason) == (403, "no_device_id")


@pytest.mark.parametrize(
    "user",
    [
        "bob.roe",
        "BOB.ROE",
        "bob.roe@example.com",
        "Bob.Roe@Example.com",
        "EXAMPLE\\bob.roe",
        "EXAMPLE%5Cbob.roe",
        "bob.roe%40example.com",
    ],
)
def test_forms_of_the_user(gate: GateProcess, user: str) -> None:
    assert gate.sync("EASBOB1", user).status == 204


@pytest.mark.parametrize("user", ["bob", "bob.roe@other.example", "EXAMPLE\\jane.doe", "OTHER\\bob.roe"])
def test_others_are_not_the_owner(gate: GateProcess, user: str) -> None:
    assert gate.sync("EASBOB1", user).reason == "user_mismatch"


def test_no_user_named_is_unverified(gate: GateProcess) -> None:
    assert gate.sync("EASBOB1", "").reason == "user_unverified"


def test_basic_authorization_names_the_user_over_the_query(gate: GateProcess) -> None:
    # Exchange authenticates the Authorization header; the query's User is only a claim.
    uri = SYNC.format(user="bob.roe", eas="EASBOB1")
    assert gate.nginx(uri, Authorization=basic("EXAMPLE\\jane.doe")).reason == "user_mismatch"
    assert gate.nginx(uri, Authorization=basic("bob.roe@example.com")).reason == "ok"
    uri = SYNC.format(user="jane.doe", eas="EASBOB1")
    assert gate.nginx(uri, Authorization=basic("bob.roe")).reason == "ok"


def test_undecodable_authorization_never_falls_back_to_the_query(gate: GateProcess) -> None:
    # The server will authenticate whoever the credentials name, not the query's User.
    uri = SYNC.format(user="bob.roe", eas="EASBOB1")
    assert gate.nginx(uri, Authorization="Basic !!!not-base64").reason == "user_unverified"
    assert gate.nginx(uri, Authorization="Bearer eyJhbGciOi").reason == "user_unverified"


# -- the base64 query ------------------------------------------------------------------------


def test_base64_example_with_the_user_from_authorization(gate: GateProcess) -> None:
    uri = "/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"
    assert (gate.nginx(uri, Authorization=basic("EXAMPLE\\bob.roe")).status) == 204
    assert gate.nginx(uri, Authorization=basic("jane.doe")).reason == "user_mismatch"
    # The example names no user, and no header does either.
    assert gate.nginx(uri).reason == "user_unverified"


def test_base64_user_tag_and_binary_device_id(gate: GateProcess) -> None:
    answer = gate.nginx(eas_query(BINARY_ID, b"EXAMPLE\\ann.lee", version=121))
    assert (answer.status, answer.reason) == (403, BLOCKED)
    assert gate.nginx(eas_query(b"v140Device", b"bob.roe")).status == 204
    assert gate.nginx(eas_query(b"v140Device", b"ann.lee")).reason == "user_mismatch"
    assert gate.nginx(eas_query(b"", b"bob.roe")).reason == "no_device_id"


def test_base64_query_percent_encoded(gate: GateProcess) -> None:
    path, _, query = eas_query(b"v140Device", b"bob.roe").partition("?")
    assert gate.nginx(f"{path}?{quote(query, safe='')}").status == 204


# -- Envoy ext_authz and Traefik ForwardAuth -----------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_envoy_only_200_allows(gate: GateProcess, method: str) -> None:
    ok = gate.get("/auth/envoy" + SYNC.format(user="bob.roe", eas="EASBOB1"), method=method)
    assert (ok.status, ok.reason) == (200, "ok")
    denied = gate.get("/auth/envoy" + SYNC.format(user="jane.doe", eas="EASJANE1"), method=method)
    assert (denied.status, denied.reason) == (403, BLOCKED)


def test_envoy_passes_the_original_headers(gate: GateProcess) -> None:
    path = "/auth/envoy/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"
    assert gate.get(path, {"Authorization": basic("bob.roe")}).status == 200
    assert gate.get(path, {"Authorization": basic("jane.doe")}).reason == "user_mismatch"
    assert gate.get("/auth/envoy").reason == "no_device_id"
    assert gate.get("/auth/envoy/").status == 403


def test_traefik(gate: GateProcess) -> None:
    headers = {
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "mail",
    }
    ok = gate.get("/auth/traefik", {**headers, "X-Forwarded-Uri": SYNC.format(user="bob.roe", eas="EASBOB1")})
    assert (ok.status, ok.reason) == (200, "ok")
    no = gate.get("/auth/traefik", {**headers, "X-Forwarded-Uri": SYNC.format(user="ann.lee", eas="EASBOB1")})
    assert (no.status, no.reason) == (403, "user_mismatch")
    assert gate.get("/auth/traefik").reason == "no_device_id"


# -- nginx mail auth_http ------------------------------------------------------------------


def mail(gate: GateProcess, user: str, password: str, protocol: str = "imap", attempt: int = 1) -> Answer:
    return gate.get(
        "/auth/mail",
        {
            "Auth-Method": "plain",
            "Auth-User": user,
            "Auth-Pass": password,
            "Auth-Protocol": protocol,
            "Auth-Login-Attempt": str(attempt),
            "Client-IP": "192.0.2.7",
            "Client-Host": "[UNAVAILABLE]",
        },
    )


@pytest.mark.parametrize(("protocol", "upstream"), [("imap", IMAP), ("smtp", SMTP)])
def test_mail_allowed_names_the_upstream(served: Served, protocol: str, upstream: tuple[str, int]) -> None:
    answer = mail(served.gate, "bob.roe", served.passwords["BOB-PIXEL"], protocol)
    assert answer.status == 200
    assert answer.headers["auth-status"] == "OK"
    assert (answer.headers["auth-server"], int(answer.headers["auth-port"])) == upstream
    assert answer.reason == "ok"
    assert "auth-wait" not in answer.headers


def test_mail_blocked_device(served: Served) -> None:
    answer = mail(served.gate, "jane.doe@example.com", served.passwords["JANE-IPHONE"])
    assert answer.status == 200
    assert answer.headers["auth-status"] == BLOCKED
    assert answer.headers["auth-wait"].isdigit()
    assert answer.reason == BLOCKED
    assert "auth-server" not in answer.headers and "auth-error-code" not in answer.headers


def test_mail_smtp_deny_carries_an_error_code(served: Served) -> None:
    answer = mail(served.gate, "jane.doe", served.passwords["JANE-IPHONE"], "smtp")
    assert answer.headers["auth-status"] == BLOCKED
    assert answer.headers["auth-error-code"].startswith("535 ")
    assert "auth-server" not in answer.headers


@pytest.mark.parametrize("user", ["bob.roe", "EXAMPLE\\bob.roe", "bob.roe%40example.com", "BOB.ROE@EXAMPLE.COM"])
def test_mail_forms_of_the_user(served: Served, user: str) -> None:
    # nginx sends Auth-User and Auth-Pass URL-escaped.
    password = quote(served.passwords["BOB-PIXEL"], safe="")
    assert mail(served.gate, user, password).headers["auth-status"] == "OK"


@pytest.mark.parametrize(
    ("user", "password", "protocol"),
    [
        ("bob.roe", "wrong", "imap"),
        ("jane.doe", "BOB", "smtp"),  # someone else's password
        ("nobody", "x", "imap"),
        ("nobody", "x", "smtp"),
        ("bob.roe", "", "imap"),
        ("", "x", "smtp"),
    ],
)
def test_mail_bad_logins_are_denied(served: Served, user: str, password: str, protocol: str) -> None:
    password = served.passwords["BOB-PIXEL"] if password == "BOB" else password
    answer = mail(served.gate, user, password, protocol, attempt=2)
    assert answer.status == 200
    assert answer.headers["auth-status"] != "OK"
    assert "auth-server" not in answer.headers
    assert answer.headers["auth-status"] == answer.reason
    assert ("auth-error-code" in answer.headers) == (protocol == "smtp")


def test_mail_stops_asking_nginx_to_wait_after_many_attempts(served: Served) -> None:
    # nginx keeps memory per attempt; without Auth-Wait it closes the session instead.
    early = mail(served.gate, "nobody", "x", attempt=9)
    late = mail(served.gate, "nobody", "x", attempt=10)
    assert early.headers["auth-wait"].isdigit()
    assert "auth-wait" not in late.headers
    assert late.headers["auth-status"] == "unknown_device"


def test_mail_protocol_without_an_upstream_is_denied(served: Served) -> None:
    answer = mail(served.gate, "bob.roe", served.passwords["BOB-PIXEL"], "pop3")
    assert answer.headers["auth-status"] != "OK"
    assert "auth-server" not in answer.headers


# -- liveness and metrics ------------------------------------------------------------------


def test_healthz(served: Served) -> None:
    answer = served.gate.get("/healthz")
    assert answer.status == 200 and answer.reason == "ok"
    assert answer.headers["content-type"] == "application/json"
    doc = json.loads(answer.body)
    (seq,) = served.ab.sql("SELECT value FROM meta WHERE key = 'gate_seq'")[0]
    assert doc["status"] == "ok" and doc["store"] == "up"
    assert doc["table_devices"] == 5
    assert doc["table_seq"] == int(seq)
    assert 0 <= doc["table_age_seconds"] < 5


def test_metrics_move(gate: GateProcess) -> None:
    before = gate.metrics()
    for user in ("bob.roe", "bob.roe"):
        gate.sync("EASBOB1", user)
    gate.sync("EASJANE1", "jane.doe")
    gate.get("/auth/envoy" + SYNC.format(user="x", eas="EASNOBODY"))
    answer = gate.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = gate.metrics()

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta('appban_gate_decisions_total{endpoint="nginx",reason="ok"}') == 2
    assert delta(f'appban_gate_decisions_total{{endpoint="nginx",reason="{BLOCKED}"}}') == 1
    assert delta('appban_gate_decisions_total{endpoint="envoy",reason="unknown_device"}') == 1
    assert delta("appban_gate_request_seconds_count") == 4
    assert delta("appban_gate_request_seconds_sum") > 0
    assert after["appban_gate_table_devices"] == 5
    assert after["appban_gate_store_up"] == 1
    assert after["appban_gate_mail_credentials"] == 2
    assert 0 <= after["appban_gate_table_age_seconds"] < 5


def test_metrics_histogram_is_cumulative(gate: GateProcess) -> None:
    for _ in range(3):
        gate.sync("EASBOB1", "bob.roe")
    samples = gate.metrics()
    buckets = [(k, v) for k, v in samples.items() if k.startswith("appban_gate_request_seconds_bucket")]
    bounds = [k.split('le="')[1].rstrip('"}') for k, _ in buckets]
    assert bounds[-1] == "+Inf"
    assert [float(b) for b in bounds[:-1]] == sorted(float(b) for b in bounds[:-1])
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == samples["appban_gate_request_seconds_count"] >= 3


# -- HTTP: keep-alive, pipelining, closing -------------------------------------------------


def test_keep_alive_many_requests_on_one_connection(served: Served) -> None:
    conn = served.gate.connection()
    try:
        first = request(conn, "/auth/nginx", {"X-Original-URI": SYNC.format(user="bob.roe", eas="EASBOB1")})
        sock = conn.sock
        answers = [first]
        for _ in range(3):
            answers.append(
                request(
                    conn,
                    "/auth/nginx",
                    {"X-Original-URI": SYNC.format(user="jane.doe", eas="EASJANE1")},
                )
            )
            answers.append(
                request(
                    conn,
                    "/auth/traefik",
                    {"X-Forwarded-Uri": SYNC.format(user="bob.roe", eas="EASBOB1")},
                )
            )
            answers.append(
                request(
                    conn,
                    "/auth/envoy" + SYNC.format(user="bob.roe", eas="EASNOBODY"),
                    method="POST",
                    body=b"<wbxml body a proxy should not have sent>",  # framing must hold
                )
            )
            answers.append(request(conn, "/healthz"))
            answers.append(
                request(
                    conn,
                    "/auth/mail",
                    {
                        "Auth-Method": "plain",
                        "Auth-User": "bob.roe",
                        "Auth-Pass": served.passwords["BOB-PIXEL"],
                        "Auth-Protocol": "imap",
                    },
                )
            )
            assert conn.sock is sock, "the gate closed a keep-alive connection"
    finally:
        conn.close()
    assert [a.status for a in answers] == [204] + [403, 200, 403, 200, 200] * 3
    assert all("x-appban-reason" in a.headers for a in answers)


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    def nginx(eas: str, user: str) -> bytes:
        uri = SYNC.format(user=user, eas=eas)
        return f"GET /auth/nginx HTTP/1.1\r\nHost: gate\r\nX-Original-URI: {uri}\r\n\r\n".encode()

    def mail_request(password: str) -> bytes:
        return (
            "GET /auth/mail HTTP/1.1\r\nHost: gate\r\nAuth-Method: plain\r\nAuth-User: bob.roe\r\n"
            f"Auth-Pass: {password}\r\nAuth-Protocol: imap\r\n\r\n"
        ).encode()

    # A wrong password is verified with argon2, off the event loop: the requests behind
    # it must still be answered after it.
    batch = [
        nginx("EASJANE1", "jane.doe"),
        mail_request("not-the-password-1"),
        nginx("EASBOB1", "bob.roe"),
        mail_request(served.passwords["BOB-PIXEL"]),
        nginx("EASNOBODY", "bob.roe"),
        b"GET /healthz HTTP/1.1\r\nHost: gate\r\n\r\n",
        mail_request(served.passwords["BOB-PIXEL"]),
        nginx("EASBOB1", "jane.doe"),
    ]
    answers = list(parse_responses(served.gate.raw(b"".join(batch), responses=len(batch))))
    assert [a.reason for a in answers] == [
        BLOCKED,
        "unknown_device",
        "ok",
        "ok",
        "unknown_device",
        "ok",
        "ok",
        "user_mismatch",
    ]
    assert answers[1].headers["auth-status"] != "OK" and answers[3].headers["auth-status"] == "OK"
    assert [a.status for a in answers] == [403, 200, 204, 200, 403, 200, 200, 403]
    assert answers[6].headers["auth-status"] == "OK"


def test_pipelined_requests_split_across_packets(gate: GateProcess) -> None:
    uri = SYNC.format(user="bob.roe", eas="EASBOB1")
    data = f"GET /auth/nginx HTTP/1.1\r\nX-Original-URI: {uri}\r\n\r\n".encode() * 20
    with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as sock:
        for start in range(0, len(data), 7):
            sock.sendall(data[start : start + 7])
        received = b""
        while received.count(b"HTTP/1.1 204") < 20:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert [a.status for a in parse_responses(received)] == [204] * 20


def test_answers_left_unread_wait_and_come_in_order(served: Served) -> None:
    # A client that pipelines and does not read: once its unread answers fill the
    # connection's buffer the gate stops reading it (what it parses meanwhile waits in
    # the queue); when the client reads again, every answer comes, in order.
    def nginx(eas: str, user: str) -> bytes:
        uri = SYNC.format(user=user, eas=eas)
        return f"GET /auth/nginx HTTP/1.1\r\nHost: gate\r\nX-Original-URI: {uri}\r\n\r\n".encode()

    login = (
        "GET /auth/mail HTTP/1.1\r\nHost: gate\r\nAuth-Method: plain\r\nAuth-User: bob.roe\r\n"
        f"Auth-Pass: {served.passwords['BOB-PIXEL']}\r\nAuth-Protocol: imap\r\n\r\n"
    ).encode()
    # /metrics answers are a few KB: 2000 rounds make some 12 MB of answers, more than the
    # kernel buffers between us and the gate hold.
    one_round = [nginx("EASBOB1", "bob.roe"), nginx("EASJANE1", "jane.doe"), b"GET /metrics HTTP/1.1\r\n\r\n", login]
    rounds = 2000
    data = b"".join(one_round) * rounds
    gate = served.gate
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room on our side
        sock.settimeout(30)
        sock.connect(("127.0.0.1", gate.port))
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()
        wait_for(lambda: gate.metrics()["appban_gate_clients_not_reading"] == 1, timeout=30, every=0.05)
        received = bytearray()
        marker, seen = b"\r\nX-Appban-Reason: ", 0  # one in each answer's head
        while seen < rounds * len(one_round):
            chunk = sock.recv(1 << 20)
            assert chunk, "the gate closed a client that was slow to read"
            start = max(0, len(received) - len(marker) + 1)
            received += chunk
            seen += received.count(marker, start)
        sender.join(30)
    answers = list(parse_responses(bytes(received)))
    assert len(answers) == rounds * len(one_round)
    expected = [(204, "ok"), (403, BLOCKED), (200, "ok"), (200, "ok")] * rounds
    assert [(a.status, a.reason) for a in answers] == expected
    assert all(a.headers["auth-status"] == "OK" for a in answers[3::4])
    assert gate.metrics()["appban_gate_write_pauses_total"] >= 1


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n",
    ],
)
def test_the_gate_closes_when_the_client_asks(gate: GateProcess, head: bytes) -> None:
    received = gate.raw(head, until_close=True)
    (answer,) = parse_responses(received)
    assert answer.status == 200


def test_close_after_a_pipelined_mail_answer(served: Served) -> None:
    data = (
        b"GET /auth/mail HTTP/1.1\r\nAuth-User: bob.roe\r\nAuth-Pass: wrong-again\r\n"
        b"Auth-Protocol: imap\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\n\r\n"
    )
    answers = list(parse_responses(served.gate.raw(data, until_close=True)))
    assert [a.reason for a in answers] == ["unknown_device", "ok"]


def test_close_after_a_mail_answer_that_took_argon2(served: Served) -> None:
    # nginx's auth_http speaks HTTP/1.0: one login, then the gate closes.
    data = (
        b"GET /auth/mail HTTP/1.0\r\nAuth-Method: plain\r\nAuth-User: bob.roe\r\n"
        b"Auth-Pass: wrong-once-more\r\nAuth-Protocol: smtp\r\n\r\n"
    )
    (answer,) = parse_responses(served.gate.raw(data, until_close=True))
    assert answer.headers["auth-status"] == "unknown_device"
    assert answer.headers["auth-error-code"].startswith("535")


def test_head_gets_the_headers_without_a_body(gate: GateProcess) -> None:
    # The connection stays usable: a body after a HEAD answer would corrupt the next one.
    data = b"HEAD /healthz HTTP/1.1\r\nHost: g\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: g\r\n\r\n"
    raw = gate.raw(data, responses=2)
    heads = raw.split(b"\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200") == 2
    assert heads[-1] == b"", raw  # nothing after the second head
    assert b"Content-Length: " in heads[0] and b"X-Appban-Reason" in heads[1]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/nginx"),
        ("OPTIONS", "/auth/nginx"),
        ("PUT", "/auth/traefik"),
        ("POST", "/auth/mail"),
        ("DELETE", "/healthz"),
        ("POST", "/metrics"),
    ],
)
def test_a_method_an_endpoint_does_not_take_is_405(gate: GateProcess, method: str, path: str) -> None:
    headers = {"X-Original-URI": SYNC.format(user="bob.roe", eas="EASBOB1")}
    answer = gate.get(path, headers, method=method)
    assert (answer.status, answer.reason) == (405, "method_not_allowed")
    assert answer.headers["allow"] == "GET, HEAD"


def test_a_405_keeps_the_connection_usable(gate: GateProcess) -> None:
    data = b"POST /auth/nginx HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /healthz HTTP/1.1\r\n\r\n"
    answers = list(parse_responses(gate.raw(data, responses=2)))
    assert [(a.status, a.reason) for a in answers] == [(405, "method_not_allowed"), (200, "ok")]


def test_head_is_taken_where_get_is(gate: GateProcess) -> None:
    uri = SYNC.format(user="bob.roe", eas="EASBOB1")
    assert gate.get("/auth/nginx", {"X-Original-URI": uri}, method="HEAD").status == 204
    assert gate.get("/auth/traefik", {"X-Forwarded-Uri": uri}, method="HEAD").status == 200


def test_unknown_path(gate: GateProcess) -> None:
    answer = gate.get("/auth/other")
    assert answer.status == 404 and answer.reason == "not_found"
    assert gate.get("/auth/other", method="POST").status == 404
    # The Envoy prefix is a path segment, not a string prefix.
    assert gate.get("/auth/envoyXYZ/Microsoft-Server-ActiveSync?DeviceId=EASBOB1").status == 404


# -- garbage: never a 5xx ------------------------------------------------------------------


GARBAGE_URIS = [
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob.roe&DeviceId=%zz%",
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob.roe&DeviceId=EASBOB1%00",
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob.roe%00&DeviceId=EASBOB1",
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob.roe&DeviceId=%ff%fe%fd",
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob.roe&DeviceId=" + "A" * 5000,
    "/Microsoft-Server-ActiveSync?Cmd=Sync&User=" + "%41" * 5000 + "&DeviceId=EASBOB1",
    "/Microsoft-Server-ActiveSync?" + "A" * 12000,
    "/Microsoft-Server-ActiveSync?jAAJBAp2MTQw",
    "/Microsoft-Server-ActiveSync?%%%",
    "/Microsoft-Server-ActiveSync?DeviceId=EASBOB1&DeviceId=" + "B" * 300,
    "\u00ff\u00fe",
]


@pytest.mark.parametrize("uri", GARBAGE_URIS, ids=range(len(GARBAGE_URIS)))
def test_garbage_uris_are_refused_not_crashed(gate: GateProcess, uri: str) -> None:
    nginx = gate.raw(b"GET /auth/nginx HTTP/1.1\r\nX-Original-URI: " + uri.encode("latin-1") + b"\r\n\r\n")
    traefik = gate.raw(b"GET /auth/traefik HTTP/1.1\r\nX-Forwarded-Uri: " + uri.encode("latin-1") + b"\r\n\r\n")
    for received in (nginx, traefik):
        (answer,) = parse_responses(received)
        assert answer.status in (400, 403), answer
        assert answer.reason
    if uri.startswith("/"):
        (answer,) = parse_responses(gate.raw(b"GET /auth/envoy" + uri.encode() + b" HTTP/1.1\r\n\r\n"))
        assert answer.status in (400, 403) and answer.reason


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /auth/nginx HTTP/1.1\r\nX-Original-URI: /x?DeviceId=A\x00B\r\n\r\n",
    b"GET /auth/nginx HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /auth/nginx HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET /auth/nginx HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /auth/" + b"A" * 20000 + b" HTTP/1.1\r\n\r\n",
    b"GET /auth nginx HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    b"GET /auth/nginx HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"GET /auth/nginx HTTP/7.7\r\n\r\n",
]


@pytest.mark.parametrize("data", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_http_is_400_never_5xx(gate: GateProcess, data: bytes) -> None:
    received = gate.raw(data, until_close=False, timeout=2)
    answers = list(parse_responses(received))
    assert answers, f"no answer to {data[:60]!r}"
    for answer in answers:
        assert answer.status in (400, 403, 404), answer
        assert answer.reason
    assert gate.get("/healthz").status == 200


def test_an_endless_header_is_cut_off(gate: GateProcess) -> None:
    # Without a cap the gate would buffer the header for ever (100 MB took 130 MB of RSS).
    received = b""
    with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as sock:
        sock.sendall(b"GET /auth/nginx HTTP/1.1\r\nX-Original-URI: /x?")
        try:
            for _ in range(128):  # 8 MB, never a line end
                sock.sendall(b"A" * 65536)
            while chunk := sock.recv(65536):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us while we were still sending: what we want
    if received:
        (answer,) = parse_responses(received)
        assert (answer.status, answer.reason) == (400, "bad_request")
    assert gate.sync("EASBOB1", "bob.roe").status == 204


def test_a_large_body_is_skipped_not_refused(gate: GateProcess) -> None:
    # A proxy that passes the request body by mistake (nginx without
    # proxy_pass_request_body off) still gets answers; the body is not buffered.
    body = b"\x03\x01j\x00" * (3 << 18)  # 3 MB of "WBXML"
    head = (
        "POST /auth/envoy" + SYNC.format(user="bob.roe", eas="EASBOB1") + " HTTP/1.1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    then = b"GET /healthz HTTP/1.1\r\n\r\n"
    answers = list(parse_responses(gate.raw(head + body + then, responses=2)))
    assert [(a.status, a.reason) for a in answers] == [(200, "ok"), (200, "ok")]


def test_empty_lines_before_a_request_are_ignored(gate: GateProcess) -> None:
    # RFC 9112 2.2: a server SHOULD ignore empty lines received before the request-line.
    (answer,) = parse_responses(gate.raw(b"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"))
    assert answer.status == 200


def test_many_garbage_requests_then_healthy(gate: GateProcess) -> None:
    for uri in GARBAGE_URIS:
        gate.nginx(uri.encode("latin-1").decode("latin-1"))
    assert gate.sync("EASBOB1", "bob.roe").status == 204


# -- configuration: unknown devices allowed, the user from a proxy's header ----------------


def test_unknown_device_allow_and_user_header(served: Served) -> None:
    with GateProcess(
        served.ab.db, "--no-evaluate", "--unknown-device", "allow", "--user-header", "X-Remote-User"
    ) as gate:
        unknown = gate.sync("EASNOBODY", "anyone")
        assert (unknown.status, unknown.reason) == (204, "unknown_device")
        envoy = gate.get("/auth/envoy" + SYNC.format(user="anyone", eas="EASNOBODY"))
        assert (envoy.status, envoy.reason) == (200, "unknown_device")
        assert gate.sync("", "bob.roe").status == 403
        uri = SYNC.format(user="jane.doe", eas="EASBOB1")
        # The proxy's header wins over the query and over Authorization.
        assert gate.nginx(uri, **{"X-Remote-User": "bob.roe@example.com"}).status == 204
        assert (
            gate.nginx(uri, **{"X-Remote-User": "jane.doe", "Authorization": basic("bob.roe")}).reason
            == "user_mismatch"
        )
        # Without the header: Authorization, then the query.
        assert gate.nginx(uri, Authorization=basic("bob.roe")).status == 204
        assert gate.nginx(uri).reason == "user_mismatch"
        # No mail domain here: a bare name matches the owner's local part.
        assert gate.sync("EASBOB1", "bob.roe").status == 204


def test_example_policy_file_is_the_one_served(served: Served) -> None:
    # The fixture applied SPEC's example policy itself, not a copy.
    assert Path(EXAMPLE_POLICY).read_text().startswith("id: tiktok-mail")
    assert served.ab("policy", "show", "tiktok-mail", now=AFTER)["deadline"].startswith("2020-07-11T06:59")
