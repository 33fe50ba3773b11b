"""The gate's decision table: every ActiveSync DeviceId's owner and decision, in memory.

One dict lookup per request. An entry names the device's owner and the reason code of
its decision (``ok`` allows); a DeviceId reported by several sources maps to a tuple
of entries. Kept compact so a million devices fit in a couple of hundred MB.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from appban.store.records import GateRow

# One device behind a DeviceId: "owner<US>reason<US>device_id", one string rather than a
# tuple of three objects, which keeps a million-device table near 200 MB. A DeviceId
# that several sources report maps to a tuple of such strings.
Slot = str | tuple[str, ...]
_SEP = "\x1f"


def normalise_user(user: str, mail_domain: str) -> tuple[str, bool]:
    """(name, is_email): ``DOMAIN\\user`` -> ``user``; ``user`` -> ``user@domain`` if set."""
    name = user.strip().lower()
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    if "@" in name:
        return name, True
    if mail_domain:
        return f"{name}@{mail_domain}", True
    return name, False


class DecisionTable:
    def __init__(self, *, unknown_device: str = "deny", mail_domain: str = "") -> None:
        self.by_eas: dict[str, Slot] = {}
        self.seq = 0
        self.unknown_allows = unknown_device == "allow"
        self.mail_domain = mail_domain.lower()
        self.updated = time.monotonic()
        self._strings: dict[str, str] = {}
        self.by_device: dict[int, tuple[str, str]] = {}  # mail-password devices: (owner, reason)

    def __len__(self) -> int:
        return len(self.by_eas)

    def _shared(self, text: str) -> str:
        found = self._strings.get(text)
        if found is None:
            found = self._strings[text] = sys.intern(text)
        return found

    def apply(
        self,
        rows: Iterable[GateRow],
        tombstones: Iterable[tuple[int, str, int]] = (),
        mail_devices: set[int] | None = None,
    ) -> int:
        """Fold changed devices (and dropped DeviceIds) into the table; returns rows applied.

        ``mail_devices``: devices with a mail password, whose decision is also kept by id.
        """
        count = 0
        by_eas = self.by_eas
        shared = self._shared
        for _seq, eas, device_id in tombstones:
            self._remove(eas, device_id)
        for row in rows:
            reason = "ok" if row.decision == "allow" else row.reason
            entry = f"{row.owner}{_SEP}{reason}{_SEP}{row.device_id}"
            if mail_devices is not None and row.device_id in mail_devices:
                self.by_device[row.device_id] = (row.owner, shared(reason))
            for eas in row.eas_ids:
                slot = by_eas.get(eas)
                if slot is None or (isinstance(slot, str) and _device_of(slot) == row.device_id):
                    by_eas[eas] = entry
                else:
                    others = tuple(e for e in _entries(slot) if _device_of(e) != row.device_id)
                    by_eas[eas] = others + (entry,) if others else entry
            if row.gate_seq > self.seq:
                self.seq = row.gate_seq
            count += 1
        self.updated = time.monotonic()
        return count

    def _remove(self, eas: str, device_id: int) -> None:
        slot = self.by_eas.get(eas)
        if slot is None:
            return
        rest = tuple(e for e in _entries(slot) if _device_of(e) != device_id)
        if not rest:
            del self.by_eas[eas]
        else:
            self.by_eas[eas] = rest[0] if len(rest) == 1 else rest

    def decide(self, device_id: str, user: str) -> str:
        """SPEC's reason code for this DeviceId and user; ``ok`` allows."""
        if not device_id:
            return "no_device_id"
        slot = self.by_eas.get(device_id)
        if slot is None:
            return "unknown_device"
        name, is_email = normalise_user(user, self.mail_domain)
        if isinstance(slot, str):
            owner, reason, _ = slot.split(_SEP)
            if (owner == name) if is_email else (owner.partition("@")[0] == name):
                return reason
            return "user_mismatch"
        # Several sources report this DeviceId: the user's devices decide, any deny wins.
        found = "user_mismatch"
        for entry in slot:
            owner, reason, _ = entry.split(_SEP)
            if (owner == name) if is_email else (owner.partition("@")[0] == name):
                if reason != "ok":
                    return reason
                found = "ok"
        return found

    def replace_with(self, other: DecisionTable) -> None:
        """Take another table's contents (each attribute swap is atomic for readers)."""
        self.by_device = other.by_device
        self.by_eas = other.by_eas
        self.seq = other.seq
        self.updated = other.updated

    def forget_mail_devices(self, devices: set[int]) -> None:
        """Drop the by-id decisions of devices that no longer have a mail password."""
        for device_id in [d for d in self.by_device if d not in devices]:
            del self.by_device[device_id]

    def allows(self, reason: str) -> bool:
        return reason == "ok" or (reason == "unknown_device" and self.unknown_allows)


def _entries(slot: Slot) -> tuple[str, ...]:
    return (slot,) if isinstance(slot, str) else slot


def _device_of(entry: str) -> int:
    return int(entry.rsplit(_SEP, 1)[1])
