"""``appban people list``: who is known, in which org unit and groups, with how many devices."""

from __future__ import annotations

from typing import Any

from appban.clock import format_time
from appban.workspace import Workspace


def list_people(ws: Workspace, *, org_unit: str | None, group: str | None, limit: int | None) -> dict[str, Any]:
    people = ws.store.list_people(org_unit=org_unit, group=group)
    devices = ws.store.device_counts()
    shown = people if limit is None else people[:limit]
    return {
        "now": format_time(ws.now),
        "org_unit": org_unit,
        "group": group,
        "count": len(people),
        "people": [
            {
                "email": p.email,
                "name": p.name,
                "org_unit": p.org_unit,
                "groups": list(p.groups),
                "timezone": p.timezone,
                "devices": devices.get(p.email, 0),
            }
            for p in shown
        ],
    }
