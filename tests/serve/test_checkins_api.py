"""POST /api/v1/checkins over a real socket: every answer the issue names."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import time
import zlib
from typing import Any

import httpx
import msgspec
import pytest
from helpers_serve import CHECKINS, NOTES, TIKTOK, Database, ThreadServer, bearer, checkin

from appban.serve.schemas import CheckinResults, Error
from helpers_cli import snapshot

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def post(client: httpx.Client, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(CHECKINS, content=content, headers={**JSON, **(headers or {})})


def results(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 202, response.text
    msgspec.json.decode(response.content, type=CheckinResults)  # the documented shape
    return list(response.json()["results"])


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    msgspec.json.decode(response.content, type=Error)
    detail = response.json()["error"]
    assert detail["status"] == status
    return dict(detail)


def show(database: Database, device_id: str) -> dict[str, Any]:
    return dict(database.appban("device", "show", device_id))


# -- accepted ------------------------------------------------------------------------------


def test_one_checkin_is_applied_and_filed_under_the_tokens_source(client: httpx.Client, database: Database) -> None:
    r = results(post(client, checkin("PHONE-1", apps=[TIKTOK, NOTES])))
    assert r == [{"index": 0, "device": "PHONE-1", "status": "applied"}]
    shown = show(database, "PHONE-1")
    assert (shown["source"], shown["source_id"], shown["owner"]) == ("agent", "PHONE-1", "jane.doe@example.com")


def test_the_same_snapshot_again_is_ignored(client: httpx.Client) -> None:
    body = checkin("PHONE-2")
    assert results(post(client, body))[0]["status"] == "applied"
    assert results(post(client, body))[0]["status"] == "ignored"
    older = checkin("PHONE-2", at="2020-07-09T15:00:00Z")
    assert results(post(client, older))[0]["status"] == "ignored"


def test_a_batch_of_good_and_bad_items(client: httpx.Client, database: Database) -> None:
    batch = [
        checkin("GOOD-1"),
        checkin("BAD-1", platform="blackberry"),
        {"device": {"id": "BAD-2", "platform": "ios", "owner": "not an address"}, "observed_at": "x", "apps": []},
        checkin("GOOD-2", apps=[TIKTOK]),
        42,
        checkin("BAD-3", source="someone-else"),
    ]
    r = results(post(client, batch))
    assert [x["index"] for x in r] == list(range(6))
    assert [x["status"] for x in r] == ["applied", "rejected", "rejected", "applied", "rejected", "rejected"]
    assert r[1]["error"]["field"] == "device.platform"
    assert r[2]["error"]["field"] in ("device.owner", "observed_at")
    assert r[5]["error"]["field"] == "source"
    assert all(x["error"]["message"] for x in r if x["status"] == "rejected")
    for good in ("GOOD-1", "GOOD-2"):
        assert show(database, good)["id"]
    for bad in ("BAD-1", "BAD-2", "BAD-3"):
        assert run_show_fails(database, bad)


def run_show_fails(database: Database, device_id: str) -> bool:
    from helpers_cli import run

    return run("--db", database.path, "device", "show", device_id).code == 2


def test_a_time_with_a_typo_is_rejected_not_read_as_another(client: httpx.Client, database: Database) -> None:
    """Python 3.11's fromisoformat read "10:00:009" as 10:00:00: the typo must not store a
    snapshot under a time nobody sent."""
    r = results(
        post(client, [checkin("TYPO-1", at="2026-11-28T10:00:009Z"), checkin("TYPO-2", at="2026-11-28T10:00:09Z")])
    )
    assert [x["status"] for x in r] == ["rejected", "applied"]
    assert r[0]["error"]["field"] == "observed_at"
    assert run_show_fails(database, "TYPO-1")


def test_a_rejected_item_writes_nothing(client: httpx.Client, database: Database) -> None:
    assert results(post(client, checkin("KEEP-1", apps=[NOTES])))[0]["status"] == "applied"
    before = snapshot(database.path)
    bad_update = checkin("KEEP-1", apps=[TIKTOK, TIKTOK], at="2020-07-10T16:00:00Z")  # a duplicate app
    new_bad = checkin("NEW-1", eas=["bad id with spaces"])
    r = results(post(client, [bad_update, new_bad]))
    assert [x["status"] for x in r] == ["rejected", "rejected"]
    after = snapshot(database.path)
    changed = {t for t in after if after[t] != before.get(t)}
    # Only the audit log's note of what came in (and the store's clock) may change.
    assert changed <= {"audit_log", "meta"}, changed


def test_json_lines_a_bad_line_is_a_rejected_item(client: httpx.Client) -> None:
    lines = [json.dumps(checkin("NL-1")).encode(), b"{not json", b"", json.dumps(checkin("NL-2")).encode()]
    r = results(post(client, b"\n".join(lines) + b"\n", NDJSON))
    assert [x["status"] for x in r] == ["applied", "rejected", "applied"]
    assert [x["device"] for x in r] == ["NL-1", None, "NL-2"]


def test_gzip_body(client: httpx.Client, database: Database) -> None:
    body = gzip.compress(json.dumps([checkin("GZ-1"), checkin("GZ-2")]).encode())
    r = results(post(client, body, {"Content-Encoding": "gzip"}))
    assert [x["status"] for x in r] == ["applied", "applied"]
    # Two gzip members in a row are one gzip stream.
    body = gzip.compress(b"[") + gzip.compress(json.dumps(checkin("GZ-3")).encode() + b"]")
    assert results(post(client, body, {"Content-Encoding": "gzip"}))[0]["device"] == "GZ-3"
    assert show(database, "GZ-1")["source_id"] == "GZ-1"


def test_a_lone_surrogate_rejects_its_item_only(client: httpx.Client) -> None:
    good = json.dumps(checkin("SUR-1", apps=[{"id": "com.example.x", "name": "Smile \U0001f600"}]))
    bad = json.dumps(checkin("SUR-2", apps=[{"id": "com.example.y", "name": "X"}])).replace('"X"', '"\\ud800"')
    r = results(post(client, f"[{good}, {bad}]".encode()))
    assert [x["status"] for x in r] == ["applied", "rejected"]
    assert r[1]["error"]["field"] == "apps[0].name"


def test_an_empty_array_is_no_items(client: httpx.Client) -> None:
    assert results(post(client, b"[]")) == []


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [1000, 20_000])
def test_nesting_deeper_than_any_checkin_is_that_items_rejection(client: httpx.Client, depth: int) -> None:
    """Nesting deeper than the decoder follows (about 1,000 levels) is no server error:
    as an item of an array, as the body's one object, or inside a device."""
    good = json.dumps(checkin(f"DEEP-{depth}")).encode()
    for body in (b"[" + deep(depth) + b"," + good + b"]", deep(depth), b'{"device":' + deep(depth) + b"}"):
        r = results(post(client, body))
        assert r[0]["status"] == "rejected" and r[0]["error"]["message"], r[0]
        assert r[-1]["status"] in ("applied", "ignored", "rejected")
    assert results(post(client, b"[" + deep(depth) + b"," + good + b"]"))[1]["device"] == f"DEEP-{depth}"


