"""Keeping the gate's table in step with the store, and the clock's changes applied.

A thread polls the store's change counter (``gate_seq``) every ``interval`` seconds
and folds in only what changed, so a check-in committed anywhere reaches the gate's
answers within a poll. It also applies time-driven changes (deadlines, expiries)
as they fall due, so no one has to run ``appban evaluate`` by hand.

If the store cannot be reached, the gate keeps answering from the table it has,
reports the outage in /healthz and /metrics, and reconnects by itself.

The seam for other backends: ``Source`` is all the follower needs. PostgreSQL
LISTEN/NOTIFY or a Redis channel can wake ``wait`` instead of the sleep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from appban.clock import now_micros
from appban.gate.credentials import CredentialCache
from appban.gate.table import DecisionTable
from appban.store import open_store

log = logging.getLogger("appban.gate")


class Source(Protocol):
    def gate_seq(self) -> int: ...
    def gate_rows(self, after_seq: int = 0) -> list[Any]: ...
    def tombstones(self, after_seq: int) -> list[tuple[int, str, int]]: ...
    def credentials(self, after_seq: int = 0) -> list[Any]: ...


class Follower(threading.Thread):
    def __init__(
        self,
        db: str,
        table: DecisionTable,
        creds: CredentialCache,
        *,
        interval: float = 0.1,
        evaluate_every: float = 1.0,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        super().__init__(name="appban-gate-follower", daemon=True)
        self.clock = clock  # the time deadlines are applied at: real time, or --now
        self.db = db
        self.table = table
        self.creds = creds
        self.interval = interval
        self.evaluate_every = evaluate_every
        self.store_up = False
        self.error = ""
        self.last_ok = 0.0
        self.polls = 0
        self.failures = 0
        self._stop = threading.Event()
        self._store: Any = None
        self._inode: tuple[int, int] | None = None
        self._last_eval = 0.0

    # -- start-up: fail loudly --------------------------------------------------------

    def load(self) -> None:
        """The first full load, in the caller's thread; raises if the store is absent."""
        self._connect()
        self.poll()

    def _connect(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):  # a broken connection may not close cleanly
                self._store.close()
        path = self.db.removeprefix("sqlite:///")
        self._store = open_store(self.db, create=False)
        # The gate reads a little, often: a small page cache keeps its memory for the table.
        self._store.db.execute("PRAGMA cache_size = -4096")
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._check_file()
                self.poll()
                if time.monotonic() - self._last_eval >= self.evaluate_every:
                    self.evaluate()
            except Exception as exc:  # noqa: BLE001 - any failure: keep serving, retry
                self.failures += 1
                if self.store_up or not self.error:
                    log.warning("store unreachable, answering from the last table: %s", exc)
                self.store_up = False
                self.error = str(exc)[:200]
                self._store = None

    def stop(self) -> None:
        self._stop.set()

    def _check_file(self) -> None:
        path = self.db.removeprefix("sqlite:///")
        st = os.stat(path)  # raises while the database is gone
        if self._store is None or (st.st_dev, st.st_ino) != self._inode:
            self._connect()

    def poll(self) -> None:
        store = self._store
        seq = store.gate_seq()
        if seq < self.table.seq:
            # The counter went back: a different database (a restore from backup) is in
            # place. Nothing incremental is trustworthy; load it whole and swap.
            log.warning("store change counter went back (%d < %d): reloading", seq, self.table.seq)
            self._reload(store, seq)
        elif seq > self.table.seq or self.table.seq == 0:
            after = self.table.seq
            creds = store.credentials(self.creds.seq if after else 0)
            if creds:
                self.creds.apply(creds)
            tombs = store.tombstones(after) if after else []
            self.table.apply(store.gate_rows(after), tombs, self.creds.devices)
            self.table.forget_mail_devices(self.creds.devices)
            # The reads above are separate statements: a commit can land between them
            # (a credential after it was read, its device row before). Remember the seq
            # read first, not the highest seen, so the next poll reads such rows again.
            self.table.seq = seq
        self.table.updated = time.monotonic()
        self.polls += 1
        if not self.store_up and self.error:
            log.warning("store reachable again")
        self.store_up = True
        self.error = ""
        self.last_ok = time.monotonic()

    def _reload(self, store: Any, seq: int) -> None:
        fresh = DecisionTable(
            unknown_device="allow" if self.table.unknown_allows else "deny",
            mail_domain=self.table.mail_domain,
        )
        creds = CredentialCache(size=self.creds.size)
        creds.apply(store.credentials(0))
        fresh.apply(store.gate_rows(0), (), creds.devices)
        fresh.seq = seq
        self.creds.replace_with(creds)
        self.table.replace_with(fresh)

    def evaluate(self) -> None:
        """Apply deadlines, expiries and ageing that have fallen due."""
        from appban.workspace import Workspace

        self._last_eval = time.monotonic()
        now = self.clock()
        if not self._store.due_policies(now):
            return
        ws = Workspace(self.db, now, create=False)
        try:
            with ws.writing():
                changes = ws.evaluator.evaluate_due(now)
            if changes:
                log.info("time-driven evaluation: %d state changes", changes)
        finally:
            ws.close()
