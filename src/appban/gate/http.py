"""The gate's HTTP server: connections and the limits a framework would give them.

A raw asyncio protocol (uvloop and httptools when installed) reads the request line
and the few headers that matter and hands them to the ``Gate`` (``server.py``), whose
answers are prepared in advance. It bounds what any one client may hold: the time
to send a request, the time to sit idle, the bytes of a request head and of queued
requests, the answers left unread, the connections open at once; and it stops
within a second on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import cast

import httptools

from appban.gate.server import Gate, response

log = logging.getLogger("appban.gate")

# httptools buffers a header until it ends: without a cap, one client's endless header
# grows the gate without bound, and every open connection may hold one. Proxies send a
# few KB (nginx: large_client_header_buffers 4 x 8 KB by default); a Kerberos ticket in
# Authorization reaches about 48 KB. A body (a proxy passing one by mistake) is skipped,
# not buffered, so it is not counted. The default of gate_max_header_bytes.
MAX_HEAD_BYTES = 64 << 10
# Bytes of requests one connection may queue behind a mail login being verified (or
# while its client does not read its answers); the default of gate_max_pipeline_bytes.
MAX_PIPELINE_BYTES = 64 << 10
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


# (url, wanted headers, method, start time, keep the connection open afterwards)
_Request = tuple[bytes, dict[bytes, bytes], bytes, float, bool]

# What a queued request holds beyond its URL and wanted header values (the tuple, the
# dict and the objects in them), so that the byte cap also bounds a queue of tiny ones.
_REQUEST_OVERHEAD = 512
# A read takes at most this much. Every connection reads into one buffer the event loop
# shares (a read is parsed before the next one starts) and keeps only what it could not
# parse yet. A full read means more may be waiting: that connection reads again on the
# loop's next turn, after the others had theirs (libuv would otherwise read up to 32
# times in a row), so a client that floods the gate shares it with everyone else.
_READ = 16384
# A read is parsed a slice at a time: between slices the gate checks whether it must
# stop (the queue full, the client not reading its answers), so it goes past a limit by
# at most a slice's requests. nginx sends one request at a time: its reads are one slice.
_SLICE = 2048
# Answers the client has not taken yet: above the high mark the gate stops reading the
# connection (asyncio flow control, pause_writing) until they drain below the low one.
_WRITE_HIGH = 16384
_WRITE_LOW = 4096
# A connection evicted to make room must have stalled (or idled) at least this long: a
# proxy's request arrives in one packet within milliseconds. Short, so that a client that
# reconnects as fast as it is evicted cannot keep every place young.
_EVICT_AFTER = 0.1
_GET_HEAD = (b"GET", b"HEAD")


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the gate (the settings ``gate_*``)."""

    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    max_connections: int = 4096
    max_pipeline: int = 64
    max_header_bytes: int = MAX_HEAD_BYTES
    max_pipeline_bytes: int = MAX_PIPELINE_BYTES