def test_an_over_nested_item_among_many_commas_is_rejected_alone(client: httpx.Client, database: Database) -> None:
    """A batch dense in commas is cut before it is decoded: an item nested deeper than a
    check-in there is that item's rejection, and the items beside it are applied."""
    items = [checkin(f"DENSE-{i}", apps=[{"id": f"a{j}"} for j in range(1500)]) for i in range(10)]
    items[5]["device"]["model"] = [[[[[[[1]]]]]]]
    body = json.dumps(items, separators=(",", ":")).encode()
    assert body.count(b",") * 60 > 4 * len(body)  # the dense path: items counted before decoding
    r = results(post(client, body))
    assert [x["status"] for x in r] == ["applied"] * 5 + ["rejected"] + ["applied"] * 4
    assert r[5]["error"]["field"] == "device.model"
    assert show(database, "DENSE-9")["id"]
    assert run_show_fails(database, "DENSE-5")


# -- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2", b'[{"a": 1}] trailing', b"", b"   ", b"[1,]"],
)
def test_a_body_that_cannot_be_parsed_is_400(client: httpx.Client, body: bytes) -> None:
    error(post(client, body), 400)


@pytest.mark.parametrize("body", [b"", b"\n\n", b" \r\n\t\n"])
def test_json_lines_without_a_line_is_400(client: httpx.Client, body: bytes) -> None:
    """Like an empty JSON body: there is nothing to answer item by item."""
    assert "empty" in error(post(client, body, NDJSON), 400)["message"]
    assert "empty" in error(post(client, gzip.compress(body), {**NDJSON, "Content-Encoding": "gzip"}), 400)["message"]


def test_bad_gzip_is_400(client: httpx.Client) -> None:
    assert error(post(client, b"not gzip at all", {"Content-Encoding": "gzip"}), 400)["field"] == "Content-Encoding"
    cut = gzip.compress(json.dumps(checkin("CUT")).encode())[:-6]
    error(post(client, cut, {"Content-Encoding": "gzip"}), 400)


