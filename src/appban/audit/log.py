"""A hash-chained, append-only audit log.

Entry n's hash is SHA-256 over its sequence number, time, action, subject, data and
entry n-1's hash. Editing an entry breaks its hash; removing one leaves a gap in the
sequence and breaks the next entry's link; reordering breaks both. The head (last
sequence number and hash) is also kept in the store's meta so that cutting entries
off the end is seen too; publish the head elsewhere to anchor it against an editor
who rewrites both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from appban.clock import Micros, format_time
from appban.store import Store
from appban.store.records import AuditEntry

GENESIS = "0" * 64
_encode = msgspec.json.Encoder(order="sorted").encode
# The hashed text, for anyone who verifies the chain elsewhere (``audit export`` says so
# in its first line): these fields joined by SEPARATOR, encoded as UTF-8, SHA-256 in
# lower-case hex; seq and at (microseconds since 1970-01-01T00:00:00Z) as decimal
# integers, data as the stored JSON text, prev_hash the previous entry's hash
# (GENESIS before the first entry).
HASHED_FIELDS = ("seq", "at", "action", "subject", "data", "prev_hash")
SEPARATOR = "\x1f"


def entry_hash(seq: int, at: Micros, action: str, subject: str, data: str, prev: str) -> str:
    text = SEPARATOR.join((str(seq), str(at), action, subject, data, prev))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AuditLog:
    """Buffers entries for the current transaction; ``flush`` writes them in order.

    The head the next entry links to is read by ``begin``, inside the write
    transaction: read earlier, another process's entries committed in between would
    be overwritten in the chain (the same sequence number twice).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[AuditEntry] = []
        self.begin()

    def begin(self) -> None:
        """Forget anything buffered and link to the stored head (call inside the transaction)."""
        self.pending = []
        last = self.store.last_audit()
        self.seq = last.seq if last else 0
        self.head = last.hash if last else GENESIS

    def append(self, at: Micros, action: str, subject: str, data: dict[str, Any]) -> None:
        body = _encode(data).decode("utf-8")
        self.seq += 1
        digest = entry_hash(self.seq, at, action, subject, body, self.head)
        self.pending.append(AuditEntry(self.seq, at, action, subject, body, self.head, digest))
        self.head = digest

    def flush(self) -> None:
        if self.pending:
            self.store.append_audit(self.pending)
            self.store.set_meta("audit_head", f"{self.seq}:{self.head}")
            self.pending = []

    def discard(self) -> None:
        """After a rollback: forget what was buffered and re-read the head."""
        self.begin()


@dataclass(frozen=True)
class Problem:
    seq: int | None  # None: no entry to name (an anchor that is not in the chain)
    what: str

    def __str__(self) -> str:
        return self.what if self.seq is None else f"entry {self.seq}: {self.what}"


def verify(entries: Iterator[AuditEntry], head: str | None, anchor: str | None = None) -> tuple[int, list[Problem]]:
    """Check the chain. Returns (entries checked, problems in order).

    With ``anchor`` (an entry's hash kept outside the database): that entry must still
    be in the chain, unchanged (the chain check recomputes its hash), and the chain
    from it to the head intact. A database rewritten whole, consistently, passes the
    chain check but no longer holds the anchored entry.
    """
    problems: list[Problem] = []
    expected_seq = 1
    prev_hash = GENESIS
    count = 0
    last: AuditEntry | None = None
    anchored = False
    for e in entries:
        count += 1
        anchored = anchored or e.hash == anchor
        if e.seq != expected_seq:
            if e.seq > expected_seq:
                missing = f"{expected_seq}" if e.seq == expected_seq + 1 else f"{expected_seq}-{e.seq - 1}"
                problems.append(Problem(e.seq, f"entries {missing} removed"))
            else:
                problems.append(Problem(e.seq, "out of order"))
        if e.prev_hash != prev_hash:
            problems.append(Problem(e.seq, "does not link to the entry before it (removed or reordered)"))
        if entry_hash(e.seq, e.at, e.action, e.subject, e.data, e.prev_hash) != e.hash:
            problems.append(
                Problem(
                    e.seq,
                    f"edited: hash does not match its content ({e.action} {e.subject} at {format_time(e.at)})",
                )
            )
        expected_seq = e.seq + 1
        prev_hash = e.hash
        last = e
    if head:
        head_seq, _, head_hash = head.partition(":")
        if last is None or last.seq != int(head_seq) or last.hash != head_hash:
            where = int(head_seq)
            problems.append(
                Problem(
                    where,
                    f"the log ends before the recorded head (entry {head_seq}): entries cut off the end",
                )
            )
    if anchor is not None and not anchored:
        problems.append(
            Problem(
                None,
                f"no entry has the anchored hash {anchor}: the log was cut or rewritten before it",
            )
        )
    return count, problems
