"""The OpenAPI document of ``appban serve`` (``GET /api/openapi.json``), made from the code.

Each endpoint's docstring carries its operation after a ``---`` line, in YAML
(Starlette's ``SchemaGenerator`` collects them from every route the app has, the
osquery and webhook routes included). Schemas are never written by hand: the
check-in body is ``CheckinBody``, and answers are the msgspec types in
``schemas``; ``msgspec.json.schema_components`` turns them into JSON Schema.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from appban import __version__
from appban.serve import schemas
from appban.serve.responses import json_response

_BASE = {
    "openapi": "3.1.0",
    "info": {
        "title": "appban",
        "version": __version__,
        "description": "appban serve: check-ins from agents and MDM servers, and osquery's remote API.",
    },
}


def document(routes: list[BaseRoute]) -> dict[str, Any]:
    doc: dict[str, Any] = SchemaGenerator(dict(_BASE)).get_schema(routes)
    _, components = msgspec.json.schema_components(schemas.TYPES, ref_template="#/components/schemas/{name}")
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    doc["components"]["securitySchemes"] = {
        "sourceToken": {"type": "http", "scheme": "bearer", "description": "A token of `appban source token create`."},
        "sourceTokenBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "A source token as the password of Basic credentials (MDM webhooks).",
        },
    }
    return doc


async def endpoint(request: Request) -> Response:
    """This document."""
    app = request.app
    doc = getattr(app.state, "openapi", None)
    if doc is None:
        doc = app.state.openapi = document(app.routes)
    return json_response(doc)
