"""One command's view of appban: the store, its catalog and audit log, and the clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from appban.audit import AuditLog
from appban.catalog import Catalog
from appban.catalog import sync as catalog_sync
from appban.clock import Micros
from appban.policy.evaluator import Evaluator
from appban.store import open_store


class Workspace:
    def __init__(self, db: str, now: Micros, *, create: bool) -> None:
        self.db = db
        self.now = now
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
            self.catalog = catalog_sync.sync_shipped(self.store, self.audit, now)
            self.evaluator.catalog = self.catalog
            self.evaluator.reload()
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
                yield
                self.audit.flush()
                if self._moves_clock and self.now > self.clock():
                    self.store.set_meta("clock", str(self.now))
        except BaseException:
            self.audit.discard()
            raise
        finally:
            self._depth = 0
            self._moves_clock = False

    def _read_current(self) -> None:
        self.audit.begin()
        stored = int(self.store.get_meta("catalog_version", "0") or 0)
        if stored != self.catalog.version:
            self.catalog = catalog_sync.current(self.store)
            self.evaluator.catalog = self.catalog
        self.evaluator.reload()

    def clock(self) -> Micros:
        """The latest time any command evaluated at; stored states are as of then."""
        return int(self.store.get_meta("clock", "0") or 0)

    def refresh_catalog(self) -> None:
        self.catalog = catalog_sync.current(self.store)
        self.evaluator.catalog = self.catalog
        self.evaluator.reload()

    def close(self) -> None:
        self.store.close()
