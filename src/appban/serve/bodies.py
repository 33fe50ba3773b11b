"""Reading a request body with bounds: size (after decompression), time, and encoding.

The body is streamed, never taken whole from the server: a body larger than
``limit`` is refused (413) as soon as it passes the limit. With ``Content-Encoding:
gzip`` the limit applies to the decompressed bytes, and zlib is asked for at most
one byte past the room left, so a gzip bomb never expands in memory beyond the
limit. The compressed bytes are bounded too (deflate's empty blocks can make a
stream that grows without output). The whole body must arrive within
``serve_body_timeout`` seconds (a slow client, or a body that never ends: 408).

``Guard`` applies this before any handler runs, to the endpoints that anyone may
call without a credential and that need only a small body (osquery's enroll,
config and distributed/read): a large body is refused before a handler decodes
it, however the handler reads it. It also closes the connection after any answer
given before the request's body was read (a 401, 413, 415, 429): kept open, the
server would read and discard whatever the client still sends, a gigabyte or a
body that never ends.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appban import settings
from appban.serve.responses import ApiError, error_response

_GZIP = 16 + zlib.MAX_WBITS  # zlib's gzip framing (RFC 1952), header and trailer checked


async def read_body(
    request: Request, *, limit: int, setting: str = "serve_max_body_bytes", timeout: float | None = None
) -> bytes:
    """The whole body, decompressed; raises ApiError 413 (naming ``setting``, the limit's
    own), 400, 408 (after ``timeout`` seconds, by default serve_body_timeout) or 415."""
    sink = _sink(request.headers, limit, setting, keep=True)
    await _stream(request.stream(), sink, timeout)
    return sink.finish()


def _sink(headers: Headers, limit: int, setting: str, *, keep: bool) -> _Plain:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise ApiError(415, "Content-Encoding must be gzip or none", field="Content-Encoding")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, setting)
    return (_Gunzip if encoding != "identity" else _Plain)(limit, setting, keep=keep)


async def _stream(chunks: AsyncIterator[bytes], sink: _Plain, timeout: float | None = None) -> None:
    if timeout is None:
        timeout = settings.get("serve_body_timeout")
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                sink.feed(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            f"the body did not arrive within {timeout:g} s",
            field=settings.SETTINGS["serve_body_timeout"].env,
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the body ended") from None


def _too_large(limit: int, setting: str) -> ApiError:
    return ApiError(
        413,
        f"the body is larger than {limit:,} bytes (decompressed)",
        field=settings.SETTINGS[setting].env,
        headers={"Connection": "close"},
    )


class _Plain:
    def __init__(self, limit: int, setting: str = "serve_max_body_bytes", *, keep: bool = True) -> None:
        self.limit = limit
        self.setting = setting
        self.keep = keep
        self.size = 0
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.limit, self.setting)
        if self.keep:
            self.parts.append(chunk)

    def finish(self) -> bytes:
        return b"".join(self.parts)


class _Gunzip(_Plain):
    """gzip, one member or several in a row (``cat a.gz b.gz`` is a valid gzip stream)."""

    def __init__(self, limit: int, setting: str = "serve_max_body_bytes", *, keep: bool = True) -> None:
        super().__init__(limit, setting, keep=keep)
        self.raw = 0
        self.unzip = zlib.decompressobj(_GZIP)
        self.started = False

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self.raw > self.limit:
            raise _too_large(self.limit, self.setting)
        data = chunk
        while data:
            if self.unzip.eof:  # the next member begins
                self.unzip = zlib.decompressobj(_GZIP)
            self.started = True
            try:
                # At most one byte past the room left: enough to know the limit is passed.
                out = self.unzip.decompress(data, self.limit - self.size + 1)
            except zlib.error:
                raise ApiError(400, "the body is not valid gzip", field="Content-Encoding") from None
            super().feed(out)
            data = self.unzip.unconsumed_tail or self.unzip.unused_data

    def finish(self) -> bytes:
        if self.started and not self.unzip.eof:
            raise ApiError(400, "the gzip stream ends early", field="Content-Encoding")
        return super().finish()


# The endpoints anyone may call before a credential is checked, and whose bodies are
# small (an enroll secret and host facts; a node key): osquery's log and distributed
# write carry results, and bound their bodies themselves.
SMALL_BODIES = frozenset({"/api/v1/osquery/enroll", "/api/v1/osquery/config", "/api/v1/osquery/distributed/read"})


class Guard:
    """ASGI middleware: small endpoints' bodies bounded before their handler runs, and
    ``Connection: close`` on any answer given before the body was read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        unread = "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")

        async def tracking() -> Message:
            nonlocal unread
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                unread = False
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        if unread and scope["path"] in SMALL_BODIES:
            try:
                body = await self._take(scope, receive)
            except ApiError as exc:
                answer = error_response(exc.status_code, exc.message, field=exc.field, headers=exc.headers)
                await answer(scope, receive, closing)
                return
            except ClientDisconnect:
                return
            unread = False
            given = False

            async def replay() -> Message:
                nonlocal given
                if given:
                    return await receive()
                given = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, closing)
            return
        await self.app(scope, tracking, closing)

    @staticmethod
    async def _take(scope: Scope, receive: Receive) -> bytes:
        """The body as sent (still compressed: the handler reads it as it would have),
        once its decompressed size is known to be within the limit."""
        request = Request(scope, receive)
        setting = "serve_small_body_bytes"
        sink = _sink(request.headers, settings.get(setting), setting, keep=False)
        parts: list[bytes] = []

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                parts.append(chunk)
                yield chunk

        await _stream(chunks(), sink)
        return b"".join(parts)
