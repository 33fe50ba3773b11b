"""The campaign, event by event on a simulated clock, through appban's own code paths.

Check-ins go through the ingestor as an import would send them; the policy, the
exemption and the attestation through the same functions as ``appban policy apply``,
``exempt add`` and ``attest``; deadlines and ageing through ``evaluate_due``, at every
simulated hour and before every action, so that each state changes when it would have.
Every number a day shows is read back from the store (``_counts``).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appban.clock import Micros, format_time
from appban.inventory.ingest import Ingestor
from appban.output import plural
from appban.policy import lifecycle
from appban.progress import Tracker
from appban.sim._counts import Counts
from appban.sim._database import DEMO_KEY
from appban.sim._delivery import Deliver
from appban.sim.fleet import SOCIAL_MEDIA, Company
from appban.sim.timeline import DAY, HOUR, Timeline, policy_yaml
from appban.workspace import Workspace

POLICY_ID = "tiktok-mail"

# Event order at the same instant: devices report, people act, then the day is counted.
_CHECKIN, _ACTION, _DAY_END = 0, 1, 2
# Check-ins per transaction: each commit rewrites every page it touched, so fewer,
# larger transactions write a fraction of the bytes (the WAL, then the checkpoint).
_BATCH = 50_000


@dataclass
class Day:
    day: int
    date: str
    events: list[str] = field(default_factory=list)
    notified: int = 0  # notices delivered this day other than reminders (memo, blocked, restored, ...)
    reminded: int = 0  # reminders delivered this day
    states: dict[str, int] = field(default_factory=dict)
    people_affected: int = 0
    removed: int = 0
    blocked: int = 0  # devices that became blocked this day
    restored: int = 0  # devices blocked before and allowed again this day

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Outcome:
    fleet: dict[str, Any]
    dry_run: dict[str, Any]
    days: list[Day]
    exemption: dict[str, Any]
    attestation: dict[str, Any]
    totals: dict[str, int]
    checkins: int


class Campaign:
    def __init__(
        self, ws: Workspace, company: Company, t: Timeline, progress: Tracker, deliver: Deliver | None = None
    ) -> None:
        self.ws = ws
        self.deliver_at = deliver
        self.sent: Counter[str] = Counter()  # notices delivered, by kind
        self.company = company
        self.t = t
        self.progress = progress
        self.ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
        self.days = [Day(d, t.date(d)) for d in range(t.days)]
        self.counts: Counts | None = None
        self.fleet: dict[str, Any] = {}
        self.dry_run: dict[str, Any] = {}
        self.exemption: dict[str, Any] = {}
        self.attestation: dict[str, Any] = {}
        self.totals: dict[str, int] = {}
        self.batch: list[tuple[Micros, int]] = []

    # -- the timeline --------------------------------------------------------------

    def actions(self) -> list[tuple[Micros, Callable[[Micros], None]]]:
        t = self.t
        first, last = t.reminder_times()
        return [
            (t.effective, self.launch),
            (t.effective + DAY + 2 * HOUR, self.exempt),
            (first, lambda at: self.remind(at, "24h")),
            (t.effective + 3 * DAY - 1 * HOUR, self.attest),
            (last, lambda at: self.remind(at, "2h")),
            (t.deadline, self.enforce),
        ]

    def events(self) -> list[tuple[Micros, int, int]]:
        """(time, order, index): check-ins index devices, actions index ``actions()``."""
        end = self.t.end
        out: list[tuple[Micros, int, int]] = []
        for i, sim in enumerate(self.company.devices):
            for at in (sim.first_seen, sim.refresh_at, sim.removal_at):
                if at is not None and at <= end:
                    out.append((at, _CHECKIN, i))
        out += [(at, _ACTION, i) for i, (at, _fn) in enumerate(self.actions())]
        out += [(self.t.day_close(d), _DAY_END, d) for d in range(self.t.days)]
        out.sort()
        return out

    def run(self) -> Outcome:
        self.load_people()
        events = self.events()
        actions = self.actions()
        checkins = sum(e[1] == _CHECKIN for e in events)
        self.progress.phase("inventory before the memo", total=checkins)
        for at, order, index in events:
            if order == _CHECKIN:
                self.batch.append((at, index))
                if len(self.batch) >= _BATCH:
                    self.flush()
                continue
            self.flush()
            if order == _ACTION:
                actions[index][1](at)
            else:
                self.close_day(index, at)
        self.finish()
        return Outcome(
            self.fleet,
            self.dry_run,
            self.days,
            self.exemption,
            self.attestation,
            self.totals,
            self.ingestor.counts.total,
        )

    # -- moving the clock ----------------------------------------------------------

    def load_people(self) -> None:
        ws = self.ws
        with ws.writing():
            # Marked first, so that an interrupted demo is still recognised as one.
            ws.store.set_meta(DEMO_KEY, "1")
            ws.store.put_people(self.company.people, ws.now)

    def flush(self) -> None:
        """Ingest the check-ins waiting, time-driven changes first at every simulated hour."""
        if not self.batch:
            return
        ws, devices, ingest = self.ws, self.company.devices, self.ingestor.ingest
        hour = None
        with ws.writing():
            for at, index in self.batch:
                ws.now = at
                if at // HOUR != hour:
                    hour = at // HOUR
                    ws.evaluator.evaluate_due(at)
                ingest(devices[index].checkin(at), at)
        self.progress.advance(len(self.batch))
        self.batch = []

    def advance(self, at: Micros) -> None:
        """Bring every state to ``at``: deadlines, expiries, inventories ageing."""
        ws = self.ws
        with ws.writing():
            ws.now = at
            ws.evaluator.evaluate_due(at)

    def day(self, at: Micros) -> Day:
        return self.days[self.t.day_of(at)]

    def count(self) -> Counts:
        assert self.counts is not None, "the policy is applied first"
        return self.counts

    # -- what happens --------------------------------------------------------------

    def launch(self, at: Micros) -> None:
        """Preview the policy, switch it on, send the memo."""
        self.advance(at)
        with tempfile.TemporaryDirectory(prefix="appban-demo-") as folder:
            path = os.path.join(folder, f"{POLICY_ID}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(policy_yaml(self.t, POLICY_ID))
            preview = lifecycle.apply(self.ws, path, dry_run=True)
            lifecycle.apply(self.ws, path, dry_run=False)
        policy, _row = lifecycle.get_policy(self.ws, POLICY_ID)
        self.counts = Counts(self.ws.store, policy)
        self.progress.phase(f"campaign day 0, {self.t.date(0)}")
        self.fleet = self.counts.fleet()
        keep = ("in_scope", "violating_now", "unverified", "would_be_denied_at_deadline")
        self.dry_run = {k: preview[k] for k in (*keep, "people_affected")}
        self.dry_run["memo"] = preview["notices"]["memo"]["people"]
        sent = self.deliver(at)
        self.totals["memo_at_launch"] = sent["memo"]
        self.day(at).events.append(f"policy on at {_clock(at)}; memo to {plural(sent['memo'], 'person', 'people')}")

    def remind(self, at: Micros, label: str) -> None:
        self.advance(at)
        sent = self.deliver(at)
        waiting = self.count().waiting("reminder")
        later = f" ({waiting:,} more in their waking hours)" if waiting else ""
        self.day(at).events.append(f"{label} reminder to {plural(sent['reminder'], 'person', 'people')}{later}")

    def enforce(self, at: Micros) -> None:
        self.advance(at)
        devices, people = self.count().changed(at, at + 1, to="blocked")
        self.totals["removed_before_deadline"] = self.count().removed(self.t.effective, at)
        self.totals["blocked_at_deadline"] = devices
        self.totals["people_cut_off"] = people
        told = self.deliver(at)["blocked"]
        self.day(at).events.append(f"deadline {_clock(at)}: {plural(devices, 'device')} blocked, {told:,} told")

    def exempt(self, at: Micros) -> None:
        self.advance(at)
        person = self.company.exempt_person
        until = self.t.deadline + 30 * DAY
        self.exemption = lifecycle.add_exemption(
            self.ws,
            POLICY_ID,
            person=person.email,
            device_ref=None,
            until=until,
            reason=f"runs the company's TikTok account ({SOCIAL_MEDIA} team)",
        )
        self.day(at).events.append(f"exemption for {person.email} ({SOCIAL_MEDIA})")

    def attest(self, at: Micros) -> None:
        self.advance(at)
        sim = self.company.attester
        stored = self.ws.store.get_device_by_key(sim.source, sim.device.id)
        assert stored is not None, "the attester's phone checked in before the memo"
        self.attestation = lifecycle.attest(self.ws, POLICY_ID, stored.ref, stored.owner)
        self.day(at).events.append(f"{stored.owner} attests removal on {stored.ref}")

    def deliver(self, at: Micros) -> Counter[str]:
        """Send the notices due at ``at`` through appban's sender; count them on the day."""
        if self.deliver_at is None:
            return Counter()
        sent = self.deliver_at(self.ws.store, at)
        self.sent.update(sent)
        self.totals["memo"] = self.sent["memo"]
        day = self.day(at)
        day.reminded += sent["reminder"]
        day.notified += sum(n for kind, n in sent.items() if kind != "reminder")
        return sent

    def close_day(self, index: int, at: Micros) -> None:
        self.advance(at)
        self.deliver(at)
        if index + 1 < self.t.days:
            self.progress.phase(f"campaign day {index + 1}, {self.t.date(index + 1)}")
        day = self.days[index]
        if self.counts is None:
            return
        start, end = self.t.day_start(index), self.t.day_start(index + 1)
        day.states = self.counts.states()
        day.people_affected = self.counts.people_in("violating", "blocked")
        day.removed = self.counts.removed(start, end)
        day.blocked = self.counts.changed(start, end, to="blocked")[0]
        day.restored = self.counts.changed(start, end, left="blocked")[0]

    def finish(self) -> None:
        """Totals for the summary, from the store like everything else."""
        counts, t = self.count(), self.t
        end = t.day_start(t.days)
        self.totals["removed_after_deadline"] = counts.removed(t.deadline, end)
        self.totals["restored"] = counts.changed(t.deadline, end, left="blocked")[0]
        states = counts.states()
        self.totals["still_blocked"] = states["blocked"]
        self.totals["still_violating"] = states["violating"]
        self.totals["people_still_blocked"] = counts.people_in("blocked")
        if self.deliver_at is not None:
            self.deliver(end - 1)


def _clock(at: Micros) -> str:
    return (format_time(at) or "")[11:16] + "Z"
