"""Planning notices: which person is told what, and when, written to the outbox in the
same transaction as the change that causes it.

The evaluator tells the planner of every state change and gate decision change it
writes; the policy lifecycle of applies, withdrawals and exemptions; time
(``tick``, run by every time-driven evaluation) of the moments a policy names. Each
notice is a row (``Store.add_notices``) saying what it is about, unique per (policy,
person, kind, occasion, channel), so planning one twice keeps one. A crash before the
commit loses the change and its notices together; after it, both are there.

- memo: to the policy's audience; at the first tick at or after ``effective`` (the
  wave), and to each person who joins the audience later.
- reminder: to people with a device violating or unverified; at each reminder moment
  at or after the wave and before the deadline, due in the person's waking hours.
- policy_changed: to people sent the memo; at an apply that moves the deadline or
  switches between monitor and enforce.
- blocked / restored: to the device's owner; when the gate decision turns deny (or
  back to allow) because of the policy.
- correction: to people sent any notice; at withdrawal, pending ones being cancelled.
- exemption / exemption_expiring: to the exemption's person (or device owner); at
  grant, and ``APPBAN_EXEMPTION_WARNING`` before it ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appban import settings
from appban.clock import Micros
from appban.policy.model import Policy
from appban.store import Store
from appban.store.records import Exemption, NewNotice

AUDIENCE_STATES: dict[str, tuple[str, ...] | None] = {
    "affected": ("violating", "unverified", "blocked"),
    "in_scope": ("compliant", "violating", "blocked", "unverified", "exempt"),
    "all": None,
}
# Who a reminder is for: a device still to act on before the deadline.
REMIND_STATES = ("violating", "unverified")
MEMO_MARK = "memo"
_FLUSH_AT = 20_000


def reminder_mark(at: Micros, life: int = 0) -> str:
    return f"reminder:{at}" + (f"@{life}" if life else "")


def memo_mark(life: int = 0) -> str:
    """A policy's memo wave: once per life (a withdrawn policy applied again is a new one)."""
    return MEMO_MARK + (f"@{life}" if life else "")


def life_of(marks: dict[str, Micros]) -> int:
    """The policy's current life: 0 until it is first applied again after a withdrawal,
    then the revision that brought it back."""
    lives = [int(m[5:]) for m in marks if m.startswith("life:") and m[5:].isdigit()]
    return max(lives, default=0)


def occasion(life: int, text: str = "") -> str:
    """An occasion within a life: memo and correction are once per life, so a policy
    applied again after its withdrawal tells its audience again."""
    if not life:
        return text
    return f"{text}@{life}" if text else f"life-{life}"


def channels(policy: Policy) -> tuple[str, ...]:
    return ("mail", "webhook") if policy.notices.webhook else ("mail",)


def waking_hours() -> tuple[dt.time, dt.time]:
    """APPBAN_WAKING_HOURS (checked by its setting: HH:MM-HH:MM, the start first)."""
    start, end = str(settings.get("waking_hours")).split("-")
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


@lru_cache(maxsize=1024)
def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name) if name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def in_waking_hours(at: Micros, timezone: str, deadline: Micros, hours: tuple[dt.time, dt.time]) -> Micros:
    """When a reminder due ``at`` goes: then, if it is within the person's waking hours;
    else at the start of the next window, unless the deadline comes first."""
    zone = _zone(timezone)
    local = dt.datetime.fromtimestamp(at / 1_000_000, dt.UTC).astimezone(zone)
    start, end = hours
    if start <= local.time() < end:
        return at
    day = local.date() if local.time() < start else local.date() + dt.timedelta(days=1)
    opens = dt.datetime.combine(day, start, tzinfo=zone)
    opens_at = int(opens.timestamp()) * 1_000_000
    return at if opens_at >= deadline else opens_at


