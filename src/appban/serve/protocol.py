"""How ``appban serve`` runs under uvicorn: its options, and the HTTP protocol with the
bounds uvicorn lacks.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and answers 503
past ``limit_concurrency``, but has no deadline for a request's head and no limit on
its size: a connection that never sends a byte, or sends headers a byte at a time,
stays open for ever, and a 100 MB header line is buffered whole. Enough of them use
up the process's file descriptors and it stops answering anyone. ``BoundedHttp`` is
uvicorn's own httptools protocol with three additions:

- a deadline (``serve_header_timeout``) from a connection's start, and from each
  request's first byte, to the end of that request's headers: then it is closed;
- a cap on the bytes read before a request's headers end (``serve_max_header_bytes``,
  checked per chunk read, so it may pass by at most one chunk): 431, closed;
- a connection beyond ``serve_max_connections`` is answered 503 and closed at once,
  rather than kept until its request is read.

It hooks uvicorn's parser callbacks (``on_message_begin``, ``on_headers_complete``),
which are not a public API: the tests of this module fail if a uvicorn release
renames them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appban import settings
from appban.serve.responses import error_body

# Seconds an idle keep-alive connection stays open between requests (uvicorn's own default).
KEEP_ALIVE = 5


def options() -> dict[str, Any]:
    """uvicorn.Config's arguments for these bounds (the command and the tests use them)."""
    return {
        "http": BoundedHttp,
        "limit_concurrency": settings.get("serve_max_connections"),
        "timeout_keep_alive": KEEP_ALIVE,
    }


class BoundedHttp(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per connection: worker processes have no other moment to read them.
        self._head_seconds: float = settings.get("serve_header_timeout")
        self._head_most: int = settings.get("serve_max_header_bytes")
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # from the connection, or a request's first byte, to its headers' end
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            self._refuse(503, "Service Unavailable", "too many connections: retry later")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._head_most:
                self._refuse(431, "Request Header Fields Too Large", "the request line and headers are too long")

    # httptools' callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    # ------------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_seconds, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(408, "Request Timeout", "the request's headers did not arrive in time")
            else:  # nothing asked: nothing to answer
                self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer before any request reached the application, and close."""
        self._disarm()
        self._in_head = False
        body = error_body(status, message)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body)
        )
        self.transport.close()
