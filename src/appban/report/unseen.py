"""``appban device list --unseen``: the DeviceIds the gate saw that no inventory knows.

The shadow fleet: phones that connect to mail (or try to) while no source reports
them. Each row is one (DeviceId, user, DeviceType, protocol) the gate answered, with
when it was first and last seen and how often, as its flusher wrote it (a second's
resolution). A DeviceId is known when a device has it as an ActiveSync DeviceId or as
an identifier. Rows last seen more than ``sightings_max_age`` before the command's
clock are left out (the gate deletes them), and so are rows first seen after it.
"""

from __future__ import annotations

from typing import Any

from appban import settings
from appban.clock import format_duration, format_time
from appban.workspace import Workspace


def unseen_devices(ws: Workspace, limit: int | None) -> dict[str, Any]:
    max_age = settings.duration("sightings_max_age")
    items: list[dict[str, Any]] = []
    total = 0
    for row in ws.store.unseen_devices(ws.now - max_age):
        if row.first_seen > ws.now:
            continue  # not yet seen as of --now
        total += 1
        if limit is None or len(items) < limit:
            items.append(
                {
                    "eas_device_id": row.eas_id,
                    "user": row.user or None,
                    "device_type": row.device_type or None,
                    "protocol": row.protocol,
                    "first_seen": format_time(row.first_seen),
                    "last_seen": format_time(row.last_seen),
                    "count": row.times,
                }
            )
    held, refused = ws.store.sightings_held()
    return {
        "now": format_time(ws.now),
        "max_age": format_duration(max_age),
        "count": total,
        "sightings_held": held,
        "sightings_refused": refused,
        "devices": items,
    }