class Planner:
    """Writes notices into the outbox; owned by one ``Evaluator`` (one connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.active: dict[str, Policy] = {}
        self._marks: dict[str, dict[str, Micros]] = {}
        self._decisions: list[tuple[int, str, str, Micros]] = []  # device, policy, kind, at

    def reload(self, policies: Iterable[Policy]) -> None:
        self.active = {p.id: p for p in policies}
        self._marks.clear()

    def marks(self, policy_id: str) -> dict[str, Micros]:
        found = self._marks.get(policy_id)
        if found is None:
            found = self._marks[policy_id] = self.store.notice_marks(policy_id)
        return found

    def life(self, policy_id: str) -> int:
        return life_of(self.marks(policy_id))

    def waved(self, policy_id: str) -> bool:
        """Whether the memo wave of the policy's current life happened."""
        return memo_mark(self.life(policy_id)) in self.marks(policy_id)

    def _mark(self, policy_id: str, mark: str, at: Micros) -> bool:
        self.marks(policy_id)[mark] = at
        return self.store.add_notice_mark(policy_id, mark, at)

    def _add(
        self,
        policy: Policy,
        people: Iterable[str],
        kind: str,
        occasion: str,
        at: Micros,
        *,
        due: Micros | None = None,
        devices: dict[str, str] | None = None,
    ) -> int:
        rows: list[NewNotice] = []
        count = 0
        for person in people:
            count += 1
            device_text = devices.get(person, "") if devices else ""
            for channel in channels(policy):
                rows.append(
                    NewNotice(policy.id, person, kind, occasion, channel, device_text, at, at if due is None else due)
                )
            if len(rows) >= _FLUSH_AT:
                self.store.add_notices(rows)
                rows = []
        if rows:
            self.store.add_notices(rows)
        return count

    # -- time ------------------------------------------------------------------------

    def tick(self, now: Micros) -> int:
        """Plan what the policies' own moments bring by ``now``: the memo wave, reminders."""
        planned = 0
        for policy in self.active.values():
            if now < policy.effective:
                continue
            marks = self.marks(policy.id)
            life = life_of(marks)
            if memo_mark(life) not in marks:
                self._mark(policy.id, memo_mark(life), now)
                audience = self.store.audience(policy.id, AUDIENCE_STATES[policy.notices.audience])
                planned += self._add(policy, (email for email, _tz in audience), "memo", occasion(life), now)
            # None that would fall before the memo or before the last change of deadline
            # (its policy_changed said the new one), and none once the deadline passed.
            changed = [at for mark, at in marks.items() if mark.startswith(f"changed@{life}:")]
            since = max([marks[memo_mark(life)], *changed])
            missed = sorted(
                policy.deadline - offset
                for offset in policy.reminders
                if policy.deadline - offset <= now and reminder_mark(policy.deadline - offset, life) not in marks
            )
            for at in missed:
                self._mark(policy.id, reminder_mark(at, life), now)
            # Moments missed together (the clock jumped, the sender was down) make one
            # reminder, the latest, not one each.
            if missed and missed[-1] >= since and now < policy.deadline:
                planned += self._remind(policy, missed[-1], now, life)
        return planned

    def _remind(self, policy: Policy, at: Micros, now: Micros, life: int) -> int:
        hours = waking_hours()
        due_by_zone: dict[str, Micros] = {}
        rows: list[NewNotice] = []
        count = 0
        for email, zone in self.store.audience(policy.id, REMIND_STATES):
            due = due_by_zone.get(zone)
            if due is None:
                due = due_by_zone[zone] = in_waking_hours(now, zone, policy.deadline, hours)
            count += 1
            for channel in channels(policy):
                rows.append(NewNotice(policy.id, email, "reminder", occasion(life, str(at)), channel, "", now, due))
            if len(rows) >= _FLUSH_AT:
                self.store.add_notices(rows)
                rows = []
        if rows:
            self.store.add_notices(rows)
        return count

    # -- states and decisions ----------------------------------------------------------

    def states_changed(self, policy_id: str, changes: list[tuple[int, str | None, str]], at: Micros) -> None:
        """Devices' states changed under a policy: (device id, old state, new state).

        Owners who joined the audience after the memo wave are sent the memo; owners
        left with no device to act on have their pending reminders cancelled.
        """
        policy = self.active.get(policy_id)
        if policy is None or not changes or not self.waved(policy_id):
            return
        audience = AUDIENCE_STATES[policy.notices.audience]
        if audience is None:  # everyone: a device new to appban may bring a new owner
            joined = [d for d, old, _new in changes if old is None]
        else:
            joined = [d for d, old, new in changes if new in audience and old not in audience]
        cleared = [d for d, old, new in changes if old in REMIND_STATES and new not in REMIND_STATES]
        if joined:
            self._memo_for_devices(policy, joined, at)
        if cleared:
            left = sorted({o for o in self.store.owners_of(cleared).values() if o})
            still = self.store.devices_in_states(policy_id, left, REMIND_STATES)
            for owner in left:
                if owner not in still:
                    self.store.cancel_notices(
                        policy_id, kinds=("reminder",), person=owner, at=at, why="nothing left to act on"
                    )

    def _memo_for_devices(self, policy: Policy, device_ids: list[int], at: Micros) -> int:
        owners = self.store.owners_of(device_ids)
        people = sorted({o for o in owners.values() if o})
        return self._add(policy, people, "memo", occasion(self.life(policy.id)), at)

    def owner_changed(self, device_id: int, at: Micros) -> None:
        """A device changed hands: its new owner joins each audience its states are in."""
        states = self.store.device_states(device_id)
        for policy in self.active.values():
            row = states.get(policy.id)
            audience = AUDIENCE_STATES[policy.notices.audience]
            if row is None or not self.waved(policy.id):
                continue
            if audience is None or row.state in audience:
                self._memo_for_devices(policy, [device_id], at)

    def decision_changed(self, device_id: int, old: tuple[str, str], new: tuple[str, str], at: Micros) -> None:
        """A device's gate decision changed: mail cut (blocked) or given back (restored)
        because of an active policy. A withdrawal's lifting is the correction's to tell."""
        (old_decision, old_reason), (new_decision, new_reason) = old, new
        if old_decision != "deny" and new_decision == "deny":
            policy_id = new_reason.partition(":")[2]
            if policy_id in self.active:
                self._decisions.append((device_id, policy_id, "blocked", at))
        elif old_decision == "deny" and new_decision != "deny":
            policy_id = old_reason.partition(":")[2]
            if policy_id in self.active:
                self._decisions.append((device_id, policy_id, "restored", at))
        if len(self._decisions) >= _FLUSH_AT:
            self.flush()

    def discard(self) -> None:
        """The transaction rolled back: what it gathered and the marks read in it go too."""
        self._decisions = []
        self._marks.clear()

    def flush(self) -> None:
        """Write the blocked and restored notices gathered: one per person, policy and
        moment, naming each of their devices it concerns."""
        if not self._decisions:
            return
        gathered, self._decisions = self._decisions, []
        # Mail cut by several policies at once: each tells its own reason.
        cut = sorted({d for d, _p, kind, _at in gathered if kind == "blocked"})
        if cut:
            denies = self.store.denies_of(cut, list(self.active))
            gathered = [g for g in gathered if g[2] != "blocked"] + [
                (d, reason.partition(":")[2], "blocked", at)
                for d, _p, kind, at in gathered
                if kind == "blocked"
                for reason in sorted(set(denies.get(d, [])) or {f"blocked:{_p}"})
                if reason.partition(":")[2] in self.active
            ]
        owners = self.store.owners_of(sorted({d for d, *_ in gathered}))
        grouped: dict[tuple[str, str, Micros], dict[str, list[int]]] = {}
        for device_id, policy_id, kind, at in gathered:
            owner = owners.get(device_id, "")
            if owner:
                grouped.setdefault((policy_id, kind, at), {}).setdefault(owner, []).append(device_id)
        for (policy_id, kind, at), people in grouped.items():
            policy = self.active[policy_id]
            devices = {p: ",".join(str(d) for d in sorted(set(ids))) for p, ids in people.items()}
            self._add(policy, sorted(people), kind, str(at), at, devices=devices)

    # -- the policy's life ---------------------------------------------------------------

    def applied(self, old: Policy | None, new: Policy, now: Micros) -> int:
        """An apply: tell everyone sent the memo when the deadline moved or the mode switched."""
        if new.status != "active":
            return 0
        marks = self.marks(new.id)
        if old is None or old.status != "active":
            if old is not None and old.status == "withdrawn":
                # Back after a withdrawal: a new life, told again from its own memo.
                self._mark(new.id, f"life:{new.revision}", now)
            return 0
        if (old.deadline, old.mode) == (new.deadline, new.mode):
            return 0
        life = life_of(marks)
        if memo_mark(life) not in marks:
            return 0
        # Reminders planned for the old deadline wait no longer; the new one's come on time.
        self.store.cancel_notices(new.id, kinds=("reminder",), at=now, why="deadline moved")
        self._mark(new.id, f"changed@{life}:{new.revision}", now)
        since = marks[f"life:{life}"] if life else 0
        people = [email for email, _tz in self.store.notified_people(new.id, kinds=("memo",), since=since)]
        return self._add(new, people, "policy_changed", f"rev-{new.revision}", now)

    def withdrawn(self, policy: Policy, now: Micros) -> tuple[int, int]:
        """A withdrawal: pending notices are cancelled; everyone sent one (in this life of
        the policy) gets the correction. Returns (corrections planned, notices cancelled)."""
        marks = self.marks(policy.id)
        life = life_of(marks)
        since = marks[f"life:{life}"] if life else 0
        people = [email for email, _tz in self.store.notified_people(policy.id, since=since)]
        cancelled = self.store.cancel_notices(policy.id, at=now, why="policy withdrawn")
        return self._add(policy, people, "correction", occasion(life), now), cancelled

    def exemption_granted(self, policy: Policy, exemption: Exemption, now: Micros) -> int:
        person = exemption.person
        devices: dict[str, str] = {}
        if person is None and exemption.device_id is not None:
            person = self.store.owners_of([exemption.device_id]).get(exemption.device_id, "")
            if person:
                devices[person] = str(exemption.device_id)
        if not person:
            return 0
        key = f"ex-{exemption.id}"
        # An extension: the warning of an exemption that ends no later than this one
        # would announce an end that no longer comes.
        for waiting in self.store.list_notices(
            policy_id=policy.id, state="pending", kind="exemption_expiring", person=person
        ):
            other = self.store.get_exemption(int(waiting.occasion[3:])) if waiting.occasion[3:].isdigit() else None
            if other is not None and other.until <= exemption.until:
                self.store.cancel_notices(
                    policy.id, kinds=("exemption_expiring",), occasion=waiting.occasion, at=now, why="extended"
                )
        self._add(policy, [person], "exemption", key, now, devices=devices)
        warn_at = exemption.until - settings.duration("exemption_warning")
        if warn_at > now:
            self._add(policy, [person], "exemption_expiring", key, now, due=warn_at, devices=devices)
        return 1

    def exemption_revoked(self, exemption: Exemption, now: Micros) -> int:
        return self.store.cancel_notices(
            exemption.policy_id,
            kinds=("exemption_expiring",),
            occasion=f"ex-{exemption.id}",
            at=now,
            why="exemption revoked",
        )

    def people_joined(self, emails: list[str], now: Micros) -> int:
        """People imported after a memo wave whose audience is everyone get the memo."""
        planned = 0
        for policy in self.active.values():
            if policy.notices.audience == "all" and self.waved(policy.id):
                planned += self._add(policy, emails, "memo", occasion(self.life(policy.id)), now)
        return planned
