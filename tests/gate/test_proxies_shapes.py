"""Envoy and Traefik in front of ActiveSync: their binaries are not available here, so
these tests read the shipped configs in deploy/ and send the real gate exactly the
requests those proxies send, as their documentation describes them, then check the
answers are the ones those proxies act on.

- Envoy ``ext_authz`` HTTP service (envoy.extensions.filters.http.ext_authz.v3.HttpService):
  the check request has the client's method, ``path_prefix`` + the client's path and
  query, the client's Host and Authorization (always sent, with the headers matched by
  ``allowed_headers``), ``Content-Length: 0`` and no body. Only a 200 lets the request
  through; any other status is returned to the client with the headers matched by
  ``authorization_response.allowed_client_headers``; on 200 the headers matched by
  ``allowed_upstream_headers`` are added to the request to the upstream.
- Traefik ForwardAuth middleware: a GET to ``address`` carrying the client's headers
  (only ``authRequestHeaders`` when set) and X-Forwarded-Method, -Proto, -Host, -Uri and
  -For describing the original request. Any 2xx lets it through, copying
  ``authResponseHeaders`` onto the forwarded request; anything else is returned to the
  client as the gate gave it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from servers import DEPLOY, Fleet, Gate, start_gate

from appban import settings

EAS = "/Microsoft-Server-ActiveSync"
ENVOY = DEPLOY / "envoy" / "appban-ext-authz.yaml"
TRAEFIK = DEPLOY / "traefik" / "appban-forwardauth.yaml"
GATE_DEFAULT_PORT = settings.SETTINGS["gate_port"].default  # gate serve --port, APPBAN_GATE_PORT


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("shapes-fleet"))


@pytest.fixture(scope="module")
def gate(fleet: Fleet) -> Iterator[Gate]:
    with start_gate(fleet.db, fleet.folder) as running:
        yield running


def query(device: str, user: str) -> str:
    return f"{EAS}?Cmd=Sync&User={user}&DeviceId={device}&DeviceType=iPhone"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:secret".encode()).decode()


def cases(fleet: Fleet) -> list[tuple[str, str, str, int, str]]:
    """(name, path with query, Basic user, status a 2xx-or-403 proxy acts on, reason)."""
    alice, bob = fleet.devices["compliant"], fleet.devices["blocked"]
    return [
        ("compliant", query(alice.eas, alice.user), alice.user, 200, "ok"),
        # No NetBIOS domain configured: a DOMAIN\ prefix names no one.
        ("netbios prefix", query(alice.eas, alice.user), f"EXAMPLE\\{alice.user}", 403, "user_mismatch"),
        ("blocked", query(bob.eas, bob.user), bob.owner, 403, "blocked:tiktok-mail"),
        ("colleague", query(alice.eas, bob.user), f"EXAMPLE\\{bob.user}", 403, "user_mismatch"),
        ("unknown", query("EASNOSUCHDEVICE", alice.user), alice.user, 403, "unknown_device"),
        ("no device", EAS + "?Cmd=Sync", alice.user, 403, "no_device_id"),
    ]


# -- Envoy -----------------------------------------------------------------------------


def _find(node: Any, key: str) -> Iterator[Any]:
    """Every value under ``key`` anywhere in a YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _find(item, key)


def envoy_ext_authz() -> dict[str, Any]:
    config = yaml.safe_load(ENVOY.read_text("utf-8"))
    filters = [f for f in _find(config, "http_filters") for f in f]
    (ext_authz,) = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.ext_authz"]
    return {"config": config, "filter": ext_authz, "names": [f["name"] for f in filters]}


def matches(patterns: list[dict[str, Any]], name: str) -> bool:
    """Envoy's ListStringMatcher (type.matcher.v3.StringMatcher) on a header name."""
    return any(_matches(p, name) for p in patterns)


def _matches(pattern: dict[str, Any], name: str) -> bool:
    fold = str.lower if pattern.get("ignore_case") else str
    if "safe_regex" in pattern:
        return re.fullmatch(pattern["safe_regex"]["regex"], name) is not None
    kind, value = next((k, fold(v)) for k, v in pattern.items() if k != "ignore_case")
    tests = {
        "exact": str.__eq__,
        "prefix": str.startswith,
        "suffix": str.endswith,
        "contains": str.__contains__,
    }
    return bool(tests[kind](fold(name), value))


