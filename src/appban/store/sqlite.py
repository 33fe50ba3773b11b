"""The SQLite store: WAL, foreign keys, one writer at a time (BEGIN IMMEDIATE).

States, their history and the sweeps over them are in ``_sqlite_states.py``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from appban import settings
from appban.clock import Micros
from appban.errors import AppbanError, Busy
from appban.store import _sweep_sql
from appban.store._sqlite_links import SQLiteLinks
from appban.store._sqlite_notices import SQLiteNotices
from appban.store._sqlite_osquery import SQLiteOsquery
from appban.store._sqlite_rows import DEVICE_COLS as _DEVICE_COLS
from appban.store._sqlite_rows import NEXT_ID, join_identifiers
from appban.store._sqlite_rows import device_row as _device
from appban.store._sqlite_sightings import SQLiteSightings
from appban.store._sqlite_sources import SQLiteSources
from appban.store._sqlite_states import SQLiteStates
from appban.store.records import (
    AuditEntry,
    Credential,
    Decision,
    DeviceRow,
    Exemption,
    GateRow,
    Identifier,
    KeptName,
    Observation,
    Person,
    PolicyRow,
    StoredCatalog,
    Tombstone,
)


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("appban.store").joinpath("migrations")
    out = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            out.append((int(item.name.split("_", 1)[0]), item.read_text("utf-8")))
    return sorted(out)


# Commit tokens kept for followers (gate_commits): far more than a follower polling
# every tenth of a second ever falls behind by without reloading anyway.
_GATE_COMMITS_KEPT = 100_000


def is_busy(exc: BaseException) -> bool:
    """True when SQLite refused because another connection holds a lock (not a fault)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# The database cannot be reached or read: not there, not a database, the disk failing.
