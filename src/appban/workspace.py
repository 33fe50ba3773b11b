"""One command's view of appban: the store, its catalog and audit log, and the clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from appban import settings
from appban.audit import AuditLog
from appban.catalog import Catalog
from appban.catalog import sync as catalog_sync
from appban.clock import Micros, format_time, now_micros
from appban.errors import BadInput
from appban.policy.evaluator import Evaluator
from appban.store import open_store


class Workspace:
    """``now`` is the command's clock: --now (a replay), or the real time when ``live``.

    A live clock is read again when a write gets its turn: a command that waited for
    another writer writes at the time it writes, not at the time it started.
    """

    def __init__(self, db: str, now: Micros, *, create: bool, live: bool = False) -> None:
        self.db = db
        self.now = now
        self.live = live
        self.store = open_store(db, create=create)
        self.audit = AuditLog(self.store)
        self.catalog: Catalog = catalog_sync.current(self.store)
        self.evaluator = Evaluator(self.store, self.audit, self.catalog)
        self._depth = 0
        self._moves_clock = False
        if not create:
            return
        previous = self.store.get_meta("catalog_version")  # None: a new database
        # Syncing the shipped catalog alone evaluates nothing: it must not move the clock
        # (a dry run opens the database this way and must leave it as it was).
        with self.writing(evaluates=False):
            catalog_sync.sync_shipped(self.store, self.audit, now)
            self.refresh_catalog()
            if previous is not None and int(previous) != self.catalog.version:
                # An upgrade brought identifiers: snapshots filtered before them cannot
                # prove their absence (SPEC), so states change now, in this transaction.
                with self.writing():
                    for policy in self.evaluator.policies:
                        self.evaluator.evaluate_policy(policy, now, "catalog")

    @contextmanager
    def writing(self, *, evaluates: bool = True) -> Iterator[None]:
        """One transaction; the audit entries it produced are written with it or not at all.

        Everything a write depends on (the audit log's head, the catalog, policies,
        exemptions, attestations, groups) is read again once the transaction holds
        the write lock: another process may have changed any of it since this
        command started. Work that ``evaluates`` states moves the clock up to ``now``.
        A nested use joins the outer transaction.
        """
        self._moves_clock = self._moves_clock or evaluates
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            with self.store.transaction():
                self._depth = 1
                self._read_current()
                if self.live:
                    self.now = max(now_micros(), self.clock())
                if self._moves_clock:
                    self._check_clock()
                yield
                self.evaluator.notices.flush()
                self.audit.flush()
                if self._moves_clock and self.now > self.clock():
                    self.store.set_meta("clock", str(self.now))
        except BaseException:
            self.audit.discard()
            self.evaluator.notices.discard()
            raise
        finally:
            self._depth = 0
            self._moves_clock = False

    def _read_current(self) -> None:
        self.audit.begin()
        stored = int(self.store.get_meta("catalog_version", "0") or 0)
        if stored != self.catalog.version:
            self.refresh_catalog()
        else:
            self.evaluator.reload()

    def _check_clock(self) -> None:
        """A write happens now, or replays the past in order; it never goes back in time.

        Stored states are exact as of the store's clock: computed at an earlier time
        they would undo what time already did (a blocked phone allowed again), and at a
        time still to come they would be stored as if it had come (blocked "since" next
        year), and every real write after would be a write back in time. Reports take
        any --now: they compute or read history, and write nothing.
        """
        clock = self.clock()
        if self.now < clock:
            raise BadInput(
                f"{format_time(self.now)} is before {format_time(clock)}, the time this database's states "
                "are as of: a write cannot go back in time (reports can: status, device show)",
                field="--now",
            )
        skew = settings.duration("clock_skew", allow_zero=True)
        if self.now > now_micros() + skew:
            raise BadInput(
                f"{format_time(self.now)} is ahead of the real clock: a write happens now or replays "
                "the past (reports can look ahead: status, device show)",
                field="--now",
            )

    def clock(self) -> Micros:
        """The latest time any command evaluated at; stored states are as of then."""
        return int(self.store.get_meta("clock", "0") or 0)

    def refresh_catalog(self) -> None:
        """Read the stored catalog again, and what evaluation derives from it."""
        self.catalog = catalog_sync.current(self.store)
        self.evaluator.catalog = self.catalog
        self.evaluator.reload()

    def close(self) -> None:
        self.store.close()
