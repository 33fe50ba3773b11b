"""Why the demo's numbers differ: read from the store, like every other number it shows.

"TikTok on 625 devices" counts every device whose inventory shows the app when the
policy takes effect; "557 violate it now" counts those the policy holds. The
difference is devices the policy leaves out (a platform it does not name, no company
mail, an excluded group) or holds differently (exempt, attested). Unverified devices
keep their mail for the reason the policy gives: ``on_unverified: allow``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from appban.clock import Micros
from appban.policy.model import Policy
from appban.policy.states import DETAIL_CATALOG, DETAIL_MANAGED, DETAIL_NONE, DETAIL_STALE
from appban.store import Store

# Why an unverified device proves nothing, in the words the summary uses.
UNVERIFIED_BECAUSE = {
    DETAIL_MANAGED: "managed_inventory",
    DETAIL_STALE: "stale_inventory",
    DETAIL_NONE: "no_inventory",
    DETAIL_CATALOG: "older_catalog",
}


def banned_app_devices(store: Store, policy: Policy, at: Micros) -> dict[str, Any]:
    """Devices with a banned app at ``at``, by the state the policy gave them then; those
    out of scope by the first scope rule that leaves them out."""
    devices = store.devices_with_apps_at(policy.families, policy.explicit, at)
    recorded = store.states_at(policy.id, at)
    states: Counter[str] = Counter()
    out: Counter[str] = Counter()
    for device_id in devices:
        state = recorded[device_id].state if device_id in recorded else "out_of_scope"
        states[state] += 1
        if state == "out_of_scope":
            out[_left_out_by(store, policy, device_id)] += 1
    return {
        "devices": len(devices),
        "states": dict(sorted(states.items())),
        "out_of_scope": dict(out.most_common()),
    }


def _left_out_by(store: Store, policy: Policy, device_id: int) -> str:
    """The scope rule that leaves this device out (the order ``states.in_scope`` checks)."""
    device = store.get_device(device_id)
    if device is None:
        return "unknown"
    scope = policy.scope
    if scope.platforms and device.platform not in scope.platforms:
        return f"platform:{device.platform}"
    if scope.mail_access == "required" and not device.mail_access:
        return "no_mail"
    if scope.ownership != "any" and device.ownership != scope.ownership:
        return f"ownership:{device.ownership}"
    person = store.get_person(device.owner)
    groups = set(person.groups) if person else set()
    if scope.include_groups and groups.isdisjoint(scope.include_groups):
        return "not_in_included_groups"
    excluded = sorted(groups.intersection(scope.exclude_groups))
    if excluded:
        return f"group:{excluded[0]}"
    return "other"


def unverified(store: Store, policy: Policy) -> dict[str, Any]:
    """Unverified devices now, by why nothing can prove absence, and what that means."""
    because: Counter[str] = Counter()
    for row in store.state_rows(policy.id, state="unverified"):
        because[UNVERIFIED_BECAUSE.get(row.detail, "other")] += 1
    return {
        "devices": sum(because.values()),
        "because": dict(because.most_common()),
        "on_unverified": policy.on_unverified,
    }