def test_envoy_config_sends_every_activesync_request_to_the_gate() -> None:
    found = envoy_ext_authz()
    ext_authz = found["filter"]
    assert found["names"][-1] == "envoy.filters.http.router"  # the check comes before routing
    service = ext_authz["http_service"]
    assert service["path_prefix"] == "/auth/envoy"  # SPEC: * /auth/envoy/...
    assert ext_authz.get("failure_mode_allow", False) is False  # the gate unreachable: refuse
    assert "with_request_body" not in ext_authz  # the gate reads no body
    (cluster,) = [
        c for c in found["config"]["static_resources"]["clusters"] if c["name"] == service["server_uri"]["cluster"]
    ]
    (address,) = list(_find(cluster, "socket_address"))
    assert (address["address"], address["port_value"]) == ("127.0.0.1", GATE_DEFAULT_PORT)
    assert urlsplit(service["server_uri"]["uri"]).port == GATE_DEFAULT_PORT


def test_envoy_config_lets_options_through_unchecked() -> None:
    routes = list(_find(envoy_ext_authz()["config"], "routes"))[0]
    options = [
        r
        for r in routes
        if any(h.get("string_match", {}).get("exact") == "OPTIONS" for h in r["match"].get("headers", []))
    ]
    assert len(options) == 1 and routes.index(options[0]) == 0, routes
    assert options[0]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True


def test_envoy_routes_match_the_path_in_any_letter_case() -> None:
    routes = list(_find(envoy_ext_authz()["config"], "routes"))[0]
    assert routes and all(r["match"].get("case_sensitive") is False for r in routes), routes