class Connections:
    """The open client connections, and the limits a framework would give them.

    Timeouts are swept a few times a second rather than timed per request, which keeps
    the per-request path free of timers. At the cap, a new connection takes the place
    of the oldest one stalled in its request or not reading its answers (slowloris),
    else of the oldest idle one; when every connection is at work, it is refused (503).
    """

    def __init__(self, limits: Limits, executor: ThreadPoolExecutor | None = None) -> None:
        self.limits = limits
        self.executor = executor  # mail logins are verified here, off the event loop
        self.buffer = memoryview(bytearray(_READ))  # every connection reads into it
        self.open: dict[HttpProtocol, None] = {}  # oldest first
        self.accepted = 0
        self.closed = {
            "refused": 0,
            "evicted": 0,
            "header_timeout": 0,
            "idle_timeout": 0,
            "not_reading": 0,
            "stopping": 0,
        }
        self.pauses = 0
        self.write_pauses = 0
        self.queue_max = 0
        self.queue_bytes_max = 0
        self.dropped = 0
        self.verifications = 0
        self.stopping = False

    def admit(self, conn: HttpProtocol) -> bool:
        if self.stopping:
            return False
        if len(self.open) >= self.limits.max_connections:
            victim = self._victim(time.perf_counter())
            if victim is None:
                self.closed["refused"] += 1
                return False
            self.closed["evicted"] += 1
            self.forget(victim)  # its place is taken now, not once the close completes
            victim.close(None)
        self.open[conn] = None
        self.accepted += 1
        return True

    def forget(self, conn: HttpProtocol) -> None:
        self.open.pop(conn, None)

    def _victim(self, now: float) -> HttpProtocol | None:
        """The connection to close for a new one, oldest first: one stalled in a request
        (or whose client does not take its answers) for a moment; else one idle for a
        moment; else the oldest stalled one however young (a client that reconnects as
        fast as it is cut off keeps every place young); else none (503)."""
        idle: HttpProtocol | None = None
        young: HttpProtocol | None = None
        for conn in self.open:
            if conn.busy or (conn.paused and not conn.blocked):
                continue  # at work for the gate
            stalled = conn.in_request or conn.blocked
            if conn.closing():
                if not conn.unsent():
                    continue  # on its way out
                stalled = True  # closed, but still waiting for its client to read
            if now - conn.started < _EVICT_AFTER:
                if stalled and young is None:
                    young = conn
            elif stalled:
                return conn
            elif idle is None:
                idle = conn
        return idle or young

    def sweep(self, now: float) -> None:
        """Close connections whose request has not arrived in time, idle too long, or whose
        client has not taken its answers within the header timeout."""
        header, idle = self.limits.header_timeout, self.limits.idle_timeout
        for conn in list(self.open):
            waited = now - conn.started
            if conn.blocked or conn.closing():
                # Not reading what it was sent (or a close waiting to send it): given up.
                if waited > header and conn.unsent():
                    self.closed["not_reading"] += 1
                    conn.close(None)
                continue
            if conn.busy or conn.paused:
                continue  # waiting for the gate, not for the client
            if conn.in_request:
                if waited > header:
                    self.closed["header_timeout"] += 1
                    conn.close(_REQUEST_TIMEOUT)
            elif waited > idle:
                self.closed["idle_timeout"] += 1
                conn.close(None)

    def close_all(self) -> None:
        self.stopping = True
        for conn in list(self.open):
            self.closed["stopping"] += 1
            conn.close(None)


def _cost(url: bytes, headers: dict[bytes, bytes]) -> int:
    """What a queued request holds of the gate's memory, about."""
    return len(url) + sum(map(len, headers.values())) + _REQUEST_OVERHEAD


