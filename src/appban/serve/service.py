"""One ``appban serve`` process's link to the store.

Writes go through one writer thread with its own connection. Check-ins that
requests hand it while it is busy wait in a queue, and the next transaction applies
all of them together (group commit): sixteen clients posting one check-in each cost
one commit, not sixteen, and the write lock is held at most ``BATCH_SECONDS``.

Each item is applied or refused alone. ``Ingestor.ingest`` refuses (BadInput) before
it writes anything, so a refused item leaves nothing behind and the items beside it
are applied. An unexpected failure rolls the whole transaction back; the jobs in it
are then run again one by one, so only the request at fault fails. A busy database
(another process held the write lock past the busy timeout) fails the whole group at
once: run again, each job would wait the busy timeout anew.

Reads that must not wait behind writes (a token's source, an osquery node key) use
a second connection on a reader thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from appban import settings
from appban.clock import now_micros
from appban.errors import BadInput, Busy
from appban.inventory.checkin import Checkin
from appban.inventory.ingest import Ingestor
from appban.store import open_store
from appban.workspace import Workspace

T = TypeVar("T")
log = logging.getLogger("appban.serve")

# One transaction applies at most this many check-ins, or runs about this long.
BATCH_CHECKINS = 500
BATCH_SECONDS = 0.1


@dataclass
class ItemResult:
    """What became of one posted item (SPEC: the check-in API's ``results``)."""

    index: int
    device: str | None
    status: str  # applied | ignored (no newer than what is stored) | rejected
    error: BadInput | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"index": self.index, "device": self.device, "status": self.status}
        if self.error is not None:
            doc["error"] = {"field": self.error.field, "message": self.error.detail}
        return doc


@dataclass
class Refused:
    """An item refused before it reaches the store: why, and its device's id when the
    item was read far enough to know it (it names another source, it has too many apps)."""

    error: BadInput
    device: str | None = None


@dataclass
class _Job:
    subject: str  # who sent it, for the audit log: "api:<source>", "osquery:<source>" ...
    items: Sequence[Checkin | BadInput | Refused]
    future: Future[list[ItemResult]] = field(default_factory=Future)


@dataclass
class _Call:
    fn: Callable[[Workspace], Any]
    future: Future[Any] = field(default_factory=Future)


@dataclass
class Counters:
    applied: int = 0
    ignored: int = 0
    rejected: int = 0
    transactions: int = 0
    failures: int = 0


class Service:
    def __init__(self, db: str) -> None:
        self.db = db
        self.counters = Counters()
        self._queue: queue.Queue[_Job | _Call | None] = queue.Queue()
        # Opened here, so that a missing database fails `appban serve` at start.
        self._ws = Workspace(db, now_micros(), create=False, live=True)
        self._reader = open_store(db, create=False)
        self._read_lock = threading.Lock()
        keep = settings.get("keep_full_inventory")
        self._ingestor = Ingestor(self._ws.store, self._ws.evaluator, keep_full=keep)
        self._writer = threading.Thread(target=self._write_loop, name="appban-writer", daemon=True)
        self._writer.start()

    # -- for request handlers ------------------------------------------------------------

    async def apply(self, subject: str, items: Sequence[Checkin | BadInput | Refused]) -> list[ItemResult]:
        """Apply check-ins (an item may be the error its decoding gave: it is rejected)."""
        job = _Job(subject, items)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    async def call(self, fn: Callable[[Workspace], T]) -> T:
        """Run ``fn`` on the writer thread, between transactions (it opens its own)."""
        job = _Call(fn)
        self._queue.put(job)
        result: T = await asyncio.wrap_future(job.future)
        return result

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(store)`` on the reader connection, off the event loop."""
        return await asyncio.to_thread(self._read, fn)

    def _read(self, fn: Callable[[Any], T]) -> T:
        with self._read_lock:
            return fn(self._reader)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        self._ws.close()
        self._reader.close()

    # -- the writer thread ----------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if isinstance(first, _Call):
                self._run_call(first)
                continue
            jobs = [first]
            count = len(first.items)
            deferred: _Call | None = None
            stop = False
            while count < BATCH_CHECKINS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if isinstance(more, _Call):
                    deferred = more
                    break
                jobs.append(more)
                count += len(more.items)
            self._run(jobs)
            if deferred is not None:
                self._run_call(deferred)
            if stop:
                return

    def _run_call(self, call: _Call) -> None:
        try:
            call.future.set_result(call.fn(self._ws))
        except BaseException as exc:  # the request answers for it
            call.future.set_exception(exc)

    def _run(self, jobs: list[_Job]) -> None:
        started = time.monotonic()
        try:
            with self._ws.writing():
                results = [self._apply(job) for job in jobs]
                self._ingestor.linker.drop_crowded(self._ws.now)
                self._audit(jobs, results)
        except Busy as exc:
            self.counters.failures += 1
            for job in jobs:
                job.future.set_exception(exc)
            return
        except Exception as exc:
            self.counters.failures += 1
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
                return
            log.exception("applying check-ins failed")
            jobs[0].future.set_exception(exc)
            return
        self.counters.transactions += 1
        for job, result in zip(jobs, results, strict=True):
            for r in result:
                setattr(self.counters, r.status, getattr(self.counters, r.status) + 1)
            job.future.set_result(result)
        log.debug("applied %d jobs in %.1f ms", len(jobs), (time.monotonic() - started) * 1000)

    def _apply(self, job: _Job) -> list[ItemResult]:
        counts = self._ingestor.counts
        results = []
        for index, item in enumerate(job.items):
            if isinstance(item, BadInput):
                results.append(ItemResult(index, None, "rejected", item))
                continue
            if isinstance(item, Refused):
                results.append(ItemResult(index, item.device, "rejected", item.error))
                continue
            unchanged = counts.unchanged
            try:
                self._ingestor.ingest(item, self._ws.now)
            except BadInput as exc:  # refused before anything of it was written
                results.append(ItemResult(index, item.device.id, "rejected", exc))
                continue
            status = "ignored" if counts.unchanged > unchanged else "applied"
            results.append(ItemResult(index, item.device.id, status))
        return results

    def _audit(self, jobs: list[_Job], results: list[list[ItemResult]]) -> None:
        """One entry per sender and transaction: what came in (state changes have their own)."""
        by_subject: dict[str, dict[str, int]] = {}
        for job, result in zip(jobs, results, strict=True):
            tally = by_subject.setdefault(job.subject, {"applied": 0, "ignored": 0, "rejected": 0})
            for r in result:
                tally[r.status] += 1
        for subject, tally in by_subject.items():
            self._ws.audit.append(self._ws.now, "checkins", subject, tally)
