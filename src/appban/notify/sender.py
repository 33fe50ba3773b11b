"""Delivering the notice outbox: claim what is due, render it, send it, record the results.

A sender works in rounds:

1. it brings time-driven states, and the notices time plans (the memo at ``effective``,
   reminders), up to now: ``evaluate_due`` in a write transaction, at the start of each
   pass over the outbox and every APPBAN_NOTIFY_INTERVAL seconds of a long one;
2. it claims a batch of due notices (``claim_notices``: they become ``sending``,
   leased for APPBAN_NOTIFY_LEASE);
3. it renders each (``appban.notify.render``: the batch's policies read once, the rest
   as the store is now) as its channel takes it: the SMTP channel renders the next while
   a server takes in a message, or when a connection has nothing to send;
4. it records every result in one write transaction, with one audit entry: ``sent``;
   a temporary failure ``pending`` again after a wait that doubles with each try
   (APPBAN_NOTIFY_RETRY, at most six hours), ``failed`` after APPBAN_NOTIFY_MAX_ATTEMPTS;
   a permanent failure, or a notice that cannot be rendered, ``failed`` at once. When
   the batch came full, the same transaction claims the next one.

Exactly once, as far as anyone can over SMTP: a row is marked sent only after the server
accepted the message. A sender killed between the two leaves it ``sending``; when the
lease runs out another sender sends it again, and the message carries the same
Message-ID (derived from the row), so the copy is recognisable. Two senders (``notify
run`` and the one inside ``appban serve``) never hold the same row: a claim is one
write transaction. A batch stops taking new messages at half the lease, so its results
are recorded before anyone else may claim its rows.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from appban import settings
from appban.clock import Micros, format_time, now_micros
from appban.errors import BadInput, NotFound, one_line
from appban.notify import channels
from appban.notify.channels import (
    Mail,
    MailChannel,
    Permanent,
    Post,
    Result,
    Sent,
    Temporary,
    WebhookChannel,
    error_text,
)
from appban.policy.lifecycle import get_policy
from appban.store import failure_kind
from appban.store.records import Notice
from appban.workspace import Workspace

log = logging.getLogger("appban.notify")

# Notices claimed in one round, per connection of the mail pool: enough that the round's
# transaction (an fsync, a few milliseconds) is a small part of its time, few enough that
# a sender killed mid-batch leaves few messages whose acceptance it never recorded (sent
# again after the lease, with the same Message-ID).
PER_CONNECTION = 25
MAX_WAIT: Micros = 6 * 3600 * 1_000_000  # the longest wait between two tries


@dataclass
class Summary:
    """What rounds did: notices claimed, and what became of them."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0  # failed for now: pending again, to be tried later
    failed: int = 0
    released: int = 0  # claimed but not tried (a stop, or the batch's time ran out)
    left: int | None = None  # pending or being sent, when counted (at the end of a run)

    def add(self, other: Summary) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.released += other.released

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if doc["left"] is None:
            del doc["left"]
        return doc

    def line(self) -> str:
        text = f"{self.sent:,} sent, {self.retried:,} to retry, {self.failed:,} failed"
        if self.left is not None:
            text += f", {self.left:,} left in the outbox"
        return text


