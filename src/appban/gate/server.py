"""``appban gate serve``: the decision service behind mail proxies (SPEC: Gate endpoints).

The ``Gate`` answers: it looks the DeviceId up in the in-memory table and returns a
response prepared in advance; a mail login costs one keyed hash. ``http.py`` is the
raw HTTP server that brings it requests. The hot path is plain code: no framework,
no database call, no log line unless debug logging is on.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from appban import settings
from appban.gate.activesync import Garbage, parse_uri
from appban.gate.authorization import read_authorization
from appban.gate.credentials import CredentialCache
from appban.gate.follower import Follower
from appban.gate.sightings import MAIL_PROTOCOLS, Sightings
from appban.gate.table import DecisionTable
from appban.gate.throttle import LoginLimits
from appban.histogram import Histogram

log = logging.getLogger("appban.gate")

MAX_LOGIN_ATTEMPTS = 10
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
_STATUS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    503: b"Service Unavailable",
}


@dataclass
class Upstreams:
    """Where nginx mail should send an allowed login, per protocol (``Auth-Server``/``Auth-Port``)."""

    default: tuple[str, int] | None = None
    by_protocol: dict[str, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: list[str]) -> Upstreams:
        """``[imap|pop3|smtp=]IP:PORT`` each; an IPv6 address in brackets (``[::1]:143``).

        The address must be an IP literal: nginx's mail proxy takes ``Auth-Server`` as
        an address and does not resolve names (ngx_mail_auth_http_module).
        """
        out = cls()
        for spec in specs:
            proto, _, hostport = spec.strip().rpartition("=")
            host, _, port = hostport.rpartition(":")
            if proto.lower() not in ("", *MAIL_PROTOCOLS):
                raise ValueError(f"{spec!r}: the protocol must be one of {', '.join(MAIL_PROTOCOLS)}")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{spec!r}: expected [imap|pop3|smtp=]IP:PORT")
            bracketed = host.startswith("[") and host.endswith("]")
            try:
                address = ipaddress.ip_address(host[1:-1] if bracketed else host)
            except ValueError:
                raise ValueError(
                    f"{spec!r}: {host!r} is not an IP address; nginx's mail proxy needs one in "
                    "Auth-Server and does not resolve host names"
                ) from None
            if (address.version == 6) != bracketed:
                raise ValueError(f"{spec!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
            if getattr(address, "scope_id", None):
                # nginx parses Auth-Server as a bare address (ngx_parse_addr): no %zone.
                raise ValueError(f"{spec!r}: an IPv6 zone (%...) is refused: nginx's mail proxy cannot use one")
            # nginx reads an IPv6 Auth-Server without brackets.
            upstream = (str(address), int(port))
            # Two for one protocol is a mistake to say, not a choice to make (the last one).
            if (proto.lower() in out.by_protocol) if proto else (out.default is not None):
                what = f"{proto.lower()}=" if proto else "every protocol (no PROTO=)"
                raise ValueError(f"{spec!r}: a second upstream for {what}; give one per protocol")
            if proto:
                out.by_protocol[proto.lower()] = upstream
            else:
                out.default = upstream
        return out

    def get(self, protocol: str) -> tuple[str, int] | None:
        return self.by_protocol.get(protocol, self.default)


class Metrics:
    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.latency = Histogram(BUCKETS)
        self.observe = self.latency.observe

    def render(
        self,
        table: DecisionTable,
        follower: Follower | None,
        creds: CredentialCache,
        transport: Iterable[str] = (),
        sightings: Sightings | None = None,
    ) -> bytes:
        lines = [
            "# HELP appban_gate_decisions_total Gate answers by endpoint and reason.",
            "# TYPE appban_gate_decisions_total counter",
        ]
        for (endpoint, reason), n in sorted(self.decisions.items()):
            lines.append(f'appban_gate_decisions_total{{endpoint="{endpoint}",reason="{reason}"}} {n}')
        age = time.monotonic() - (follower.last_ok if follower and follower.last_ok else table.updated)
        lines += [
            "# HELP appban_gate_table_devices ActiveSync DeviceIds in the decision table.",
            "# TYPE appban_gate_table_devices gauge",
            f"appban_gate_table_devices {len(table)}",
            "# HELP appban_gate_table_seq The store change counter the table reflects.",
            "# TYPE appban_gate_table_seq gauge",
            f"appban_gate_table_seq {table.seq}",
            "# HELP appban_gate_table_age_seconds Seconds since the table was last confirmed current.",
            "# TYPE appban_gate_table_age_seconds gauge",
            f"appban_gate_table_age_seconds {age:.3f}",
            "# HELP appban_gate_store_up 1 if the last poll of the store succeeded.",
            "# TYPE appban_gate_store_up gauge",
            f"appban_gate_store_up {1 if follower is None or follower.store_up else 0}",
            *_follower_metrics(follower),
            *transport,
            *(sightings.metrics() if sightings is not None else ()),
            "# HELP appban_gate_mail_credentials Active per-device mail passwords known.",
            "# TYPE appban_gate_mail_credentials gauge",
            f"appban_gate_mail_credentials {len(creds.active)}",
            *self.latency.lines("appban_gate_request_seconds", "Time to answer a request."),
        ]
        return ("\n".join(lines) + "\n").encode()


_EVALUATION_STATES = ("ok", "waiting_for_lock", "store_unreachable", "failing", "off")


def _follower_metrics(follower: Follower | None) -> list[str]:
    """Following and evaluation: lock contention, outages and bugs counted apart."""
    if follower is None:
        return []
    lines = [
        "# HELP appban_gate_store_polls_total Polls of the store that succeeded.",
        "# TYPE appban_gate_store_polls_total counter",
        f"appban_gate_store_polls_total {follower.polls}",
        "# HELP appban_gate_store_poll_failures_total Polls that failed: busy (a lock), "
        "unavailable (an outage), error (a bug).",
        "# TYPE appban_gate_store_poll_failures_total counter",
        *(f'appban_gate_store_poll_failures_total{{kind="{k}"}} {n}' for k, n in sorted(follower.failures.items())),
        "# HELP appban_gate_table_reloads_total Whole reloads of the table (another database put in place).",
        "# TYPE appban_gate_table_reloads_total counter",
        f"appban_gate_table_reloads_total {follower.reloads}",
        "# HELP appban_gate_following_ok 0 while applying the store's changes fails (a bug).",
        "# TYPE appban_gate_following_ok gauge",
        f"appban_gate_following_ok {1 if follower.following == 'ok' else 0}",
    ]
    evaluation = follower.evaluation
    state = evaluation.state if evaluation is not None else "off"
    lines += [
        "# HELP appban_gate_evaluation_state The time-driven evaluation's state (1 for the current one).",
        "# TYPE appban_gate_evaluation_state gauge",
        *(f'appban_gate_evaluation_state{{state="{s}"}} {1 if s == state else 0}' for s in _EVALUATION_STATES),
    ]
    if evaluation is None:
        return lines
    return lines + [
        "# HELP appban_gate_evaluation_runs_total Checks for time-driven changes, by result.",
        "# TYPE appban_gate_evaluation_runs_total counter",
        *(f'appban_gate_evaluation_runs_total{{result="{r}"}} {n}' for r, n in sorted(evaluation.runs.items())),
        "# HELP appban_gate_evaluation_changes_total State changes the gate's evaluation applied.",
        "# TYPE appban_gate_evaluation_changes_total counter",
        f"appban_gate_evaluation_changes_total {evaluation.changes}",
        "# HELP appban_gate_evaluation_age_seconds Seconds since a check for time-driven changes succeeded.",
        "# TYPE appban_gate_evaluation_age_seconds gauge",
        f"appban_gate_evaluation_age_seconds {time.monotonic() - evaluation.last_ok:.3f}",
    ]


def response(
    status: int,
    reason: str,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    ctype: str = "text/plain",
) -> bytes:
    head = [f"HTTP/1.1 {status} {_STATUS[status].decode()}", f"X-Appban-Reason: {reason}"]
    head += [f"{k}: {v}" for k, v in headers]
    if body:
        head.append(f"Content-Type: {ctype}")
    if status != 204:  # RFC 9110 8.6: no Content-Length in a 204
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Gate:
    """Routing and answers; shared by every connection."""

    def __init__(
        self,
        table: DecisionTable,
        creds: CredentialCache,
        follower: Follower | None,
        *,
        upstreams: Upstreams | None = None,
        user_header: str = "",
        auth_wait: int | None = None,
        query_user: str | None = None,
        limits: LoginLimits | None = None,
        sightings: Sightings | None = None,
    ) -> None:
        self.table = table
        self.creds = creds
        self.follower = follower
        self.upstreams = upstreams or Upstreams()
        self.user_header = user_header.lower().encode()
        self.auth_wait = settings.get("auth_wait", auth_wait)
        self.query_user = settings.get("query_user", query_user) == "allow"
        self.limits = limits or LoginLimits.from_settings()
        self.metrics = Metrics()
        self.sightings = sightings if sightings is not None else Sightings(0)  # 0: records nothing
        self._cache: dict[tuple[str, str], bytes] = {}
        self.debug = log.isEnabledFor(logging.DEBUG)

    # Prepared answers: one dict lookup, no formatting per request.
    def _answer(self, endpoint: str, reason: str) -> bytes:
        key = (endpoint, reason)
        found = self._cache.get(key)
        if found is None:
            allow = self.table.allows(reason)
            status = (204 if allow else 403) if endpoint == "nginx" else 200 if allow else 403
            found = self._cache[key] = response(status, reason)
        return found

    def count(self, endpoint: str, reason: str) -> None:
        key = (endpoint, reason)
        self.metrics.decisions[key] = self.metrics.decisions.get(key, 0) + 1

    def activesync(self, endpoint: str, uri: str, headers: dict[bytes, bytes]) -> bytes:
        try:
            request = parse_uri(uri)
        except Garbage as exc:  # unreadable (no_device_id), or two DeviceIds (ambiguous_device_id)
            self.count(endpoint, exc.reason)
            return self._answer(endpoint, exc.reason)
        user = self._user(headers, request.user)
        reason = self.table.decide(request.device_id, user)
        self.count(endpoint, reason)
        if request.device_id:
            # A user only the query's User= names is anyone's claim: recorded apart, so
            # that it is listed but never taken as evidence that the device reads mail.
            credentialed = (self.user_header and headers.get(self.user_header)) or b"authorization" in headers
            protocol = "activesync" if credentialed or not user else "activesync-query"
            self.sightings.add(request.device_id, user or "", request.device_type, protocol)
        if self.debug:
            log.debug("%s %s user=%s -> %s", endpoint, request.device_id, user, reason)
        return self._answer(endpoint, reason)

    def _user(self, headers: dict[bytes, bytes], query_user: str) -> str | None:
        """The user the mail server will authenticate; None when nothing the gate may
        trust names one (``user_unverified``).

        In order: the header the proxy sets (``--user-header``); ``Authorization``
        (authorization.py); and only for a request with no credentials at all (or
        NTLM's first, empty message), the query's ``User=`` if ``query_user`` allows.
        Credentials that name no readable user never fall back to the query.
        """
        if self.user_header:
            value = headers.get(self.user_header)
            if value:
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return None
        auth = headers.get(b"authorization")
        if auth:
            named = read_authorization(auth)
            if named.user:
                return named.user
            if not named.handshake:
                return None
        return query_user if query_user and self.query_user else None

    # -- nginx mail auth_http ---------------------------------------------------------

    def mail_quick(self, headers: dict[bytes, bytes]) -> tuple[bytes | None, tuple[str, str, str, int]]:
        """The answer to a mail login, at once; None (with the user, password, protocol
        and attempt to check off the loop) only when an old argon2 hash must be checked.

        Every login costs the same one keyed hash whoever it names (credentials.py).
        The right password always passes: it has 144 random bits, no one guesses it,
        and a limit that refused it would let anyone lock a user out (after a restart,
        from a new address, at a second gate) by guessing at their name. A wrong one
        counts against its user and client; past their limits it is answered
        ``throttled`` with ``Auth-Wait``, and an old argon2 hash is not even tried.
        """
        user = unquote(headers.get(b"auth-user", b"").decode("utf-8", "replace"))
        password = unquote(headers.get(b"auth-pass", b"").decode("utf-8", "replace"))
        protocol = headers.get(b"auth-protocol", b"imap").decode("ascii", "replace").lower()
        attempt_text = headers.get(b"auth-login-attempt", b"1")
        attempt = int(attempt_text) if attempt_text.isdigit() and len(attempt_text) < 6 else 1
        client = headers.get(b"client-ip", b"").decode("latin-1")
        request = (user, password, protocol, attempt)
        if user:
            # No DeviceId in a mail login: who, and by which protocol (nginx sends one of three).
            self.sightings.add("", user, "", protocol if protocol in MAIL_PROTOCOLS else "other")
        if not user or not password:
            return self.mail_answer(None, protocol, attempt=attempt), request
        found = self.creds.find(password)
        if found is not None and self.table.names.owns(user, found[2], self.table.persons):
            self.limits.succeeded(user)
            return self.mail_answer(found[1], protocol, user, attempt=attempt), request
        if self.limits.throttled(user, client):
            return self._mail_refusal("throttled", protocol, attempt), request
        self.limits.failed(user, client)  # forgiven by mail_verify if an argon2 hash matches
        if self.creds.has_legacy(user):
            return None, request
        return self.mail_answer(None, protocol, user, attempt=attempt), request

    def mail_verify(self, user: str, password: str) -> int | None:
        """The device of an old (argon2) credential this login is; slow, off the event loop."""
        persons = self.table.persons
        device = self.creds.verify_legacy(user, password, lambda u, owner: self.table.names.owns(u, owner, persons))
        if device is not None:
            self.limits.succeeded(user)
        return device

    def mail_answer(self, device_id: int | None, protocol: str, user: str = "", *, attempt: int = 1) -> bytes:
        owner_reason = None if device_id is None else self.table.by_device.get(device_id)
        if owner_reason is None:
            reason = "unknown_device"
        elif not self.table.names.owns(user, owner_reason[0], self.table.persons):
            # The password was issued to an earlier owner of the device.
            reason = "user_mismatch"
        else:
            reason = owner_reason[1]
        upstream = self.upstreams.get(protocol)
        if reason == "ok" and upstream is not None:
            self.count("mail", reason)
            host, port = upstream
            return response(
                200,
                reason,
                (("Auth-Status", "OK"), ("Auth-Server", host), ("Auth-Port", str(port))),
            )
        return self._mail_refusal("no_upstream" if reason == "ok" else reason, protocol, attempt)

    def _mail_refusal(self, reason: str, protocol: str, attempt: int) -> bytes:
        self.count("mail", reason)
        headers: tuple[tuple[str, str], ...] = (("Auth-Status", reason),)
        # nginx keeps memory for every attempt of a session: after a few, no Auth-Wait,
        # so it closes the connection instead of letting the client guess on.
        if attempt < MAX_LOGIN_ATTEMPTS:
            headers += (("Auth-Wait", str(self.auth_wait)),)
        if protocol == "smtp":
            headers += (("Auth-Error-Code", "535 5.7.8"),)
        return response(200, reason, headers)

    def health(self) -> bytes:
        """Liveness, and what is wrong, told apart: the store unreachable (an outage),
        following it failing (a bug), the time-driven evaluation waiting for another
        writer's lock (normal, retried) or failing."""
        f = self.follower
        now = time.monotonic()
        up = f is None or f.store_up
        following = "ok" if f is None else f.following
        evaluation = f.evaluation if f is not None else None
        evaluating = "off" if evaluation is None else evaluation.state
        if not up:
            problem = "store_unreachable"
        elif following != "ok":
            problem = "following_failing"
        elif evaluating in ("failing", "store_unreachable"):
            problem = "evaluation_failing"
        else:
            problem = ""
        doc: dict[str, object] = {
            "status": "degraded" if problem else "ok",
            "store": "up" if up else "unreachable",
            "following": following,
            "evaluation": evaluating,
            "table_devices": len(self.table),
            "table_seq": self.table.seq,
            "table_age_seconds": round(now - (f.last_ok if f and f.last_ok else self.table.updated), 3),
        }
        if evaluation is not None:
            doc["evaluation_age_seconds"] = round(now - evaluation.last_ok, 3)
            if evaluation.error:
                doc["evaluation_error"] = evaluation.error
        if f is not None and f.error:
            doc["error"] = f.error
        doc["sightings"] = self.sightings.detail()
        body = (json.dumps(doc) + "\n").encode()
        return response(200, problem or "ok", body=body, ctype="application/json")
