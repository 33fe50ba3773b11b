"""One gateway decision, as ``appban gate serve`` would give it (SPEC: ``gate decide``).

The same code decides: the devices behind the DeviceId are put in a ``DecisionTable``
with the same name rules (``mail_domains``, ``netbios_domains``) and the same answer
for an unknown DeviceId (``unknown_device``); only where the gate has every device in
memory, this asks the store about the one DeviceId and the persons sharing a name.
Each device's decision is as of the command's clock (recorded history for an earlier
``--now``).
"""

from __future__ import annotations

from typing import Any

from appban import settings
from appban.gate.activesync import Garbage, device_id
from appban.gate.table import DecisionTable
from appban.gate.users import UserNames
from appban.report.devices import device_decision
from appban.store.base import Store
from appban.store.records import GateRow
from appban.workspace import Workspace


class StoredPersons:
    """The persons the gate would know (``users.Known``), asked of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_local: dict[str, list[str]] = {}

    def _owners(self, local: str) -> list[str]:
        found = self._by_local.get(local)
        if found is None:
            found = self._by_local[local] = self.store.mail_owners(local)
        return found

    def namesakes(self, local: str) -> tuple[str, ...]:
        owners = self._owners(local)
        return tuple(owners) if len(owners) > 1 else ()


def decide(
    ws: Workspace,
    eas_device_id: str,
    user: str,
    *,
    unknown_device: str | None = None,
    names: UserNames | None = None,
    query_user: str = "",
) -> dict[str, Any]:
    """``{"decision", "reason"}`` for a request with this DeviceId by this user.

    ``user`` is the user the mail server authenticates. Without one (a request with no
    credentials), the gate takes the query's ``User=`` (``query_user``) if the
    ``query_user`` setting allows; else nothing names a user (``user_unverified``).
    """
    trusts_query = settings.get("query_user") == "allow"  # read (and checked) as the gate does
    if not user and trusts_query:
        user = query_user
    table = DecisionTable(
        unknown_device=settings.get("unknown_device", unknown_device),
        names=names or UserNames.from_settings(),
        persons=StoredPersons(ws.store),
    )
    try:
        eas = device_id(eas_device_id)
    except Garbage as exc:
        return {"decision": "deny", "reason": exc.reason}
    rows = []
    for device in ws.store.devices_by_eas(eas) if eas else []:
        assert device.id is not None
        decision, reason, _ = device_decision(ws, device)
        rows.append(GateRow(device.id, device.owner, (eas,), decision, reason, 0))
    table.apply(rows)
    reason = table.decide(eas, user or None)
    return {"decision": "allow" if table.allows(reason) else "deny", "reason": reason}