class Sender:
    """One process's sender: a workspace (its own connection to the store) and channels.

    ``now`` fixes the clock (a replay, or a test); by default the sender reads the real
    clock at each transaction. ``lock_wait`` bounds how long evaluating and claiming wait
    for another writer (a busy round is skipped); recording results always waits the
    full APPBAN_BUSY_TIMEOUT: those messages are already out."""

    def __init__(
        self,
        db: str,
        *,
        now: Micros | None = None,
        mail: MailChannel | None = None,
        webhooks: WebhookChannel | None = None,
        stop: threading.Event | None = None,
        lock_wait: float | None = None,
    ) -> None:
        # Settings first: a bad one is one line before anything is opened or claimed.
        # What every notice needs, checked once here rather than failing each notice:
        # a bad one would mark the whole outbox failed (or stop reminders being planned).
        for name in ("mail_from", "public_url", "waking_hours"):
            settings.get(name)
        settings.duration("link_ttl")
        settings.duration("exemption_warning")
        self.lease = settings.duration("notify_lease")
        self.retry = settings.duration("notify_retry")
        self.max_attempts = int(settings.get("notify_max_attempts"))
        self.busy_timeout = float(settings.get("busy_timeout"))
        connections = int(settings.get("smtp_connections"))
        self.batch = PER_CONNECTION * connections
        self.mail = mail if mail is not None else channels.mail_channel()
        self.webhooks = webhooks if webhooks is not None else WebhookChannel.from_settings()
        self.stop = stop if stop is not None else threading.Event()
        self.lock_wait = self.busy_timeout if lock_wait is None else min(lock_wait, self.busy_timeout)
        self.interval = float(settings.get("notify_interval"))
        self._evaluated: float | None = None
        self._next: list[Notice] = []  # claimed with the last round's results, for the next round
        self.ws = Workspace(db, now_micros() if now is None else now, create=False, live=now is None)

    def close(self) -> None:
        try:
            self._release_next()
        finally:
            self.mail.close()
            self.webhooks.close()
            self.ws.close()

    # -- a round -----------------------------------------------------------------------

    def round(self) -> Summary:
        """Claim a batch (or take the one the last round claimed), deliver it, record the
        results, and, when the batch came full, claim the next in the same transaction."""
        ws = self.ws
        ws.store.set_lock_wait(self.lock_wait)
        claimed, self._next = self._next, []
        if not claimed:
            if self._evaluation_due():
                self._evaluate()
            with ws.writing(evaluates=False):
                claimed = ws.store.claim_notices(ws.now, self.batch, ws.now + self.lease)
        if not claimed:
            return Summary()
        results: dict[int, Result] = {}
        try:
            self._deliver(claimed, results)
        except BaseException:
            self._record(claimed, results, more=False)
            raise
        more = len(claimed) == self.batch and len(results) == len(claimed) and not self._evaluation_due()
        return self._record(claimed, results, more=more)

    def _evaluate(self) -> None:
        """Time's states and notices up to now; once a pass, and every APPBAN_NOTIFY_INTERVAL
        seconds of a long one (each is a write transaction of its own)."""
        ws = self.ws
        with ws.writing():
            ws.evaluator.evaluate_due(ws.now)
        self._evaluated = time.monotonic()

    def _evaluation_due(self) -> bool:
        return self._evaluated is None or time.monotonic() - self._evaluated >= self.interval

    def _release_next(self) -> None:
        """Rows claimed for a round that will not run go back untried."""
        rows, self._next = self._next, []
        if rows:
            with self.ws.writing(evaluates=False):
                for notice in rows:
                    self.ws.store.finish_notice(
                        notice.id,
                        "pending",
                        self.ws.now,
                        error=notice.last_error,
                        lease=notice.claimed_until,
                        untried=True,
                    )

    def _deliver(self, claimed: list[Notice], results: dict[int, Result]) -> None:
        deadline = time.monotonic() + self.lease / 2_000_000
        self._broken: Exception | None = None
        by_channel: dict[str, list[Notice]] = {}
        for notice in claimed:
            by_channel.setdefault(notice.channel, []).append(notice)
        for channel, rows in by_channel.items():
            if channel == "mail":
                results.update(self.mail.deliver(self._mails(rows, results, deadline)))
            elif channel == "webhook":
                results.update(self.webhooks.deliver(self._posts(rows, results, deadline)))
            else:
                results.update(dict.fromkeys((n.id for n in rows), Permanent(f"unknown channel {channel[:40]!r}")))
            if self._broken is not None:
                # The store failed while rendering: what was sent is recorded, the rest released.
                raise self._broken

    def _rendered(self, rows: list[Notice], results: dict[int, Result], deadline: float) -> Iterator[tuple[Any, Any]]:
        """(notice, rendering) for each row, rendered as its channel takes it. A row that
        cannot be rendered is failed here; none is begun after a stop or the deadline
        (those rows are released, untried)."""
        from appban.notify.render import Renderer

        renderer = Renderer(self.ws.store, self.ws.now)
        for notice in rows:
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                rendered = renderer.render(notice)
            except (BadInput, ValueError, LookupError, TypeError, UnicodeError) as exc:
                detail = exc.detail if isinstance(exc, BadInput) else f"{type(exc).__name__}: {exc}"
                where = f"{exc.field}: " if isinstance(exc, BadInput) and exc.field else ""
                results[notice.id] = Permanent(error_text(f"cannot render: {where}{detail}"))
                continue
            except Exception as exc:  # the store, not the notice: stop here, raise once recorded
                self._broken = exc
                return
            yield notice, rendered

    def _mails(self, rows: list[Notice], results: dict[int, Result], deadline: float) -> Iterator[Mail]:
        from appban.notify.render import message_bytes

        for notice, r in self._rendered(rows, results, deadline):
            try:
                data = message_bytes(r)
                sender = _envelope_sender(r.sender)
            except (ValueError, TypeError, LookupError) as exc:
                results[notice.id] = Permanent(error_text(f"cannot write the message: {type(exc).__name__}: {exc}"))
                continue
            yield Mail(notice.id, sender, r.to, data)

    def _posts(self, rows: list[Notice], results: dict[int, Result], deadline: float) -> Iterator[Post]:
        from appban.notify.render import webhook_body
        from appban.policy.evaluator import load_policy

        urls: dict[str, str] = {}
        for notice, r in self._rendered(rows, results, deadline):
            if notice.policy_id not in urls:
                row = self.ws.store.get_policy(notice.policy_id)
                urls[notice.policy_id] = load_policy(row).notices.webhook if row is not None else ""
            url = urls[notice.policy_id]
            if not url:
                results[notice.id] = Permanent(f"policy {notice.policy_id} names no webhook any more")
                continue
            yield Post(notice.id, url, webhook_body(r))

    # -- results -----------------------------------------------------------------------

    def _record(self, claimed: list[Notice], results: dict[int, Result], *, more: bool) -> Summary:
        """Every claimed row's result, in one transaction (waiting for the lock as long as
        the lease lasts: until then no one else sends these rows); with ``more``, the next
        batch is claimed in it too."""
        give_up = time.monotonic() + max(self.lease / 1_000_000, self.busy_timeout)
        self.ws.store.set_lock_wait(self.busy_timeout)
        while True:
            try:
                summary, self._next = self._write_results(claimed, results, more=more and not self.stop.is_set())
                return summary
            except Exception as exc:
                if failure_kind(exc) != "busy" or time.monotonic() >= give_up:
                    raise
                time.sleep(0.2)

    def _write_results(
        self, claimed: list[Notice], results: dict[int, Result], *, more: bool
    ) -> tuple[Summary, list[Notice]]:
        ws = self.ws
        outcome: dict[str, list[int]] = {"sent": [], "retry": [], "failed": [], "released": []}
        with ws.writing(evaluates=False):
            now = ws.now
            for notice in claimed:
                result = results.get(notice.id)
                if result is None:
                    ws.store.finish_notice(
                        notice.id, "pending", now, error=notice.last_error, lease=notice.claimed_until, untried=True
                    )
                    outcome["released"].append(notice.id)
                elif isinstance(result, Sent):
                    ws.store.finish_notice(notice.id, "sent", now)
                    outcome["sent"].append(notice.id)
                elif isinstance(result, Temporary) and notice.attempts < self.max_attempts:
                    wait = min(self.retry * 2 ** max(notice.attempts - 1, 0), MAX_WAIT)
                    ws.store.finish_notice(
                        notice.id, "pending", now, error=result.error, next_try=now + wait, lease=notice.claimed_until
                    )
                    outcome["retry"].append(notice.id)
                else:
                    error = result.error
                    if isinstance(result, Temporary):
                        error = error_text(f"{error} (after {notice.attempts} tries)")
                    ws.store.finish_notice(notice.id, "failed", now, error=error, lease=notice.claimed_until)
                    outcome["failed"].append(notice.id)
            policies = {n.policy_id for n in claimed}
            subject = next(iter(policies)) if len(policies) == 1 else "notices"
            ws.audit.append(now, "notices", subject, {k: v for k, v in outcome.items() if v})
            following = ws.store.claim_notices(now, self.batch, now + self.lease) if more else []
        summary = Summary(
            claimed=len(claimed),
            sent=len(outcome["sent"]),
            retried=len(outcome["retry"]),
            failed=len(outcome["failed"]),
            released=len(outcome["released"]),
        )
        return summary, following

    def left(self) -> int:
        counts = self.ws.store.notice_counts()
        return sum(n for (_p, _k, state), n in counts.items() if state in ("pending", "sending"))


