"""The demo's numbers, read from the store: nothing the simulation intended is reported.

The store has no range queries over state history or removals (the commands do not
need them), so these few read-only aggregates are written here against its SQLite
connection, over the schema of ``store/migrations``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from appban.clock import Micros
from appban.errors import AppbanError
from appban.policy.model import Policy
from appban.policy.states import STATES
from appban.store import SQLiteStore

# What makes a device a mail reader (SPEC: Device), as the store's own queries say it.
_READS_MAIL = "(d.eas_ids != '' OR d.credential OR coalesce(d.mail_reported, 0))"


class Counts:
    def __init__(self, store: Any, policy: Policy) -> None:
        if not isinstance(store, SQLiteStore):
            raise AppbanError("the demo runs on SQLite")
        self.db: sqlite3.Connection = store.db
        self.policy = policy

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        return int(self.db.execute(sql, params).fetchone()[0] or 0)

    # -- states ----------------------------------------------------------------------

    def states(self) -> dict[str, int]:
        """Devices per state as stored: exact once time-driven changes are applied."""
        found = dict(
            self.db.execute(
                "SELECT state, count(*) FROM states WHERE policy_id = ? GROUP BY state",
                (self.policy.id,),
            ).fetchall()
        )
        return {s: int(found.get(s, 0)) for s in STATES}

    def people_in(self, *states: str) -> int:
        """People with at least one device in one of ``states``: one notice each."""
        marks = ", ".join("?" * len(states))
        return self._one(
            "SELECT count(DISTINCT d.owner) FROM states s JOIN devices d ON d.id = s.device_id "
            f"WHERE s.policy_id = ? AND s.state IN ({marks})",
            (self.policy.id, *states),
        )

    def changed(self, start: Micros, end: Micros, *, to: str | None = None, left: str | None = None) -> tuple[int, int]:
        """(devices, people) whose state became ``to`` or left ``left`` in [start, end)."""
        where = ["h.policy_id = ?", "h.at >= ?", "h.at < ?"]
        params: list[Any] = [self.policy.id, start, end]
        if to is not None:
            where.append("h.new_state = ?")
            params.append(to)
        if left is not None:
            where.append("h.old_state = ? AND h.new_state != ?")
            params += [left, left]
        row = self.db.execute(
            "SELECT count(DISTINCT h.device_id), count(DISTINCT d.owner) FROM state_history h "
            f"JOIN devices d ON d.id = h.device_id WHERE {' AND '.join(where)}",
            params,
        ).fetchone()
        return int(row[0]), int(row[1])

    def removed(self, start: Micros, end: Micros) -> int:
        """Devices whose snapshot in [start, end) no longer showed a banned app it had."""
        fams = sorted(self.policy.families)
        explicit = sorted(self.policy.explicit)
        terms = []
        params: list[Any] = [start, end]
        if fams:
            terms.append(f"family IN ({', '.join('?' * len(fams))})")
            params += fams
        for kind, value in explicit:
            terms.append("(match_kind = ? AND app_id = ?)")
            params += [kind, value]
        return self._one(
            "SELECT count(DISTINCT device_id) FROM observations WHERE gone_at >= ? AND gone_at < ? "
            f"AND ({' OR '.join(terms) or '0'})",
            params,
        )

    # -- the fleet -------------------------------------------------------------------

    def fleet(self) -> dict[str, Any]:
        """What the inventory holds: people, devices, mail readers, banned apps seen."""
        db = self.db
        people, units, zones = db.execute(
            "SELECT count(*), count(DISTINCT org_unit), count(DISTINCT timezone) FROM people"
        ).fetchone()
        platforms = dict(
            db.execute("SELECT platform, count(*) FROM devices GROUP BY platform ORDER BY platform").fetchall()
        )
        scoped = sorted(self.policy.scope.platforms)
        marks = ", ".join("?" * len(scoped))
        mail = dict(
            db.execute(
                f"SELECT d.ownership || '/' || d.inventory_scope, count(*) FROM devices d "
                f"WHERE d.platform IN ({marks}) AND {_READS_MAIL} GROUP BY 1 ORDER BY 1",
                scoped,
            ).fetchall()
        )
        fams = sorted(self.policy.families)
        banned = dict(
            db.execute(
                "SELECT app_id, count(DISTINCT device_id) FROM observations WHERE gone_at IS NULL "
                f"AND family IN ({', '.join('?' * len(fams))}) GROUP BY app_id "
                "ORDER BY 2 DESC, 1",
                fams,
            ).fetchall()
        )
        return {
            "people": people,
            "org_units": units,
            "time_zones": zones,
            "devices": sum(platforms.values()),
            "by_platform": platforms,
            "mobile_reading_mail": sum(mail.values()),
            "mobile_reading_mail_by": mail,
            "banned_app_devices": self._one(
                "SELECT count(DISTINCT device_id) FROM observations WHERE gone_at IS NULL "
                f"AND family IN ({', '.join('?' * len(fams))})",
                fams,
            ),
            "banned_apps": banned,
        }
