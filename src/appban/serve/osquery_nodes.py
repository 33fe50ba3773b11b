"""osquery agents enrolled with ``appban serve``: node keys, what they are asked to run,
and refreshes (``appban device refresh``).

An agent enrolls with an enroll secret (``appban source osquery-secret create``) and is
given a node key: 256 random bits, shown to it once, kept as a SHA-256 digest like a
source's token. The node key decides the host: everything the agent posts is filed
under the host_identifier it enrolled with, never under one a body names. A host that
enrolls again (its agent lost its key, or was reinstalled) gets a new key and its old
ones are revoked, so one host has one live key. Two machines that share a
host_identifier (a hostname is not unique) would take turns: agents should enroll with
``--host_identifier=uuid``.

Of what an agent tells at enrollment (osquery's ``host_details``: os_version,
osquery_info, system_info, platform_info) appban keeps what links its records to other
sources' and what decides its queries: the hardware serial, a Mac's hardware UUID (the
UDID its MDM knows it by; another machine's UUID links nothing), the platform. Not the
hostname: nothing links by it. Rows of node keys revoked longer ago than
``osquery_revoked_max_age`` are deleted when an agent enrolls.

appban asks for installed apps only, as snapshot queries (``"snapshot": true``): each
run logs the whole list in one entry, which a buffered batch cannot split and a replay
cannot apply twice (a snapshot is ordered by its time).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from appban import settings
from appban.clock import Micros, format_time
from appban.errors import BadInput, NotFound
from appban.inventory._vendor import child, text
from appban.policy.lifecycle import find_device
from appban.sources import check_name, digest
from appban.store.osquery_records import NodeFacts, OsqueryNode, OsqueryRefresh
from appban.text import check_identifier
from appban.workspace import Workspace

NODE_PREFIX = "appban-node-"
QUERY_PREFIX = "appban_"
# What each table's query selects: the columns inventory/osquery.py reads, no more.
_SQL = {
    "apps": (
        "SELECT bundle_identifier, display_name, bundle_name, name, bundle_short_version, bundle_version FROM apps;"
    ),
    "programs": "SELECT name, version FROM programs;",
    "deb_packages": "SELECT name, version FROM deb_packages;",
    "rpm_packages": "SELECT name, version FROM rpm_packages;",
    "chrome_extensions": "SELECT identifier, name, version FROM chrome_extensions;",
}
TABLES = tuple(_SQL)  # the tables appban asks for, each its own query (query_name)
# A schedule's "platform" (osquery's checkPlatform: a list of names, matched by substring).
_RUNS_ON = {
    "apps": "darwin",
    "programs": "windows",
    "deb_packages": "linux",
    "rpm_packages": "linux",
    "chrome_extensions": "darwin,windows,linux",
}
_DEB = frozenset({"debian", "ubuntu"})
_RPM = frozenset({"rhel", "fedora", "centos", "suse", "opensuse", "amzn", "rocky", "almalinux", "ol"})
_REFRESH = re.compile(rf"{QUERY_PREFIX}refresh_([0-9]{{1,18}})_([a-z_]+)")
# A refresh handed to an agent and not answered is handed again after this long (the
# agent may have restarted before running it); one not answered in a day is dropped.
REFRESH_RESEND = 600 * 1_000_000
REFRESH_EXPIRY = 86_400 * 1_000_000
_MOST = 256  # characters of a host identifier or a fact kept


def new_key() -> str:
    return NODE_PREFIX + secrets.token_urlsafe(32)


def node_facts(body: dict[str, Any]) -> NodeFacts:
    """What appban keeps of an enrollment request (raises BadInput naming the field)."""
    try:
        return _node_facts(body)
    except BadInput as exc:
        raise BadInput(exc.detail, field=(exc.field or "").lstrip(".") or None) from None


def _node_facts(body: dict[str, Any]) -> NodeFacts:
    host = text(body, "host_identifier", "", required=True) or ""
    _check(host, "host_identifier")
    details = child(body, "host_details", "")
    system = child(details, "system_info", ".host_details")
    os_version = child(details, "os_version", ".host_details")
    kept: dict[str, str | None] = {}
    for key, table, column in (
        ("serial", system, "system_info.hardware_serial"),
        ("uuid", system, "system_info.uuid"),
        ("platform", os_version, "os_version.platform"),
        ("platform_like", os_version, "os_version.platform_like"),
    ):
        section, _, name = column.partition(".")
        value = text(table, name, f"host_details.{section}")
        if value is not None:
            _check(value, f"host_details.{column}")
        kept[key] = value
    if (kept["platform"] or "").lower() != "darwin":
        kept["uuid"] = None  # only a Mac's hardware UUID is a UDID another source knows
    return NodeFacts(host=host, **kept)


def _check(value: str, field: str) -> None:
    if len(value) > _MOST:
        raise BadInput(f"longer than {_MOST} characters", field=field)
    check_identifier(value, field)


def enroll(ws: Workspace, source: str, facts: NodeFacts) -> str:
    """A new node key for ``facts.host`` (the host's earlier keys are revoked)."""
    key = new_key()
    keep_revoked = settings.duration("osquery_revoked_max_age")
    with ws.writing(evaluates=False):
        ws.store.prune_osquery_nodes(ws.now - keep_revoked)
        replaced = ws.store.revoke_osquery_nodes(source, facts.host, ws.now)
        node_id = ws.store.add_osquery_node(source, digest(key), facts, ws.now)
        ws.audit.append(ws.now, "osquery-enroll", source, {"node": node_id, "host": facts.host, "replaced": replaced})
    return key


def node_of(store: Any, key: str) -> OsqueryNode | None:
    """The live node this key belongs to, or None."""
    if not key.startswith(NODE_PREFIX) or len(key) > 200:
        return None
    node: OsqueryNode | None = store.osquery_node_by_digest(digest(key))
    return node if node is not None and node.revoked_at is None else None


def decorations(node: OsqueryNode) -> dict[str, str]:
    """The node's facts as the osquery reader takes them from a result's decorations."""
    facts = node.facts
    named = {"hardware_serial": facts.serial, "host_uuid": facts.uuid, "platform": facts.platform}
    return {k: v for k, v in named.items() if v is not None}


# -- what a node is asked ---------------------------------------------------------------


def tables(facts: NodeFacts) -> list[str]:
    """The tables whose apps appban asks this host for: by its platform, or all when
    it did not say (each query then runs only where its "platform" allows)."""
    platform = (facts.platform or "").lower()
    if not platform:
        return list(_SQL)
    if platform == "darwin":
        return ["apps", "chrome_extensions"]
    if platform == "windows":
        return ["programs", "chrome_extensions"]
    if platform == "freebsd":
        return []
    words = {platform, *(facts.platform_like or "").lower().split()}
    packages = [t for t, names in (("deb_packages", _DEB), ("rpm_packages", _RPM)) if words & names]
    return [*(packages or ["deb_packages", "rpm_packages"]), "chrome_extensions"]


def query_name(table: str) -> str:
    """The scheduled query of ``table``: its results are the record ``<host>/<name>``."""
    return QUERY_PREFIX + table


def schedule(facts: NodeFacts, interval: int) -> dict[str, Any]:
    """osquery's ``schedule`` for this host: one snapshot query per table."""
    return {
        query_name(t): {"query": _SQL[t], "interval": interval, "platform": _RUNS_ON[t], "snapshot": True}
        for t in tables(facts)
    }


def refresh_queries(node: OsqueryNode, refresh_id: int) -> dict[str, str]:
    """distributed/read's queries for a refresh: the scheduled queries, named for it."""
    return {f"{QUERY_PREFIX}refresh_{refresh_id}_{t}": _SQL[t] for t in tables(node.facts)}


def refresh_of(name: str) -> tuple[int, str] | None:
    """(refresh id, table) of a distributed query appban named, or None."""
    found = _REFRESH.fullmatch(name)
    if found is None or found.group(2) not in _SQL:
        return None
    return int(found.group(1)), found.group(2)


def ask_for_apps(ws: Workspace, node_id: int) -> int | None:
    """Ask a node for its apps at its next distributed/read, as ``device refresh`` does,
    unless a request of it is open: its logs said something that is not a whole set
    (a run logged one row a line, a differential after a lost run). The node's requests
    older than a day are forgotten. The new request's id, or None."""
    with ws.writing(evaluates=False):
        if ws.store.open_osquery_refreshes(node_id, since=ws.now - REFRESH_EXPIRY):
            return None
        ws.store.prune_osquery_refreshes(node_id, ws.now - REFRESH_EXPIRY)
        return int(ws.store.add_osquery_refresh(node_id, ws.now))


def due(refreshes: list[OsqueryRefresh], now: Micros) -> list[OsqueryRefresh]:
    """The refreshes to hand out now: never handed out, or not answered for a while."""
    return [r for r in refreshes if r.sent_at is None or r.sent_at <= now - REFRESH_RESEND]


def finish_refresh(ws: Workspace, node_id: int, refresh_id: int) -> list[int]:
    """The node answered ``refresh_id``: it and the node's earlier requests are done."""
    with ws.writing(evaluates=False):
        done = [r.id for r in ws.store.open_osquery_refreshes(node_id, since=0) if r.id <= refresh_id]
        for i in done:
            ws.store.finish_osquery_refresh(i, node_id, ws.now)
    return done


# -- commands ---------------------------------------------------------------------------


def request_refresh(ws: Workspace, ref: str) -> dict[str, Any]:
    """Ask the osquery agents of device ``ref`` for their apps at their next
    distributed/read; BadInput when no enrolled agent reports it."""
    with ws.writing(evaluates=False):
        device = find_device(ws, ref)
        assert device.id is not None
        records = [r.facts for r in ws.store.records_of(device.id)] if device.linked else [device]
        hosts = sorted({(r.source, value) for r in records for kind, value in r.identifiers if kind == "host"})
        nodes = ws.store.osquery_nodes_of_hosts(hosts)
        if not nodes:
            raise BadInput(
                f"{device.ref} has no osquery agent enrolled with appban serve (only an agent that "
                "enrolled can be asked for its apps now)",
                field="ID",
            )
        requests = [(ws.store.add_osquery_refresh(n.id, ws.now), n) for n in nodes]
        ws.audit.append(ws.now, "osquery-refresh", device.ref, {"requests": [i for i, _ in requests]})
    return {
        "device": device.ref,
        "requests": [{"id": i, "source": n.source, "host": n.facts.host, "node": n.id} for i, n in requests],
    }


def list_nodes(ws: Workspace, source: str | None, *, revoked: bool) -> dict[str, Any]:
    if source is not None:
        check_name(source)
    nodes = ws.store.osquery_nodes(source=source, live_only=not revoked)
    return {
        "nodes": [
            {
                "id": n.id,
                "source": n.source,
                "host": n.facts.host,
                "serial": n.facts.serial,
                "platform": n.facts.platform,
                "enrolled_at": format_time(n.enrolled_at),
                "revoked_at": format_time(n.revoked_at),
            }
            for n in nodes
        ]
    }


def revoke_nodes(ws: Workspace, source: str, host: str) -> dict[str, Any]:
    """Revoke the host's node keys: its agent is told ``node_invalid`` and enrolls again
    (if it still has an enroll secret that is live)."""
    check_name(source)
    with ws.writing(evaluates=False):
        ids = ws.store.revoke_osquery_nodes(source, host, ws.now)
        if not ids:
            raise NotFound(f"no live node key of host {host[:100]!r} in source {source!r}", field="HOST")
        ws.audit.append(ws.now, "osquery-node-revoke", source, {"host": host, "ids": ids})
    return {"source": source, "host": host, "revoked": ids}