@functools.lru_cache(maxsize=64)
def _envelope_sender(text: str) -> str:
    """The address of a From (``Name <addr>``): the envelope sender, MAIL FROM."""
    from appban.policy.model import split_address

    return split_address(text)[1]


# -- running -------------------------------------------------------------------------------


def run_once(
    db: str, now: Micros | None = None, *, sender: Sender | None = None, stop: threading.Event | None = None
) -> Summary:
    """One pass over what is due: rounds until none claims anything (a notice that failed
    for now waits for its next try, after this pass), or until ``stop`` is set."""
    own = sender is None
    sender = sender or Sender(db, now=now, stop=stop)
    total = Summary()
    try:
        while True:
            summary = sender.round()
            total.add(summary)
            if not summary.claimed or sender.stop.is_set():
                break
        total.left = sender.left()
    finally:
        if own:
            sender.close()
    return total


def run(db: str, stop: threading.Event, interval: float | None = None) -> Summary:
    """Rounds until ``stop`` is set: at once while batches come full, else every
    ``interval`` seconds (APPBAN_NOTIFY_INTERVAL). A busy database skips a round."""
    wait = float(settings.get("notify_interval")) if interval is None else interval
    sender = Sender(db, stop=stop)
    total = Summary()
    try:
        while not stop.is_set():
            try:
                summary = sender.round()
            except Exception as exc:
                if failure_kind(exc) != "busy":
                    raise
                log.info("the database is busy; trying again in %g s", wait)
                summary = Summary()
            total.add(summary)
            if summary.sent or summary.failed or summary.retried:
                log.info("notices: %s", summary.line())
            if summary.claimed < sender.batch or summary.released:
                stop.wait(wait)
        total.left = sender.left()
    finally:
        sender.close()
    return total


