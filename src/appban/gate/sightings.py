"""What the gate saw: every (DeviceId, user, DeviceType, protocol) it answers, kept off
the request path.

Two halves:

- ``Sightings``, the buffer the request path adds to: a dict keyed by the tuple, so
  that a phone's thousand Pings a day are one key and a count. Adding is a dict
  update under a lock only the flusher ever takes too, once a second, for a swap. It
  is bounded: past ``gate_sightings_buffer`` distinct keys, new ones are dropped and
  counted (repeats of held ones still count), so a flood of random DeviceIds costs the
  gate a fixed amount of memory and never slows an answer.
- ``SightingsFlusher``, a thread with its own connection to the store, that takes the
  buffer every ``gate_sightings_interval`` seconds and writes it in one short
  transaction: an upsert of the rows, capped at ``sightings_max_rows`` (the store
  refuses and counts new keys past it), rows not seen for ``sightings_max_age``
  expired, and the mail-access evidence below.

The gate answers before the mail server authenticates anyone, so a sighting proves
little. It is evidence that a device reads mail only when the device names the
DeviceId (as an identifier: Jamf and Apple MDM report every iPhone's, mail or not)
and the user the gate would trust names the device's owner, by the gate's own name
rules (``users.py``). Such a device is marked (``mark_mail_seen``) and evaluated again
in the same transaction, so its states follow; a sighting by anyone else proves
nothing.

Text is stored the way ``appban.text`` lets it be shown as is: a value with anything
invisible, markup or a ``%`` in it is stored percent-encoded (``stored_text``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from appban import settings
from appban.clock import Micros, now_micros
from appban.errors import AppbanError, one_line
from appban.gate.users import UserNames
from appban.store import failure_kind
from appban.store.records import Sighting, SightingsWritten
from appban.text import identifiers_clean

if TYPE_CHECKING:
    from appban.workspace import Workspace

log = logging.getLogger("appban.gate")

# (DeviceId, user, DeviceType, protocol), as the gate read them.
Key = tuple[str, str, str, str]

# The longest text kept of each part. A DeviceId reaches the buffer only within the
# gate's own bound (activesync.MAX_ID * 2); a user from an Authorization header can be
# as long as the header, so it is cut on the request path already: no address longer
# than 254 characters can receive mail (RFC 5321), so a longer name names no owner.
MAX_STORED_ID = 256
MAX_STORED_USER = 256
MAX_STORED_TYPE = 128
MAIL_PROTOCOLS = ("imap", "pop3", "smtp")
# Printable ASCII that can be shown as is in a terminal or a page: not '%' (the escape
# itself, so that no two values are stored alike), nor markup's '<', '>', '&' or quotes.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%<>&\"'")
# The gate reads a little and writes a little: a small page cache (as the follower's).
_CACHE_KIB = 4096
# Expired rows are looked for at most this often (and at start).
_EXPIRE_EVERY = 60_000_000
# Seconds a flush waits for another writer's lock before keeping its batch for the next.
_LOCK_WAIT = 1.0


def stored_text(value: str, limit: int) -> str:
    """``value`` as a sighting keeps it: as given when ``appban.text`` would take it as
    an identifier (nothing invisible, no markup) and it holds no ``%``; otherwise
    percent-encoded in UTF-8. At most ``limit`` characters either way."""
    if len(value) <= limit and "%" not in value and identifiers_clean(value):
        return value
    encoded = quote(value, safe=_SAFE, errors="backslashreplace")[:limit]
    cut = encoded.rfind("%", len(encoded) - 2)
    return encoded[:cut] if cut >= 0 else encoded  # never half an escape


class Sightings:
    """The bounded buffer the request path adds to, and what the flusher reports of it.

    ``capacity`` 0 records nothing. The counters are read by /metrics and /healthz.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._pending: dict[Key, int] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # new keys dropped: the buffer was full
        # Kept by the flusher:
        self.written = 0  # rows written (updated or inserted)
        self.refused = 0  # new keys the store refused at its cap
        self.marked = 0  # devices a sighting by their owner showed reading mail
        self.failures = {"busy": 0, "unavailable": 0, "error": 0}
        self.state = "ok"  # ok | waiting_for_lock | store_unreachable | failing | off
        self.error = ""

    @classmethod
    def from_settings(cls) -> Sightings:
        return cls(settings.get("gate_sightings_buffer"))

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, device_id: str, user: str, device_type: str, protocol: str) -> None:
        """Count one answer. O(1), no I/O; never blocks but for the flusher's swap."""
        if not self.capacity:
            return
        if len(user) > MAX_STORED_USER:
            user = user[:MAX_STORED_USER]
        key = (device_id, user, device_type, protocol)
        lock = self._lock
        lock.acquire()  # held for a dict update; the flusher holds it for a swap
        try:
            pending = self._pending
            if key in pending:
                pending[key] += 1
            elif len(pending) < self.capacity:
                pending[key] = 1
            else:
                self.dropped += 1
        finally:
            lock.release()

    def take(self) -> dict[Key, int]:
        """Everything added since the last take; the buffer starts empty again."""
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def drop(self, keys: int) -> None:
        """Count new keys dropped elsewhere (a failed flush's batch already full)."""
        with self._lock:
            self.dropped += keys

    def detail(self) -> dict[str, object]:
        """What /healthz says of the sightings."""
        doc: dict[str, object] = {
            "state": "off" if not self.capacity else self.state,
            "pending": len(self._pending),
            "dropped": self.dropped,
            "refused": self.refused,
        }
        if self.error:
            doc["error"] = self.error
        return doc

    def metrics(self) -> list[str]:
        """What /metrics says of the sightings."""
        return [
            "# HELP appban_gate_sightings_pending Distinct sightings waiting for the next flush.",
            "# TYPE appban_gate_sightings_pending gauge",
            f"appban_gate_sightings_pending {len(self._pending)}",
            "# HELP appban_gate_sightings_dropped_total Sightings of new keys dropped: the buffer was full.",
            "# TYPE appban_gate_sightings_dropped_total counter",
            f"appban_gate_sightings_dropped_total {self.dropped}",
            "# HELP appban_gate_sightings_written_total Sighting rows written to the store.",
            "# TYPE appban_gate_sightings_written_total counter",
            f"appban_gate_sightings_written_total {self.written}",
            "# HELP appban_gate_sightings_refused_total New sightings the store refused: it held sightings_max_rows.",
            "# TYPE appban_gate_sightings_refused_total counter",
            f"appban_gate_sightings_refused_total {self.refused}",
            "# HELP appban_gate_sightings_mail_seen_total Devices a sighting by their owner showed reading mail.",
            "# TYPE appban_gate_sightings_mail_seen_total counter",
            f"appban_gate_sightings_mail_seen_total {self.marked}",
            "# HELP appban_gate_sightings_flush_failures_total Flushes that failed: busy (a lock), "
            "unavailable (an outage), error (a bug); their sightings are kept for the next.",
            "# TYPE appban_gate_sightings_flush_failures_total counter",
            *(
                f'appban_gate_sightings_flush_failures_total{{kind="{k}"}} {n}'
                for k, n in sorted(self.failures.items())
            ),
        ]


