"""nginx ``auth_request`` in front of an ActiveSync upstream, with the shipped
deploy/nginx/activesync.conf, the real gate and a real nginx (SPEC: Gate endpoints).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    Fleet,
    Gate,
    Nginx,
    Upstream,
    http_request,
    require,
    start_activesync,
    start_gate,
    start_nginx,
)

EAS = "/Microsoft-Server-ActiveSync"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("nginx-fleet"))


@pytest.fixture(scope="module")
def gate(fleet: Fleet) -> Iterator[Gate]:
    with start_gate(fleet.db, fleet.folder) as running:
        yield running


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with start_activesync() as running:
        yield running


@pytest.fixture(scope="module")
def nginx(gate: Gate, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    require("nginx")
    with start_nginx(tmp_path_factory.mktemp("nginx-http"), gate=gate.addr, activesync=upstream.addr) as running:
        yield running


def send(
    nginx: Nginx, target: str, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, str, bytes]:
    """An ActiveSync request through nginx: (status, X-Appban-Reason, body)."""
    body = b"\x03\x01j\x00" if method == "POST" else None  # a WBXML header, as a Sync carries
    status, got, data = http_request(nginx.ports["http"], method, target, headers, body)
    return status, got.get("x-appban-reason", ""), data


def plain(device: str, user: str, cmd: str = "Sync") -> str:
    return f"{EAS}?Cmd={cmd}&User={user}&DeviceId={device}&DeviceType=iPhone"


def encoded(device: str, user: str, *, version: int = 141, command: int = 0, quote: bool = False) -> str:
    """The base64 query of MS-ASHTTP 2.2.1.1.1.1: protocol version, command code, locale
    (little-endian), DeviceId, PolicyKey (none), DeviceType, then command parameters as
    tag, length, value; tag 8 is User."""
    dev, user_b, kind = device.encode(), user.encode(), b"iPhone"
    raw = (
        bytes([version, command])
        + struct.pack("<H", 0x0409)
        + bytes([len(dev)])
        + dev
        + bytes([0])
        + bytes([len(kind)])
        + kind
        + bytes([8, len(user_b)])
        + user_b
    )
    text = base64.b64encode(raw).decode()
    if quote:  # some clients percent-encode the base64 alphabet's + / =
        text = text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    return f"{EAS}?{text}"


def basic(user: str, password: str = "secret") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- who gets through ------------------------------------------------------------------


def test_compliant_device_gets_the_upstreams_answer(nginx: Nginx, upstream: Upstream, fleet: Fleet) -> None:
    alice = fleet.devices["compliant"]
    status, reason, body = send(nginx, plain(alice.eas, alice.user))
    assert (status, reason, body) == (200, "ok", b"activesync ok POST\n")
    method, path, _ = upstream.seen[-1]
    assert (method, path) == ("POST", plain(alice.eas, alice.user))


def test_blocked_device_gets_403_and_never_reaches_the_upstream(nginx: Nginx, upstream: Upstream, fleet: Fleet) -> None:
    bob = fleet.devices["blocked"]
    before = len(upstream.seen)
    assert send(nginx, plain(bob.eas, bob.user))[:2] == (403, "blocked:tiktok-mail")
    assert len(upstream.seen) == before


def test_a_colleagues_device_id_gets_403(nginx: Nginx, fleet: Fleet) -> None:
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    # Bob presenting Alice's (compliant) DeviceId is not Alice.
    assert send(nginx, plain(alice.eas, bob.user))[:2] == (403, "user_mismatch")
    assert send(nginx, plain(alice.eas, bob.owner))[:2] == (403, "user_mismatch")


def test_the_authenticated_user_wins_over_the_query_user(nginx: Nginx, fleet: Fleet) -> None:
    # Real clients authenticate with Basic; the User in the query is only what they claim.
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    assert send(nginx, plain(alice.eas, alice.user), basic(f"EXAMPLE\\{bob.user}"))[:2] == (
        403,
        "user_mismatch",
    )
    assert send(nginx, plain(alice.eas, "nobody"), basic(alice.user))[:2] == (200, "ok")
    assert send(nginx, plain(alice.eas, "nobody"), basic(alice.owner))[:2] == (200, "ok")
    # No NetBIOS domain is configured here: a DOMAIN\ prefix names no one.
    assert send(nginx, plain(alice.eas, alice.user), basic(f"EXAMPLE\\{alice.user}"))[:2] == (
        403,
        "user_mismatch",
    )


def test_unknown_device_id_gets_403(nginx: Nginx, fleet: Fleet) -> None:
    assert send(nginx, plain("EASNOSUCHDEVICE", "alice"))[:2] == (403, "unknown_device")


def test_an_excluded_group_is_out_of_scope_and_allowed(nginx: Nginx, fleet: Fleet) -> None:
    erin = fleet.devices["excluded_group"]  # TikTok, but in security-research
    assert send(nginx, plain(erin.eas, erin.user))[:2] == (200, "ok")


@pytest.mark.parametrize("quote", [False, True], ids=["raw", "percent-encoded"])
def test_base64_query(nginx: Nginx, fleet: Fleet, quote: bool) -> None:
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    assert send(nginx, encoded(alice.eas, alice.user, quote=quote))[:2] == (200, "ok")
    assert send(nginx, encoded(alice.eas, alice.owner, version=121, command=18, quote=quote))[:2] == (200, "ok")
    assert send(nginx, encoded(bob.eas, bob.user, quote=quote))[:2] == (403, "blocked:tiktok-mail")
    assert send(nginx, encoded(alice.eas, bob.user, quote=quote))[:2] == (403, "user_mismatch")
    assert send(nginx, encoded("EASNOSUCHDEVICE", alice.user, quote=quote))[:2] == (
        403,
        "unknown_device",
    )


def test_options_reaches_the_upstream_without_a_device(nginx: Nginx, upstream: Upstream) -> None:
    # MS-ASHTTP 2.2.3: OPTIONS carries no DeviceId; the client asks which versions the
    # server speaks. The shipped config lets it through to the upstream (which still
    # authenticates the user) instead of denying it as no_device_id.
    status, _, body = send(nginx, EAS, method="OPTIONS")
    assert (status, body) == (200, b"activesync ok OPTIONS\n")
    assert upstream.seen[-1][:2] == ("OPTIONS", EAS)


GARBAGE = {
    "no query": EAS,
    "bad percent escapes": f"{EAS}?Cmd=Sync&User=alice&DeviceId=%zz%G1%",
    "NUL": f"{EAS}?Cmd=Sync&User=alice&DeviceId=EASALICE01%00",
    "invalid UTF-8": f"{EAS}?Cmd=Sync&User=%ff%fe&DeviceId=%c3%28",
    "5 KB DeviceId": f"{EAS}?Cmd=Sync&User=alice&DeviceId={'A' * 5000}",
    "not base64": f"{EAS}?@@@!!!***",
    "truncated base64": f"{EAS}?" + base64.b64encode(bytes([141, 0, 9, 4, 40]) + b"EAS").decode(),
    "control characters in base64 User": encoded("EASALICE01", "ali\x01ce"),
    "empty DeviceId": f"{EAS}?Cmd=Sync&User=alice&DeviceId=",
}


@pytest.mark.parametrize("target", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_in_the_original_uri_is_denied_never_a_5xx(nginx: Nginx, target: str) -> None:
    status, reason, _ = send(nginx, target, basic("alice"))
    assert status == 403, (status, reason)
    assert reason in ("no_device_id", "unknown_device"), reason


# -- what reaches the gate is nginx's, not the client's ---------------------------------


@pytest.mark.parametrize(
    "path",
    ["/microsoft-server-activesync", "/MICROSOFT-SERVER-ACTIVESYNC", "/Microsoft-Server-Activesync/"],
)
def test_every_spelling_of_the_path_goes_through_the_gate(
    nginx: Nginx, upstream: Upstream, fleet: Fleet, path: str
) -> None:
    # nginx matches locations case-sensitively; the ActiveSync server does not.
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    before = len(upstream.seen)
    blocked = plain(bob.eas, bob.user).replace(EAS, path)
    assert send(nginx, blocked)[:2] == (403, "blocked:tiktok-mail")
    assert len(upstream.seen) == before
    allowed = plain(alice.eas, alice.user).replace(EAS, path)
    assert send(nginx, allowed) == (200, "ok", b"activesync ok POST\n")
    assert upstream.seen[-1][1] == allowed


def test_a_client_cannot_choose_the_uri_the_gate_judges(nginx: Nginx, fleet: Fleet) -> None:
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    forged = {"X-Original-URI": plain(alice.eas, alice.user), "X-Forwarded-Uri": plain(alice.eas, alice.user)}
    assert send(nginx, plain(bob.eas, bob.user), forged)[:2] == (403, "blocked:tiktok-mail")


@pytest.fixture(scope="module")
def header_gate(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    """A gate that trusts a user header (as behind a front end that authenticates)."""
    with start_gate(fleet.db, tmp_path_factory.mktemp("header-gate"), args=("--user-header", "X-Remote-User")) as gate:
        yield gate


@pytest.fixture(scope="module")
def header_nginx(header_gate: Gate, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    require("nginx")
    folder = tmp_path_factory.mktemp("nginx-header")
    with start_nginx(folder, gate=header_gate.addr, activesync=upstream.addr) as running:
        yield running


def test_a_client_cannot_set_the_user_header(header_nginx: Nginx, header_gate: Gate, fleet: Fleet) -> None:
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    # Straight to the gate, the header names the user...
    status, headers, _ = header_gate.get(
        "/auth/nginx", {"X-Original-URI": plain(alice.eas, alice.user), "X-Remote-User": alice.owner}
    )
    assert (status, headers["x-appban-reason"]) == (204, "ok")
    # ...but the shipped config never passes the client's own: Bob stays Bob.
    forged = {**basic(bob.owner), "X-Remote-User": alice.owner, "x-remote-user": alice.user}
    assert send(header_nginx, plain(alice.eas, alice.user), forged)[:2] == (403, "user_mismatch")
    assert send(header_nginx, plain(alice.eas, bob.user), {"X-Remote-User": alice.owner})[:2] == (
        403,
        "user_mismatch",
    )


# -- the ~1 s promise ------------------------------------------------------------------


def test_access_is_back_within_a_second_of_a_clean_check_in(nginx: Nginx, fleet: Fleet) -> None:
    carol = fleet.devices["comes_back"]
    target = plain(carol.eas, carol.user)
    assert send(nginx, target)[:2] == (403, "blocked:tiktok-mail")
    # The owner's agent reports the phone without TikTok: another process imports the
    # check-in into the store, and nothing else is touched. Poll every 50 ms from the
    # moment the store has it.
    with fleet.change("import", "appban", str(fleet.clean_checkin("comes_back"))) as change:
        assert change.stored_at is not None
        while True:
            status, reason, _ = send(nginx, target)
            elapsed = time.monotonic() - change.stored_at
            if status == 200 or elapsed > 5:
                break
            time.sleep(0.05)
    print(f"\naccess back {elapsed * 1000:.0f} ms after the check-in was stored")
    assert (status, reason) == (200, "ok"), f"still {status} {reason} {elapsed:.3f} s after the check-in"
    assert elapsed < 1.0, f"access came back {elapsed:.3f} s after the check-in was stored"


# -- the connection to the gate --------------------------------------------------------


def _tcp_states(remote_port: int) -> list[str]:
    """States of this host's TCP connections to ``remote_port`` (from /proc/net/tcp)."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
            states.append(fields[3])
    return states


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_nginx_keeps_its_connections_to_the_gate_alive(nginx: Nginx, gate: Gate, fleet: Fleet) -> None:
    alice = fleet.devices["compliant"]
    send(nginx, plain(alice.eas, alice.user))
    time_wait_before = _tcp_states(gate.port).count("06")
    for _ in range(30):
        assert send(nginx, plain(alice.eas, alice.user))[0] == 200
    states = _tcp_states(gate.port)
    # keepalive: the subrequests share a connection that stays ESTABLISHED (01); without
    # it, each would leave a closed connection in TIME_WAIT (06) behind.
    assert "01" in states, states
    assert states.count("06") == time_wait_before, states
