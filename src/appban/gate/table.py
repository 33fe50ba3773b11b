"""The gate's decision table: every ActiveSync DeviceId's owner and decision, in memory.

One dict lookup per request. An entry names the device's owner and the reason code of
its decision (``ok`` allows); a DeviceId reported by several sources maps to a tuple
of entries. Kept compact so a million devices fit in a couple of hundred MB. Whether
the requesting user is the owner is for the name rules (``users.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from appban.gate.users import Known, Namesakes, UserNames
from appban.store.records import GateRow

# One device behind a DeviceId: "owner<US>reason<US>device_id", one string rather than a
# tuple of three objects, which keeps a million-device table near 200 MB. A DeviceId
# that several sources report maps to a tuple of such strings.
Slot = str | tuple[str, ...]
_SEP = "\x1f"


class DecisionTable:
    def __init__(
        self,
        *,
        unknown_device: str = "deny",
        names: UserNames | None = None,
        persons: Known | None = None,
    ) -> None:
        self.by_eas: dict[str, Slot] = {}
        self.seq = 0
        self.unknown_allows = unknown_device == "allow"
        self.names = names or UserNames()
        self.updated = time.monotonic()
        self._strings: dict[str, str] = {}
        self.by_device: dict[int, tuple[str, str]] = {}  # mail-password devices: (owner, reason)
        # Who else has a bare name's local part, for completing it: the gate's follower
        # keeps ``namesakes`` from the store, told which local parts ``touched`` changes
        # (only when the name rules ask: not with exactly one mail domain). ``gate
        # decide`` asks the store directly (``persons``).
        self.namesakes: Namesakes | None = None
        if persons is None:
            self.namesakes = persons = Namesakes()
        self.persons: Known = persons
        self.touched: set[str] = set()  # local parts of owners that came or went
        self._tracks = self.names.needs_index

    def __len__(self) -> int:
        return len(self.by_eas)

    def fresh(self) -> DecisionTable:
        """An empty table with this one's configuration (for a reload that swaps in whole)."""
        return DecisionTable(unknown_device="allow" if self.unknown_allows else "deny", names=self.names)

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
        *,
        track: bool = True,
    ) -> int:
        """Fold changed devices (and dropped DeviceIds) into the table; returns rows applied.

        ``mail_devices``: devices with a mail password, whose decision is also kept by id.
        ``track``: note whose local parts changed (``take_touched``); not for a whole
        load, after which the namesakes are loaded whole too.
        """
        count = 0
        by_eas = self.by_eas
        shared = self._shared
        touch = self._touch if self._tracks and track else None
        for _seq, eas, device_id in tombstones:
            self._remove(eas, device_id)
        for row in rows:
            reason = "ok" if row.decision == "allow" else row.reason
            entry = f"{row.owner}{_SEP}{reason}{_SEP}{row.device_id}"
            if touch is not None:
                touch(row.owner)
            if mail_devices is not None and row.device_id in mail_devices:
                old = self.by_device.get(row.device_id)
                self.by_device[row.device_id] = (row.owner, shared(reason))
                if touch is not None and old is not None:
                    touch(old[0])
            for eas in row.eas_ids:
                slot = by_eas.get(eas)
                if slot is None:
                    by_eas[eas] = entry
                    continue
                kept = tuple(e for e in _entries(slot) if _device_of(e) != row.device_id)
                by_eas[eas] = kept + (entry,) if kept else entry
                if touch is not None:
                    for gone in _entries(slot):
                        if _device_of(gone) == row.device_id:
                            touch(_owner_of(gone))
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
        if self._tracks:
            for gone in _entries(slot):
                if _device_of(gone) == device_id:
                    self._touch(_owner_of(gone))
        if not rest:
            del self.by_eas[eas]
        else:
            self.by_eas[eas] = rest[0] if len(rest) == 1 else rest

    def _touch(self, owner: str) -> None:
        self.touched.add(owner.partition("@")[0])

    def take_touched(self) -> set[str]:
        """The local parts of owners that came or went since the last call."""
        touched, self.touched = self.touched, set()
        return touched

    def decide(self, device_id: str, user: str | None) -> str:
        """SPEC's reason code for this DeviceId and user; ``ok`` allows.

        ``user`` is the user the mail server will authenticate, None when the request
        names none the gate may trust (``user_unverified``).
        """
        if not device_id:
            return "no_device_id"
        slot = self.by_eas.get(device_id)
        if slot is None:
            return "unknown_device"
        if user is None:
            return "user_unverified"
        owns, persons = self.names.owns, self.persons
        if isinstance(slot, str):
            owner, reason, _ = slot.split(_SEP)
            return reason if owns(user, owner, persons) else "user_mismatch"
        # Several sources report this DeviceId: the user's devices decide, any deny wins.
        found = "user_mismatch"
        for entry in slot:
            owner, reason, _ = entry.split(_SEP)
            if owns(user, owner, persons):
                if reason != "ok":
                    return reason
                found = "ok"
        return found

    def replace_with(self, other: DecisionTable) -> None:
        """Take another table's contents (each attribute swap is atomic for readers)."""
        if other.namesakes is not None and self.namesakes is not None:
            self.namesakes.shared = other.namesakes.shared
        self.by_device = other.by_device
        self.by_eas = other.by_eas
        self.seq = other.seq
        self.updated = other.updated

    def forget_mail_devices(self, devices: set[int]) -> None:
        """Drop the by-id decisions of devices that no longer have a mail password."""
        for device_id in [d for d in self.by_device if d not in devices]:
            owner, _reason = self.by_device.pop(device_id)
            if self._tracks:
                self._touch(owner)

    def allows(self, reason: str) -> bool:
        return reason == "ok" or (reason == "unknown_device" and self.unknown_allows)


def _entries(slot: Slot) -> tuple[str, ...]:
    return (slot,) if isinstance(slot, str) else slot


def _device_of(entry: str) -> int:
    return int(entry.rsplit(_SEP, 1)[1])


def _owner_of(entry: str) -> str:
    return entry.partition(_SEP)[0]
