"""The SQLite store's osquery agents (node keys by digest, refresh requests) and the
Apple MDM app lists held until their device's facts are known.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from appban.clock import Micros
from appban.store.osquery_records import HeldApps, NodeFacts, OsqueryNode, OsqueryRefresh

_NODE_COLS = "id, source, host, hostname, serial, uuid, platform, platform_like, enrolled_at, revoked_at"
_REFRESH_COLS = "id, node, requested_at, sent_at, done_at"
_HELD_COLS = "source, device_key, observed_at, scope, user_enrollment, apps, catalog_version, received_at"


def _node(row: Any) -> OsqueryNode:
    return OsqueryNode(row[0], row[1], NodeFacts(*row[2:8]), row[8], row[9])


def _held(row: Any) -> HeldApps:
    return HeldApps(row[0], row[1], row[2], row[3], bool(row[4]), bytes(row[5]), row[6], row[7])


class SQLiteOsquery:
    db: sqlite3.Connection

    # -- nodes -----------------------------------------------------------------------

    def add_osquery_node(self, source: str, digest: str, facts: NodeFacts, at: Micros) -> int:
        cur = self.db.execute(
            "INSERT INTO osquery_nodes (source, host, digest, hostname, serial, uuid, platform, platform_like,"
            " enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                source,
                facts.host,
                digest,
                facts.hostname,
                facts.serial,
                facts.uuid,
                facts.platform,
                facts.platform_like,
                at,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def revoke_osquery_nodes(self, source: str, host: str, at: Micros) -> list[int]:
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT id FROM osquery_nodes WHERE source = ? AND host = ? AND revoked_at IS NULL ORDER BY id",
                (source, host),
            )
        ]
        self.db.executemany("UPDATE osquery_nodes SET revoked_at = ? WHERE id = ?", [(at, i) for i in ids])
        return ids

    def prune_osquery_nodes(self, revoked_before: Micros) -> int:
        old = "SELECT id FROM osquery_nodes WHERE revoked_at IS NOT NULL AND revoked_at < ?"
        self.db.execute(f"DELETE FROM osquery_refreshes WHERE node IN ({old})", (revoked_before,))
        return self.db.execute(
            "DELETE FROM osquery_nodes WHERE revoked_at IS NOT NULL AND revoked_at < ?", (revoked_before,)
        ).rowcount

    def osquery_node_by_digest(self, digest: str) -> OsqueryNode | None:
        row = self.db.execute(f"SELECT {_NODE_COLS} FROM osquery_nodes WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else _node(row)

    def osquery_nodes(self, *, source: str | None = None, live_only: bool = True) -> list[OsqueryNode]:
        sql = f"SELECT {_NODE_COLS} FROM osquery_nodes WHERE (? IS NULL OR source = ?)"
        if live_only:
            sql += " AND revoked_at IS NULL"
        return [_node(r) for r in self.db.execute(sql + " ORDER BY source, host, id", (source, source))]

    def osquery_nodes_of_hosts(self, hosts: Iterable[tuple[str, str]]) -> list[OsqueryNode]:
        found: dict[int, OsqueryNode] = {}
        for source, host in hosts:
            for row in self.db.execute(
                f"SELECT {_NODE_COLS} FROM osquery_nodes WHERE source = ? AND host = ? AND revoked_at IS NULL",
                (source, host),
            ):
                node = _node(row)
                found[node.id] = node
        return [found[i] for i in sorted(found)]

    # -- refresh requests -------------------------------------------------------------

    def add_osquery_refresh(self, node_id: int, at: Micros) -> int:
        cur = self.db.execute("INSERT INTO osquery_refreshes (node, requested_at) VALUES (?, ?)", (node_id, at))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def open_osquery_refreshes(self, node_id: int, *, since: Micros) -> list[OsqueryRefresh]:
        rows = self.db.execute(
            f"SELECT {_REFRESH_COLS} FROM osquery_refreshes"
            " WHERE node = ? AND done_at IS NULL AND requested_at >= ? ORDER BY id",
            (node_id, since),
        )
        return [OsqueryRefresh(*r) for r in rows]

    def mark_osquery_refreshes_sent(self, ids: list[int], at: Micros) -> None:
        self.db.executemany("UPDATE osquery_refreshes SET sent_at = ? WHERE id = ?", [(at, i) for i in ids])

    def prune_osquery_refreshes(self, node_id: int, before: Micros) -> int:
        return self.db.execute(
            "DELETE FROM osquery_refreshes WHERE node = ? AND requested_at < ?", (node_id, before)
        ).rowcount

    def finish_osquery_refresh(self, refresh_id: int, node_id: int, at: Micros) -> bool:
        cur = self.db.execute(
            "UPDATE osquery_refreshes SET done_at = ? WHERE id = ? AND node = ? AND done_at IS NULL",
            (at, refresh_id, node_id),
        )
        return cur.rowcount == 1

    # -- MDM app lists held for their device's facts ------------------------------------

    def hold_mdm_apps(self, held: HeldApps) -> None:
        self.db.execute(
            f"INSERT INTO mdm_held_apps ({_HELD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source, device_key) DO UPDATE SET observed_at = excluded.observed_at,"
            " scope = excluded.scope, user_enrollment = excluded.user_enrollment, apps = excluded.apps,"
            " catalog_version = excluded.catalog_version, received_at = excluded.received_at"
            " WHERE excluded.observed_at >= mdm_held_apps.observed_at",
            (
                held.source,
                held.device_key,
                held.observed_at,
                held.scope,
                int(held.user_enrollment),
                held.apps,
                held.catalog_version,
                held.received_at,
            ),
        )

    def held_mdm_apps(self, source: str, device_key: str) -> HeldApps | None:
        row = self.db.execute(
            f"SELECT {_HELD_COLS} FROM mdm_held_apps WHERE source = ? AND device_key = ?", (source, device_key)
        ).fetchone()
        return None if row is None else _held(row)

    def count_mdm_apps(self, source: str) -> int:
        row = self.db.execute("SELECT count(*) FROM mdm_held_apps WHERE source = ?", (source,)).fetchone()
        return int(row[0])

    def drop_mdm_apps(self, source: str, device_key: str) -> None:
        self.db.execute("DELETE FROM mdm_held_apps WHERE source = ? AND device_key = ?", (source, device_key))

    def expire_mdm_apps(self, before: Micros) -> int:
        return self.db.execute("DELETE FROM mdm_held_apps WHERE received_at < ?", (before,)).rowcount
