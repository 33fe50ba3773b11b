"""Who is posting: the source a request's token belongs to.

A source token comes as ``Authorization: Bearer <token>``; where a sender can only be
configured with a URL and credentials (an MDM server's webhook), also as the password
of HTTP Basic credentials (RFC 7617; the user name is not checked). Every request asks
the store, so a revoked token is refused at once.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from appban import sources
from appban.serve.responses import ApiError
from appban.serve.service import Service

# Longer than any token appban makes; a longer header is refused before it is decoded.
_MOST = 512


async def source_of(request: Request, service: Service, *, basic: bool = False) -> str:
    """The source of the request's token; raises ApiError 401 (with WWW-Authenticate) if none."""
    challenge = 'Bearer realm="appban"' + (', Basic realm="appban"' if basic else "")
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    token = None
    if len(header) <= _MOST:
        if scheme.lower() == "bearer":
            token = credentials
        elif basic and scheme.lower() == "basic":
            token = _basic_password(credentials)
    if not token:
        raise ApiError(
            401,
            "a source token is needed: Authorization: Bearer <token>" + (" or Basic credentials" if basic else ""),
            field="Authorization",
            headers={"WWW-Authenticate": challenge},
        )
    name = await service.read(lambda store: sources.authenticate(store, token))
    if name is None:
        raise ApiError(
            401,
            "the token is not a live source token (unknown or revoked)",
            field="Authorization",
            headers={"WWW-Authenticate": challenge},
        )
    request.state.source = name
    return name


def _basic_password(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None