class SightingsFlusher(threading.Thread):
    """Writes the buffer to the store every ``interval`` seconds, on its own connection,
    and once more when stopped."""

    def __init__(
        self,
        db: str,
        sightings: Sightings,
        names: UserNames,
        *,
        clock: Callable[[], Micros] = now_micros,
        interval: float | None = None,
        max_rows: int | None = None,
        max_age: Micros | None = None,
    ) -> None:
        super().__init__(name="appban-gate-sightings", daemon=True)
        self.db = db
        self.sightings = sightings
        self.names = names
        self.clock = clock
        self.interval: float = settings.get("gate_sightings_interval", interval)
        self.max_rows: int = settings.get("sightings_max_rows", max_rows)
        self.max_age = max_age if max_age is not None else settings.duration("sightings_max_age")
        self._retry: dict[Key, int] = {}  # taken, but a flush failed: written with the next
        self._expired_at: Micros | None = None
        self._halt = threading.Event()
        self._ws: Workspace | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                self.flush()
            self.flush()  # what the last moments saw, before the gate stops
            if self._retry:
                log.warning(
                    "sightings: %d not written before the gate stopped (the store was %s)",
                    len(self._retry),
                    self.sightings.state,
                )
        finally:
            self._close()

    # -- one flush ----------------------------------------------------------------------

    def flush(self) -> None:
        """Write what was seen since the last flush (and what a failed one kept)."""
        batch = self._batch()
        now = self.clock()
        expire = self._expired_at is None or now - self._expired_at >= min(_EXPIRE_EVERY, self.max_age)
        if not batch and not expire:
            return
        try:
            self._write(batch, now, expire)
        except Exception as exc:  # noqa: BLE001 - keep answering; try again at the next flush
            self._retry = batch
            self._failed(exc)
            return
        if self.sightings.state != "ok":
            log.info("sightings are written again (was %s)", self.sightings.state)
        self.sightings.state, self.sightings.error = "ok", ""

    def _batch(self) -> dict[Key, int]:
        taken = self.sightings.take()
        if not self._retry:
            return taken
        batch, self._retry = self._retry, {}
        dropped = 0
        for key, count in taken.items():
            if key in batch:
                batch[key] += count
            elif len(batch) < self.sightings.capacity:
                batch[key] = count
            else:
                dropped += 1
        if dropped:
            self.sightings.drop(dropped)
        return batch

    def _write(self, batch: dict[Key, int], now: Micros, expire: bool) -> None:
        ws = self._workspace()
        ws.now = now
        rows: dict[tuple[str, str, str, str], int] = {}
        for (eas, user, device_type, protocol), count in batch.items():
            key = (
                stored_text(eas, MAX_STORED_ID),
                stored_text(user, MAX_STORED_USER),
                stored_text(device_type, MAX_STORED_TYPE),
                protocol,
            )
            rows[key] = rows.get(key, 0) + count  # two values cut or encoded alike: one row
        due = expire and ws.store.sightings_due(now - self.max_age)  # a read: no write for nothing
        if rows or due:
            with ws.writing(evaluates=False):
                if due:  # first: rows that expire make room for this batch under the cap
                    gone = ws.store.expire_sightings(now - self.max_age)
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("sightings: %d expired", gone)
                written = ws.store.record_sightings([Sighting(*k, n) for k, n in rows.items()], now, self.max_rows)
                marked = self._evidence(ws, batch, now)
            self._counted(written, marked)
        if expire:
            self._expired_at = now

    def _counted(self, written: SightingsWritten, marked: int) -> None:
        self.sightings.written += written.updated + written.inserted
        self.sightings.marked += marked
        if written.refused:
            if not self.sightings.refused:
                log.warning(
                    "sightings: the store holds sightings_max_rows (%d); new ones are refused and counted",
                    self.max_rows,
                )
            self.sightings.refused += written.refused

    def _evidence(self, ws: Workspace, batch: dict[Key, int], now: Micros) -> int:
        """Mark the devices a sighting by their owner shows reading mail, and evaluate
        them again; returns how many. In the flush's transaction."""
        from appban.gate.decide import StoredPersons  # the store's answer, as gate decide asks it

        users: dict[str, set[str]] = {}
        for eas, user, _type, protocol in batch:
            if protocol == "activesync" and eas and user:
                users.setdefault(eas, set()).add(user)
        if not users:
            return 0
        found = ws.store.sighted_devices(sorted(users))
        if not found or now < ws.clock():
            # Nothing to show, or the store's states are as of a later time than this
            # gate's clock (a replay with --now): a write does not go back in time.
            return 0
        persons = StoredPersons(ws.store)
        owns = self.names.owns
        proven = sorted({f.device_id for f in found if any(owns(user, f.owner, persons) for user in users[f.eas_id])})
        if not proven:
            return 0
        ws.store.mark_mail_seen(proven, now)
        shown = {f.device_id: f.eas_id for f in found}
        with ws.writing():  # joins the flush's transaction; evaluating moves the clock
            for device_id in proven:
                device = ws.store.get_device(device_id)
                if device is None:
                    continue
                ws.audit.append(now, "mail_seen", device.ref, {"eas_device_id": shown[device_id]})
                ws.evaluator.evaluate_device(device, now, "mail_seen")
        return len(proven)

    # -- the connection -------------------------------------------------------------------

    def _workspace(self) -> Workspace:
        from appban.workspace import Workspace  # the request path never needs it

        ws = self._ws
        if ws is not None and ws.store.replaced():
            self._close()
            ws = None
        if ws is None:
            ws = self._ws = Workspace(self.db, self.clock(), create=False)
            ws.store.limit_cache(_CACHE_KIB)
            # Behind another writer (an import) wait at most a second, then keep the
            # batch for the next flush: a flush must stay short.
            ws.store.set_lock_wait(min(settings.get("busy_timeout"), _LOCK_WAIT))
        return ws

    def _failed(self, exc: BaseException) -> None:
        kind = failure_kind(exc)
        if kind == "error" and isinstance(exc, AppbanError) and self._ws is None:
            kind = "unavailable"  # open_store refused: no database there, or not one
        self.sightings.failures[kind] += 1
        state = {"busy": "waiting_for_lock", "unavailable": "store_unreachable"}.get(kind, "failing")
        message = one_line(f"{type(exc).__name__}: {exc}", 200)
        if state == "waiting_for_lock":
            if self.sightings.state != state:
                log.info("sightings wait for another writer's lock; kept for the next flush")
        elif state == "store_unreachable":
            if self.sightings.state != state:
                log.warning("sightings cannot reach the store, kept for the next flush: %s", message)
            self._close()
        else:
            if self.sightings.state != state or message != self.sightings.error:
                log.error("writing sightings failed (a bug); kept for the next flush", exc_info=exc)
            self._close()
        self.sightings.state, self.sightings.error = state, message

    def _close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