def test_no_token_wrong_token_revoked_token_are_401(server: ThreadServer, database: Database) -> None:
    body = json.dumps(checkin("AUTH-1")).encode()
    with httpx.Client(base_url=server.url) as c:
        for headers in (
            {},
            bearer("appban-src-nope"),
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer"},
        ):
            r = c.post(CHECKINS, content=body, headers={**JSON, **headers})
            assert error(r, 401)["field"] == "Authorization"
            assert r.headers["www-authenticate"].startswith("Bearer")
        token = database.token_for("mdm")
        assert c.post(CHECKINS, content=body, headers={**JSON, **bearer(token)}).status_code == 202
        database.appban("source", "token", "revoke", "mdm")
        error(c.post(CHECKINS, content=body, headers={**JSON, **bearer(token)}), 401)
    assert run_show_fails(database, "AUTH-1") is False  # the one accepted post


def test_another_sources_token_files_under_its_own_source(server: ThreadServer, database: Database) -> None:
    token = database.token_for("mdm")
    with httpx.Client(base_url=server.url, headers=bearer(token)) as c:
        r = results(post(c, [checkin("SRC-1", source="agent"), checkin("SRC-2", source="mdm"), checkin("SRC-3")]))
    assert [x["status"] for x in r] == ["rejected", "applied", "applied"]
    assert r[0]["error"]["field"] == "source"
    assert r[0]["device"] == "SRC-1"  # read, then refused: its id is known
    assert run_show_fails(database, "SRC-1")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "",
        "multipart/form-data",
        # Only the two types the OpenAPI document lists: no other JSON-ish name.
        "application/problem+json",
        "application/vnd.example+json",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-seq",
        # JSON is UTF-8: a body said to be in another charset is not read as if it were.
        "application/json; charset=latin-1",
        "application/json;charset=utf-16",
        "application/x-ndjson; charset=iso-8859-1",
    ],
)
def test_another_content_type_is_415(client: httpx.Client, content_type: str) -> None:
    r = client.post(CHECKINS, content=json.dumps(checkin("CT")).encode(), headers={"Content-Type": content_type})
    assert error(r, 415)["field"] == "Content-Type"


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON;CHARSET=UTF-8", 'application/json; charset="utf-8"'],
)
def test_a_utf8_charset_is_accepted(client: httpx.Client, content_type: str) -> None:
    r = client.post(CHECKINS, content=json.dumps(checkin("CT-UTF8")).encode(), headers={"Content-Type": content_type})
    assert results(r)[0]["device"] == "CT-UTF8"


def test_another_content_encoding_is_415(client: httpx.Client) -> None:
    r = post(client, zlib.compress(b"[]"), {"Content-Encoding": "br"})
    assert error(r, 415)["field"] == "Content-Encoding"


