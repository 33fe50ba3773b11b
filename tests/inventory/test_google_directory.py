"""``appban import google-directory``: Admin SDK Directory API ``mobiledevices.list`` pages.

Golden files (tests/inventory/golden/google/): ``mobiledevices.page1.json`` and
``mobiledevices.page2.json`` are two pages of one listing, shaped as the MobileDevice
resource and the list response are documented; ``mobiledevices.expected.json`` is what
appban reads from them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.inventory.base import InventoryFormat, ReadOptions
from appban.inventory.checkin import Checkin
from appban.inventory.google_directory import GoogleDirectoryFormat
from fuzzing import examples
from helpers_cli import Fleet, assert_bad_input, where

GOLDEN = Path(__file__).parent / "golden" / "google"
PAGES = [GOLDEN / "mobiledevices.page1.json", GOLDEN / "mobiledevices.page2.json"]
NOW = parse_time("2020-07-12T12:00:00Z")


def options(**kw: Any) -> ReadOptions:
    return ReadOptions(now=NOW, max_bytes=1 << 20, **kw)


def summary(checkin: Checkin) -> dict[str, Any]:
    """What a reader decided about one record, in a form a golden file can hold."""
    d = checkin.device
    return {
        "source": checkin.source,
        "id": d.id,
        "platform": d.platform,
        "owner": d.owner,
        "ownership": d.ownership,
        "model": d.model,
        "os_version": d.os_version,
        "eas_device_ids": d.eas_device_ids,
        "inventory_scope": d.inventory_scope,
        "mail_access": d.mail_access,
        "identifiers": [list(i) for i in d.identifiers],
        "observed_at": format_time(checkin.observed_at),
        "apps": [[a.id, a.name, a.version, a.signing_sha256] for a in checkin.apps],
    }


def read(fmt: InventoryFormat, *paths: Path, **kw: Any) -> list[dict[str, Any]]:
    return [summary(c) for p in paths for _line, c in fmt.read(str(p), options(**kw))]


def test_the_documented_pages_read_as_the_golden_file() -> None:
    """Pages shaped as documented at
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/mobiledevices
    and https://developers.google.com/admin-sdk/directory/reference/rest/v1/mobiledevices/list
    (``kind``, ``etag``, ``mobiledevices``, ``nextPageToken``), with the guide's example
    fields: https://developers.google.com/admin-sdk/directory/v1/guides/manage-mobile-devices
    """
    expected = json.loads((GOLDEN / "mobiledevices.expected.json").read_text())
    assert read(GoogleDirectoryFormat(), *PAGES) == expected


def test_scope_mail_and_platform_follow_the_type() -> None:
    """https://developers.google.com/admin-sdk/directory/reference/rest/v1/mobiledevices:
    ``applications`` is "not applicable to Google Sync and iOS devices"."""
    by_model = {d["model"]: d for d in read(GoogleDirectoryFormat(), *PAGES)}
    assert by_model["Pixel 3a"]["inventory_scope"] == "full"  # work account on the owner profile
    assert by_model["SM-G973F"]["inventory_scope"] == "managed"  # a work profile
    assert by_model["iPhone12,1"]["inventory_scope"] == "none"
    assert by_model["iPhone12,1"]["apps"] == []
    assert by_model["iPad8,1"]["platform"] == "ipados"
    assert by_model["iPad8,1"]["eas_device_ids"] == ["V2UVOT7J157L7C1FLLSAABSOV4"]
    assert all(d["mail_access"] is True for d in by_model.values())
    assert "Lumia 950" not in by_model  # no platform a policy can name


def test_every_file_shape_gives_the_same_devices(tmp_path: Path) -> None:
    pages = [json.loads(p.read_text()) for p in PAGES]
    devices = [d for page in pages for d in page["mobiledevices"]]
    concatenated = tmp_path / "pages.json"
    concatenated.write_text("".join(json.dumps(p, indent=2) + "\n" for p in pages))
    lines = tmp_path / "pages.jsonl"
    lines.write_text("".join(json.dumps(p) + "\n" for p in pages))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(devices))
    one_per_line = tmp_path / "devices.jsonl"
    one_per_line.write_text("".join(json.dumps(d) + "\n" for d in devices))
    fmt = GoogleDirectoryFormat()
    expected = read(fmt, *PAGES)
    for path in (concatenated, lines, array, one_per_line):
        assert read(fmt, path) == expected, path.name


def test_source_and_naive_times() -> None:
    """``lastSync`` is RFC 3339 with an offset; one without is read in ``--timezone``."""
    from zoneinfo import ZoneInfo

    fmt = GoogleDirectoryFormat()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "naive.json"
        page = json.loads(PAGES[0].read_text())
        page["mobiledevices"][0]["lastSync"] = "2020-07-10T14:52:07"
        path.write_text(json.dumps(page))
        first = read(fmt, path, source="tenant-b", timezone=ZoneInfo("Europe/Paris"))[0]
    assert first["source"] == "tenant-b"
    assert first["observed_at"] == "2020-07-10T12:52:07Z"


def test_import_end_to_end(fleet: Fleet) -> None:
    """The documented pages through ``appban import``: TikTok on the owner profile blocks
    Jane's phone; Bob's work profile and the iOS sync devices cannot prove absence."""
    result = fleet.run("--json", "import", "google-directory", *map(str, PAGES))
    assert result.code == 0, result.err
    assert json.loads(result.out)["checkins"] == 4
    listed = json.loads(fleet.run("--json", "device", "list").out)["devices"]
    ids = {d["source_id"]: d["id"] for d in listed if d["source"] == "google-directory"}
    states = {}
    for source_id, ref in ids.items():
        shown = json.loads(fleet.run("--json", "device", "show", ref).out)
        states[source_id] = (shown["policies"]["tiktok-mail"]["state"], shown["decision"])
    assert states == {
        "AFiQxQ8Tq1LaL0wNDZ6tW_KyZxXwOWyE1R0nHZdqGmPr": ("blocked", "deny"),
        "AFiQxQ9aY8G7dLwbRkO6t6aF8e5bC0qZlS0NnXq0o2Tz": ("unverified", "allow"),
        "AFiQxQ_8b3WcYkq1pX0r6xHcE9d4lT2mUoVnRw5sJaKe": ("unverified", "allow"),
        "AFiQxQ-2nKd7Lw3XyZ9aB1cD4eF6gH8iJ0kL2mN4oP6q": ("unverified", "allow"),
    }


def _set(page: dict[str, Any], index: int, key: str, value: Any) -> dict[str, Any]:
    page["mobiledevices"][index][key] = value
    return page


@pytest.mark.parametrize(
    ("change", "field", "detail"),
    [
        (lambda p: _set(p, 1, "lastSync", "yesterday"), "mobiledevices[1].lastSync", ""),
        (lambda p: _set(p, 0, "email", "jane.doe@example.com"), "mobiledevices[0].email", "expected a list"),
        (lambda p: _set(p, 0, "email", ["not an address"]), "mobiledevices[0].email[0]", "not an e-mail"),
        (lambda p: _set(p, 1, "applications", [{"versionName": "1"}]), "mobiledevices[1].applications[0]", ""),
        (lambda p: _set(p, 1, "managedAccountIsOnOwnerProfile", "maybe"), "managedAccountIsOnOwnerProfile", ""),
        (lambda p: _set(p, 0, "resourceId", None) and _set(p, 0, "deviceId", None), "mobiledevices[0].resourceId", ""),
        (lambda p: {**p, "mobiledevices": [1]}, "mobiledevices[0]", "expected an object"),
    ],
)
def test_bad_records_name_file_record_and_field(
    fleet: Fleet, change: Callable[[dict[str, Any]], dict[str, Any]], field: str, detail: str
) -> None:
    page = change(json.loads(PAGES[0].read_text()))
    path = fleet.write("bad.json", json.dumps(page))
    result = fleet.run("import", "google-directory", str(path))
    assert_bad_input(result, where(path), field, detail)
    fleet.assert_unchanged()


def test_not_json_is_bad_input(fleet: Fleet) -> None:
    path = fleet.write("cut.json", PAGES[0].read_text()[:500])
    assert_bad_input(fleet.run("import", "google-directory", str(path)), where(path), "not valid JSON")
    fleet.assert_unchanged()


# -- fuzzing: mutated pages give check-ins or appban's BadInput, nothing else --------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> bytes:
    """``document`` with a few values replaced or removed, serialised; sometimes with a
    few of its bytes changed too."""
    doc = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    data = bytearray(json.dumps(doc).encode())
    if data and draw(st.integers(0, 3)) == 0:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


def assert_reads_or_refuses(fmt: InventoryFormat, data: bytes) -> None:
    fd, name = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            checkins = [c for _line, c in fmt.read(name, options())]
        except BadInput as exc:
            assert name in str(exc) and "\n" not in str(exc)
        else:
            assert all(isinstance(c, Checkin) for c in checkins)
    finally:
        os.unlink(name)


# A longer run: FUZZ_EXAMPLES=5000 pytest -k fuzz
FUZZ = settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(mutated(json.loads(PAGES[0].read_text())))
def test_fuzzed_pages_read_or_are_refused(data: bytes) -> None:
    assert_reads_or_refuses(GoogleDirectoryFormat(), data)


def test_an_app_id_with_a_control_character_is_kept_made_safe(fleet: Fleet) -> None:
    """An app's package name is its maker's: an invisible character in it costs the
    device nothing (kept made safe, so it can never pass for the real package)."""
    page = _set(json.loads(PAGES[0].read_text()), 0, "applications", [{"packageName": "com.evil\u202e.app"}])
    path = fleet.write("odd.json", json.dumps(page))
    result = fleet.run("import", "google-directory", str(path))
    assert result.code == 0, result.err
