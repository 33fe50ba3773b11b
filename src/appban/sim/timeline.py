"""The demo's calendar: when the memo goes out, the reminders, the deadline, the days shown.

SPEC's example policy gives fifteen hours of grace (effective 2020-07-10T16:00Z,
deadline 2020-07-11T06:59Z), too short to show a campaign day by day; the demo keeps
the memo's moment and gives five days, to the end of 14 July in California.
"""

from __future__ import annotations

from dataclasses import dataclass

from appban.clock import Micros, format_time, parse_time

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Timeline:
    effective: Micros  # the memo goes out; states are computed from here
    deadline: Micros  # violating devices are blocked from here
    reminders: tuple[Micros, ...]  # durations before the deadline, longest first
    day0: Micros  # midnight UTC of the memo's day
    days: int  # days shown, day 0 included
    max_inventory_age: Micros

    @property
    def end(self) -> Micros:
        """The last moment shown: the end of the last day."""
        return self.day_close(self.days - 1)

    def day_close(self, day: int) -> Micros:
        """The day's last second, when its row is counted (times are whole seconds)."""
        return self.day_start(day + 1) - SECOND

    def day_start(self, day: int) -> Micros:
        return self.day0 + day * DAY

    def day_of(self, at: Micros) -> int:
        return (at - self.day0) // DAY

    def date(self, day: int) -> str:
        return (format_time(self.day_start(day)) or "")[:10]

    def reminder_times(self) -> list[Micros]:
        return [self.deadline - r for r in self.reminders]


def default_timeline() -> Timeline:
    effective = parse_time("2020-07-10T16:00:00Z")
    return Timeline(
        effective=effective,
        deadline=parse_time("2020-07-15T06:59:00Z"),
        reminders=(24 * HOUR, 2 * HOUR),
        day0=effective - effective % DAY,
        days=9,
        max_inventory_age=7 * DAY,
    )


def policy_yaml(t: Timeline, policy_id: str) -> str:
    """The policy as a file, the way an administrator would apply it (SPEC: Policy file)."""
    reminders = ", ".join(f"{r // HOUR}h" for r in t.reminders)
    return f"""\
id: {policy_id}
title: TikTok is not permitted on mobile devices that access company email
reason: Security risks
apps: [tiktok]
scope:
  platforms: [ios, ipados, android]
  mail_access: required
  ownership: any
  include_groups: []
  exclude_groups: [security-research]
effective: {format_time(t.effective)}
deadline: {format_time(t.deadline)}
mode: enforce
on_unverified: allow
max_inventory_age: {t.max_inventory_age // DAY}d
reminders: [{reminders}]
"""