def test_a_body_over_the_limit_is_413(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    monkeypatch.setenv("APPBAN_SERVE_MAX_BODY_BYTES", "10000")
    with ThreadServer(database.path) as server, httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
        big = json.dumps([checkin(f"BIG-{i}") for i in range(100)]).encode()
        assert error(post(c, big), 413)["field"] == "APPBAN_SERVE_MAX_BODY_BYTES"

        def chunks() -> Any:  # no Content-Length: counted as it streams
            yield big[:5000]
            yield big[5000:]

        r = c.post(CHECKINS, content=chunks(), headers=JSON)
        error(r, 413)
        # The limit is on the decompressed size: small on the wire is not enough.
        assert len(gzip.compress(big)) < 10000
        error(post(c, gzip.compress(big), {"Content-Encoding": "gzip"}), 413)
        assert results(post(c, [checkin("SMALL")]))[0]["status"] == "applied"
    assert run_show_fails(database, "BIG-0")


def gzip_bomb(megabytes: int) -> bytes:
    """A JSON array of ``megabytes`` MB of spaces, gzipped (about 1,000 times smaller)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    spaces = b" " * (1 << 20)
    return b"".join([packer.compress(b"["), *(packer.compress(spaces) for _ in range(megabytes)), packer.flush()])


def test_a_gzip_bomb_is_413(client: httpx.Client) -> None:
    bomb = gzip_bomb(256)  # 256 MB, 8 times the default limit, in 256 KB
    assert len(bomb) < 1 << 20
    r = post(client, bomb, {"Content-Encoding": "gzip"})
    assert error(r, 413)["field"] == "APPBAN_SERVE_MAX_BODY_BYTES"
    assert results(post(client, [checkin("AFTER-BOMB")]))[0]["status"] == "applied"


def test_more_items_than_allowed_is_413(client: httpx.Client, database: Database) -> None:
    # 100,000 check-ins: far more than the default 10,000 a request.
    lines = b"\n".join(json.dumps(checkin(f"MANY-{i}", apps=[])).encode() for i in range(100_000))
    r = post(client, lines, NDJSON)
    detail = error(r, 413)
    assert detail["field"] == "APPBAN_SERVE_MAX_ITEMS"
    assert "100,000" in detail["message"]
    assert run_show_fails(database, "MANY-0")


def test_max_apps_rejects_the_item(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    monkeypatch.setenv("APPBAN_MAX_APPS", "2")
    with ThreadServer(database.path) as server, httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
        apps = [{"id": f"com.example.app{i}"} for i in range(3)]
        r = results(post(c, [checkin("APPS-1", apps=apps), checkin("APPS-2", apps=apps[:2])]))
    assert [x["status"] for x in r] == ["rejected", "applied"]
    assert r[0]["device"] == "APPS-1"
    assert r[0]["error"]["field"] == "apps"
    assert "APPBAN_MAX_APPS" in r[0]["error"]["message"]


def test_a_source_over_its_rate_gets_429(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    monkeypatch.setenv("APPBAN_SERVE_CHECKIN_RATE", "1")
    monkeypatch.setenv("APPBAN_SERVE_CHECKIN_BURST", "3")
    other = database.token_for("mdm")
    with ThreadServer(database.path) as server, httpx.Client(base_url=server.url) as c:
        agent = {**JSON, **bearer(database.token)}
        ok = c.post(CHECKINS, content=json.dumps([checkin(f"R-{i}") for i in range(3)]), headers=agent)
        assert ok.status_code == 202
        r = c.post(CHECKINS, content=json.dumps(checkin("R-9")), headers=agent)
        detail = error(r, 429)
        assert detail["field"] == "APPBAN_SERVE_CHECKIN_RATE"
        assert int(r.headers["retry-after"]) >= 1
        # Another source has its own bucket.
        assert (
            c.post(CHECKINS, content=json.dumps(checkin("M-1")), headers={**JSON, **bearer(other)}).status_code == 202
        )
    assert run_show_fails(database, "R-9")


def test_unknown_path_and_method_use_the_error_shape(client: httpx.Client) -> None:
    error(client.get("/nope"), 404)
    error(client.get(CHECKINS), 405)


def test_a_busy_database_is_503_with_retry_after(
    server: ThreadServer, client: httpx.Client, database: Database
) -> None:
    from appban.errors import Busy

    async def busy(subject: str, items: list[Any]) -> list[Any]:
        raise Busy(f"{database.path} is busy: another command held it for more than 60 s")

    server.app.state.service.apply = busy
    r = post(client, checkin("BUSY-1"))
    assert error(r, 503)["message"].startswith("the database is busy")
    assert r.headers["retry-after"] == "60"  # the busy timeout: a writer held the lock that long already
    assert database.path not in r.text and "appban.db" not in r.text
    assert run_show_fails(database, "BUSY-1")


def test_a_server_failure_names_nothing_of_the_server(
    server: ThreadServer, client: httpx.Client, database: Database
) -> None:
    from appban.errors import AppbanError

    async def broken(subject: str, items: list[Any]) -> list[Any]:
        raise AppbanError(f"cannot write {database.path}: disk I/O error")

    server.app.state.service.apply = broken
    r = post(client, checkin("BROKEN-1"))
    assert error(r, 500)["message"] == "internal error"
    assert database.path not in r.text and "appban.db" not in r.text


def test_a_locked_database_fails_a_whole_group_at_once(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    """Another process holds the write lock past the busy timeout: the group of
    check-ins that waited for it is answered 503 together, not each run again alone
    (which made each wait the busy timeout anew: 503s after 2, 6, 8 s)."""
    monkeypatch.setenv("APPBAN_BUSY_TIMEOUT", "2")
    lock = sqlite3.connect(database.path, isolation_level=None)
    answers: list[httpx.Response] = []

    def post_one(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=bearer(database.token), timeout=60) as c:
            answers.append(post(c, checkin(f"LOCKED-{n}")))

    with ThreadServer(database.path) as server:
        lock.execute("BEGIN IMMEDIATE")
        try:
            first = threading.Thread(target=post_one, args=(0,))
            first.start()
            time.sleep(0.5)  # the writer now waits for the lock with the first; the rest queue behind
            rest = [threading.Thread(target=post_one, args=(n,)) for n in range(1, 6)]
            for t in rest:
                t.start()
            for t in [first, *rest]:
                t.join(60)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        metrics = httpx.get(server.url + "/metrics").text
        with httpx.Client(base_url=server.url, headers=bearer(database.token)) as c:
            assert results(post(c, checkin("LOCKED-AFTER")))[0]["status"] == "applied"
    assert len(answers) == 6
    for r in answers:
        assert error(r, 503)["message"].startswith("the database is busy")
        assert r.headers["retry-after"] == "2"
        assert database.path not in r.text
    # Two transactions failed (the first alone, then the five queued behind it), none run again.
    assert "appban_serve_transaction_failures_total 2" in metrics, metrics
