"""``appban audit list``: the log's entries, filtered by time, kind, policy or device."""

from __future__ import annotations

import contextlib
import re
from collections import deque
from typing import Any

import msgspec

from appban.audit.log import time_of
from appban.clock import Micros
from appban.errors import BadInput
from appban.policy.lifecycle import find_device, get_policy
from appban.store.records import AuditEntry
from appban.workspace import Workspace

_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def list_entries(
    ws: Workspace,
    *,
    since: Micros | None,
    until: Micros | None,
    kinds: tuple[str, ...],
    policy_id: str | None,
    device_ref: str | None,
    limit: int | None,
) -> dict[str, Any]:
    """Matching entries in sequence order; with ``limit``, the latest ``limit`` of them."""
    for kind in kinds:
        if not _KIND.match(kind):
            raise BadInput(f"not an audit entry kind: {kind[:40]!r} (e.g. policy.apply, state)", field="--kind")
    if since is not None and until is not None and until <= since:
        raise BadInput("--until is not after --since", field="--until")
    if policy_id is not None:
        get_policy(ws, policy_id)
    device = find_device(ws, device_ref).ref if device_ref is not None else None
    found: deque[AuditEntry] = deque(maxlen=limit)
    total = 0
    for e in ws.store.audit_entries(since=since, until=until, actions=kinds):
        if policy_id is not None and not _about(e.subject, policy_id, prefix=True):
            continue
        if device is not None and not (_about(e.subject, device, prefix=False) or _lists(e, device)):
            continue
        total += 1
        found.append(e)
    return {"count": total, "entries": [as_json(e) for e in found]}


def _about(subject: str, name: str, *, prefix: bool) -> bool:
    """Subjects name a policy, a device, or ``policy/device`` (``policy/person``)."""
    if subject == name:
        return True
    return subject.startswith(name + "/") if prefix else subject.endswith("/" + name)


def _lists(e: AuditEntry, device: str) -> bool:
    # A policy-wide sweep records one entry listing every device it changed.
    return e.action == "states" and isinstance(e.data, str) and f'"{device}"' in e.data


def as_json(e: AuditEntry) -> dict[str, Any]:
    # A damaged entry is shown as stored, as far as JSON can show it; `audit verify` names it.
    data: Any = e.data if isinstance(e.data, str) else repr(e.data)
    with contextlib.suppress(msgspec.DecodeError):
        data = msgspec.json.decode(data)
    return {
        "seq": e.seq,
        "at": time_of(e.at) or str(e.at),
        "action": e.action,
        "subject": e.subject,
        "data": data,
        "hash": e.hash,
    }
