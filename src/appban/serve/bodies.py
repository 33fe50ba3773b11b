"""Reading a request body with bounds: size (after decompression), time, and encoding.

The body is streamed, never taken whole from the server: a body larger than
``limit`` is refused (413) as soon as it passes the limit. With ``Content-Encoding:
gzip`` the limit applies to the decompressed bytes, and zlib is asked for at most
one byte past the room left, so a gzip bomb never expands in memory beyond the
limit. The compressed bytes are bounded too (deflate's empty blocks can make a
stream that grows without output). The whole body must arrive within
``serve_body_timeout`` seconds (a slow client, or a body that never ends: 408).
"""

from __future__ import annotations

import asyncio
import zlib

from starlette.requests import ClientDisconnect, Request

from appban import settings
from appban.serve.responses import ApiError

_GZIP = 16 + zlib.MAX_WBITS  # zlib's gzip framing (RFC 1952), header and trailer checked


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body, decompressed; raises ApiError 413, 400, 408 or 415."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise ApiError(415, "Content-Encoding must be gzip or none", field="Content-Encoding")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    sink = _Gunzip(limit) if encoding != "identity" else _Plain(limit)
    timeout = settings.get("serve_body_timeout")
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
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
    return sink.finish()


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the body is larger than {limit:,} bytes (decompressed)",
        field=settings.SETTINGS["serve_max_body_bytes"].env,
        headers={"Connection": "close"},
    )


class _Plain:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self.parts.append(chunk)

    def finish(self) -> bytes:
        return b"".join(self.parts)


class _Gunzip(_Plain):
    """gzip, one member or several in a row (``cat a.gz b.gz`` is a valid gzip stream)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.raw = 0
        self.unzip = zlib.decompressobj(_GZIP)
        self.started = False

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self.raw > self.limit:
            raise _too_large(self.limit)
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
