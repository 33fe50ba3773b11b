"""The OpenAPI document: made from the code, and the API fuzzed against it (schemathesis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from helpers_serve import Database, ThreadServer, new_database
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from appban.inventory.checkin import CheckinBody


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadServer, Database]]:
    database = new_database(tmp_path_factory.mktemp("openapi"))
    with ThreadServer(database.path) as server:
        yield server, database


def test_the_document_is_served_and_its_checkin_body_is_checkinbody(api: tuple[ThreadServer, Database]) -> None:
    server, _ = api
    doc = httpx.get(server.url + "/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/api/v1/checkins"]["post"]
    one_of = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert one_of[0] == {"$ref": "#/components/schemas/CheckinBody"}
    _, generated = msgspec.json.schema_components([CheckinBody], ref_template="#/components/schemas/{name}")
    for name, schema in generated.items():
        assert doc["components"]["schemas"][name] == schema
    assert {"202", "400", "401", "413", "415", "429"} <= set(post["responses"])
    # What the server reads besides the body is described too.
    encoding = [p for p in post["parameters"] if p["in"] == "header" and p["name"] == "Content-Encoding"]
    assert encoding and "gzip" in encoding[0]["schema"]["enum"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    # Health, metrics and the document itself are not API operations.
    assert not {"/healthz", "/metrics", "/api/openapi.json"} & set(doc["paths"])


def test_every_api_route_is_documented(api: tuple[ThreadServer, Database]) -> None:
    """Each route under /api/v1 (from every area's module) has an operation with responses."""
    server, _ = api
    doc = httpx.get(server.url + "/api/openapi.json").json()
    from starlette.routing import Route

    for route in server.app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/v1/"):
            assert route.path in doc["paths"], route.path
            for method in route.methods or ():
                if method != "HEAD":
                    assert doc["paths"][route.path][method.lower()]["responses"], (route.path, method)


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    if isinstance(value, list):
        return b"\n".join(json.dumps(v).encode() for v in value)
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_as_documented(api: tuple[ThreadServer, Database], mode: GenerationMode) -> None:
    """Generated requests for every operation (fitting the document, and not), with a live
    token: never a 5xx, and every answer's status, type, headers and body as documented."""
    server, database = api
    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    token = {"Authorization": f"Bearer {database.token}"}

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            headers = {} if "Authorization" in (case.headers or {}) else token
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        check()


def test_the_document_names_no_path_of_this_machine(api: tuple[ThreadServer, Database]) -> None:
    server, _ = api
    text = httpx.get(server.url + "/api/openapi.json").text
    assert str(Path(__file__).parents[2]) not in text
