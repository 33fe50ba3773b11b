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


def verify(
    entries: Iterator[AuditEntry], head: str | None, anchor: str | None = None, anchor_seq: int | None = None
) -> tuple[int, list[Problem]]:
    """Check the chain. Returns (entries checked, problems in order).

    With ``anchor`` (an entry's hash kept outside the database, and ``anchor_seq`` its
    sequence number when known): that entry must still be in the chain, unchanged (the
    chain check recomputes its hash), and the chain from it to the head intact. A
    database rewritten whole, consistently, passes the chain check but no longer holds
    the anchored entry.

    Whatever a tampered database holds (a time that is not a number, text that is not
    text, a head that is not ``SEQ:HASH``) is a problem named here, never an error.
    """
    problems: list[Problem] = []
    expected_seq = 1
    prev_hash = GENESIS
    count = 0
    last: AuditEntry | None = None
    # The head of an empty log (`audit head` prints 0 and GENESIS) anchors the start.
    anchored = anchor == GENESIS and anchor_seq in (None, 0)
    for e in entries:
        count += 1
        if not isinstance(e.seq, int) or e.seq < 1:
            # Sequence numbers start at 1: this row was planted outside the chain.
            problems.append(
                Problem(None, f"an entry numbered {_shown(e.seq)}: not part of the chain (numbers start at 1)")
            )
            continue
        anchored = anchored or (e.hash == anchor and anchor_seq in (None, e.seq))
        if e.seq < expected_seq:  # a store that does not return entries in order
            problems.append(Problem(e.seq, "out of order"))
        elif e.seq > expected_seq:
            missing = f"entry {expected_seq}" if e.seq == expected_seq + 1 else f"entries {expected_seq}-{e.seq - 1}"
            problems.append(Problem(e.seq, f"{missing} removed"))
        if e.prev_hash != prev_hash:
            problems.append(Problem(e.seq, "does not link to the entry before it (removed or reordered)"))
        wrong = _misfit(e)
        if wrong:
            problems.append(Problem(e.seq, f"edited: {wrong}"))
        elif entry_hash(e.seq, e.at, e.action, e.subject, e.data, e.prev_hash) != e.hash:
            problems.append(
                Problem(
                    e.seq,
                    f"edited: hash does not match its content ({e.action} {e.subject} at {format_time(e.at)})",
                )
            )
        expected_seq = e.seq + 1
        prev_hash = e.hash
        last = e
    problems += _head_problems(head, last, count)
    if anchor is not None and not anchored:
        entry = f"entry {anchor_seq} with" if anchor_seq is not None else "entry has"
        problems.append(
            Problem(
                None,
                f"no {entry} the anchored hash {anchor}: the log was cut or rewritten before it",
            )
        )
    return count, problems


def _misfit(e: AuditEntry) -> str:
    """Why an entry cannot be what appban wrote (a value of the wrong kind); "" if none."""
    if time_of(e.at) is None:
        return f"its time is not a time ({_shown(e.at)})"
    for name in ("action", "subject", "data", "prev_hash", "hash"):
        if not isinstance(getattr(e, name), str):
            return f"its {name} is not text ({type(getattr(e, name)).__name__})"
    return ""


def time_of(at: object) -> str | None:
    """``at`` as a time, if it is one appban could have written (years 1 to 9999); None
    for what a tampered database may hold instead (text, a number too large)."""
    if not isinstance(at, int) or isinstance(at, bool):
        return None
    try:
        return format_time(at)
    except (OverflowError, ValueError):
        return None


def _head_problems(head: str | None, last: AuditEntry | None, count: int) -> list[Problem]:
    """The recorded head (``SEQ:HASH`` in the store's meta) against the last entry."""
    if head is None:
        if count:
            return [Problem(None, "the recorded head is missing: entries may have been cut off the end")]
        return []
    head_seq, colon, head_hash = head.partition(":")
    if not (colon and head_seq.isascii() and head_seq.isdigit() and len(head_seq) <= 18):
        return [Problem(None, f"the recorded head is not a sequence number and hash: {_shown(head)}")]
    if last is not None and last.seq == int(head_seq) and last.hash == head_hash:
        return []
    if last is not None and last.seq > int(head_seq):
        return [Problem(last.seq, f"the log goes on after the recorded head (entry {int(head_seq)})")]
    return [
        Problem(
            int(head_seq), f"the log ends before the recorded head (entry {int(head_seq)}): entries cut off the end"
        )
    ]


def _shown(value: object) -> str:
    """A stored value in a message: short, and quoted when it is text."""
    text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    return text if len(text) <= 40 else text[:40] + "..."
