"""The access log: one JSON line per request, and no secret a path or query carries."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from helpers_serve import Database, ThreadServer


def test_a_value_in_the_path_is_logged_as_the_routes_template(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    server = ThreadServer(database.path)
    try:
        # A route that takes a value from its path: an employee's page (/me/<token>), the
        # token being the credential. A token that is not one is a 404, logged the same way.
        with caplog.at_level(logging.INFO, logger="appban.serve.access"):
            assert httpx.get(server.url + "/me/s3cret-token?x=also-secret").status_code == 404
            assert httpx.get(server.url + "/healthz?x=also-secret").status_code == 200
    finally:
        server.stop()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "appban.serve.access"]
    assert [line["path"] for line in lines] == ["/me/{token}", "/healthz"]
    assert "secret" not in caplog.text
    assert [line["status"] for line in lines] == [404, 200]
