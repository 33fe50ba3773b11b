"""Prometheus metrics of ``appban serve`` and its access log, both fed by one middleware.

The access log is one JSON line per request (logger ``appban.serve.access``): time,
method, path (without the query, and as its route's template where the route takes a
value from the path: either may carry a secret), status, duration_ms,
source (the token's, when one was accepted) and bytes_in (as received, before any
decompression).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appban.histogram import Histogram
from appban.serve import osquery

access_log = logging.getLogger("appban.serve.access")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = Histogram(BUCKETS)
        self.throttled = 0
        self.bytes_in = 0

    def observe(self, route: str, status: int, seconds: float, bytes_in: int) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.observe(seconds)
        self.bytes_in += bytes_in
        if status == 429:
            self.throttled += 1

    def render(self, service: Any, sender: Any = None) -> bytes:
        lines = [
            "# HELP appban_serve_requests_total Requests answered, by route and status.",
            "# TYPE appban_serve_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'appban_serve_requests_total{{route="{route}",status="{status}"}} {n}')
        lines += [
            "# HELP appban_serve_throttled_total Requests refused with 429 (a source over its rate).",
            "# TYPE appban_serve_throttled_total counter",
            f"appban_serve_throttled_total {self.throttled}",
            "# HELP appban_serve_received_bytes_total Request body bytes received (before decompression).",
            "# TYPE appban_serve_received_bytes_total counter",
            f"appban_serve_received_bytes_total {self.bytes_in}",
        ]
        if service is not None:
            c = service.counters
            lines += [
                "# HELP appban_serve_checkins_total Check-ins by what became of them.",
                "# TYPE appban_serve_checkins_total counter",
                *(
                    f'appban_serve_checkins_total{{status="{s}"}} {getattr(c, s)}'
                    for s in ("applied", "ignored", "rejected")
                ),
                "# HELP appban_serve_transactions_total Write transactions (each applies a group of check-ins).",
                "# TYPE appban_serve_transactions_total counter",
                f"appban_serve_transactions_total {c.transactions}",
                "# HELP appban_serve_transaction_failures_total Write transactions that failed "
                "(each job run again alone, unless the database was busy).",
                "# TYPE appban_serve_transaction_failures_total counter",
                f"appban_serve_transaction_failures_total {c.failures}",
                "# HELP appban_serve_writer_queue Jobs waiting for the writer.",
                "# TYPE appban_serve_writer_queue gauge",
                f"appban_serve_writer_queue {service.waiting}",
            ]
        if sender is not None:
            counts = sender.counters()
            lines += [
                "# HELP appban_notices_total Notices the sender inside this process delivered (sent), marked failed, "
                "or put back for a later try (retried); errors: rounds that failed.",
                "# TYPE appban_notices_total counter",
                *(f'appban_notices_total{{result="{k}"}} {n}' for k, n in sorted(counts.items())),
            ]
        lines += self.latency.lines("appban_serve_request_seconds", "Time to answer a request.")
        return ("\n".join(lines) + "\n").encode()


async def endpoint(request: Request) -> Response:
    """Prometheus text exposition."""
    app = request.app
    body = app.state.metrics.render(getattr(app.state, "service", None), getattr(app.state, "notify", None))
    body += ("\n".join(osquery.counters_of(app.state).render()) + "\n").encode()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


class Observe:
    """Times every HTTP request, counts it by route and status, and writes the access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 500
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            # The route's template, never the raw path: a client cannot add label values.
            name = getattr(route, "path", None) or "other"
            scope["app"].state.metrics.observe(name, status, seconds, received)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    msgspec.json.encode(
                        {
                            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                            "method": scope["method"],
                            # A path that carries a value (a token in /me/{token}) is logged as its template.
                            "path": name if "{" in name else scope["path"],
                            "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                            "source": state.get("source"),
                            "bytes_in": received,
                        }
                    ).decode()
                )
