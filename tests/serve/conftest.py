"""Fixtures of the serve tests. The gate's helpers (tests/gate) are importable here too."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gate"))

from helpers_serve import Database, ThreadServer, new_database  # noqa: E402


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """An initialised database with source ``agent`` and a live token of it."""
    return new_database(tmp_path)


@pytest.fixture
def server(database: Database) -> Iterator[ThreadServer]:
    """``appban serve``'s app on a real socket, in a thread, on ``database``."""
    with ThreadServer(database.path) as running:
        yield running


@pytest.fixture
def client(server: ThreadServer, database: Database) -> Iterator[httpx.Client]:
    """An HTTP client of ``server`` carrying the token of source ``agent``."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {database.token}"}, timeout=30) as c:
        yield c