class Background:
    """The sender inside ``appban serve``: a daemon thread running rounds every
    APPBAN_NOTIFY_INTERVAL seconds. ``stop`` lets the message in flight finish and its
    batch be recorded. Counters (``sent``, ``failed``, ``retried``) are for metrics."""

    def __init__(self, db: str, interval: float | None = None) -> None:
        self.db = db
        self.interval = float(settings.get("notify_interval")) if interval is None else interval
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.rounds = 0
        self.errors = 0
        self.state = "stopped"  # stopped | running | waiting_for_lock | failing | not_configured
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def configured(self) -> bool:
        """A mail channel is set (APPBAN_NOTIFY_FILE or APPBAN_SMTP_URL)."""
        return bool(str(settings.get("notify_file")).strip() or str(settings.get("smtp_url")).strip())

    def counters(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "retried": self.retried, "errors": self.errors}

    def start(self) -> None:
        if self._thread is not None:
            return
        if not self.configured:
            self.state = "not_configured"
            log.warning("notices are not sent: set APPBAN_SMTP_URL or APPBAN_NOTIFY_FILE")
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="appban-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        limit = float(settings.get("smtp_timeout")) * 2 + 10 if timeout is None else timeout
        thread.join(limit)
        if thread.is_alive():
            log.warning("the notice sender did not stop within %g s; its batch is recorded when it ends", limit)

    def _run(self) -> None:
        sender: Sender | None = None
        self.state = "running"
        try:
            while not self._stop.is_set():
                full = False
                try:
                    if sender is None:
                        # Wait for another writer at most one interval: a long import must not
                        # make the sender look stuck, and a waiting writer only queues behind it.
                        sender = Sender(self.db, stop=self._stop, lock_wait=max(self.interval, 0.5))
                    summary = sender.round()
                    self._counted(summary)
                    full = summary.claimed >= sender.batch and not summary.released
                except BadInput as exc:  # a setting: it will not change while this process runs
                    self.state = "not_configured"
                    log.warning("notices are not sent: %s", exc)
                    return
                except Exception as exc:
                    sender = self._failed(exc, sender)
                if not full:
                    self._stop.wait(self.interval)
        finally:
            if sender is not None:
                sender.close()
            if self.state == "running":
                self.state = "stopped"

    def _counted(self, summary: Summary) -> None:
        self.rounds += 1
        self.sent += summary.sent
        self.failed += summary.failed
        self.retried += summary.retried
        if self.state != "running":
            log.info("the notice sender is running again (was %s)", self.state)
        self.state = "running"
        if summary.sent or summary.failed or summary.retried:
            log.info("notices: %s", summary.line())

    def _failed(self, exc: BaseException, sender: Sender | None) -> Sender | None:
        self.errors += 1
        if failure_kind(exc) == "busy":
            if self.state != "waiting_for_lock":
                log.info("the notice sender waits for another writer's lock; trying again later")
            self.state = "waiting_for_lock"
            return sender
        log.warning("the notice sender failed; trying again in %g s: %s", self.interval, _message(exc))
        self.state = "failing"
        if sender is not None:
            sender.close()  # start afresh, on a new connection
        return None