def test_envoy_sends_the_gate_no_header_a_client_could_make_up() -> None:
    ext_authz = envoy_ext_authz()["filter"]
    # Envoy always sends Host, the method, the path, Content-Length and Authorization;
    # anything more would come from the client unless a filter before sets it.
    assert "allowed_headers" not in ext_authz and "allowed_headers" not in ext_authz["http_service"].get(
        "authorization_request", {}
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_envoy_check_requests_get_the_answers_envoy_acts_on(gate: Gate, fleet: Fleet, method: str) -> None:
    ext_authz = envoy_ext_authz()["filter"]
    service = ext_authz["http_service"]
    to_upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    to_client = service["authorization_response"]["allowed_client_headers"]["patterns"]
    for name, path, user, expected, reason in cases(fleet):
        client_headers = {
            "Host": "mail.example.com",
            "Authorization": basic(user),
            "User-Agent": "Apple-iPhone12C1/1705.18",
            "MS-ASProtocolVersion": "14.1",
            "Content-Type": "application/vnd.ms-sync.wbxml",
            "X-Request-Id": "7f3c",
        }
        allowed = ext_authz.get("allowed_headers", {}).get("patterns", [])
        sent = {
            k: v for k, v in client_headers.items() if k.lower() in ("host", "authorization") or matches(allowed, k)
        }
        sent["Content-Length"] = "0"
        status, headers, _ = gate.get(service["path_prefix"] + path, sent, method=method)
        # Exactly 200 to allow (Envoy takes a 204 as a denial), 403 to deny.
        assert (status, headers.get("x-appban-reason")) == (expected, reason), name
    # The reason reaches the upstream on allow and the client on deny.
    assert matches(to_upstream, "X-Appban-Reason") and matches(to_client, "X-Appban-Reason")


# -- Traefik ---------------------------------------------------------------------------


def traefik_forward_auth() -> dict[str, Any]:
    config = yaml.safe_load(TRAEFIK.read_text("utf-8"))["http"]
    (name,) = config["routers"]["activesync"]["middlewares"]
    return dict(config["middlewares"][name]["forwardAuth"])


def test_traefik_config_asks_the_gate() -> None:
    forward = traefik_forward_auth()
    address = urlsplit(forward["address"])
    assert (address.hostname, address.port, address.path) == (
        "127.0.0.1",
        GATE_DEFAULT_PORT,
        "/auth/traefik",
    )
    assert forward["trustForwardHeader"] is False  # X-Forwarded-Uri is Traefik's, not the client's
    assert "X-Appban-Reason" in forward["authResponseHeaders"]


def _path_regexp(rule: str) -> re.Pattern[str]:
    (pattern,) = re.findall(r"PathRegexp\(`([^`]*)`\)", rule)
    return re.compile(pattern)  # Go's RE2 syntax, as far as this pattern goes, is Python's


@pytest.mark.parametrize(
    ("path", "matched"),
    [
        ("/Microsoft-Server-ActiveSync", True),
        ("/microsoft-server-activesync", True),
        ("/MICROSOFT-SERVER-ACTIVESYNC/", True),
        ("/Microsoft-Server-ActiveSyncX", False),
        ("/owa", False),
    ],
)
def test_traefik_routes_the_path_in_any_letter_case(path: str, matched: bool) -> None:
    routers = yaml.safe_load(TRAEFIK.read_text("utf-8"))["http"]["routers"]
    for name in ("activesync", "activesync-options"):
        assert (_path_regexp(routers[name]["rule"]).search(path) is not None) is matched, name


def test_traefik_sends_the_gate_only_authorization_from_the_client() -> None:
    # X-Forwarded-* are Traefik's own (trustForwardHeader: false); of the client's
    # headers only Authorization goes along, so a made-up user header never does.
    assert [h.lower() for h in traefik_forward_auth()["authRequestHeaders"]] == ["authorization"]


def test_traefik_config_lets_options_through_unchecked() -> None:
    routers = yaml.safe_load(TRAEFIK.read_text("utf-8"))["http"]["routers"]
    options = routers["activesync-options"]
    assert "Method(`OPTIONS`)" in options["rule"] and not options.get("middlewares")
    assert options["priority"] > len(routers["activesync"]["rule"])  # Traefik's default priority is the rule's length


def test_traefik_forward_auth_requests_get_the_answers_traefik_acts_on(gate: Gate, fleet: Fleet) -> None:
    forward = traefik_forward_auth()
    path = urlsplit(forward["address"]).path
    only = [h.lower() for h in forward.get("authRequestHeaders", [])]
    for name, uri, user, expected, reason in cases(fleet):
        client_headers = {
            "Authorization": basic(user),
            "User-Agent": "Android-Mail/2020.06",
            "Cookie": "x=1",
        }
        sent = {k: v for k, v in client_headers.items() if not only or k.lower() in only}
        sent.update(
            {
                "X-Forwarded-Method": "POST",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "mail.example.com",
                "X-Forwarded-Uri": uri,
                "X-Forwarded-For": "198.51.100.7",
            }
        )
        status, headers, body = gate.get(path, sent, method="GET")
        allowed = 200 <= status < 300
        assert (allowed, headers.get("x-appban-reason")) == (expected == 200, reason), (
            name,
            status,
        )
        if not allowed:
            assert status == 403, name  # returned to the client as is


def test_traefik_sends_the_uri_escaped_as_the_client_sent_it(gate: Gate, fleet: Fleet) -> None:
    # X-Forwarded-Uri is Go's URL.RequestURI(): path and raw query, escapes kept.
    alice = fleet.devices["compliant"]
    uri = f"{EAS}?Cmd=Sync&User={alice.user}%40example.com&DeviceId={alice.eas}&DeviceType=iPhone"
    status, headers, _ = gate.get("/auth/traefik", {"X-Forwarded-Uri": uri, "X-Forwarded-Method": "POST"})
    assert (status, headers["x-appban-reason"]) == (200, "ok")


# -- docs ------------------------------------------------------------------------------


def test_every_deploy_file_and_placeholder_is_explained_in_the_docs() -> None:
    text = (DEPLOY.parent / "docs" / "gate.md").read_text("utf-8")
    shipped = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    assert len(shipped) >= 4, shipped
    for path in shipped:
        name = path.relative_to(DEPLOY.parent).as_posix()
        assert f"](../{name})" in text, f"docs/gate.md does not link {name}"
        for placeholder in sorted(set(re.findall(r"\{\{\w+\}\}", path.read_text("utf-8")))):
            assert f"`{placeholder}`" in text, f"docs/gate.md does not explain {placeholder} of {name}"
