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
        if not create:
            self.catalog: Catalog = catalog_sync.current(self.store)
            self.evaluator = Evaluator(self.store, self.audit, self.catalog)
            return
        previous = self.store.get_meta("catalog_version")  # None: a new database
        # Syncing the shipped catalog alone evaluates nothing: it must not move the clock
        # (a dry run opens the database this way and must leave it as it was).
        with self.writing(evaluates=False):
            self.catalog = catalog_sync.sync_shipped(self.store, self.audit, now)
            self.evaluator = Evaluator(self.store, self.audit, self.catalog)
            if previous is not None and int(previous) != self.catalog.version:
                # An upgrade brought identifiers: snapshots filtered before them cannot
                # prove their absence (SPEC), so states change now, in this transaction.
                with self.writing():
                    for policy in self.evaluator.policies:
                        self.evaluator.evaluate_policy(policy, now, "catalog")

    @contextmanager
    def writing(self, *, evaluates: bool = True) -> Iterator[None]:
        """One transaction; the audit entries it produced are written with it or not at all.

        Work that ``evaluates`` states moves the clock up to ``now``.
        """
        try:
            with self.store.transaction():
                yield
                self.audit.flush()
                if evaluates and self.now > self.clock():
                    self.store.set_meta("clock", str(self.now))
        except BaseException:
            self.audit.discard()
            raise

    def clock(self) -> Micros:
        """The latest time any command evaluated at; stored states are as of then."""
        return int(self.store.get_meta("clock", "0") or 0)

    def refresh_catalog(self) -> None:
        self.catalog = catalog_sync.current(self.store)
        self.evaluator.catalog = self.catalog
        self.evaluator.reload()

    def close(self) -> None:
        self.store.close()