class HttpProtocol(asyncio.BufferedProtocol):
    """One client connection (nginx keeps these alive); requests answered in order.

    The gate reads from a client only while it can take what the client sends: not
    while the requests queued behind a mail login being verified reach their cap
    (``paused``), nor while the client leaves its answers unread (``blocked``: asyncio
    flow control), nor while bytes received wait to be parsed on the event loop's next
    turn (``stash``). What waits, waits in the client's buffers, not in the gate.
    """

    __slots__ = (
        "gate",
        "conns",
        "transport",
        "parser",
        "url",
        "headers",
        "started",
        "in_request",
        "busy",
        "queue",
        "queued",
        "stash",
        "paused",
        "blocked",
        "reading",
        "scheduled",
        "lost",
        "verifying",
        "close_after",
        "refused",
        "head_bytes",
        "head_only",
    )

    def __init__(self, gate: Gate, conns: Connections) -> None:
        self.gate = gate
        self.conns = conns
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        # When the request being received began (or the connection was made, or, when no
        # request is in progress, when the last one began): what the timeouts measure.
        self.started = time.perf_counter()
        self.in_request = True  # a new connection owes its first request
        self.busy = False  # a mail login is being verified
        self.queue: deque[_Request] = deque()  # requests received behind it
        self.queued = 0  # what they hold (_cost)
        self.stash = b""  # bytes received, not yet parsed
        self.paused = False  # the queue is full
        self.blocked = False  # the client is not taking its answers
        self.reading = True
        self.scheduled = False  # a turn on the event loop is booked
        self.lost = False
        self.verifying: asyncio.Future[int | None] | None = None
        self.close_after = False
        self.head_only = False
        self.refused = False  # a 400 is owed once the answers before it are out
        self.head_bytes = 0  # received while reading a request line and headers; -1 in a body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(_WRITE_HIGH, _WRITE_LOW)
        if not self.conns.admit(self):
            self.transport.write(_OVERLOADED)
            self.transport.close()
            self.lost = True

    def connection_lost(self, exc: Exception | None) -> None:
        # Nobody is left to answer: drop what was queued, and a login not yet verified
        # is not verified (a flood of them must not keep the gate busy for an hour).
        self.lost = True
        self.conns.forget(self)
        if self.queue:
            self.conns.dropped += len(self.queue)
            self.queue.clear()
        self.queued = 0
        self.stash = b""
        if self.verifying is not None:
            self.verifying.cancel()
            self.verifying = None

    def closing(self) -> bool:
        return self.transport.is_closing()

    def unsent(self) -> int:
        """Bytes written to this client that it has not taken yet."""
        return self.transport.get_write_buffer_size()

    def close(self, answer: bytes | None) -> None:
        """Close from the gate's side, with a last answer when none is owed before it; at
        once when the client has not taken what it was sent (the gate does not wait)."""
        transport = self.transport
        if not transport.is_closing() and answer is not None and not self.busy and not self.queue:
            transport.write(answer)
        if transport.get_write_buffer_size():
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    # -- reading, a turn at a time -------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.conns.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes <= _SLICE and not (self.stash or self.paused or self.blocked or self.refused or self.close_after):
            # A proxy's request, most often: straight to the parser.
            self._feed(self.conns.buffer[:nbytes])
            if self.queue and self._queue_full():
                self._queue_filled()
            return
        if self.close_after or self.refused or self.transport.is_closing():
            return  # nothing is read after "Connection: close" (RFC 9112 9.6), or a 400
        data: bytes | memoryview = self.conns.buffer[:nbytes]
        if self.stash:  # read before a pause took effect: it goes after what waits
            data, self.stash = self.stash + data, b""
        self._parse(data)
        if nbytes == _READ:  # more may be waiting: the other connections go first
            self._later()
            self._flow()

    def pause_writing(self) -> None:
        # The client leaves its answers unread: read nothing more from it until it takes
        # them, so that what it sends waits in its own buffers, not in the gate's memory.
        if not self.blocked:
            self.blocked = True
            self.conns.write_pauses += 1
            self._flow()

    def resume_writing(self) -> None:
        self.blocked = False
        self._later()

    def _parse(self, data: bytes | memoryview) -> None:
        """Parse a slice at a time while the gate can take more; keep the rest for later."""
        for start in range(0, len(data), _SLICE):
            if self.paused or self.blocked:
                self.stash = bytes(data[start:])
                break
            self._feed(data[start : start + _SLICE])
            if self.refused or self.close_after or self.transport.is_closing():
                break
            if self.queue and self._queue_full():
                self.paused = True
                self.conns.pauses += 1
        self._flow()

    def _queue_full(self) -> bool:
        limits = self.conns.limits
        return len(self.queue) >= limits.max_pipeline or self.queued >= limits.max_pipeline_bytes

    def _queue_filled(self) -> None:
        self.paused = True
        self.conns.pauses += 1
        self._flow()

    def _flow(self) -> None:
        """Read from the client only while the gate can take what it sends."""
        wanted = not (self.stash or self.paused or self.blocked or self.scheduled or self.refused or self.close_after)
        if wanted != self.reading and not self.transport.is_closing():
            self.reading = wanted
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _later(self) -> None:
        """Go on at the event loop's next turn, once every other connection had its own."""
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self.scheduled = False
        self._continue()

    def _continue(self) -> None:
        """Answer what waited, parse what was held back, then read again if the gate can."""
        if self.lost or self.transport.is_closing():
            return
        while self.queue and not self.busy and not self.blocked:
            request = self.queue.popleft()
            self.queued -= _cost(request[0], request[1])
            self._handle(*request)
        if self.refused:
            if not self.busy and not self.queue and not self.transport.is_closing():
                self.transport.write(_BAD_REQUEST)
                self.transport.close()
            return
        if self.paused and not self._queue_full():
            self.paused = False
        if self.stash and not self.paused and not self.blocked and not self.close_after:
            stash, self.stash = self.stash, b""
            self._parse(stash)
        else:
            self._flow()

    def _feed(self, data: bytes | memoryview) -> None:
        if self.head_bytes >= 0:
            self.head_bytes += len(data)
            if self.head_bytes > self.conns.limits.max_header_bytes:
                self._refuse()
                return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            self._refuse()

    def _refuse(self) -> None:
        """400 and close, once the answers owed to the requests before this one are out."""
        if self.refused or self.close_after or self.transport.is_closing():
            return
        self.refused = True
        self.stash = b""
        if not self.busy and not self.queue:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
        else:
            self._flow()  # nothing more is read

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.started = time.perf_counter()
        self.in_request = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > 16384:
            raise httptools.HttpParserError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WANTED or name == self.gate.user_header:
            # A repeated header is one comma-separated list (RFC 9110 5.3): two
            # Authorization or user headers then name no one, whichever the server reads.
            seen = self.headers.get(name)
            self.headers[name] = value if seen is None else seen + b", " + value

    def on_headers_complete(self) -> None:
        self.head_bytes = -1

    def on_message_complete(self) -> None:
        self.head_bytes = 0
        self.in_request = False
        # HTTP/1.0 without keep-alive, or "Connection: close": answer, then close (RFC 9112 9.6).
        if self.transport.is_closing() or self.close_after:
            return
        keep_alive = self.parser.should_keep_alive()
        request = (self.url, self.headers, self.parser.get_method(), self.started, keep_alive)
        if self.busy or self.blocked or self.queue:
            # Behind a mail login being verified, or answers the client has not taken: in line.
            self.queue.append(request)
            self.queued += _cost(self.url, self.headers)
            conns = self.conns
            if len(self.queue) > conns.queue_max:
                conns.queue_max = len(self.queue)
            if self.queued > conns.queue_bytes_max:
                conns.queue_bytes_max = self.queued
            return
        self._handle(*request)

    def _handle(self, url: bytes, headers: dict[bytes, bytes], method: bytes, started: float, keep: bool) -> None:
        self.head_only = method == b"HEAD"  # same headers, no body (RFC 9110 9.3.2)
        self._answer(url, headers, method, started)
        if not keep:
            self.queue.clear()
            self.queued = 0
            self.stash = b""
            if self.busy:
                self.close_after = True  # once the mail answer is out
                self._flow()  # nothing more is read
            else:
                self.transport.close()

    def _answer(self, url: bytes, headers: dict[bytes, bytes], method: bytes, started: float) -> None:
        gate = self.gate
        path = url.split(b"?", 1)[0]
        if path == b"/auth/envoy" or path.startswith(b"/auth/envoy/"):
            # Envoy forwards the client's method, whatever it is, and appends the
            # original path to path_prefix (ext_authz http_service).
            self._send(gate.activesync("envoy", _text(url[len(b"/auth/envoy") :]), headers), started)
        elif path not in _ROUTES:
            self._send(_NOT_FOUND, started, observe=False)
        elif method not in _GET_HEAD:
            # Every other endpoint is asked with GET (SPEC); nginx's auth_request
            # needs `proxy_method GET` (deploy/nginx/activesync.conf).
            self._send(_NOT_ALLOWED, started, observe=False)
        elif path == b"/auth/nginx":
            self._send(
                gate.activesync("nginx", _text(headers.get(b"x-original-uri", b"")), headers),
                started,
            )
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
        else:  # /metrics
            body = gate.metrics.render(
                gate.table, gate.follower, gate.creds, _connection_metrics(self.conns), gate.sightings
            )
            self._send(
                response(200, "ok", body=body, ctype="text/plain; version=0.0.4"),
                started,
                observe=False,
            )

    def _verify_later(self, user: str, password: str, protocol: str, started: float, attempt: int = 1) -> None:
        # argon2 takes tens of milliseconds: verify off the event loop, answer in order.
        if self.lost:
            return  # the client went away: nobody to answer, no work to do
        self.busy = True
        self.conns.verifications += 1
        gate = self.gate
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.conns.executor, gate.mail_verify, user, password)
        self.verifying = future

        def done(f: asyncio.Future[int | None]) -> None:
            self.verifying = None
            if f.cancelled() or self.lost:
                return
            try:
                device = f.result()
            except Exception:  # noqa: BLE001 - a broken hash denies, never a 5xx
                device = None
            self._send(gate.mail_answer(device, protocol, user, attempt=attempt), started)
            self.busy = False
            if self.close_after:
                self.transport.close()
                return
            self._continue()

        future.add_done_callback(done)

    def _send(self, answer: bytes, started: float, *, observe: bool = True) -> None:
        if self.head_only:
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        if not self.transport.is_closing():
            self.transport.write(answer)
        if observe:
            self.gate.metrics.observe(time.perf_counter() - started)


