"""Revoking an exemption: audited, and the devices it covered re-evaluated at once."""

from __future__ import annotations

from typing import Any

from appban.clock import format_time
from appban.errors import BadInput, NotFound
from appban.store.records import DeviceRow
from appban.text import check_text
from appban.workspace import Workspace


def parse_id(text: str) -> int:
    """An exemption id as ``exempt add`` printed it."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadInput(f"not an exemption id: {text[:40]!r}", field="ID")
    return int(text)


def revoke(ws: Workspace, exemption_id: int, reason: str | None) -> dict[str, Any]:
    if reason is not None:
        if not reason.strip():
            raise BadInput("an empty reason", field="--reason")
        if len(reason) > 500:
            raise BadInput("reason longer than 500 characters", field="--reason")
        check_text(reason, "--reason")
    with ws.writing():
        found = ws.store.get_exemption(exemption_id)  # read under the write lock
        if found is None:
            raise NotFound(f"no exemption {exemption_id}", field="ID")
        if ws.now < found.created_at:
            raise BadInput(
                f"exemption {exemption_id} was made at {format_time(found.created_at)}, after --now",
                field="ID",
            )
        if found.revoked_at is not None or not ws.store.revoke_exemption(exemption_id, ws.now):
            raise BadInput(
                f"exemption {exemption_id} was already revoked at {format_time(found.revoked_at)}",
                field="ID",
            )
        subject = found.person or f"dev-{found.device_id}"
        ws.audit.append(
            ws.now,
            "exemption.revoke",
            f"{found.policy_id}/{subject}",
            {"id": exemption_id, "reason": reason, "until": format_time(found.until)},
        )
        ws.evaluator.reload()
        devices: list[DeviceRow]
        if found.device_id is not None:
            one = ws.store.get_device(found.device_id)
            devices = [one] if one else []
        else:
            devices = ws.store.devices_of_owner(found.person or "")
        states: dict[str, str | None] = {}
        for d in devices:
            assert d.id is not None
            ws.evaluator.evaluate_device(d, ws.now, "exemption", only=found.policy_id)
            now_state = ws.store.device_states(d.id).get(found.policy_id)
            states[d.ref] = now_state.state if now_state else None
    return {
        "exemption": exemption_id,
        "policy": found.policy_id,
        "person": found.person,
        "device": None if found.device_id is None else f"dev-{found.device_id}",
        "revoked_at": format_time(ws.now),
        "devices": len(devices),
        "states": states,
    }
