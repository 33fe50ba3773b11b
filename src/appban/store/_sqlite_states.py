"""The SQLite store's states: per (policy, device), their history, the sweeps that
keep them current, and the reports over time that read them.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept: what evaluation and
reports ask of the ``states`` and ``state_history`` tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from appban.clock import Micros
from appban.store import _sweep_sql
from appban.store.records import (
    ChangeCount,
    FactRow,
    FleetSummary,
    HistoryRow,
    RecordedState,
    StateListing,
    StateRow,
    SweepChange,
    SweepQuery,
)


class SQLiteStates:
    db: sqlite3.Connection

    # -- states ----------------------------------------------------------------------

    def device_states(self, device_id: int) -> dict[str, StateRow]:
        rows = self.db.execute(
            "SELECT policy_id, device_id, state, since, detail, deny, next_check FROM states WHERE device_id = ?",
            (device_id,),
        ).fetchall()
        return {r[0]: StateRow(*r) for r in rows}

    def put_states(self, rows: list[StateRow]) -> None:
        self.db.executemany(
            "INSERT INTO states (policy_id, device_id, state, since, detail, deny, next_check) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (policy_id, device_id) DO UPDATE SET "
            "state = excluded.state, since = excluded.since, detail = excluded.detail, "
            "deny = excluded.deny, next_check = excluded.next_check",
            [(r.policy_id, r.device_id, r.state, r.since, r.detail, r.deny, r.next_check) for r in rows],
        )

    def add_history(self, rows: list[HistoryRow]) -> None:
        self.db.executemany(
            "INSERT INTO state_history (policy_id, device_id, old_state, new_state, at, cause) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def history(self, *, policy_id: str | None = None, device_id: int | None = None) -> list[HistoryRow]:
        where: list[str] = []
        params: list[Any] = []
        if policy_id is not None:
            where.append("policy_id = ?")
            params.append(policy_id)
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        sql = "SELECT policy_id, device_id, old_state, new_state, at, cause FROM state_history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [HistoryRow(*r) for r in self.db.execute(sql + " ORDER BY at, id", params)]

    def states_at(self, policy_id: str, at: Micros) -> dict[int, RecordedState]:
        """Device id -> its state as the history records it at time ``at``."""
        rows = self.db.execute(
            "SELECT device_id, new_state, at, cause FROM (SELECT device_id, new_state, at, cause, "
            "row_number() OVER (PARTITION BY device_id ORDER BY at DESC, id DESC) AS rn "
            "FROM state_history WHERE policy_id = ? AND at <= ?) WHERE rn = 1",
            (policy_id, at),
        )
        return {r[0]: RecordedState(r[1], r[2], r[3]) for r in rows}

    def device_states_at(self, device_id: int, at: Micros) -> dict[str, RecordedState]:
        """Policy id -> one device's state as recorded at time ``at``."""
        rows = self.db.execute(
            "SELECT policy_id, new_state, at, cause FROM (SELECT policy_id, new_state, at, cause, "
            "row_number() OVER (PARTITION BY policy_id ORDER BY at DESC, id DESC) AS rn "
            "FROM state_history WHERE device_id = ? AND at <= ?) WHERE rn = 1",
            (device_id, at),
        )
        return {r[0]: RecordedState(r[1], r[2], r[3]) for r in rows}

    def policy_facts(self, policy_id: str, *, due_before: Micros | None = None) -> Iterator[FactRow]:
        """Every device with what evaluating it needs, and its stored state for the policy."""
        sql = f"SELECT {_sweep_sql.FACT_COLUMNS} FROM "
        if due_before is None:
            sql += (
                "devices d LEFT JOIN states s ON s.device_id = d.id AND s.policy_id = ? "
                "LEFT JOIN people p ON p.email = d.owner"
            )
            return map(FactRow._make, self.db.execute(sql, (policy_id,)))
        sql += (
            "states s JOIN devices d ON d.id = s.device_id "
            "LEFT JOIN people p ON p.email = d.owner "
            "WHERE s.policy_id = ? AND s.next_check IS NOT NULL AND s.next_check <= ?"
        )
        return map(FactRow._make, self.db.execute(sql, (policy_id, due_before)))

    def policy_candidates(self, policy_id: str, q: SweepQuery, *, complex_only: bool = False) -> Iterator[FactRow]:
        """Like ``policy_facts``, but only rows whose state could differ from the stored one.

        SQLite classifies every device without a banned app, exemption or attestation
        (``_sweep_sql``) and returns only those whose stored row is not what their kind
        says, plus every "complex" row; with ``complex_only``, just the complex rows
        (the simple ones having been written by ``sweep_simple``).
        """
        params = _sweep_sql.parameters(policy_id, q)
        cursor = self.db.execute(_sweep_sql.candidates_sql(q, params, complex_only=complex_only), params)
        return map(FactRow._make, cursor)

    def sweep_simple(self, policy_id: str, q: SweepQuery, cause: str) -> list[SweepChange]:
        """Write the states of every simple device whose row is out of date, in SQL.

        Records a history row for each state change. Returns (device_id, old state,
        new state, deny changed) of the rows it changed, for the caller's audit and
        decisions.
        """
        params = _sweep_sql.parameters(policy_id, q)
        params["cause"] = cause
        self.db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sweep (id INTEGER PRIMARY KEY, old_state TEXT, "
            "old_since INTEGER, old_deny TEXT, new_state TEXT, new_detail TEXT, new_deny TEXT, "
            "new_next INTEGER)"
        )
        self.db.execute("DELETE FROM sweep")
        self.db.execute("INSERT INTO sweep " + _sweep_sql.simple_changes_sql(q, params), params)
        self.db.execute(
            "INSERT INTO state_history (policy_id, device_id, old_state, new_state, at, cause) "
            "SELECT :pid, id, old_state, new_state, :now, :cause FROM sweep "
            "WHERE old_state IS NOT new_state",
            params,
        )
        self.db.execute(
            "INSERT INTO states (policy_id, device_id, state, since, detail, deny, next_check) "
            "SELECT :pid, id, new_state, CASE WHEN old_state IS new_state THEN old_since ELSE :now END, "
            "new_detail, new_deny, new_next FROM sweep WHERE 1 "
            "ON CONFLICT (policy_id, device_id) DO UPDATE SET state = excluded.state, "
            "since = excluded.since, detail = excluded.detail, deny = excluded.deny, "
            "next_check = excluded.next_check",
            params,
        )
        rows = self.db.execute(
            "SELECT id, old_state, new_state, coalesce(old_deny, '') != new_deny FROM sweep "
            "WHERE old_state IS NOT new_state OR coalesce(old_deny, '') != new_deny ORDER BY id"
        ).fetchall()
        self.db.execute("DELETE FROM sweep")
        return [SweepChange(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def due_count(self, policy_id: str, at: Micros) -> int:
        """How many of the policy's states wake exactly at ``at``."""
        row = self.db.execute(
            "SELECT count(*) FROM states WHERE next_check = ? AND policy_id = ?", (at, policy_id)
        ).fetchone()
        return int(row[0])

    def due_policies(self, now: Micros) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT policy_id FROM states WHERE next_check IS NOT NULL AND next_check <= ?",
                (now,),
            )
        ]

    def denies_of(self, device_ids: list[int], active: list[str]) -> dict[int, list[str]]:
        """Device id -> the deny reasons its states under active policies contribute."""
        out: dict[int, list[str]] = {d: [] for d in device_ids}
        if not active:
            return out
        pol = ", ".join("?" * len(active))
        for start in range(0, len(device_ids), 500):
            chunk = device_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for device_id, deny in self.db.execute(
                f"SELECT device_id, deny FROM states WHERE device_id IN ({marks}) "
                f"AND policy_id IN ({pol}) AND deny != ''",
                [*chunk, *active],
            ):
                out[device_id].append(deny)
        return out

    def clear_denies(self, policy_id: str) -> list[int]:
        """Withdrawal: the policy's states stop contributing to decisions."""
        ids = [
            r[0]
            for r in self.db.execute("SELECT device_id FROM states WHERE policy_id = ? AND deny != ''", (policy_id,))
        ]
        self.db.execute("UPDATE states SET deny = '', next_check = NULL WHERE policy_id = ?", (policy_id,))
        return ids

    def state_rows(self, policy_id: str, *, state: str | None = None) -> Iterator[StateListing]:
        """A policy's stored states, with each device's owner, platform and org unit."""
        sql = (
            "SELECT s.device_id, s.state, s.since, s.detail, s.deny, s.next_check, d.owner, "
            "d.platform, coalesce(p.org_unit, '') FROM states s JOIN devices d ON d.id = s.device_id "
            "LEFT JOIN people p ON p.email = d.owner WHERE s.policy_id = ?"
        )
        params: list[Any] = [policy_id]
        if state is not None:
            sql += " AND s.state = ?"
            params.append(state)
        return map(StateListing._make, self.db.execute(sql + " ORDER BY s.device_id", params))

    # -- reports over time -------------------------------------------------------------

    def state_counts(self, policy_id: str) -> dict[str, int]:
        rows = self.db.execute("SELECT state, count(*) FROM states WHERE policy_id = ? GROUP BY state", (policy_id,))
        return {state: int(n) for state, n in rows}

    def people_in_states(self, policy_id: str, states: tuple[str, ...]) -> int:
        params: dict[str, Any] = {"pid": policy_id}
        marks = _sweep_sql.bind(params, "st", states)
        row = self.db.execute(
            "SELECT count(DISTINCT d.owner) FROM states s JOIN devices d ON d.id = s.device_id "
            f"WHERE s.policy_id = :pid AND s.state IN ({marks})",
            params,
        ).fetchone()
        return int(row[0])

    def changes_between(
        self, policy_id: str, start: Micros, end: Micros, *, to: str | None = None, left: str | None = None
    ) -> ChangeCount:
        where = ["h.policy_id = :pid", "h.at >= :start", "h.at < :end"]
        params: dict[str, Any] = {"pid": policy_id, "start": start, "end": end, "to": to, "left": left}
        if to is not None:
            where.append("h.new_state = :to")
        if left is not None:
            where.append("h.old_state = :left AND h.new_state != :left")
        row = self.db.execute(
            "SELECT count(DISTINCT h.device_id), count(DISTINCT d.owner) FROM state_history h "
            f"JOIN devices d ON d.id = h.device_id WHERE {' AND '.join(where)}",
            params,
        ).fetchone()
        return ChangeCount(int(row[0]), int(row[1]))

    def removals_between(
        self, families: Iterable[str], explicit: Iterable[tuple[str, str]], start: Micros, end: Micros
    ) -> int:
        params: dict[str, Any] = {"start": start, "end": end}
        banned = _sweep_sql.banned(params, families, explicit)
        row = self.db.execute(
            "SELECT count(DISTINCT device_id) FROM observations WHERE gone_at >= :start AND gone_at < :end "
            f"AND ({banned})",
            params,
        ).fetchone()
        return int(row[0])

    def devices_with_apps_at(
        self, families: Iterable[str], explicit: Iterable[tuple[str, str]], at: Micros
    ) -> list[int]:
        params: dict[str, Any] = {"at": at}
        banned = _sweep_sql.banned(params, families, explicit)
        rows = self.db.execute(
            "SELECT DISTINCT device_id FROM observations WHERE first_seen <= :at "
            f"AND (gone_at IS NULL OR gone_at > :at) AND ({banned}) ORDER BY device_id",
            params,
        )
        return [int(r[0]) for r in rows]

    def fleet_summary(self, platforms: Iterable[str], families: Iterable[str]) -> FleetSummary:
        db = self.db
        people, units, zones = db.execute(
            "SELECT count(*), count(DISTINCT org_unit), count(DISTINCT timezone) FROM people"
        ).fetchone()
        by_platform = dict(db.execute("SELECT platform, count(*) FROM devices GROUP BY platform ORDER BY platform"))
        params: dict[str, Any] = {}
        marks = _sweep_sql.bind(params, "pl", sorted(platforms))
        reading = dict(
            db.execute(
                "SELECT d.ownership || '/' || d.inventory_scope, count(*) FROM devices d "
                f"WHERE d.platform IN ({marks}) AND {_sweep_sql.READS_MAIL} GROUP BY 1 ORDER BY 1",
                params,
            )
        )
        params = {}
        fams = _sweep_sql.bind(params, "fam", sorted(families))
        present = f"FROM observations WHERE gone_at IS NULL AND family IN ({fams})"
        banned = dict(
            db.execute(f"SELECT app_id, count(DISTINCT device_id) {present} GROUP BY app_id ORDER BY 2 DESC, 1", params)
        )
        devices = db.execute(f"SELECT count(DISTINCT device_id) {present}", params).fetchone()[0]
        return FleetSummary(people, units, zones, by_platform, reading, int(devices), banned)
