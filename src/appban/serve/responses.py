"""The one error shape of every 4xx and 5xx ``appban serve`` gives.

``{"error": {"status": N, "message": "...", "field": ... or null, "index": ... or null}}``:
``field`` names the part of the request at fault (a header, a setting's limit, a
check-in field), ``index`` the item of a batch, when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.responses import Response


class ApiError(HTTPException):
    """A request refused, answered with the JSON error shape (and ``headers``, e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers) if headers else None)
        self.message = message
        self.field = field
        self.index = index


def error_body(status: int, message: str, *, field: str | None = None, index: int | None = None) -> bytes:
    return msgspec.json.encode({"error": {"status": status, "message": message, "field": field, "index": index}})


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    index: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, field=field, index=index),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type="application/json",
    )


def json_response(doc: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode(doc),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type="application/json",
    )
