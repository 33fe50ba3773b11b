"""The SQLite store's notices: the outbox, the policy moments already planned, and
employees' requests for an exemption.

A part of ``SQLiteStore`` (``sqlite.py``), split off by concept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from appban.clock import Micros
from appban.store.records import ExemptionRequest, NewNotice, Notice

_NOTICE_COLS = (
    "id, policy_id, person, kind, occasion, channel, devices, created_at, due_at, state, "
    "attempts, next_try, claimed_until, sent_at, last_error"
)
_REQUEST_COLS = (
    "id, policy_id, person, device_id, reason, created_at, state, decided_at, decided_by, answer, exemption_id"
)


def _notice(row: tuple[Any, ...]) -> Notice:
    devices = tuple(dict.fromkeys(int(d) for d in row[6].split(",") if d)) if row[6] else ()
    (nid, policy_id, person, kind, occasion, channel, _devices, created, due, state, tries, nxt, claim, sent, err) = row
    return Notice(
        nid, policy_id, person, kind, occasion, channel, devices, created, due, state, tries, nxt, claim, sent, err
    )


def _marks(params: list[Any], values: Iterable[str]) -> str:
    values = list(values)
    params.extend(values)
    return ", ".join("?" * len(values))


class SQLiteNotices:
    db: sqlite3.Connection

    # -- planning --------------------------------------------------------------------

    def add_notices(self, rows: list[NewNotice]) -> None:
        # The same notice planned again keeps its row; a pending one takes the devices
        # the new plan names too (a second device blocked at the same moment).
        self.db.executemany(
            "INSERT INTO notices (policy_id, person, kind, occasion, channel, devices, created_at, due_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending') "
            "ON CONFLICT (policy_id, person, kind, occasion, channel) DO UPDATE SET devices = CASE "
            "WHEN excluded.devices = '' OR instr(',' || notices.devices || ',', ',' || excluded.devices || ',') > 0 "
            "THEN notices.devices WHEN notices.devices = '' THEN excluded.devices "
            "ELSE notices.devices || ',' || excluded.devices END WHERE notices.state = 'pending'",
            rows,
        )

    def audience(self, policy_id: str, states: tuple[str, ...] | None) -> Iterator[tuple[str, str]]:
        """(email, time zone) of each owner of a device in one of ``states`` under the
        policy; with ``states`` None, of everyone imported."""
        if states is None:
            # Everyone imported, and every device owner never imported as a person.
            return iter(
                self.db.execute(
                    "SELECT email, timezone FROM people UNION "
                    "SELECT DISTINCT owner, 'UTC' FROM devices WHERE owner != '' "
                    "AND owner NOT IN (SELECT email FROM people) ORDER BY 1"
                )
            )
        params: list[Any] = [policy_id]
        marks = _marks(params, states)
        return iter(
            self.db.execute(
                "SELECT d.owner, coalesce(max(p.timezone), 'UTC') FROM states s JOIN devices d ON d.id = s.device_id "
                "LEFT JOIN people p ON p.email = d.owner "
                f"WHERE s.policy_id = ? AND s.state IN ({marks}) AND d.owner != '' GROUP BY d.owner ORDER BY d.owner",
                params,
            )
        )

    def owners_of(self, device_ids: list[int]) -> dict[int, str]:
        """Device id -> its owner ('' for none)."""
        out: dict[int, str] = {}
        for start in range(0, len(device_ids), 500):
            chunk = device_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT id, owner FROM devices WHERE id IN ({marks})", chunk))
        return out

    def devices_in_states(self, policy_id: str, people: list[str], states: tuple[str, ...]) -> dict[str, list[int]]:
        """Person -> their devices in one of ``states`` under the policy."""
        out: dict[str, list[int]] = {}
        for start in range(0, len(people), 400):
            params: list[Any] = [policy_id]
            who = _marks(params, people[start : start + 400])
            marks = _marks(params, states)
            for owner, device_id in self.db.execute(
                "SELECT d.owner, d.id FROM states s JOIN devices d ON d.id = s.device_id "
                f"WHERE s.policy_id = ? AND d.owner IN ({who}) AND s.state IN ({marks}) ORDER BY d.id",
                params,
            ):
                out.setdefault(owner, []).append(device_id)
        return out

    def notified_people(
        self,
        policy_id: str,
        *,
        kinds: tuple[str, ...] | None = None,
        states: tuple[str, ...] = ("sent", "sending"),
        since: Micros = 0,
    ) -> list[tuple[str, str]]:
        """(email, time zone) of everyone with a notice under the policy in ``states``,
        planned at or after ``since``."""
        params: list[Any] = [policy_id, since]
        where = f"n.policy_id = ? AND n.created_at >= ? AND n.state IN ({_marks(params, states)})"
        if kinds is not None:
            where += f" AND n.kind IN ({_marks(params, kinds)})"
        return [
            (r[0], r[1])
            for r in self.db.execute(
                "SELECT n.person, coalesce(max(p.timezone), 'UTC') FROM notices n "
                f"LEFT JOIN people p ON p.email = n.person WHERE {where} GROUP BY n.person ORDER BY n.person",
                params,
            )
        ]

    def cancel_notices(
        self,
        policy_id: str,
        *,
        kinds: tuple[str, ...] | None = None,
        occasion: str | None = None,
        person: str | None = None,
        at: Micros = 0,
        why: str = "",
    ) -> int:
        """Pending notices matching these become cancelled (never sent); how many."""
        params: list[Any] = [why, at, policy_id]
        where = "policy_id = ? AND state = 'pending'"
        if kinds is not None:
            where += f" AND kind IN ({_marks(params, kinds)})"
        if occasion is not None:
            where += " AND occasion = ?"
            params.append(occasion)
        if person is not None:
            where += " AND person = ?"
            params.append(person)
        cur = self.db.execute(
            f"UPDATE notices SET state = 'cancelled', last_error = ?, sent_at = NULL, next_try = NULL, "
            f"claimed_until = ? WHERE {where}",
            params,
        )
        return cur.rowcount

    def notice_marks(self, policy_id: str) -> dict[str, Micros]:
        return dict(self.db.execute("SELECT mark, at FROM notice_marks WHERE policy_id = ?", (policy_id,)))

    def add_notice_mark(self, policy_id: str, mark: str, at: Micros) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO notice_marks (policy_id, mark, at) VALUES (?, ?, ?)", (policy_id, mark, at)
        )
        return cur.rowcount == 1

    # -- sending ---------------------------------------------------------------------

    def claim_notices(self, now: Micros, limit: int, lease_until: Micros) -> list[Notice]:
        """Take up to ``limit`` notices to send: pending ones that are due, and ones a
        sender claimed but never finished (its lease ran out: it died mid-send)."""
        # Two indexed scans, each stopping at ``limit``: a claim costs the same with ten
        # notices waiting or 500,000 (one sorted query over both read every due row).
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT id FROM notices WHERE state = 'sending' AND claimed_until < ? LIMIT ?", (now, limit)
            )
        ]
        if len(ids) < limit:
            ids += [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM notices WHERE state = 'pending' AND due_at <= ? "
                    "AND (next_try IS NULL OR next_try <= ?) ORDER BY due_at, id LIMIT ?",
                    (now, now, limit - len(ids)),
                )
            ]
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        self.db.execute(
            f"UPDATE notices SET state = 'sending', attempts = attempts + 1, claimed_until = ? WHERE id IN ({marks})",
            [lease_until, *ids],
        )
        rows = self.db.execute(f"SELECT {_NOTICE_COLS} FROM notices WHERE id IN ({marks}) ORDER BY id", ids)
        return [_notice(r) for r in rows]

    def finish_notice(
        self,
        notice_id: int,
        state: str,
        at: Micros,
        *,
        error: str = "",
        next_try: Micros | None = None,
        lease: Micros | None = None,
        untried: bool = False,
    ) -> bool:
        """A sender's result: ``sent``, ``failed``, or ``pending`` again (with ``next_try``).

        Only a notice still being sent changes (one whose policy was withdrawn while it
        was sent is recorded as sent: it was). Any other result needs the sender's
        ``lease`` (the claim's ``claimed_until``), when given, to be the current one: a
        sender whose lease ran out does not overwrite the result of the one that took
        the notice over. ``untried``: put back without a try, which does not count."""
        if state == "sent":
            cur = self.db.execute(
                "UPDATE notices SET state = 'sent', sent_at = ?, claimed_until = NULL, last_error = '' "
                "WHERE id = ? AND state IN ('sending', 'cancelled')",
                (at, notice_id),
            )
        else:
            cur = self.db.execute(
                "UPDATE notices SET state = ?, next_try = ?, claimed_until = NULL, last_error = ?, "
                "attempts = attempts - ? WHERE id = ? AND state = 'sending' AND (? IS NULL OR claimed_until = ?)",
                (state, next_try, error, 1 if untried else 0, notice_id, lease, lease),
            )
        return cur.rowcount == 1

    def next_notice_due(self) -> Micros | None:
        """When the earliest pending notice may be sent, or None when none waits."""
        row = self.db.execute(
            "SELECT min(max(due_at, coalesce(next_try, 0))) FROM notices WHERE state = 'pending'"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def retry_notices(self, *, policy_id: str | None = None, ids: list[int] | None = None) -> int:
        """Failed notices (these, or the policy's, or all) are pending again, tries reset."""
        params: list[Any] = []
        where = "state = 'failed'"
        if policy_id is not None:
            where += " AND policy_id = ?"
            params.append(policy_id)
        if ids is not None:
            where += f" AND id IN ({_marks(params, (str(i) for i in ids))})"
        cur = self.db.execute(
            f"UPDATE notices SET state = 'pending', attempts = 0, next_try = NULL WHERE {where}", params
        )
        return cur.rowcount

    # -- reading ---------------------------------------------------------------------

    def get_notice(self, notice_id: int) -> Notice | None:
        row = self.db.execute(f"SELECT {_NOTICE_COLS} FROM notices WHERE id = ?", (notice_id,)).fetchone()
        return None if row is None else _notice(row)

    def list_notices(
        self,
        *,
        policy_id: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        person: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[Notice]:
        params: list[Any] = [after_id]
        where = "id > ?"
        for column, value in (("policy_id", policy_id), ("state", state), ("kind", kind), ("person", person)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        sql = f"SELECT {_NOTICE_COLS} FROM notices WHERE {where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_notice(r) for r in self.db.execute(sql, params)]

    def notice_counts(self, policy_id: str | None = None) -> dict[tuple[str, str, str], int]:
        """(policy, kind, state) -> how many notices."""
        sql = "SELECT policy_id, kind, state, count(*) FROM notices"
        params: list[Any] = []
        if policy_id is not None:
            sql += " WHERE policy_id = ?"
            params.append(policy_id)
        rows = self.db.execute(sql + " GROUP BY policy_id, kind, state ORDER BY 1, 2, 3", params)
        return {(r[0], r[1], r[2]): int(r[3]) for r in rows}

    # -- employees' requests -----------------------------------------------------------

    def add_exemption_request(self, r: ExemptionRequest) -> int:
        cur = self.db.execute(
            "INSERT INTO exemption_requests (policy_id, person, device_id, reason, created_at, state) "
            "VALUES (?, ?, ?, ?, ?, 'pending')",
            (r.policy_id, r.person, r.device_id, r.reason, r.created_at),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def exemption_requests(self, *, state: str | None = None, person: str | None = None) -> list[ExemptionRequest]:
        params: list[Any] = []
        where = "1"
        if state is not None:
            where += " AND state = ?"
            params.append(state)
        if person is not None:
            where += " AND person = ?"
            params.append(person)
        rows = self.db.execute(f"SELECT {_REQUEST_COLS} FROM exemption_requests WHERE {where} ORDER BY id", params)
        return [ExemptionRequest(*r) for r in rows]

    def get_exemption_request(self, request_id: int) -> ExemptionRequest | None:
        row = self.db.execute(f"SELECT {_REQUEST_COLS} FROM exemption_requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else ExemptionRequest(*row)

    def decide_exemption_request(
        self, request_id: int, state: str, at: Micros, by: str, *, answer: str = "", exemption_id: int | None = None
    ) -> bool:
        """A pending request becomes granted or refused; False when it was not pending."""
        cur = self.db.execute(
            "UPDATE exemption_requests SET state = ?, decided_at = ?, decided_by = ?, answer = ?, exemption_id = ? "
            "WHERE id = ? AND state = 'pending'",
            (state, at, by, answer, exemption_id, request_id),
        )
        return cur.rowcount == 1
