"""Keeping the gate's table in step with the store, and the clock's changes applied.

Two threads, each with its own connection to the store (three with the sightings'
flusher, ``sightings.py``, which the follower starts and stops with them):

- ``Follower`` polls the store's change counter (``gate_seq``) every ``interval``
  seconds and folds in only what changed, so a check-in committed anywhere reaches
  the gate's answers within a poll. It only reads: under SQLite's WAL a reader never
  waits for a writer, so another process holding the write lock does not stop it.
- ``Evaluation`` applies time-driven changes (deadlines, expiries, inventories
  growing stale) as they fall due, so no one has to run ``appban evaluate`` by hand.
  It writes, so it waits its turn behind other writers; while it waits, the table
  keeps following. When the lock stays taken it gives up for now and retries.

Three kinds of trouble are told apart, in the log, /healthz and /metrics: another
writer holding the lock (``waiting_for_lock``: normal, retried), the database
unreachable (``store: unreachable``: an outage; the gate keeps answering from the
table it has and reconnects by itself), and anything else (``failing``: a bug).

Each database has an identity (meta ``database_id``); when a different database is
put in place (a restore, a copy, even one with a higher change counter) the table is
loaded again whole, never merged.

The seam for other backends: the ``Store`` protocol is all this needs. PostgreSQL
LISTEN/NOTIFY or a Redis channel can wake the poll instead of the sleep.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appban import settings
from appban.clock import now_micros
from appban.errors import AppbanError, one_line
from appban.gate.credentials import CredentialCache
from appban.gate.sightings import Sightings, SightingsFlusher
from appban.gate.table import DecisionTable
from appban.store import Store, failure_kind, open_store

if TYPE_CHECKING:
    from appban.workspace import Workspace

log = logging.getLogger("appban.gate")

# The gate reads a little, often: a small page cache keeps its memory for the table.
_CACHE_KIB = 4096
# A poll is a read, which under WAL never waits for a writer; the wait only covers
# the rare moments SQLite itself takes a lock (recovering a log after a crash).
_READ_WAIT = 1.0
# Seconds a stopping gate waits at most for the sightings' last flush.
_LAST_FLUSH = 1.0


def _message(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 200)


class Follower(threading.Thread):
    """Polls the store and keeps ``table`` and ``creds`` current; owns the evaluation thread."""

    def __init__(
        self,
        db: str,
        table: DecisionTable,
        creds: CredentialCache,
        *,
        interval: float = 0.1,
        evaluate_every: float | None = 1.0,
        clock: Callable[[], int] = now_micros,
        sightings: Sightings | None = None,
    ) -> None:
        super().__init__(name="appban-gate-follower", daemon=True)
        self.db = db
        self.table = table
        self.creds = creds
        self.interval = interval
        self.store_up = False
        self.following = "ok"  # ok | failing (a bug while applying changes)
        self.error = ""
        self.last_ok = 0.0
        self.database_id = ""
        self.token: str | None = None  # gate_commits token of table.seq: the history followed
        self.polls = 0
        self.failures = {"busy": 0, "unavailable": 0, "error": 0}
        self.reloads = 0
        self.evaluation = Evaluation(db, clock=clock, interval=evaluate_every) if evaluate_every else None
        self.flusher: SightingsFlusher | None = None
        if sightings is not None and sightings.capacity:
            self.flusher = SightingsFlusher(db, sightings, table.names, clock=clock)
        self._halt = threading.Event()
        self._store: Store | None = None

    # -- start-up: fail loudly --------------------------------------------------------

    def load(self) -> None:
        """The first full load, in the caller's thread; raises if the store is absent."""
        self._connect()
        self.poll()

    def start(self) -> None:
        super().start()
        if self.evaluation is not None:
            self.evaluation.start()
        if self.flusher is not None:
            self.flusher.start()

    def stop(self, timeout: float = 0.0) -> None:
        """Ask every thread to stop (the flusher writes what it holds first); wait up to
        ``timeout`` seconds for them."""
        self._halt.set()
        if self.evaluation is not None:
            self.evaluation.stop()
        if self.flusher is not None:
            self.flusher.stop()
        deadline = time.monotonic() + timeout
        if self.flusher is not None and self.flusher.is_alive():
            # Its last flush writes what the gate saw last: a little longer, when it needs it.
            self.flusher.join(max(timeout, _LAST_FLUSH))
        for thread in (self, self.evaluation):
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _connect(self) -> None:
        self._close()
        store = open_store(self.db, create=False)
        store.limit_cache(_CACHE_KIB)
        store.set_lock_wait(_READ_WAIT)
        self._store = store

    def _close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):  # a broken connection may not close cleanly
                self._store.close()
            self._store = None

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                self._step()
        finally:
            self._close()

    def _step(self) -> None:
        try:
            if self._store is None or self._store.replaced():
                self._connect()
        except Exception as exc:  # noqa: BLE001 - gone, moved, not a database: an outage
            self._failed("busy" if failure_kind(exc) == "busy" else "unavailable", exc)
            return
        try:
            self.poll()
        except Exception as exc:  # noqa: BLE001 - keep serving from the table, retry
            self._failed(failure_kind(exc), exc)

    def _failed(self, kind: str, exc: BaseException) -> None:
        self.failures[kind] += 1
        message = _message(exc)
        if kind == "busy":
            # Readers do not wait for writers under WAL; a lock here is SQLite's own,
            # brief. Not an outage: the next poll tries again.
            if log.isEnabledFor(logging.DEBUG):
                log.debug("store busy while polling, retrying: %s", message)
            return
        if kind == "unavailable":
            if self.store_up or message != self.error:
                log.warning("store unreachable, answering from the last table: %s", message)
            self.store_up = False
            self._close()
        else:
            if self.following == "ok" or message != self.error:
                log.error("following the store failed (a bug), answering from the last table", exc_info=exc)
            self.following = "failing"
            self._close()  # start afresh: a new connection, the next poll reads again
        self.error = message

    def poll(self) -> None:
        store = self._store
        assert store is not None
        database_id = store.get_meta("database_id") or ""
        seq = store.gate_seq()
        if self.database_id and database_id != self.database_id:
            # A different database is in place: nothing incremental is trustworthy,
            # whatever its change counter says. Load it whole and swap.
            log.warning("a different database is in place (database_id %s): reloading", database_id)
            self._reload(store, seq)
        elif seq < self.table.seq:
            # The counter went back: the same database restored from a backup.
            log.warning("store change counter went back (%d < %d): reloading", seq, self.table.seq)
            self._reload(store, seq)
        elif self.table.seq and store.gate_token(self.table.seq) != self.token:
            # The same database, but not the history followed: a copy restored over it
            # whose counter has gone as far or further along another path.
            log.warning("the store's history is not the one followed (a copy restored over it): reloading")
            self._reload(store, seq)
        elif seq > self.table.seq or self.table.seq == 0:
            after = self.table.seq
            creds = store.credentials(self.creds.seq if after else 0)
            if creds:
                self.creds.apply(creds)
            tombs = store.tombstones(after) if after else []
            self.table.apply(store.gate_rows(after), tombs, self.creds.devices, track=bool(after))
            self.table.forget_mail_devices(self.creds.devices)
            _follow_namesakes(store, self.table, whole=not after)
            # The reads above are separate statements: a commit can land between them
            # (a credential after it was read, its device row before). Remember the seq
            # read first, not the highest seen, so the next poll reads such rows again.
            self.table.seq = seq
        self.token = store.gate_token(self.table.seq)
        self.database_id = database_id
        self.table.updated = time.monotonic()
        self.polls += 1
        if (not self.store_up or self.following != "ok") and self.error:
            log.warning("store reachable again, following")
        self.store_up = True
        self.following = "ok"
        self.error = ""
        self.last_ok = time.monotonic()

    def _reload(self, store: Store, seq: int) -> None:
        fresh = self.table.fresh()
        creds = CredentialCache()
        creds.apply(store.credentials(0))
        fresh.apply(store.gate_rows(0), (), creds.devices, track=False)
        _follow_namesakes(store, fresh, whole=True)
        fresh.seq = seq
        self.creds.replace_with(creds)
        self.table.replace_with(fresh)
        self.reloads += 1


