"""The SQLite store's links: one physical device that several sources report.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept: the source records
of linked devices, every record's identifiers, and the pairs an admin unlinked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from appban.clock import Micros
from appban.store._sqlite_rows import NEXT_ID, device_row, join_identifiers
from appban.store.records import IdentifierRow, Observation, SourceRecord

_RECORD_COLS = (
    "id, source, source_id, platform, ownership, owner, inventory_scope, observed_at, model, "
    "os_version, mail_reported, eas_ids, catalog_version, identifiers, epoch, counter, "
    "device_id, linked_by, linked_at"
)
# A record read in a device row's layout (its device-only columns at their defaults),
# then the link's own columns.
_RECORD_READ = (
    "id, source, source_id, platform, ownership, owner, inventory_scope, observed_at, model, "
    "os_version, mail_reported, eas_ids, catalog_version, 0, 'allow', 'ok', 0, identifiers, epoch, "
    "counter, 0, NULL, device_id, linked_by, linked_at"
)
_OBSERVATION_COLS = (
    "app_key, app_id, name, version, signing_sha256, family, match_kind, confidence, first_seen, last_seen, gone_at"
)


def _record(row: tuple[Any, ...]) -> SourceRecord:
    return SourceRecord(device_row(row), row[22], row[23], row[24])


class SQLiteLinks:
    db: sqlite3.Connection

    # -- source records of linked devices ----------------------------------------------

    def get_record(self, source: str, source_id: str) -> SourceRecord | None:
        row = self.db.execute(
            f"SELECT {_RECORD_READ} FROM device_records WHERE source = ? AND source_id = ?", (source, source_id)
        ).fetchone()
        return _record(row) if row else None

    def get_record_by_id(self, record_id: int) -> SourceRecord | None:
        row = self.db.execute(f"SELECT {_RECORD_READ} FROM device_records WHERE id = ?", (record_id,)).fetchone()
        return _record(row) if row else None

    def records_by_source_id(self, source_id: str) -> list[SourceRecord]:
        rows = self.db.execute(
            f"SELECT {_RECORD_READ} FROM device_records WHERE source_id = ? ORDER BY id", (source_id,)
        ).fetchall()
        return [_record(r) for r in rows]

    def records_of(self, device_id: int) -> list[SourceRecord]:
        rows = self.db.execute(
            f"SELECT {_RECORD_READ} FROM device_records WHERE device_id = ? ORDER BY id", (device_id,)
        ).fetchall()
        return [_record(r) for r in rows]

    def put_record(self, r: SourceRecord) -> int:
        """Insert (``facts.id`` None) or update a record; returns its id."""
        d = r.facts
        values = (
            d.source,
            d.source_id,
            d.platform,
            d.ownership,
            d.owner,
            d.inventory_scope,
            d.observed_at,
            d.model,
            d.os_version,
            d.mail_reported,
            " ".join(d.eas_ids),
            d.catalog_version,
            join_identifiers(d.identifiers),
            d.epoch,
            d.counter,
            r.device_id,
            r.linked_by,
            r.linked_at,
        )
        if d.id is None:
            cur = self.db.execute(
                f"INSERT INTO device_records ({_RECORD_COLS}) "
                f"VALUES ({NEXT_ID.format(table='device_records')}, {', '.join('?' * 18)})",
                values,
            )
            d.id = int(cur.lastrowid or 0)
        else:
            columns = _RECORD_COLS.partition(", ")[2].split(", ")
            self.db.execute(
                f"UPDATE device_records SET {', '.join(c + ' = ?' for c in columns)} WHERE id = ?", (*values, d.id)
            )
        return d.id

    def delete_record(self, record_id: int) -> None:
        self.db.execute("DELETE FROM device_records WHERE id = ?", (record_id,))
        self._removed("device_records", record_id)

    def _removed(self, table: str, row_id: int) -> None:
        """Remember the highest id removed from ``table``: it is never given again."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
            "CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
            (f"{table}_high", str(row_id)),
        )

    def record_observations(self, record_id: int, *, present_only: bool = False) -> list[Observation]:
        sql = f"SELECT {_OBSERVATION_COLS} FROM record_observations WHERE record_id = ?"
        if present_only:
            sql += " AND gone_at IS NULL"
        return [Observation(*r) for r in self.db.execute(sql + " ORDER BY app_key", (record_id,))]

    def put_record_observations(self, record_id: int, rows: list[Observation]) -> None:
        """The record's observations, replaced whole."""
        self.db.execute("DELETE FROM record_observations WHERE record_id = ?", (record_id,))
        self.db.executemany(
            f"INSERT INTO record_observations (record_id, {_OBSERVATION_COLS}) VALUES ({', '.join('?' * 12)})",
            [
                (
                    record_id,
                    o.app_key,
                    o.app_id,
                    o.name,
                    o.version,
                    o.signing_sha256,
                    o.family,
                    o.match_kind,
                    o.confidence,
                    o.first_seen,
                    o.last_seen,
                    o.gone_at,
                )
                for o in rows
            ],
        )

    # -- identifiers -------------------------------------------------------------------

    def set_identifiers(
        self,
        source: str,
        source_id: str,
        owner: str,
        device_id: int,
        pairs: Iterable[tuple[str, str]],
        *,
        new: bool = False,
    ) -> None:
        """A record's identifiers, replaced whole (``new``: it has none yet)."""
        if not new:
            self.db.execute("DELETE FROM device_identifiers WHERE source = ? AND source_id = ?", (source, source_id))
        self.db.executemany(
            "INSERT OR IGNORE INTO device_identifiers (kind, value, source, source_id, owner, device_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(kind, value, source, source_id, owner, device_id) for kind, value in pairs],
        )

    def identifier_rows(self, pairs: Iterable[tuple[str, str]]) -> list[IdentifierRow]:
        """Every record's row for any of these (kind, value) identifiers."""
        out: list[IdentifierRow] = []
        for kind, value in pairs:
            out += [
                IdentifierRow(*r)
                for r in self.db.execute(
                    "SELECT kind, value, source, source_id, owner, device_id FROM device_identifiers "
                    "WHERE kind = ? AND value = ? ORDER BY device_id, source, source_id LIMIT 100",
                    (kind, value),
                )
            ]
        return out

    def move_identifiers(self, from_device: int, to_device: int) -> None:
        self.db.execute("UPDATE device_identifiers SET device_id = ? WHERE device_id = ?", (to_device, from_device))

    def record_identifiers_to(self, source: str, source_id: str, device_id: int) -> None:
        self.db.execute(
            "UPDATE device_identifiers SET device_id = ? WHERE source = ? AND source_id = ?",
            (device_id, source, source_id),
        )

    def shared_identifiers(self) -> list[IdentifierRow]:
        """The rows of every identifier that records with two different known owners share."""
        rows = self.db.execute(
            "SELECT i.kind, i.value, i.source, i.source_id, i.owner, i.device_id FROM device_identifiers i "
            "JOIN (SELECT kind, value FROM device_identifiers WHERE owner != '' GROUP BY kind, value "
            "      HAVING count(DISTINCT owner) > 1) c ON c.kind = i.kind AND c.value = i.value "
            "ORDER BY i.kind, i.value, i.source, i.source_id"
        )
        return [IdentifierRow(*r) for r in rows]

    # -- unlinked pairs ------------------------------------------------------------------

    def add_unlinked(self, a: tuple[str, str], b: tuple[str, str], at: Micros) -> None:
        first, second = sorted((a, b))
        self.db.execute(
            "INSERT OR IGNORE INTO unlinked (source_a, source_id_a, source_b, source_id_b, at) VALUES (?, ?, ?, ?, ?)",
            (*first, *second, at),
        )

    def unlinked_from(self, source: str, source_id: str) -> set[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT source_b, source_id_b FROM unlinked WHERE source_a = ? AND source_id_a = ? "
            "UNION SELECT source_a, source_id_a FROM unlinked WHERE source_b = ? AND source_id_b = ?",
            (source, source_id, source, source_id),
        )
        return {(r[0], r[1]) for r in rows}

    def relabel_device(self, device_id: int, source: str, source_id: str) -> None:
        """A linked device is shown by one of its records' keys: another one's now."""
        self.db.execute("UPDATE devices SET source = ?, source_id = ? WHERE id = ?", (source, source_id, device_id))

    # -- one device folded into another --------------------------------------------------

    def fold_device(self, from_id: int, into_id: int, seq: int) -> None:
        """``from_id`` is now part of ``into_id``: what was attached to it (exemptions,
        attestations, mail passwords, source records, identifiers) moves; its states go
        (their history stays, under its id); the gate drops its DeviceIds at ``seq``;
        its row goes."""
        db = self.db
        db.execute("UPDATE exemptions SET device_id = ? WHERE device_id = ?", (into_id, from_id))
        db.execute("UPDATE attestations SET device_id = ? WHERE device_id = ?", (into_id, from_id))
        moved = db.execute("UPDATE credentials SET device_id = ?, seq = ? WHERE device_id = ?", (into_id, seq, from_id))
        if moved.rowcount:
            db.execute(
                "UPDATE devices SET credential = 1 WHERE id = ? AND EXISTS (SELECT 1 FROM credentials "
                "WHERE device_id = ? AND revoked_at IS NULL)",
                (into_id, into_id),
            )
        db.execute("UPDATE device_records SET device_id = ? WHERE device_id = ?", (into_id, from_id))
        db.execute("UPDATE device_identifiers SET device_id = ? WHERE device_id = ?", (into_id, from_id))
        db.execute(
            "UPDATE devices SET mail_seen = coalesce(mail_seen, (SELECT mail_seen FROM devices WHERE id = ?)) "
            "WHERE id = ?",
            (from_id, into_id),
        )
        db.execute("DELETE FROM states WHERE device_id = ?", (from_id,))
        db.execute(
            "INSERT INTO gate_tombstones (seq, eas_id, device_id) SELECT ?, eas_id, device_id FROM device_eas "
            "WHERE device_id = ?",
            (seq, from_id),
        )
        db.execute("DELETE FROM device_eas WHERE device_id = ?", (from_id,))
        db.execute("DELETE FROM observations WHERE device_id = ?", (from_id,))
        db.execute("DELETE FROM devices WHERE id = ?", (from_id,))
        self._removed("devices", from_id)
