"""The SQLite store's sources: who may post check-ins, by the digests of their tokens.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept.
"""

from __future__ import annotations

import sqlite3

from appban.clock import Micros
from appban.store.records import SourceRow, TokenRow


class SQLiteSources:
    db: sqlite3.Connection

    def add_source(self, name: str, at: Micros) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO sources (name, created_at) VALUES (?, ?)", (name, at))
        return cur.rowcount == 1

    def list_sources(self) -> list[SourceRow]:
        rows = self.db.execute(
            "SELECT s.name, s.created_at,"
            " (SELECT count(*) FROM source_tokens t WHERE t.source = s.name AND t.kind = 'token'"
            "  AND t.revoked_at IS NULL),"
            " (SELECT count(*) FROM source_tokens t WHERE t.source = s.name AND t.kind = 'osquery-secret'"
            "  AND t.revoked_at IS NULL)"
            " FROM sources s ORDER BY s.name"
        ).fetchall()
        return [SourceRow(*row) for row in rows]

    def put_token(self, source: str, kind: str, digest: str, at: Micros) -> int:
        cur = self.db.execute(
            "INSERT INTO source_tokens (source, kind, digest, created_at) VALUES (?, ?, ?, ?)",
            (source, kind, digest, at),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def token_by_digest(self, digest: str) -> TokenRow | None:
        row = self.db.execute(
            "SELECT id, source, kind, created_at, revoked_at FROM source_tokens WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else TokenRow(*row)

    def revoke_tokens(self, source: str, kind: str, at: Micros) -> list[int]:
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT id FROM source_tokens WHERE source = ? AND kind = ? AND revoked_at IS NULL ORDER BY id",
                (source, kind),
            )
        ]
        self.db.execute(
            "UPDATE source_tokens SET revoked_at = ? WHERE source = ? AND kind = ? AND revoked_at IS NULL",
            (at, source, kind),
        )
        return ids
