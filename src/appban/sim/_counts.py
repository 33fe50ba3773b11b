"""The demo's numbers, read from the store: nothing the simulation intended is reported."""

from __future__ import annotations

from typing import Any

from appban.clock import Micros
from appban.policy.model import Policy
from appban.policy.states import STATES
from appban.store import Store


class Counts:
    def __init__(self, store: Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    # -- states ----------------------------------------------------------------------

    def states(self) -> dict[str, int]:
        """Devices per state as stored: exact once time-driven changes are applied."""
        found = self.store.state_counts(self.policy.id)
        return {s: found.get(s, 0) for s in STATES}

    def people_in(self, *states: str) -> int:
        """People with at least one device in one of ``states``: one notice each."""
        return self.store.people_in_states(self.policy.id, states)

    def changed(self, start: Micros, end: Micros, *, to: str | None = None, left: str | None = None) -> tuple[int, int]:
        """(devices, people) whose state became ``to`` or left ``left`` in [start, end)."""
        return self.store.changes_between(self.policy.id, start, end, to=to, left=left)

    def waiting(self, kind: str) -> int:
        """Notices of ``kind`` under the policy still waiting to be sent."""
        counts = self.store.notice_counts(self.policy.id)
        return sum(n for (_p, k, state), n in counts.items() if k == kind and state in ("pending", "sending"))

    def removed(self, start: Micros, end: Micros) -> int:
        """Devices whose snapshot in [start, end) no longer showed a banned app it had."""
        return self.store.removals_between(self.policy.families, self.policy.explicit, start, end)

    # -- the fleet -------------------------------------------------------------------

    def fleet(self) -> dict[str, Any]:
        """What the inventory holds: people, devices, mail readers, banned apps seen."""
        f = self.store.fleet_summary(self.policy.scope.platforms, self.policy.families)
        return {
            "people": f.people,
            "org_units": f.org_units,
            "time_zones": f.time_zones,
            "devices": sum(f.by_platform.values()),
            "by_platform": f.by_platform,
            "mobile_reading_mail": sum(f.reading_mail_by.values()),
            "mobile_reading_mail_by": f.reading_mail_by,
            "banned_app_devices": f.banned_app_devices,
            "banned_apps": f.banned_apps,
        }
