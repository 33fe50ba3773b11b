"""One gateway decision: SPEC's reason codes from a DeviceId and a user."""

from __future__ import annotations

from typing import Any

from appban import settings
from appban.report.devices import device_decision
from appban.workspace import Workspace


def user_matches(user: str, owner: str, mail_domain: str = "") -> bool:
    """``DOMAIN\\user``, ``user@domain`` and bare ``user`` against an owner's e-mail."""
    name = user.strip().lower()
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    if "@" in name:
        return name == owner
    if mail_domain:
        return f"{name}@{mail_domain.lower()}" == owner
    return owner.split("@", 1)[0] == name


def decide(ws: Workspace, eas_device_id: str, user: str, *, unknown_device: str = "deny") -> dict[str, Any]:
    eas = eas_device_id.strip()
    if not eas:
        return {"decision": "deny", "reason": "no_device_id"}
    devices = ws.store.devices_by_eas(eas)
    if not devices:
        decision = "allow" if unknown_device == "allow" else "deny"
        return {"decision": decision, "reason": "unknown_device"}
    domain = (settings.get("mail_domains") or ("",))[0]  # until the user rules land
    owned = [d for d in devices if user_matches(user, d.owner, domain)]
    if not owned:
        return {"decision": "deny", "reason": "user_mismatch"}
    for device in owned:
        decision, reason, _ = device_decision(ws, device)
        if decision == "deny":
            return {"decision": "deny", "reason": reason}
    return {"decision": "allow", "reason": "ok"}