def _follow_namesakes(store: Store, table: DecisionTable, *, whole: bool) -> None:
    """Bring the table's namesakes (local parts two or more known persons share) up to
    date: all of them after a whole load, else those of the owners that came or went."""
    touched = table.take_touched()
    namesakes = table.namesakes
    if namesakes is None or not table.names.needs_index:
        return
    if whole:
        namesakes.load(store.shared_local_parts())
        return
    for local in sorted(touched):
        namesakes.update(local, store.mail_owners(local))


class Evaluation(threading.Thread):
    """Applies deadlines, expiries and ageing as they fall due, on its own connection.

    ``state``: ``ok``, ``waiting_for_lock`` (another writer held the lock longer than
    one interval; retried at the next), ``store_unreachable`` or ``failing`` (a bug).
    """

    def __init__(self, db: str, *, clock: Callable[[], int], interval: float) -> None:
        super().__init__(name="appban-gate-evaluation", daemon=True)
        self.db = db
        self.clock = clock  # the time deadlines are applied at: real time, or --now
        self.interval = interval
        self.state = "ok"
        self.error = ""
        self.last_ok = time.monotonic()
        self.runs = {"ok": 0, "waiting_for_lock": 0, "store_unreachable": 0, "failing": 0}
        self.changes = 0
        self._halt = threading.Event()
        self._ws: Workspace | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                self.run_once()
        finally:
            self._close()

    def run_once(self) -> None:
        try:
            changes = self._evaluate()
        except Exception as exc:  # noqa: BLE001 - keep serving; retry at the next interval
            self._failed(exc)
            return
        if self.state != "ok":
            log.info("time-driven evaluation is running again (was %s)", self.state)
        self.state, self.error = "ok", ""
        self.runs["ok"] += 1
        self.last_ok = time.monotonic()
        if changes:
            self.changes += changes
            log.info("time-driven evaluation: %d state change%s", changes, "" if changes == 1 else "s")

    def _evaluate(self) -> int:
        from appban.workspace import Workspace  # the gate's hot path never needs it

        now = self.clock()
        ws = self._ws
        if ws is not None and ws.store.replaced():
            self._close()
            ws = None
        if ws is None:
            ws = self._ws = Workspace(self.db, now, create=False)
            ws.store.limit_cache(_CACHE_KIB)
            # Wait for another writer at most one interval, then try again later: the
            # gate must not look stuck behind a long import, and a waiting writer
            # would only queue up behind it.
            ws.store.set_lock_wait(min(settings.get("busy_timeout"), max(self.interval, 0.5)))
        ws.now = now
        if now < ws.clock() or not ws.store.due_policies(now):
            # A clock behind the store's (a gate replaying an earlier --now, or a real
            # clock a little behind another host's) finds nothing due: time there is past.
            return 0
        with ws.writing():
            return ws.evaluator.evaluate_due(now)

    def _failed(self, exc: BaseException) -> None:
        kind = failure_kind(exc)
        if kind == "error" and isinstance(exc, AppbanError) and self._ws is None:
            kind = "unavailable"  # open_store refused: no database there, or not one
        state = {"busy": "waiting_for_lock", "unavailable": "store_unreachable"}.get(kind, "failing")
        message = _message(exc)
        self.runs[state] += 1
        if state == "waiting_for_lock":
            if self.state != state:
                log.info("time-driven evaluation waits for another writer's lock; retrying")
        elif state == "store_unreachable":
            if self.state != state:
                log.warning("time-driven evaluation cannot reach the store: %s", message)
            self._close()
        else:
            if self.state != state or message != self.error:
                log.error("time-driven evaluation failed (a bug); retrying", exc_info=exc)
            self._close()  # start afresh on a new connection
        self.state, self.error = state, message

    def _close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
