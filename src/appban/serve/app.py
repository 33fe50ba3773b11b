"""``appban serve``'s one ASGI application, assembled here from each area's routes.

The check-in API (``checkins``), osquery's remote API (``osquery``), MDM webhooks
(``webhooks``) and employees' own pages (``me``) each give their routes; this module
adds health, metrics and the OpenAPI document, the one error shape (``responses``),
the access log, and the bounds applied before any handler runs (``bodies.Guard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appban import settings
from appban.errors import AppbanError, BadInput, Busy
from appban.notify.sender import Background
from appban.serve import bodies, checkins, me, metrics, openapi, osquery, webhooks
from appban.serve.budget import ByteBudget
from appban.serve.responses import ApiError, error_response, json_response
from appban.serve.service import Service

log = logging.getLogger("appban.serve")


def create_app(service: Service | None = None, db: str | None = None) -> Starlette:
    """The application. It opens its own Service on ``db`` (default: the ``db`` setting)
    at start and closes it at stop, unless given one (which the caller closes)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = service is None
        app.state.service = service if service is not None else Service(db or settings.get("db"))
        # The notice sender runs beside the web process it belongs to (not in-process
        # tests handing in their own Service): the outbox is sent while appban serve runs.
        sender = Background(db or settings.get("db")) if own else None
        app.state.notify = sender
        if sender is not None:
            sender.start()
        try:
            yield
        finally:
            if sender is not None:
                await asyncio.to_thread(sender.stop)
            if own:
                await asyncio.to_thread(app.state.service.close)

    routes: list[BaseRoute] = [
        *checkins.routes(),
        *osquery.routes(),
        *webhooks.routes(),
        *me.routes(),
        Route("/healthz", healthz, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False),
        Route("/api/openapi.json", openapi.endpoint, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Observe first, to time and count what Guard refuses too.
        middleware=[Middleware(metrics.Observe), Middleware(bodies.Guard)],
        exception_handlers={HTTPException: _http_error, AppbanError: _appban_error, Exception: _internal_error},
    )
    app.state.metrics = metrics.Metrics()
    app.state.buckets = checkins.Buckets(settings.get("serve_checkin_rate"), settings.get("serve_checkin_burst"))
    app.state.decode_budget = ByteBudget(settings.get("serve_decode_bytes"))
    if service is not None:  # usable before the lifespan runs (in-process tests)
        app.state.service = service
    return app


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.message, field=exc.field, index=exc.index, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _appban_error(request: Request, exc: Exception) -> Response:
    """appban's own errors carry their status: a busy database is 503, bad input 400.

    A server-side failure is told in a few fixed words: its own message names the
    database's file or other things of the server's, which are no client's business.
    """
    assert isinstance(exc, AppbanError)
    if isinstance(exc, BadInput):
        return error_response(exc.http_status, str(exc), field=exc.field)
    log.error("%s: %s", type(exc).__name__, exc)
    if isinstance(exc, Busy):
        wait = settings.get("busy_timeout")
        return error_response(
            503,
            f"the database is busy: another writer held it for more than {wait:g} s; retry later",
            headers={"Retry-After": str(min(60, max(1, math.ceil(wait))))},
        )
    return error_response(500, "internal error")


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Logged with its traceback by the server; the client learns only that it failed.
    return error_response(500, "internal error")
