"""``appban gate serve``: the decision service behind mail proxies (SPEC: Gate endpoints).

The hot path is plain code on a raw asyncio protocol (uvloop and httptools when
installed): parse the request line and the few headers that matter, look the
DeviceId up in the in-memory table, write a response prepared in advance. No
framework, no database call, no log line unless debug logging is on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import httptools

from appban.gate.activesync import Garbage, parse_uri
from appban.gate.credentials import CredentialCache
from appban.gate.decide import user_matches
from appban.gate.follower import Follower
from appban.gate.table import DecisionTable

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
}
# httptools buffers a header until it ends: without a cap, one client's endless header
# grows the gate without bound. Proxies send a few KB (nginx: 4 x 8 KB at most). A body
# (a proxy passing one by mistake) is skipped, not buffered, so it is not counted.
MAX_HEAD_BYTES = 1 << 20
_WANTED = {
    b"x-original-uri",
    b"x-forwarded-uri",
    b"authorization",
    b"auth-user",
    b"auth-pass",
    b"auth-protocol",
    b"auth-method",
    b"auth-login-attempt",
    b"client-ip",
}


@dataclass
class Upstreams:
    """Where nginx mail should send an allowed login, per protocol (``Auth-Server``/``Auth-Port``)."""

    default: tuple[str, int] | None = None
    by_protocol: dict[str, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: list[str]) -> Upstreams:
        out = cls()
        for spec in specs:
            proto, _, hostport = spec.rpartition("=")
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"--mail-upstream {spec!r}: expected [imap|pop3|smtp=]HOST:PORT")
            if proto:
                out.by_protocol[proto.lower()] = (host, int(port))
            else:
                out.default = (host, int(port))
        return out

    def get(self, protocol: str) -> tuple[str, int] | None:
        return self.by_protocol.get(protocol, self.default)


class Metrics:
    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.requests = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.requests += 1

    def render(self, table: DecisionTable, follower: Follower | None, creds: CredentialCache) -> bytes:
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
            "# HELP appban_gate_mail_credentials Active per-device mail passwords known.",
            "# TYPE appban_gate_mail_credentials gauge",
            f"appban_gate_mail_credentials {len(creds.active)}",
            "# HELP appban_gate_request_seconds Time to answer a request.",
            "# TYPE appban_gate_request_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(BUCKETS, self.counts, strict=False):
            cumulative += n
            lines.append(f'appban_gate_request_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'appban_gate_request_seconds_bucket{{le="+Inf"}} {self.requests}')
        lines.append(f"appban_gate_request_seconds_sum {self.total:.6f}")
        lines.append(f"appban_gate_request_seconds_count {self.requests}")
        return ("\n".join(lines) + "\n").encode()


def _response(
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
        auth_wait: int = 3,
    ) -> None:
        self.table = table
        self.creds = creds
        self.follower = follower
        self.upstreams = upstreams or Upstreams()
        self.user_header = user_header.lower().encode()
        self.auth_wait = auth_wait
        self.metrics = Metrics()
        self._cache: dict[tuple[str, str], bytes] = {}
        self.debug = log.isEnabledFor(logging.DEBUG)

    # Prepared answers: one dict lookup, no formatting per request.
    def _answer(self, endpoint: str, reason: str) -> bytes:
        key = (endpoint, reason)
        found = self._cache.get(key)
        if found is None:
            allow = self.table.allows(reason)
            status = (204 if allow else 403) if endpoint == "nginx" else 200 if allow else 403
            found = self._cache[key] = _response(status, reason)
        return found

    def count(self, endpoint: str, reason: str) -> None:
        key = (endpoint, reason)
        self.metrics.decisions[key] = self.metrics.decisions.get(key, 0) + 1

    def activesync(self, endpoint: str, uri: str, headers: dict[bytes, bytes]) -> bytes:
        try:
            request = parse_uri(uri)
        except Garbage:
            self.count(endpoint, "no_device_id")
            return self._answer(endpoint, "no_device_id")
        user = self._user(headers) or request.user
        reason = self.table.decide(request.device_id, user)
        self.count(endpoint, reason)
        if self.debug:
            log.debug("%s %s user=%s -> %s", endpoint, request.device_id, user, reason)
        return self._answer(endpoint, reason)

    def _user(self, headers: dict[bytes, bytes]) -> str:
        if self.user_header:
            value = headers.get(self.user_header)
            if value:
                return value.decode("utf-8", "replace")
        auth = headers.get(b"authorization")
        if auth and auth[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return ""
            return decoded.partition(":")[0]
        return ""

    # -- nginx mail auth_http ---------------------------------------------------------

    def mail_quick(self, headers: dict[bytes, bytes]) -> tuple[bytes | None, tuple[str, str, str, int]]:
        """Answer from the cache if possible; else the (user, password, protocol) to verify."""
        user = unquote(headers.get(b"auth-user", b"").decode("utf-8", "replace"))
        password = unquote(headers.get(b"auth-pass", b"").decode("utf-8", "replace"))
        protocol = headers.get(b"auth-protocol", b"imap").decode("ascii", "replace").lower()
        attempt_text = headers.get(b"auth-login-attempt", b"1")
        attempt = int(attempt_text) if attempt_text.isdigit() and len(attempt_text) < 6 else 1
        request = (user, password, protocol, attempt)
        if not user or not password:
            return self.mail_answer(None, protocol, attempt=attempt), request
        device = self.creds.cached(user, password)
        if device is not None:
            return self.mail_answer(device, protocol, user, attempt=attempt), request
        return None, request

    def mail_answer(self, device_id: int | None, protocol: str, user: str = "", *, attempt: int = 1) -> bytes:
        owner_reason = None if device_id is None else self.table.by_device.get(device_id)
        if owner_reason is None:
            reason = "unknown_device"
        elif not user_matches(user, owner_reason[0], self.table.mail_domain):
            # The password was issued to an earlier owner of the device.
            reason = "user_mismatch"
        else:
            reason = owner_reason[1]
        self.count("mail", reason)
        upstream = self.upstreams.get(protocol)
        if reason == "ok" and upstream is not None:
            host, port = upstream
            return _response(
                200,
                reason,
                (("Auth-Status", "OK"), ("Auth-Server", host), ("Auth-Port", str(port))),
            )
        if reason == "ok":
            reason = "no_upstream"
        headers: tuple[tuple[str, str], ...] = (("Auth-Status", reason),)
        # nginx keeps memory for every attempt of a session: after a few, no Auth-Wait,
        # so it closes the connection instead of letting the client guess on.
        if attempt < MAX_LOGIN_ATTEMPTS:
            headers += (("Auth-Wait", str(self.auth_wait)),)
        if protocol == "smtp":
            headers += (("Auth-Error-Code", "535 5.7.8"),)
        return _response(200, reason, headers)

    def health(self) -> bytes:
        f = self.follower
        up = f is None or f.store_up
        age = time.monotonic() - (f.last_ok if f and f.last_ok else self.table.updated)
        doc: dict[str, object] = {
            "status": "ok" if up else "degraded",
            "store": "up" if up else "unreachable",
            "table_devices": len(self.table),
            "table_seq": self.table.seq,
            "table_age_seconds": round(age, 3),
        }
        if not up:
            doc["error"] = f.error if f else ""
        body = (json.dumps(doc) + "\n").encode()
        return _response(200, "ok" if up else "store_unreachable", body=body, ctype="application/json")


# (url, wanted headers, method, start time, keep the connection open afterwards)
_Request = tuple[bytes, dict[bytes, bytes], bytes, float, bool]


class HttpProtocol(asyncio.Protocol):
    """One client connection (nginx keeps these alive); requests answered in order."""

    __slots__ = (
        "gate",
        "transport",
        "parser",
        "url",
        "headers",
        "started",
        "busy",
        "queue",
        "close_after",
        "refused",
        "head_bytes",
        "head_only",
    )

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.started = 0.0
        self.busy = False
        self.queue: list[_Request] = []
        self.close_after = False
        self.head_only = False
        self.refused = False
        self.head_bytes = 0  # received while reading a request line and headers; -1 in a body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.close_after or self.transport.is_closing():  # type: ignore[attr-defined]
            return  # nothing is read after "Connection: close" (RFC 9112 9.6)
        if self.head_bytes >= 0:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._refuse()
                return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            self._refuse()

    def _refuse(self) -> None:
        if self.close_after or self.transport.is_closing():  # type: ignore[attr-defined]
            return
        if self.busy:
            self.refused = True  # after the answers owed to the requests before it
            return
        self.transport.write(_response(400, "bad_request"))  # type: ignore[attr-defined]
        self.transport.close()  # type: ignore[attr-defined]

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > 16384:
            raise httptools.HttpParserError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WANTED or name == self.gate.user_header:
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.head_bytes = -1

    def on_message_complete(self) -> None:
        self.head_bytes = 0
        # HTTP/1.0 without keep-alive, or "Connection: close": answer, then close (RFC 9112 9.6).
        if self.transport.is_closing() or self.close_after:  # type: ignore[attr-defined]
            return
        keep_alive = self.parser.should_keep_alive()
        request = (self.url, self.headers, self.parser.get_method(), self.started, keep_alive)
        if self.busy:
            self.queue.append(request)
            return
        self._handle(*request)

    def _handle(self, url: bytes, headers: dict[bytes, bytes], method: bytes, started: float, keep: bool) -> None:
        self.head_only = method == b"HEAD"  # same headers, no body (RFC 9110 9.3.2)
        self._answer(url, headers, started)
        if not keep:
            self.queue.clear()
            if self.busy:
                self.close_after = True  # once the mail answer is out
            else:
                self.transport.close()  # type: ignore[attr-defined]

    def _answer(self, url: bytes, headers: dict[bytes, bytes], started: float) -> None:
        gate = self.gate
        path = url.split(b"?", 1)[0]
        if path == b"/auth/nginx":
            self._send(
                gate.activesync("nginx", _text(headers.get(b"x-original-uri", b"")), headers),
                started,
            )
        elif path == b"/auth/envoy" or path.startswith(b"/auth/envoy/"):
            # Envoy appends the original path to path_prefix (ext_authz http_service).
            self._send(gate.activesync("envoy", _text(url[len(b"/auth/envoy") :]), headers), started)
        elif path == b"/auth/traefik":
            self._send(
                gate.activesync("traefik", _text(headers.get(b"x-forwarded-uri", b"")), headers),
                started,
            )
        elif path == b"/auth/mail":
            answer, (user, password, protocol, attempt) = gate.mail_quick(headers)
            if answer is not None:
                self._send(answer, started)
            else:
                self._verify_later(user, password, protocol, started, attempt)
        elif path == b"/healthz":
            self._send(gate.health(), started, observe=False)
        elif path == b"/metrics":
            body = gate.metrics.render(gate.table, gate.follower, gate.creds)
            self._send(
                _response(200, "ok", body=body, ctype="text/plain; version=0.0.4"),
                started,
                observe=False,
            )
        else:
            self._send(_response(404, "not_found"), started, observe=False)

    def _verify_later(self, user: str, password: str, protocol: str, started: float, attempt: int = 1) -> None:
        # argon2 takes tens of milliseconds: verify off the event loop, answer in order.
        self.busy = True
        gate = self.gate
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, gate.creds.verify, user, password, gate.table.mail_domain)

        def done(f: asyncio.Future[int | None]) -> None:
            try:
                device = f.result()
            except Exception:  # noqa: BLE001 - a broken hash denies, never a 5xx
                device = None
            self._send(gate.mail_answer(device, protocol, user, attempt=attempt), started)
            self.busy = False
            if self.close_after:
                self.transport.close()  # type: ignore[attr-defined]
                return
            while self.queue and not self.busy:
                self._handle(*self.queue.pop(0))
            if self.refused and not self.busy:
                self.refused = False
                self._refuse()

        future.add_done_callback(done)

    def _send(self, answer: bytes, started: float, *, observe: bool = True) -> None:
        if self.head_only:
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.write(answer)  # type: ignore[attr-defined]
        if observe:
            self.gate.metrics.observe(time.perf_counter() - started)


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(gate: Gate, host: str, port: int, ready: Callable[[str, int], None] | None = None) -> None:
    install_loop()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HttpProtocol(gate), host, port, backlog=1024, reuse_address=True)
        sock = server.sockets[0].getsockname()
        if ready is not None:
            ready(sock[0], sock[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())
