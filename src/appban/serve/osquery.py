"""osquery's remote API: the ``tls`` enroll, config, logger and distributed plugins.

Bodies are osquery's own (its "Remotely interfacing osquery" page, and the plugins'
sources: plugins/remote/enroll/tls_enroll.cpp, plugins/config/tls_config.cpp,
plugins/logger/tls_logger.cpp, plugins/distributed/tls_distributed.cpp). osquery reads
the answer's body, not its status: ``node_invalid: true`` makes it drop its node key
and enroll again, and an answer with an ``error`` key is a failed request, whose logs
it keeps and sends again. So every answer to a body osquery could have sent has no
``error`` key: a log entry appban cannot read is rejected alone, in a 200 that lists
it, and the agent does not send it forever. Only a body that is not a JSON object at
all gets the JSON error shape (400).

The node key (``Authorization: NodeKey <key>``, or ``node_key`` in the body) decides
the host: a result is filed under the host the key was given to, whatever its
``hostIdentifier`` says, with the facts the host gave at enrollment.

osquery sends a whole buffered batch again after any failed send, so the same entries
arrive more than once: a snapshot no newer than the stored one changes nothing, nor
does a differential run whose epoch and counter are not past the stored ones. Such an
entry is ``ignored``, in a 200.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appban import settings, sources
from appban.clock import Micros, now_micros
from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, Device, PartialCheckin
from appban.inventory.ingest import Ingestor
from appban.inventory.osquery import query_table, tls_results
from appban.serve import osquery_nodes as nodes
from appban.serve._operations import operation
from appban.serve.bodies import read_body
from appban.serve.checkins import Buckets
from appban.serve.responses import ApiError, json_response
from appban.serve.schemas import Error
from appban.serve.service import ItemResult, Service
from appban.store.osquery_records import OsqueryNode
from appban.workspace import Workspace

log = logging.getLogger("appban.serve.osquery")
PREFIX = "/api/v1/osquery"
# Read off the event loop when more: other requests are answered meanwhile.
_INLINE_ENTRIES = 16


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/enroll", enroll, methods=["POST"]),
        Route(f"{PREFIX}/config", config, methods=["POST"]),
        Route(f"{PREFIX}/log", log_entries, methods=["POST"]),
        Route(f"{PREFIX}/distributed/read", distributed_read, methods=["POST"]),
        Route(f"{PREFIX}/distributed/write", distributed_write, methods=["POST"]),
    ]


# -- the shapes, for the OpenAPI document ------------------------------------------------


class EnrollBody(msgspec.Struct):
    host_identifier: str
    enroll_secret: str | None = None
    host_details: dict[str, dict[str, Any]] = {}
    platform_type: str | None = None


class NodeBody(msgspec.Struct):
    node_key: str | None = None


class LogBody(msgspec.Struct):
    log_type: Literal["result", "status"]
    data: list[dict[str, Any]]
    node_key: str | None = None


class WriteBody(msgspec.Struct):
    queries: dict[str, list[dict[str, Any]]]
    node_key: str | None = None
    statuses: dict[str, int] = {}
    messages: dict[str, str] = {}


class Enrolled(msgspec.Struct):
    node_key: str
    node_invalid: bool


class Invalid(msgspec.Struct):
    """The node key (or enroll secret) is not live: the agent enrolls again."""

    node_invalid: bool


class Scheduled(msgspec.Struct):
    query: str
    interval: int
    platform: str
    snapshot: bool


class Config(msgspec.Struct):
    schedule: dict[str, Scheduled]
    node_invalid: bool


class EntryError(msgspec.Struct):
    field: str | None
    message: str


class EntryResult(msgspec.Struct, omit_defaults=True):
    index: int  # the entry of ``data`` (a run's first, for event rows gathered into one)
    device: str | None
    status: Literal["applied", "ignored", "rejected"]
    error: EntryError | None = None


class Logged(msgspec.Struct, omit_defaults=True):
    node_invalid: bool
    results: list[EntryResult]
    status_logs: int
    dropped: str | None = None  # why the body was not read (too large, too slow): the agent moves on


class Queries(msgspec.Struct):
    queries: dict[str, str]
    node_invalid: bool


class QueryResult(msgspec.Struct, omit_defaults=True):
    query: str
    device: str | None
    status: Literal["applied", "ignored", "rejected"]
    error: EntryError | None = None


class Written(msgspec.Struct):
    node_invalid: bool
    results: list[QueryResult]


_THROTTLED = (
    "The source's agents post faster than its limit (Retry-After): an answer with an error, "
    "so that osquery keeps the batch, or the enrollment, and tries again later.",
    Error,
)
_REFUSED = {
    400: ("The body is not a JSON object of this endpoint's shape.", Error),
    401: ("The node key is not live (unknown or revoked): node_invalid.", Invalid),
    413: ("The body is larger than serve_max_body_bytes, or holds more than serve_max_items entries.", Error),
}


# -- enroll and config ------------------------------------------------------------------


@operation(
    "Enroll an osquery agent",
    "osquery's tls enroll plugin: an enroll secret (appban source osquery-secret create) "
    "for a node key. A secret that is not live gets node_invalid.",
    body=EnrollBody,
    answers={200: ("The node key.", Enrolled), **_REFUSED, 429: _THROTTLED},
)
async def enroll(request: Request) -> Response:
    service: Service = request.app.state.service
    doc = await _json_object(request)
    secret = doc.get("enroll_secret")
    source = None
    if isinstance(secret, str) and secret.strip():
        given = secret.strip()  # a secret file's last newline is not the secret's
        source = await service.read(lambda store: sources.authenticate(store, given, sources.OSQUERY_SECRET))
    if source is None:
        log.info("osquery enrollment refused: not a live enroll secret")
        return _invalid()
    request.state.source = source
    limit = _limit(request, "enroll")
    limit.check(source)
    try:
        facts = nodes.node_facts(doc)
    except BadInput as exc:
        raise ApiError(400, exc.detail, field=exc.field) from None
    limit.take(source, 1)
    key = await service.call(lambda ws: nodes.enroll(ws, source, facts))
    return json_response({"node_key": key, "node_invalid": False})


@operation(
    "An osquery agent's configuration",
    "osquery's tls config plugin: the scheduled queries appban needs, the installed apps "
    "of the agent's platform as snapshot queries every osquery_interval seconds.",
    body=NodeBody,
    answers={200: ("The configuration.", Config), **_REFUSED},
)
async def config(request: Request) -> Response:
    doc = await _json_object(request)
    node = await _node(request, doc)
    if node is None:
        return _invalid()
    interval = settings.get("osquery_interval")
    return json_response({"schedule": nodes.schedule(node.facts, interval), "node_invalid": False})


# -- logs -------------------------------------------------------------------------------


@operation(
    "Post an osquery agent's logs",
    "osquery's tls logger plugin: result logs (snapshot, batch and event formats) are "
    "applied as check-ins, each entry on its own; status logs are counted, not kept. A body "
    "larger than osquery_max_log_bytes, or slower than osquery_log_timeout, is dropped: "
    "answered 200 with dropped, so that the agent moves on.",
    body=LogBody,
    answers={
        200: ("What became of each result entry appban reads.", Logged),
        400: _REFUSED[400],
        401: _REFUSED[401],
        429: _THROTTLED,
    },
)
async def log_entries(request: Request) -> Response:
    service: Service = request.app.state.service
    node = await _node(request, {})  # the header's key, if any: known before the body is read
    if node is None and _header_key(request) is not None:
        return _invalid()
    limit = _limit(request, "log")
    if node is not None:
        limit.check(node.source)
    try:
        body = await read_body(
            request, limit=settings.get("osquery_max_log_bytes"), timeout=settings.get("osquery_log_timeout")
        )
    except ApiError as exc:
        if exc.status_code not in (408, 413):
            raise
        return await _dropped(request, service, node, exc)
    doc = await _log_body(body) if len(body) > _INLINE_BYTES else _log_body_now(body)
    if node is None:
        node = await _node(request, {"node_key": doc.node_key})
        if node is None:
            return _invalid()
        limit.check(node.source)
    if doc.log_type == "status":
        counters(request).status_logs += len(doc.data)
        return json_response({"node_invalid": False, "results": [], "status_logs": len(doc.data)})
    if doc.log_type != "result":
        raise ApiError(400, "log_type must be result or status", field="log_type")
    most = settings.get("serve_max_items")
    if len(doc.data) > most:
        why = f"{len(doc.data):,} log entries in one request, more than {most:,} (APPBAN_SERVE_MAX_ITEMS)"
        return await _dropped(request, service, node, ApiError(413, why))
    limit.take(node.source, len(doc.data))
    results = await _apply(service, node, doc.data)
    return json_response({"node_invalid": False, "results": results, "status_logs": 0})


async def _dropped(request: Request, service: Service, node: OsqueryNode | None, exc: ApiError) -> Response:
    """A log body appban will not read (too large, too slow, too many entries): answered
    200 without an ``error`` key, so that the agent drops it and sends what follows
    (osquery resends a batch it failed to send, forever). Its snapshots are superseded by
    the next ones; the node is asked for its apps, in case it held a differential run."""
    counters(request).dropped += 1
    log.warning("osquery log body dropped (node %s): %s", node.id if node is not None else "unknown", exc.message)
    if exc.status_code == 413 and node is not None:
        await _drain(request)  # the rest of the body, unread: the agent sends it whole
    if node is not None:
        await service.call(lambda ws: nodes.ask_for_apps(ws, node.id))
    answer = {"node_invalid": False, "results": [], "status_logs": 0, "dropped": exc.message}
    return json_response(answer, headers={"Connection": "close"})


async def _drain(request: Request) -> None:
    """Read and discard what is left of the body, within osquery_log_timeout, so that the
    agent, which writes its whole request before it reads the answer, gets to read it."""
    try:
        async with asyncio.timeout(settings.get("osquery_log_timeout")):
            while True:
                message = await request.receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


class _LogDoc(msgspec.Struct):
    """A log body with its entries kept as raw JSON, each decoded when it is read."""

    data: list[msgspec.Raw]
    log_type: Any = None
    node_key: Any = None


class _EntryHead(msgspec.Struct):
    """What tells whether a result entry is a snapshot superseded by a later one."""

    name: Any = None
    action: Any = None
    unixTime: Any = None  # noqa: N815 (osquery's name)
    snapshot: msgspec.Raw = msgspec.Raw(b"")  # empty: no "snapshot" key (one row a line)


# An escaped surrogate that is not half of a pair: JSON's grammar allows it, no string can hold it.
_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_INLINE_BYTES = 64 * 1024


async def _log_body(body: bytes) -> _LogDoc:
    return await asyncio.to_thread(_log_body_now, body)


def _log_body_now(body: bytes) -> _LogDoc:
    """The body's fields, its entries undecoded. A body that is not UTF-8, or holds an
    escaped lone surrogate (a Windows program's name can), is read with U+FFFD in their
    place: osquery would send it again forever, and one app name must not cost a host
    its logs."""
    try:
        return _decode_log(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        pass
    try:
        return _decode_log(_mended(body))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise ApiError(400, "the body is not a JSON object of osquery's log shape (data: a list)") from None


def _mended(data: bytes) -> bytes:
    """``data`` with U+FFFD for each byte that is not UTF-8 and each escaped lone surrogate."""
    return _SURROGATE.sub(rb"\\ufffd", data.decode("utf-8", "replace").encode())


def _decode_entry(raw: msgspec.Raw) -> Any:
    """One entry (decoding the body skipped over its strings without reading them)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return msgspec.json.decode(_mended(bytes(raw)))


def _decode_log(body: bytes) -> _LogDoc:
    if body.lstrip()[:1] != b"{":
        raise ApiError(400, "the body is not a JSON object, as osquery's remote API posts")
    try:
        return msgspec.json.decode(body, type=_LogDoc)
    except msgspec.ValidationError:
        raise ApiError(400, "data must be a list of log entries", field="data") from None


async def _apply(service: Service, node: OsqueryNode, data: list[msgspec.Raw]) -> list[dict[str, Any]]:
    """Apply the check-ins of result entries; each one's result, with its entry's index."""
    if len(data) > _INLINE_ENTRIES:
        read = await asyncio.to_thread(_read_entries, node, data)
    else:
        read = _read_entries(node, data)
    superseded, found = read
    if not found and not superseded:  # nothing of a table appban reads: no transaction, no audit entry
        return []
    results: list[dict[str, Any]] = [
        {"index": i, "device": device, "status": "ignored"} for i, device in superseded.items()
    ]
    if found:
        found = await service.read(lambda store: _within_queries(store, node, found))
    items = [item for _, item in found]
    if items:
        ask = await service.read(lambda store: _not_whole(store, node.source, items))
        applied = await service.apply(f"osquery:{node.source}", items)
        results += [r.as_dict() | {"index": found[r.index][0]} for r in applied]
        if ask:
            asked = await service.call(lambda ws: nodes.ask_for_apps(ws, node.id))
            if asked is not None:
                log.info("osquery node %d asked for its apps (refresh %d): %s", node.id, asked, ask)
    return sorted(results, key=lambda r: int(r["index"]))


def _read_entries(
    node: OsqueryNode, data: list[msgspec.Raw]
) -> tuple[dict[int, str], list[tuple[int, Checkin | BadInput]]]:
    """(the snapshots a later one of the same query supersedes in this body, by index,
    with their record; the check-ins of the others). An agent cut off for days sends
    every snapshot it took: only the newest of each query is decoded and applied (a
    snapshot replaces the one before it), so memory and time follow the body's size,
    not the rows in it."""
    newest: dict[str, tuple[int, int]] = {}  # query -> (unixTime, index)
    heads: dict[int, str] = {}
    for i, raw in enumerate(data):
        try:
            head = msgspec.json.decode(raw, type=_EntryHead)
        except msgspec.DecodeError:
            continue  # read in full below, to say what is wrong with it
        at = _seconds(head.unixTime)
        if head.action != "snapshot" or not head.snapshot or not isinstance(head.name, str) or at is None:
            continue
        if query_table(head.name) is None:
            continue
        heads[i] = head.name
        if head.name not in newest or at >= newest[head.name][0]:
            newest[head.name] = (at, i)
    keep = {i for _, i in newest.values()}
    superseded = {i: f"{node.facts.host}/{name}" for i, name in heads.items() if i not in keep}
    entries: list[Any] = []
    unread: list[tuple[int, Checkin | BadInput]] = []
    for i, raw in enumerate(data):
        entry = None
        if i not in superseded:
            try:
                entry = _decode_entry(raw)
            except (msgspec.DecodeError, ValueError):  # a number out of any range
                unread.append(
                    (i, BadInput("not a log entry appban can read (a number out of range?)", field=f"data[{i}]"))
                )
        entries.append(entry)
    skip = set(superseded) | {i for i, _ in unread}
    return superseded, sorted(unread + _checkins(node, entries, skip=skip), key=lambda pair: pair[0])


def _seconds(value: Any) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _checkins(
    node: OsqueryNode, data: list[Any], now: Micros | None = None, *, skip: set[int] | None = None
) -> list[tuple[int, Checkin | BadInput]]:
    options = ReadOptions(
        now=now_micros() if now is None else now,
        max_bytes=settings.get("max_checkin_bytes"),
        source=node.source,
    )
    found = sorted(
        tls_results(data, options, host=node.facts.host, decorations=nodes.decorations(node), skip=skip),
        key=lambda pair: pair[0],
    )
    most = settings.get("max_apps")
    return [(i, _bounded(item, most)) for i, item in found]


def _bounded(item: Checkin | BadInput, most: int) -> Checkin | BadInput:
    if isinstance(item, Checkin) and len(item.apps) > most:
        return BadInput(f"{len(item.apps):,} apps, more than {most:,}", field="snapshot")
    return item


def _within_queries(
    store: Any, node: OsqueryNode, found: list[tuple[int, Checkin | BadInput]]
) -> list[tuple[int, Checkin | BadInput]]:
    """The check-ins, those of queries past osquery_max_queries refused. Each query an
    agent logs is a record of its host (a device, until it links): appban's own queries
    always, at most osquery_max_queries others a host, so that one node (or one holder
    of the enroll secret) cannot make thousands of devices with as many query names."""
    source, prefix = node.source, node.facts.host + "/"
    mine = {nodes.query_name(t) for t in nodes.TABLES}
    rows = store.identifier_rows([("host", f"{source}/{node.facts.host}")])
    known = {r.source_id[len(prefix) :] for r in rows if r.source == source and r.source_id.startswith(prefix)}
    others = known - mine
    most = settings.get("osquery_max_queries")
    out: list[tuple[int, Checkin | BadInput]] = []
    for i, item in found:
        if isinstance(item, Checkin):
            query = item.device.id[len(prefix) :]
            if query not in mine and query not in others:
                if len(others) >= most:
                    env = settings.SETTINGS["osquery_max_queries"].env
                    item = BadInput(
                        f"host {node.facts.host[:64]!r} already logs {most} queries of its own that appban "
                        f"keeps ({env}): not another",
                        field=f"data[{i}].name",
                    )
                else:
                    others.add(query)
        out.append((i, item))
    return out


def _not_whole(store: Any, source: str, items: list[Checkin | BadInput]) -> str:
    """Why the stored set of a record these check-ins apply to will not be known whole
    (so that the node is asked for its apps), or "": a run logged one row a line (a
    request may hold part of it), or a differential run after a lost one (its counter
    not the next of its epoch's), or one with nothing before it."""
    counters: dict[str, tuple[int | None, int]] = {}
    for item in items:
        if not isinstance(item, Checkin):
            continue
        if item.partial and item.removed is None:
            return f"{item.device.id}: a whole set logged one row a line"
        key = item.device.id
        if item.removed is None or item.counter is None:  # a whole set (or no counter to follow)
            counters[key] = (item.epoch, item.counter or 0)
            continue
        if key not in counters:
            row = store.get_device_by_key(source, key)
            record = store.get_record(source, key) if row is None or row.linked else None
            stored = record.facts if record is not None else row
            if stored is None or stored.counter is None:
                return f"{key}: a differential run with nothing stored before it"
            counters[key] = (stored.epoch, stored.counter)
        epoch, counter = counters[key]
        if item.epoch == epoch and item.counter <= counter:
            continue  # sent again, or more rows of the run stored last
        if item.epoch != epoch or item.counter != counter + 1:
            return f"{key}: run {item.epoch}/{item.counter} after {epoch}/{counter}"
        counters[key] = (epoch, item.counter)
    return ""


# -- distributed queries: appban device refresh ---------------------------------------------


@operation(
    "Queries for an osquery agent to run now",
    "osquery's tls distributed plugin, read: the app queries of an appban device refresh "
    "waiting for this agent, if any.",
    body=NodeBody,
    answers={200: ("The queries (none most of the time).", Queries), **_REFUSED},
)
async def distributed_read(request: Request) -> Response:
    service: Service = request.app.state.service
    doc = await _json_object(request)
    node = await _node(request, doc)
    if node is None:
        return _invalid()
    now = now_micros()
    waiting = await service.read(lambda store: store.open_osquery_refreshes(node.id, since=now - nodes.REFRESH_EXPIRY))
    due = nodes.due(waiting, now)
    if not due:
        return json_response({"queries": {}, "node_invalid": False})
    await service.call(lambda ws: _sent(ws, [r.id for r in due]))
    # One set of queries answers every request waiting: the newest names them.
    return json_response({"queries": nodes.refresh_queries(node, due[-1].id), "node_invalid": False})


def _sent(ws: Workspace, ids: list[int]) -> None:
    with ws.writing(evaluates=False):
        ws.store.mark_osquery_refreshes_sent(ids, ws.now)


@operation(
    "Results of the queries an osquery agent ran now",
    "osquery's tls distributed plugin, write: the results of a refresh's queries, applied "
    "as a snapshot of each table; results of queries appban did not ask are ignored.",
    body=WriteBody,
    answers={200: ("What became of each query's results.", Written), **_REFUSED},
)
async def distributed_write(request: Request) -> Response:
    service: Service = request.app.state.service
    doc = await _json_object(request)
    node = await _node(request, doc)
    if node is None:
        return _invalid()
    queries, statuses = doc.get("queries"), doc.get("statuses")
    if not isinstance(queries, dict):
        raise ApiError(400, "queries must be an object: query name -> rows", field="queries")
    statuses = statuses if isinstance(statuses, dict) else {}
    now = now_micros()
    waiting = await service.read(lambda store: store.open_osquery_refreshes(node.id, since=0))
    open_ids = {r.id for r in waiting}
    names: list[str] = []
    entries: list[Any] = []
    answered: list[int] = []
    for name, rows in queries.items():
        asked = nodes.refresh_of(name)
        if asked is None or asked[0] not in open_ids:
            continue  # not a query appban asked this agent (or asked and answered already)
        if statuses.get(name, 0) not in (0, "0"):
            # Not answered: the request stays open, and is handed out again.
            log.info("osquery refresh query %s failed on node %d", name, node.id)
            continue
        answered.append(asked[0])
        names.append(name)
        entries.append({"name": nodes.query_name(asked[1]), "action": "snapshot", "snapshot": rows})
    found = _checkins(node, entries, now)
    stored = await service.read(lambda store: _observed(store, node.source, [c for _, c in found]))
    for _, item in found:
        if isinstance(item, Checkin):
            # The agent's answer is its apps now. A scheduled snapshot dated after now by
            # the host's clock is older than this: the refresh goes after it.
            item.observed_at = max(now, stored.get(item.device.id, 0) + 1)
    results = await service.apply(f"osquery:{node.source}", [item for _, item in found]) if found else []
    if answered:
        await service.call(lambda ws: nodes.finish_refresh(ws, node.id, max(answered)))
    wholes: list[tuple[str, set[str]]] = []
    for r in results:
        item = found[r.index][1]
        asked = nodes.refresh_of(names[found[r.index][0]])
        if r.status != "rejected" and isinstance(item, Checkin) and asked is not None:
            wholes.append((asked[1], {a.id if a.id is not None else "name:" + (a.name or "") for a in item.apps}))
    if wholes:
        await service.call(lambda ws: [_prune(ws, node, table, whole) for table, whole in wholes])
    answers = [_query_result(names[found[r.index][0]], r) for r in results]
    return json_response({"node_invalid": False, "results": answers})


def _prune(ws: Workspace, node: OsqueryNode, table: str, whole: set[str]) -> list[str]:
    """A refresh brought the host's whole ``table``: apps its other records of that table
    (an admin's own queries, differential ones whose runs may have been lost or come in
    parts) still list and the whole set does not are gone from them too. Nothing is
    added to them: such a query may read a part of the table only. The records pruned."""
    store, source, host = ws.store, node.source, node.facts.host
    prefix = host + "/"
    ingestor = Ingestor(store, ws.evaluator, keep_full=settings.get("keep_full_inventory"))
    pruned: list[str] = []
    with ws.writing():
        rows = store.identifier_rows([("host", f"{source}/{host}")])
        for key in sorted({r.source_id for r in rows if r.source == source and r.source_id.startswith(prefix)}):
            query = key[len(prefix) :]
            if query == nodes.query_name(table) or query_table(query) != table:
                continue
            row = store.get_device_by_key(source, key)
            record = store.get_record(source, key) if row is None or row.linked else None
            stored = record.facts if record is not None else row
            if stored is None or stored.id is None or stored.inventory_scope == "none":
                continue
            present = (
                store.record_observations(stored.id, present_only=True)
                if record is not None
                else store.observations(stored.id, present_only=True)
            )
            gone = [App(id=o.app_id, name=o.name) for o in present if o.app_key not in whole]
            if not gone:
                continue
            device = Device(
                id=key,
                platform=stored.platform,  # type: ignore[arg-type]
                owner=stored.owner or None,
                ownership=stored.ownership,  # type: ignore[arg-type]
                model=stored.model,
                os_version=stored.os_version,
                eas_device_ids=list(stored.eas_ids),
                inventory_scope=stored.inventory_scope,  # type: ignore[arg-type]
                mail_access=stored.mail_reported,
                identifiers=list(stored.identifiers),
            )
            # More of the stored run (its epoch, counter and time): only what went.
            checkin = PartialCheckin(source, device, stored.observed_at, [], [], gone, stored.epoch, stored.counter)
            ingestor.ingest(checkin, ws.now)
            pruned.append(key)
        if pruned:
            ws.audit.append(ws.now, "osquery-prune", source, {"host": host, "table": table, "records": pruned})
    return pruned


def _query_result(name: str, result: ItemResult) -> dict[str, Any]:
    doc = result.as_dict()
    del doc["index"]
    return {"query": name, **doc}


def _observed(store: Any, source: str, items: list[Checkin | BadInput]) -> dict[str, Micros]:
    """The stored snapshot time of each check-in's record, where there is one."""
    times: dict[str, Micros] = {}
    for item in items:
        if isinstance(item, Checkin):
            row = store.get_device_by_key(source, item.device.id)
            record = store.get_record(source, item.device.id) if row is None or row.linked else None
            facts = record.facts if record is not None else row
            if facts is not None:
                times[item.device.id] = facts.observed_at
    return times


# -- the node key -----------------------------------------------------------------------


class _Limit:
    """A token bucket per source (the check-in API's), for enrollments or log entries,
    refusing with osquery's own words and setting."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.rate = settings.SETTINGS[f"osquery_{what}_rate"]
        self.buckets = Buckets(settings.get(self.rate.name), settings.get(f"osquery_{what}_burst"))

    def check(self, source: str) -> None:
        try:
            self.buckets.check(source)
        except ApiError as exc:
            nouns = "enrollments" if self.what == "enroll" else "log entries"
            message = f"source {source!r} posts more than {self.buckets.rate:g} osquery {nouns} a second"
            raise ApiError(429, message, field=self.rate.env, headers=exc.headers) from None

    def take(self, source: str, count: int) -> None:
        self.buckets.take(source, count)


def _limit(request: Request, what: str) -> _Limit:
    state = request.app.state
    limits = getattr(state, "osquery_limits", None)
    if limits is None:
        limits = state.osquery_limits = {w: _Limit(w) for w in ("enroll", "log")}
    found = limits[what]
    assert isinstance(found, _Limit)
    return found


class Counters:
    """What the osquery endpoints saw that no store keeps."""

    def __init__(self) -> None:
        self.status_logs = 0
        self.dropped = 0  # log bodies too large or too slow, answered so the agent moves on

    def render(self) -> list[str]:
        """Prometheus lines."""
        return [
            "# HELP appban_osquery_status_logs_total osquery status log entries received (counted, not kept).",
            "# TYPE appban_osquery_status_logs_total counter",
            f"appban_osquery_status_logs_total {self.status_logs}",
            "# HELP appban_osquery_log_dropped_total osquery log bodies dropped: larger than "
            "APPBAN_OSQUERY_MAX_LOG_BYTES, slower than APPBAN_OSQUERY_LOG_TIMEOUT, or too many entries.",
            "# TYPE appban_osquery_log_dropped_total counter",
            f"appban_osquery_log_dropped_total {self.dropped}",
        ]


def counters(request: Request) -> Counters:
    return counters_of(request.app.state)


def counters_of(state: Any) -> Counters:
    found = getattr(state, "osquery", None)
    if found is None:
        found = state.osquery = Counters()
    assert isinstance(found, Counters)
    return found


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_body(request, limit=settings.get("serve_max_body_bytes"))
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the body is not JSON: osquery's remote API posts a JSON object") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the body is not a JSON object, as osquery's remote API posts")
    return doc


def _header_key(request: Request) -> str | None:
    """The node key of ``Authorization: NodeKey <key>``, or None."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "nodekey" else None


async def _node(request: Request, doc: dict[str, Any]) -> OsqueryNode | None:
    """The live node of the request's node key (header, else body), or None."""
    header = _header_key(request)
    key = header if header is not None else doc.get("node_key")
    if not isinstance(key, str) or not key:
        return None
    service: Service = request.app.state.service
    node = await service.read(lambda store: nodes.node_of(store, key))
    if node is not None:
        request.state.source = node.source
    return node


def _invalid() -> Response:
    # osquery reads node_invalid from the body whatever the status; 401 tells the others.
    return json_response({"node_invalid": True}, status=401)