_ROUTES = frozenset((b"/auth/nginx", b"/auth/traefik", b"/auth/mail", b"/healthz", b"/metrics"))
_NOT_FOUND = response(404, "not_found")
_BAD_REQUEST = response(400, "bad_request")
_NOT_ALLOWED = response(405, "method_not_allowed", (("Allow", "GET, HEAD"),))
_REQUEST_TIMEOUT = response(408, "request_timeout", (("Connection", "close"),))
_OVERLOADED = response(503, "overloaded", (("Connection", "close"),))


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _within_file_limit(limits: Limits) -> Limits:
    """The connection cap, with room for it in the open-file limit.

    Past that limit accept() fails and the event loop stops accepting for a while,
    which would refuse everyone; the soft limit is raised toward the hard one first.
    """
    import resource

    spare = 64  # the store's files, logs, the event loop's own
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = limits.max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    fits = max(1, soft - spare)
    log.warning("open-file limit %d: at most %d connections (gate_max_connections %d)", soft, fits, need - spare)
    return replace(limits, max_connections=fits)


def serve(
    gate: Gate,
    host: str,
    port: int,
    ready: Callable[[str, int], None] | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, close every connection, return."""
    install_loop()
    limits = _within_file_limit(limits or Limits())
    executor = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="appban-gate-verify")
    conns = Connections(limits, executor)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await loop.create_server(
            lambda: HttpProtocol(gate, conns), host, port, backlog=1024, reuse_address=True
        )
        sock = server.sockets[0].getsockname()
        if ready is not None:
            ready(sock[0], sock[1])
        sweep_every = min(1.0, limits.header_timeout / 4, limits.idle_timeout / 4)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), sweep_every)
            except TimeoutError:
                conns.sweep(time.perf_counter())
        log.info("stopping: %d connection%s open", len(conns.open), "" if len(conns.open) == 1 else "s")
        server.close()  # no new connections
        conns.close_all()
        await asyncio.sleep(0)  # let the transports close

    try:
        asyncio.run(main())
    finally:
        # Logins still queued for verification are dropped; one being verified ends on its own.
        executor.shutdown(wait=False, cancel_futures=True)


def _connection_metrics(conns: Connections) -> list[str]:
    """What /metrics says of the connections: open, closed by cause, paused, queued."""
    paused = sum(1 for c in conns.open if c.paused)
    not_reading = sum(1 for c in conns.open if c.blocked)
    return [
        "# HELP appban_gate_connections Client connections open.",
        "# TYPE appban_gate_connections gauge",
        f"appban_gate_connections {len(conns.open)}",
        "# HELP appban_gate_connections_accepted_total Client connections accepted.",
        "# TYPE appban_gate_connections_accepted_total counter",
        f"appban_gate_connections_accepted_total {conns.accepted}",
        "# HELP appban_gate_connections_closed_total Connections the gate closed, by cause.",
        "# TYPE appban_gate_connections_closed_total counter",
        *(f'appban_gate_connections_closed_total{{cause="{k}"}} {n}' for k, n in sorted(conns.closed.items())),
        "# HELP appban_gate_pipeline_paused Connections not read until their queued requests drain.",
        "# TYPE appban_gate_pipeline_paused gauge",
        f"appban_gate_pipeline_paused {paused}",
        "# HELP appban_gate_pipeline_pauses_total Times a connection's queue was full and reading paused.",
        "# TYPE appban_gate_pipeline_pauses_total counter",
        f"appban_gate_pipeline_pauses_total {conns.pauses}",
        "# HELP appban_gate_pipeline_queue_max Most requests queued on one connection so far.",
        "# TYPE appban_gate_pipeline_queue_max gauge",
        f"appban_gate_pipeline_queue_max {conns.queue_max}",
        "# HELP appban_gate_pipeline_queue_bytes_max Most bytes of requests queued on one connection so far.",
        "# TYPE appban_gate_pipeline_queue_bytes_max gauge",
        f"appban_gate_pipeline_queue_bytes_max {conns.queue_bytes_max}",
        "# HELP appban_gate_clients_not_reading Connections not read until their client takes its answers.",
        "# TYPE appban_gate_clients_not_reading gauge",
        f"appban_gate_clients_not_reading {not_reading}",
        "# HELP appban_gate_write_pauses_total Times a client left its answers unread and reading paused.",
        "# TYPE appban_gate_write_pauses_total counter",
        f"appban_gate_write_pauses_total {conns.write_pauses}",
        "# HELP appban_gate_pipeline_dropped_total Queued requests dropped: their client went away.",
        "# TYPE appban_gate_pipeline_dropped_total counter",
        f"appban_gate_pipeline_dropped_total {conns.dropped}",
        "# HELP appban_gate_mail_verifications_total Mail logins verified off the event loop.",
        "# TYPE appban_gate_mail_verifications_total counter",
        f"appban_gate_mail_verifications_total {conns.verifications}",
    ]