def _message(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 300)


# -- the outbox, as the command line shows it ------------------------------------------------


def outbox_status(ws: Workspace, policy_id: str | None = None) -> dict[str, Any]:
    """Counts per policy, kind and state; per policy the earliest time a pending notice
    may go, and the last errors of failed ones (each error once, with how many)."""
    if policy_id is not None:
        get_policy(ws, policy_id)  # NotFound for a policy that is not there
    counts = ws.store.notice_counts(policy_id)
    policies: dict[str, dict[str, Any]] = {}
    for (policy, kind, state), n in counts.items():
        entry = policies.setdefault(policy, {"policy": policy, "states": {}, "kinds": {}, "next_due": None})
        entry["states"][state] = entry["states"].get(state, 0) + n
        entry["kinds"].setdefault(kind, {})[state] = n
    for policy, entry in policies.items():
        due: Micros | None = None
        errors: dict[str, int] = {}
        for notice in _all(ws, policy, "pending"):
            at = max(notice.due_at, notice.next_try or 0)
            due = at if due is None else min(due, at)
        for notice in _all(ws, policy, "failed"):
            errors[notice.last_error] = errors.get(notice.last_error, 0) + 1
        entry["next_due"] = format_time(due) if due is not None else None
        entry["errors"] = [{"error": e, "count": n} for e, n in sorted(errors.items(), key=lambda x: (-x[1], x[0]))]
    totals: dict[str, int] = {}
    for (_p, _k, state), n in counts.items():
        totals[state] = totals.get(state, 0) + n
    return {"now": format_time(ws.now), "totals": totals, "policies": list(policies.values())}


def _all(ws: Workspace, policy_id: str, state: str) -> Iterable[Notice]:
    after = 0
    while True:
        page = ws.store.list_notices(policy_id=policy_id, state=state, after_id=after, limit=5000)
        yield from page
        if len(page) < 5000:
            return
        after = page[-1].id


def notice_doc(n: Notice) -> dict[str, Any]:
    return {
        "id": n.id,
        "policy": n.policy_id,
        "person": n.person,
        "kind": n.kind,
        "occasion": n.occasion,
        "channel": n.channel,
        "devices": [f"dev-{d}" for d in n.devices],
        "created_at": format_time(n.created_at),
        "due_at": format_time(n.due_at),
        "state": n.state,
        "attempts": n.attempts,
        "next_try": format_time(n.next_try) if n.next_try is not None else None,
        "sent_at": format_time(n.sent_at) if n.sent_at is not None else None,
        "last_error": n.last_error,
    }


def retry_failed(ws: Workspace, policy_id: str | None, ids: list[int]) -> dict[str, Any]:
    """Failed notices (these, or the policy's, or all) pending again with their tries
    reset; audited. Naming a notice that is not there is bad input."""
    if policy_id is not None:
        get_policy(ws, policy_id)
    with ws.writing(evaluates=False):
        for notice_id in ids:
            if ws.store.get_notice(notice_id) is None:
                raise NotFound(f"no notice {notice_id}", field="ID")
        count = ws.store.retry_notices(policy_id=policy_id, ids=ids or None)
        if count:
            data: dict[str, Any] = {"count": count}
            if ids:
                data["ids"] = ids
            ws.audit.append(ws.now, "notices.retry", policy_id or "notices", data)
    return {"now": format_time(ws.now), "policy": policy_id, "ids": ids, "retried": count}
