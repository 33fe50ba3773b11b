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
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appban import settings, sources
from appban.clock import Micros, now_micros
from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin
from appban.inventory.osquery import tls_results
from appban.serve import osquery_nodes as nodes
from appban.serve._operations import operation
from appban.serve.bodies import read_body
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


class Logged(msgspec.Struct):
    node_invalid: bool
    results: list[EntryResult]
    status_logs: int


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
    answers={200: ("The node key.", Enrolled), **_REFUSED},
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
    try:
        facts = nodes.node_facts(doc)
    except BadInput as exc:
        raise ApiError(400, exc.detail, field=exc.field) from None
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
    "applied as check-ins, each entry on its own; status logs are counted, not kept.",
    body=LogBody,
    answers={200: ("What became of each result entry appban reads.", Logged), **_REFUSED},
)
async def log_entries(request: Request) -> Response:
    service: Service = request.app.state.service
    doc = await _json_object(request)
    node = await _node(request, doc)
    if node is None:
        return _invalid()
    data = doc.get("data")
    if not isinstance(data, list):
        raise ApiError(400, "data must be a list of log entries", field="data")
    most = settings.get("serve_max_items")
    if len(data) > most:
        raise ApiError(
            413,
            f"{len(data):,} log entries in one request, more than {most:,}",
            field=settings.SETTINGS["serve_max_items"].env,
        )
    log_type = doc.get("log_type")
    if log_type == "status":
        counters(request).status_logs += len(data)
        return json_response({"node_invalid": False, "results": [], "status_logs": len(data)})
    if log_type != "result":
        raise ApiError(400, "log_type must be result or status", field="log_type")
    results = await _apply(service, node, data)
    return json_response({"node_invalid": False, "results": results, "status_logs": 0})


async def _apply(service: Service, node: OsqueryNode, data: list[Any]) -> list[dict[str, Any]]:
    """Apply the check-ins of result entries; each one's result, with its entry's index."""
    if len(data) > _INLINE_ENTRIES:
        found = await asyncio.to_thread(_checkins, node, data)
    else:
        found = _checkins(node, data)
    if not found:  # nothing of a table appban reads: no transaction, no audit entry
        return []
    results = await service.apply(f"osquery:{node.source}", [item for _, item in found])
    return [r.as_dict() | {"index": found[r.index][0]} for r in results]


def _checkins(node: OsqueryNode, data: list[Any], now: Micros | None = None) -> list[tuple[int, Checkin | BadInput]]:
    options = ReadOptions(
        now=now_micros() if now is None else now,
        max_bytes=settings.get("max_checkin_bytes"),
        source=node.source,
    )
    found = sorted(
        tls_results(data, options, host=node.facts.host, decorations=nodes.decorations(node)),
        key=lambda pair: pair[0],
    )
    most = settings.get("max_apps")
    return [(i, _bounded(item, most)) for i, item in found]


def _bounded(item: Checkin | BadInput, most: int) -> Checkin | BadInput:
    if isinstance(item, Checkin) and len(item.apps) > most:
        return BadInput(f"{len(item.apps):,} apps, more than {most:,}", field="snapshot")
    return item


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
        answered.append(asked[0])
        if statuses.get(name, 0) not in (0, "0"):
            log.info("osquery refresh query %s failed on node %d", name, node.id)
            continue
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
    answers = [_query_result(names[found[r.index][0]], r) for r in results]
    return json_response({"node_invalid": False, "results": answers})


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


class Counters:
    """What the osquery endpoints saw that no store keeps."""

    def __init__(self) -> None:
        self.status_logs = 0


def counters(request: Request) -> Counters:
    state = request.app.state
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


async def _node(request: Request, doc: dict[str, Any]) -> OsqueryNode | None:
    """The live node of the request's node key (header, else body), or None."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    key = value.strip() if scheme.lower() == "nodekey" else doc.get("node_key")
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
