"""The SQLite store's sightings: what the gate saw, capped and expiring.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept. The gate's flusher
writes a batch a second (``record_sightings``) in one short transaction: the batch
goes into a temporary table, rows already there are updated from it in one
statement, and new ones are inserted in another, as far as the cap leaves room.
The number of rows held is kept in ``meta`` (``sightings_rows``), so the cap costs
no count of a table of a million rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from appban.clock import Micros
from appban.store._sweep_sql import READS_MAIL
from appban.store.records import SightedDevice, Sighting, SightingsWritten, UnseenDevice

_KEY = "s.eas_id = b.eas_id AND s.username = b.username AND s.device_type = b.device_type AND s.protocol = b.protocol"
# A DeviceId some device has: as one of its ActiveSync DeviceIds (what the gate's table
# holds), or as an identifier a source named it by (Jamf and Apple MDM report every
# iPhone's, mail or not).
_KNOWN = (
    "(EXISTS (SELECT 1 FROM device_eas e WHERE e.eas_id = s.eas_id) "
    "OR EXISTS (SELECT 1 FROM device_identifiers i WHERE i.kind = 'eas' AND i.value = s.eas_id))"
)
_CHUNK = 500  # parameters in one IN (...)


class SQLiteSightings:
    db: sqlite3.Connection

    def _meta_count(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta_count(self, key: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def record_sightings(self, rows: list[Sighting], now: Micros, max_rows: int) -> SightingsWritten:
        """Add ``rows`` seen at ``now``: known keys get ``now`` as last seen and their
        count added; new ones are inserted while fewer than ``max_rows`` are held, the
        most frequent first, and the rest refused (counted in ``sightings_refused``)."""
        if not rows:
            return SightingsWritten(0, 0, 0)
        db = self.db
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sightings_batch (eas_id TEXT NOT NULL, username TEXT NOT NULL, "
            "device_type TEXT NOT NULL, protocol TEXT NOT NULL, count INTEGER NOT NULL)"
        )
        db.execute("DELETE FROM temp.sightings_batch")
        db.executemany("INSERT INTO temp.sightings_batch VALUES (?, ?, ?, ?, ?)", rows)
        updated = db.execute(
            "UPDATE sightings AS s SET last_seen = max(s.last_seen, :now), count = s.count + b.count "
            f"FROM temp.sightings_batch AS b WHERE {_KEY}",
            {"now": now},
        ).rowcount
        held = self._meta_count("sightings_rows")
        room = max(0, max_rows - held)
        inserted = 0
        if room and updated < len(rows):
            inserted = db.execute(
                "INSERT INTO sightings (eas_id, username, device_type, protocol, first_seen, last_seen, count) "
                "SELECT b.eas_id, b.username, b.device_type, b.protocol, :now, :now, b.count "
                f"FROM temp.sightings_batch AS b WHERE NOT EXISTS (SELECT 1 FROM sightings AS s WHERE {_KEY}) "
                "ORDER BY b.count DESC LIMIT :room",
                {"now": now, "room": room},
            ).rowcount
        refused = len(rows) - updated - inserted
        db.execute("DELETE FROM temp.sightings_batch")
        if inserted:
            self._set_meta_count("sightings_rows", held + inserted)
        if refused:
            self._set_meta_count("sightings_refused", self._meta_count("sightings_refused") + refused)
        return SightingsWritten(updated, inserted, refused)

    def sightings_due(self, before: Micros) -> bool:
        """Whether any sighting was last seen before ``before`` (a read, to spare a write)."""
        row = self.db.execute("SELECT 1 FROM sightings WHERE last_seen < ? LIMIT 1", (before,)).fetchone()
        return row is not None

    def expire_sightings(self, before: Micros) -> int:
        """Drop the sightings last seen before ``before``; returns how many."""
        gone = self.db.execute("DELETE FROM sightings WHERE last_seen < ?", (before,)).rowcount
        if gone:
            self._set_meta_count("sightings_rows", max(0, self._meta_count("sightings_rows") - gone))
        return gone

    def sightings_held(self) -> tuple[int, int]:
        """Rows held, and new keys refused at the cap since the database was made."""
        return self._meta_count("sightings_rows"), self._meta_count("sightings_refused")

    def unseen_devices(self, since: Micros) -> Iterator[UnseenDevice]:
        """Sightings last seen at or after ``since`` of a DeviceId no device has, most
        recently seen first."""
        cursor = self.db.execute(
            "SELECT s.eas_id, s.username, s.device_type, s.protocol, s.first_seen, s.last_seen, s.count "
            f"FROM sightings AS s WHERE s.eas_id != '' AND s.last_seen >= ? AND NOT {_KNOWN} "
            "ORDER BY s.last_seen DESC, s.eas_id, s.username, s.device_type, s.protocol",
            (since,),
        )
        while batch := cursor.fetchmany(1000):
            yield from (UnseenDevice(*r) for r in batch)

    def sighted_devices(self, eas_ids: list[str]) -> list[SightedDevice]:
        """Devices that name one of these DeviceIds as an identifier and that nothing
        yet says read mail: those a sighting by their owner brings new evidence for."""
        out: list[SightedDevice] = []
        for start in range(0, len(eas_ids), _CHUNK):
            chunk = eas_ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            out += [
                SightedDevice(*r)
                for r in self.db.execute(
                    "SELECT DISTINCT i.value, d.id, d.owner FROM device_identifiers AS i "
                    "JOIN devices AS d ON d.id = i.device_id "
                    f"WHERE i.kind = 'eas' AND i.value IN ({marks}) AND NOT {READS_MAIL} ORDER BY d.id, i.value",
                    chunk,
                )
            ]
        return out

    def mark_mail_seen(self, device_ids: list[int], at: Micros) -> int:
        """Record that the gate saw these devices' owners use them for mail at ``at`` (the
        first time counts); returns how many were not marked before."""
        marked = 0
        for start in range(0, len(device_ids), _CHUNK):
            chunk = device_ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            marked += self.db.execute(
                f"UPDATE devices SET mail_seen = ? WHERE id IN ({marks}) AND mail_seen IS NULL", (at, *chunk)
            ).rowcount
        return marked