_UNAVAILABLE = (
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_AUTH,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database itself cannot be reached (an outage, not a bug)."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNAVAILABLE


def _file_id(path: str) -> tuple[int, int] | None:
    """The file behind ``path`` (device, inode); None for an in-memory database."""
    if path == ":memory:" or not path:
        return None
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


class SQLiteStore(SQLiteOsquery, SQLiteStates, SQLiteLinks, SQLiteSources, SQLiteSightings, SQLiteNotices):
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        # A writer waits its turn behind another (an import, the gate's evaluation).
        self.busy_timeout: float = settings.get("busy_timeout")
        synchronous = settings.get("sqlite_synchronous").upper()
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise AppbanError(f"cannot open database {path}: {exc}") from None
        self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        self.db.execute("PRAGMA foreign_keys = ON")
        # WAL with synchronous=FULL syncs the log at every commit: a committed block,
        # decision or audit entry survives a power cut, not only a crash of appban.
        # NORMAL syncs only at checkpoints (faster; a power cut may lose the last
        # commits, never corrupts). Each command commits a handful of times, so FULL
        # costs little. (https://www.sqlite.org/pragma.html#pragma_synchronous)
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        self.db.execute("PRAGMA temp_store = MEMORY")
        self.db.execute("PRAGMA cache_size = -65536")
        try:
            self._file = _file_id(path)  # which file this connection opened (see replaced())
        except OSError:
            self._file = None
        self._depth = 0
        self._seq: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    def schema_version(self) -> int:
        row = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if row is None:
            return 0
        value = self.get_meta("schema_version")
        return int(value) if value else 0

    def migrate(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version."""
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            current = self.schema_version()
            for version, script in migrations():
                if version > current:
                    for statement in script.split(";\n"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.set_meta("schema_version", str(version))
                    current = version
        return current

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise self.busy() from None
            raise
        self._depth = 1
        self._seq = None
        try:
            yield
            if self._seq is not None:
                self.set_meta("gate_seq", str(self._seq))
                self.db.execute(
                    "INSERT INTO gate_commits (seq, token) VALUES (?, ?)", (self._seq, secrets.token_hex(8))
                )
                self.db.execute("DELETE FROM gate_commits WHERE seq < ?", (self._seq - _GATE_COMMITS_KEPT,))
        except BaseException:
            self._depth = 0
            self._seq = None
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._seq = None
        self.db.execute("COMMIT")

    def gate_token(self, seq: int) -> str | None:
        row = self.db.execute("SELECT token FROM gate_commits WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def busy(self) -> Busy:
        return Busy(
            f"{self.path} is busy: another command held it for more than {self.busy_timeout:g} s "
            f"(APPBAN_BUSY_TIMEOUT); try again"
        )

    # -- a long-lived follower (the gate) ----------------------------------------------

    def replaced(self) -> bool:
        # A connection stays on the file it opened, even once another is renamed over
        # its path (a restore, a copy): only the path's inode tells.
        return _file_id(self.path) != self._file

    def limit_cache(self, kib: int) -> None:
        self.db.execute(f"PRAGMA cache_size = -{int(kib)}")

    def set_lock_wait(self, seconds: float) -> None:
        self.busy_timeout = seconds
        self.db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    # -- meta ------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def next_gate_seq(self) -> int:
        """The next value of the gate's change counter.

        Counted in memory within a transaction (there is one writer) and stored
        with the commit.
        """
        if self._seq is None:
            self._seq = self.gate_seq()
        self._seq += 1
        return self._seq

    def gate_seq(self) -> int:
        return int(self.get_meta("gate_seq", "0") or 0)

    # -- people ----------------------------------------------------------------------

    def get_person(self, email: str) -> Person | None:
        row = self.db.execute(
            "SELECT email, name, org_unit, groups, timezone FROM people WHERE email = ?", (email,)
        ).fetchone()
        if row is None:
            return None
        return Person(row[0], row[1], row[2], tuple(row[3].split(";")) if row[3] else (), row[4])

    def put_people(self, people: Iterable[Person], at: Micros) -> None:
        self.db.executemany(
            "INSERT INTO people (email, name, org_unit, groups, timezone, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET name = excluded.name, "
            "org_unit = excluded.org_unit, groups = excluded.groups, "
            "timezone = excluded.timezone, updated_at = excluded.updated_at",
            ((p.email, p.name, p.org_unit, ";".join(p.groups), p.timezone, at) for p in people),
        )

    def list_people(self, *, org_unit: str | None = None, group: str | None = None) -> list[Person]:
        sql = "SELECT email, name, org_unit, groups, timezone FROM people WHERE 1"
        params: list[Any] = []
        if org_unit is not None:
            sql += " AND org_unit = ?"
            params.append(org_unit)
        if group is not None:
            # groups are ';'-joined: a whole name between separators, never a LIKE pattern.
            sql += " AND instr(';' || groups || ';', ';' || ? || ';') > 0"
            params.append(group)
        rows = self.db.execute(sql + " ORDER BY email", params).fetchall()
        return [Person(r[0], r[1], r[2], tuple(r[3].split(";")) if r[3] else (), r[4]) for r in rows]

    def device_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT owner, count(*) FROM devices GROUP BY owner").fetchall())

    def count_people(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM people").fetchone()[0])

    # -- devices ---------------------------------------------------------------------

    def get_device(self, device_id: int) -> DeviceRow | None:
        row = self.db.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", (device_id,)).fetchone()
        return _device(row) if row else None

    def get_device_by_key(self, source: str, source_id: str) -> DeviceRow | None:
        row = self.db.execute(
            f"SELECT {_DEVICE_COLS} FROM devices WHERE source = ? AND source_id = ?",
            (source, source_id),
        ).fetchone()
        return _device(row) if row else None

    def devices_by_source_id(self, source_id: str) -> list[DeviceRow]:
        rows = self.db.execute(
            f"SELECT {_DEVICE_COLS} FROM devices WHERE source_id = ? ORDER BY id", (source_id,)
        ).fetchall()
        return [_device(r) for r in rows]

    def devices_of_owner(self, email: str) -> list[DeviceRow]:
        rows = self.db.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE owner = ? ORDER BY id", (email,)).fetchall()
        return [_device(r) for r in rows]

    def devices_by_eas(self, eas_id: str) -> list[DeviceRow]:
        rows = self.db.execute(
            f"SELECT {', '.join('d.' + c.strip() for c in _DEVICE_COLS.split(','))} "
            "FROM device_eas e JOIN devices d ON d.id = e.device_id WHERE e.eas_id = ? ORDER BY d.id",
            (eas_id,),
        ).fetchall()
        return [_device(r) for r in rows]

    def iter_devices(self, where: str = "", params: tuple[Any, ...] = ()) -> Iterator[DeviceRow]:
        sql = f"SELECT {_DEVICE_COLS} FROM devices {where} ORDER BY id"
        for row in self.db.execute(sql, params):
            yield _device(row)

    def count_devices(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM devices").fetchone()[0])

    def insert_device(self, d: DeviceRow) -> int:
        cur = self.db.execute(
            # Ids are never used twice: past the highest a linked device ever folded away.
            "INSERT INTO devices (id, source, source_id, platform, ownership, owner, inventory_scope, "
            "observed_at, model, os_version, mail_reported, eas_ids, catalog_version, credential, "
            "decision, reason, gate_seq, identifiers, epoch, counter, linked) "
            f"VALUES ({NEXT_ID.format(table='devices')}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
                int(d.credential),
                d.decision,
                d.reason,
                d.gate_seq,
                join_identifiers(d.identifiers),
                d.epoch,
                d.counter,
                int(d.linked),
            ),
        )
        device_id = int(cur.lastrowid or 0)
        if d.eas_ids:
            self.db.executemany(
                "INSERT INTO device_eas (eas_id, device_id) VALUES (?, ?)",
                ((e, device_id) for e in d.eas_ids),
            )
        return device_id

    def update_device(self, d: DeviceRow, old_eas: tuple[str, ...]) -> None:
        self.db.execute(
            "UPDATE devices SET platform = ?, ownership = ?, owner = ?, inventory_scope = ?, "
            "observed_at = ?, model = ?, os_version = ?, mail_reported = ?, eas_ids = ?, "
            "catalog_version = ?, credential = ?, gate_seq = ?, identifiers = ?, epoch = ?, "
            "counter = ?, linked = ? WHERE id = ?",
            (
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
                int(d.credential),
                d.gate_seq,
                join_identifiers(d.identifiers),
                d.epoch,
                d.counter,
                int(d.linked),
                d.id,
            ),
        )
        if old_eas != d.eas_ids:
            dropped = set(old_eas) - set(d.eas_ids)
            if dropped:
                self.db.executemany(
                    "INSERT INTO gate_tombstones (seq, eas_id, device_id) VALUES (?, ?, ?)",
                    [(d.gate_seq, e, d.id) for e in sorted(dropped)],
                )
            self.db.execute("DELETE FROM device_eas WHERE device_id = ?", (d.id,))
            self.db.executemany(
                "INSERT INTO device_eas (eas_id, device_id) VALUES (?, ?)",
                ((e, d.id) for e in d.eas_ids),
            )

    def set_decision(self, device_id: int, decision: str, reason: str, seq: int) -> None:
        self.db.execute(
            "UPDATE devices SET decision = ?, reason = ?, gate_seq = ? WHERE id = ?",
            (decision, reason, seq, device_id),
        )

    def decisions_of(self, device_ids: list[int]) -> dict[int, Decision]:
        out: dict[int, Decision] = {}
        for start in range(0, len(device_ids), 500):
            chunk = device_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for device_id, decision, reason in self.db.execute(
                f"SELECT id, decision, reason FROM devices WHERE id IN ({marks})", chunk
            ):
                out[device_id] = Decision(decision, reason)
        return out

    def gate_rows(self, after_seq: int = 0) -> Iterator[GateRow]:
        """Devices whose gate-relevant facts changed after ``after_seq`` (all for 0), streamed."""
        cursor = self.db.execute(
            "SELECT id, owner, eas_ids, decision, reason, gate_seq FROM devices WHERE gate_seq > ? ORDER BY gate_seq",
            (after_seq,),
        )
        while batch := cursor.fetchmany(10_000):
            for r in batch:
                yield GateRow(r[0], r[1], tuple(r[2].split()), r[3], r[4], r[5])

    def tombstones(self, after_seq: int) -> list[Tombstone]:
        """DeviceIds devices stopped using after ``after_seq``."""
        rows = self.db.execute(
            "SELECT seq, eas_id, device_id FROM gate_tombstones WHERE seq > ? ORDER BY seq",
            (after_seq,),
        )
        return [Tombstone(*r) for r in rows]

    # -- mail credentials --------------------------------------------------------------

    def add_credential(self, device_id: int, username: str, digest: str, at: Micros, seq: int) -> int:
        cur = self.db.execute(
            "INSERT INTO credentials (device_id, username, hash, created_at, seq) VALUES (?, ?, ?, ?, ?)",
            (device_id, username, digest, at, seq),
        )
        self.db.execute("UPDATE devices SET credential = 1 WHERE id = ?", (device_id,))
        return int(cur.lastrowid or 0)

    def revoke_credentials(self, device_id: int, at: Micros, seq: int) -> int:
        cur = self.db.execute(
            "UPDATE credentials SET revoked_at = ?, seq = ? WHERE device_id = ? AND revoked_at IS NULL",
            (at, seq, device_id),
        )
        self.db.execute("UPDATE devices SET credential = 0 WHERE id = ?", (device_id,))
        return cur.rowcount

    def credentials(self, after_seq: int = 0) -> list[Credential]:
        """Credentials issued or revoked after ``after_seq``."""
        rows = self.db.execute(
            "SELECT id, device_id, username, hash, revoked_at, seq FROM credentials WHERE seq > ? ORDER BY seq",
            (after_seq,),
        )
        return [Credential(*r) for r in rows]

    def rehash_credential(self, credential_id: int, old: str, new: str, seq: int) -> bool:
        cur = self.db.execute(
            "UPDATE credentials SET hash = ?, seq = ? WHERE id = ? AND hash = ? AND revoked_at IS NULL",
            (new, seq, credential_id, old),
        )
        return cur.rowcount == 1

    def mail_owners(self, local_part: str) -> list[str]:
        # A range on the owner index: every address that starts with "local@" ("A" follows "@").
        rows = self.db.execute(
            "SELECT DISTINCT owner FROM devices WHERE owner >= ? AND owner < ? "
            "AND (eas_ids != '' OR credential) ORDER BY owner",
            (local_part + "@", local_part + "A"),
        )
        return [r[0] for r in rows]

    def shared_local_parts(self) -> dict[str, list[str]]:
        # Read in the owner index's order, where every address starting "name@" is one
        # run: grouped as it streams, nothing is sorted or held but the shared ones (a
        # temporary B-tree of a million addresses would stay in the gate's memory).
        rows = self.db.execute(
            "SELECT DISTINCT owner FROM devices INDEXED BY devices_owner "
            "WHERE eas_ids != '' OR credential ORDER BY owner"
        )
        shared: dict[str, list[str]] = {}
        run: list[str] = []
        run_local = None
        for (owner,) in rows:
            local = owner.partition("@")[0]
            if local != run_local:
                if len(run) > 1:
                    shared[run_local or ""] = run
                run, run_local = [], local
            run.append(owner)
        if len(run) > 1:
            shared[run_local or ""] = run
        return shared

    def observations(self, device_id: int, *, present_only: bool = False) -> list[Observation]:
        sql = (
            "SELECT app_key, app_id, name, version, signing_sha256, family, match_kind, "
            "confidence, first_seen, last_seen, gone_at FROM observations WHERE device_id = ?"
        )
        if present_only:
            sql += " AND gone_at IS NULL"
        return [Observation(*r) for r in self.db.execute(sql + " ORDER BY app_key", (device_id,))]

    def write_observations(
        self,
        device_id: int,
        upserts: list[Observation],
        refreshed: list[tuple[str, str | None, Micros]],
        gone: list[str],
        at: Micros,
    ) -> None:
        """New or changed rows in full; unchanged ones get last_seen; gone ones gone_at."""
        if upserts:
            self.db.executemany(
                "INSERT INTO observations (device_id, app_key, app_id, name, version, "
                "signing_sha256, family, match_kind, confidence, first_seen, last_seen, gone_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (device_id, app_key) "
                "DO UPDATE SET app_id = excluded.app_id, name = excluded.name, "
                "version = excluded.version, signing_sha256 = excluded.signing_sha256, "
                "family = excluded.family, match_kind = excluded.match_kind, "
                "confidence = excluded.confidence, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen, gone_at = NULL",
                [
                    (
                        device_id,
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
                    )
                    for o in upserts
                ],
            )
        if refreshed:
            self.db.executemany(
                "UPDATE observations SET last_seen = ?, version = ? WHERE device_id = ? AND app_key = ?",
                [(seen, version, device_id, key) for key, version, seen in refreshed],
            )
        if gone:
            self.db.executemany(
                "UPDATE observations SET gone_at = ? WHERE device_id = ? AND app_key = ?",
                [(at, device_id, key) for key in gone],
            )

    def present_apps(self, families: Iterable[str], explicit: Iterable[tuple[str, str]]) -> dict[int, list[str]]:
        """Device id -> keys of present apps in these families or with these identifiers."""
        out: dict[int, list[str]] = {}
        fams = sorted(families)
        if fams:
            marks = ", ".join("?" * len(fams))
            for device_id, key in self.db.execute(
                f"SELECT device_id, app_key FROM observations WHERE family IN ({marks}) AND gone_at IS NULL",
                fams,
            ):
                out.setdefault(device_id, []).append(key)
        for kind, value in sorted(explicit):
            for device_id, key in self.db.execute(
                "SELECT device_id, app_key FROM observations WHERE app_id = ? AND match_kind = ? AND gone_at IS NULL",
                (value, kind),
            ):
                keys = out.setdefault(device_id, [])
                if key not in keys:
                    keys.append(key)
        return out

    # -- catalog ---------------------------------------------------------------------

    def catalog(self) -> StoredCatalog:
        version = int(self.get_meta("catalog_version", "0") or 0)
        families = {
            f: {"title": t, "publisher": p}
            for f, t, p in self.db.execute("SELECT family, title, publisher FROM catalog_families ORDER BY family")
        }
        identifiers = [
            Identifier(k, v, f, prov, added)
            for k, v, f, prov, added in self.db.execute(
                "SELECT kind, value, family, provenance, added_version FROM catalog_ids ORDER BY family, kind, value"
            )
        ]
        return StoredCatalog(version, families, identifiers)

    def add_catalog(
        self,
        families: dict[str, dict[str, str]],
        identifiers: list[Identifier],
        version: int,
    ) -> None:
        self.db.executemany(
            "INSERT INTO catalog_families (family, title, publisher, added_version) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (family) DO UPDATE SET title = excluded.title, "
            "publisher = excluded.publisher",
            [(f, b["title"], b.get("publisher", ""), version) for f, b in families.items()],
        )
        self.db.executemany(
            "INSERT INTO catalog_ids (kind, value, family, provenance, added_version) VALUES (?, ?, ?, ?, ?)",
            [(i.kind, i.value, i.family, i.provenance, version) for i in identifiers],
        )
        self.set_meta("catalog_version", str(version))

    # A kept observation may take a catalog match when it has none, or when it was
    # watched only for a policy (no family) and the same kind of identifier now names
    # a family.
    _MAY_MATCH = "gone_at IS NULL AND (match_kind = '' OR (family = '' AND :family != '' AND match_kind = :kind))"

    def match_kept_id(self, app_id: str, platforms: tuple[str, ...], family: str, kind: str, confidence: str) -> int:
        params: dict[str, Any] = {"app": app_id, "family": family, "kind": kind, "confidence": confidence}
        marks = _sweep_sql.bind(params, "pl", platforms)
        cur = self.db.execute(
            "UPDATE observations SET family = :family, match_kind = :kind, confidence = :confidence "
            f"WHERE app_id = :app AND device_id IN (SELECT id FROM devices WHERE platform IN ({marks})) "
            f"AND {self._MAY_MATCH}",
            params,
        )
        return max(cur.rowcount, 0)

    def match_kept_cert(self, digest: str, family: str, kind: str, confidence: str) -> int:
        cur = self.db.execute(
            "UPDATE observations SET family = :family, match_kind = :kind, confidence = :confidence "
            f"WHERE lower(signing_sha256) = :digest AND {self._MAY_MATCH}",
            {"digest": digest.lower(), "family": family, "kind": kind, "confidence": confidence},
        )
        return max(cur.rowcount, 0)

    def kept_names(self, family: str, kind: str) -> list[KeptName]:
        rows = self.db.execute(
            "SELECT device_id, app_key, name FROM observations WHERE app_id IS NULL AND name IS NOT NULL "
            f"AND {self._MAY_MATCH}",
            {"family": family, "kind": kind},
        )
        return [KeptName(*r) for r in rows]

    def set_matches(self, keys: list[tuple[int, str]], family: str, kind: str, confidence: str) -> None:
        self.db.executemany(
            "UPDATE observations SET family = ?, match_kind = ?, confidence = ? WHERE device_id = ? AND app_key = ?",
            [(family, kind, confidence, device_id, key) for device_id, key in keys],
        )

    # -- policies --------------------------------------------------------------------

    def get_policy(self, policy_id: str) -> PolicyRow | None:
        row = self.db.execute(
            "SELECT id, status, revision, body, source_text, created_at, updated_at, "
            "withdrawn_at, withdraw_reason FROM policies WHERE id = ?",
            (policy_id,),
        ).fetchone()
        return PolicyRow(*row) if row else None

    def list_policies(self) -> list[PolicyRow]:
        rows = self.db.execute(
            "SELECT id, status, revision, body, source_text, created_at, updated_at, "
            "withdrawn_at, withdraw_reason FROM policies ORDER BY id"
        ).fetchall()
        return [PolicyRow(*r) for r in rows]

    def save_policy(self, p: PolicyRow) -> None:
        self.db.execute(
            "INSERT INTO policies (id, status, revision, body, source_text, created_at, "
            "updated_at, withdrawn_at, withdraw_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "revision = excluded.revision, body = excluded.body, "
            "source_text = excluded.source_text, updated_at = excluded.updated_at, "
            "withdrawn_at = excluded.withdrawn_at, withdraw_reason = excluded.withdraw_reason",
            (
                p.id,
                p.status,
                p.revision,
                p.body,
                p.source_text,
                p.created_at,
                p.updated_at,
                p.withdrawn_at,
                p.withdraw_reason,
            ),
        )

    # -- exemptions and attestations -------------------------------------------------

    def add_exemption(self, e: Exemption) -> int:
        cur = self.db.execute(
            "INSERT INTO exemptions (policy_id, person, device_id, starts, until, reason, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (e.policy_id, e.person, e.device_id, e.starts, e.until, e.reason, e.created_at),
        )
        return int(cur.lastrowid or 0)

    def exemptions(self) -> list[Exemption]:
        rows = self.db.execute(
            "SELECT id, policy_id, person, device_id, starts, until, reason, created_at, "
            "revoked_at FROM exemptions WHERE revoked_at IS NULL ORDER BY id"
        ).fetchall()
        return [Exemption(*r) for r in rows]

    def all_exemptions(self) -> list[Exemption]:
        rows = self.db.execute(
            "SELECT id, policy_id, person, device_id, starts, until, reason, created_at, "
            "revoked_at FROM exemptions ORDER BY id"
        ).fetchall()
        return [Exemption(*r) for r in rows]

    def get_exemption(self, exemption_id: int) -> Exemption | None:
        row = self.db.execute(
            "SELECT id, policy_id, person, device_id, starts, until, reason, created_at, "
            "revoked_at FROM exemptions WHERE id = ?",
            (exemption_id,),
        ).fetchone()
        return Exemption(*row) if row else None

    def revoke_exemption(self, exemption_id: int, at: Micros) -> bool:
        cur = self.db.execute(
            "UPDATE exemptions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, exemption_id)
        )
        return cur.rowcount == 1

    def add_attestation(self, policy_id: str, device_id: int, person: str, at: Micros) -> int:
        cur = self.db.execute(
            "INSERT INTO attestations (policy_id, device_id, person, attested_at) VALUES (?, ?, ?, ?)",
            (policy_id, device_id, person, at),
        )
        return int(cur.lastrowid or 0)

    # An attestation is its owner's word: it counts while the one who gave it owns the
    # device (a phone handed to someone else is judged on evidence again).
    _OWNERS_WORD = "attestations AS a JOIN devices AS d ON d.id = a.device_id AND d.owner = a.person"

    def attested_at(self, policy_id: str, device_id: int) -> Micros | None:
        row = self.db.execute(
            f"SELECT max(a.attested_at) FROM {self._OWNERS_WORD} WHERE a.policy_id = ? AND a.device_id = ?",
            (policy_id, device_id),
        ).fetchone()
        return row[0]

    def attestations(self, policy_id: str) -> dict[int, Micros]:
        return dict(
            self.db.execute(
                f"SELECT a.device_id, max(a.attested_at) FROM {self._OWNERS_WORD} WHERE a.policy_id = ? "
                "GROUP BY a.device_id",
                (policy_id,),
            )
        )

    # -- audit -----------------------------------------------------------------------

    def append_audit(self, entries: list[AuditEntry]) -> None:
        self.db.executemany(
            "INSERT INTO audit_log (seq, at, action, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.seq, e.at, e.action, e.subject, e.data, e.prev_hash, e.hash) for e in entries],
        )

    def last_audit(self) -> AuditEntry | None:
        row = self.db.execute(
            "SELECT seq, at, action, subject, data, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return AuditEntry(*row) if row else None

    def iter_audit(self) -> Iterator[AuditEntry]:
        for row in self.db.execute(
            "SELECT seq, at, action, subject, data, prev_hash, hash FROM audit_log ORDER BY seq"
        ):
            yield AuditEntry(*row)

    def audit_entries(
        self, *, since: Micros | None = None, until: Micros | None = None, actions: tuple[str, ...] = ()
    ) -> Iterator[AuditEntry]:
        sql = "SELECT seq, at, action, subject, data, prev_hash, hash FROM audit_log WHERE 1"
        params: list[Any] = []
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND at < ?"
            params.append(until)
        if actions:
            sql += f" AND action IN ({', '.join('?' * len(actions))})"
            params.extend(actions)
        for row in self.db.execute(sql + " ORDER BY seq", params):
            yield AuditEntry(*row)
