"""Per-device mail passwords for IMAP, POP3 and SMTP, which carry no device id.

Issued once (printed, never stored), kept as argon2 hashes. The gate verifies a
login against the owner's active credentials; argon2 is deliberately slow, so a
verified (user, password) pair is cached under a keyed hash for the life of the
process, bounded, and dropped the moment its credential is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appban.clock import format_time
from appban.errors import BadInput
from appban.gate.table import normalise_user
from appban.policy.lifecycle import find_device
from appban.workspace import Workspace

_hasher = PasswordHasher()


def issue(ws: Workspace, device_ref: str) -> dict[str, Any]:
    """A new mail password for the device (any earlier one is revoked); shown once."""
    device = find_device(ws, device_ref)
    assert device.id is not None
    password = secrets.token_urlsafe(18)
    digest = _hasher.hash(password)
    with ws.writing():
        seq = ws.store.next_gate_seq()
        revoked = ws.store.revoke_credentials(device.id, ws.now, seq)
        ws.store.add_credential(device.id, device.owner, digest, ws.now, seq)
        _touch(ws, device.id, seq)
        ws.audit.append(ws.now, "credential.issue", device.ref, {"owner": device.owner, "replaced": revoked})
        fresh = ws.store.get_device(device.id)
        assert fresh is not None
        ws.evaluator.evaluate_device(fresh, ws.now, "credential")
    return {
        "device": device.ref,
        "user": device.owner,
        "password": password,
        "issued_at": format_time(ws.now),
        "replaced": revoked,
    }


def revoke(ws: Workspace, device_ref: str) -> dict[str, Any]:
    device = find_device(ws, device_ref)
    assert device.id is not None
    with ws.writing():
        seq = ws.store.next_gate_seq()
        count = ws.store.revoke_credentials(device.id, ws.now, seq)
        if not count:
            raise BadInput(f"{device.ref} has no mail password to revoke", field="ID")
        _touch(ws, device.id, seq)
        ws.audit.append(ws.now, "credential.revoke", device.ref, {"owner": device.owner, "revoked": count})
        fresh = ws.store.get_device(device.id)
        assert fresh is not None
        ws.evaluator.evaluate_device(fresh, ws.now, "credential")
    return {"device": device.ref, "revoked": count, "revoked_at": format_time(ws.now)}


def _touch(ws: Workspace, device_id: int, seq: int) -> None:
    row = ws.store.get_device(device_id)
    assert row is not None
    ws.store.set_decision(device_id, row.decision, row.reason, seq)


class CredentialCache:
    """Active credentials by user, and a bounded cache of verified logins.

    Shared by three threads: the follower applies changes, the event loop reads the
    cache, argon2 runs in an executor. The lock guards the dicts, never argon2.
    """

    def __init__(self, *, size: int = 10_000) -> None:
        self.by_user: dict[str, dict[int, tuple[int, str]]] = {}  # user -> id -> (device, hash)
        self.by_local: dict[str, set[str]] = {}  # local part -> users
        self.devices: set[int] = set()
        self.active: set[int] = set()
        self.seq = 0
        self.size = size
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # -> (cred id, device)
        self._lock = threading.Lock()

    def replace_with(self, other: CredentialCache) -> None:
        """Take another cache's credentials; every verified login is forgotten."""
        with self._lock:
            self.by_user, self.by_local = other.by_user, other.by_local
            self.devices, self.active, self.seq = other.devices, other.active, other.seq
            self._verified.clear()

    def apply(self, rows: list[tuple[int, int, str, str, int | None, int]]) -> None:
        with self._lock:
            self._apply(rows)

    def _apply(self, rows: list[tuple[int, int, str, str, int | None, int]]) -> None:
        for cred_id, device_id, user, digest, revoked_at, seq in rows:
            creds = self.by_user.setdefault(user, {})
            if revoked_at is None:
                creds[cred_id] = (device_id, digest)
                self.active.add(cred_id)
                self.by_local.setdefault(user.partition("@")[0], set()).add(user)
            else:
                creds.pop(cred_id, None)
                self.active.discard(cred_id)
                # Revocation-aware: forget every cached login of this credential.
                for key in [k for k, (c, _d) in self._verified.items() if c == cred_id]:
                    del self._verified[key]
            self.seq = max(self.seq, seq)
        self.devices = {d for creds in self.by_user.values() for d, _h in creds.values()}

    def candidates(self, user: str, mail_domain: str) -> list[tuple[int, int, str]]:
        name, is_email = normalise_user(user, mail_domain)
        with self._lock:
            users = [name] if is_email else sorted(self.by_local.get(name, ()))
            return [(cid, dev, h) for u in users for cid, (dev, h) in self.by_user.get(u, {}).items()]

    def cached(self, user: str, password: str) -> int | None:
        key = self._cache_key(user, password)
        with self._lock:
            hit = self._verified.get(key)
            if hit is None:
                return None
            cred_id, device_id = hit
            if cred_id not in self.active:
                del self._verified[key]
                return None
            self._verified.move_to_end(key)
            return device_id

    def verify(self, user: str, password: str, mail_domain: str) -> int | None:
        """The device whose active credential this is (slow: argon2), or None."""
        for cred_id, device_id, digest in self.candidates(user, mail_domain):
            try:
                _hasher.verify(digest, password)
            except (VerificationError, InvalidHashError):
                continue
            key = self._cache_key(user, password)
            with self._lock:
                if cred_id not in self.active:  # revoked while argon2 ran
                    return None
                self._verified[key] = (cred_id, device_id)
                if len(self._verified) > self.size:
                    self._verified.popitem(last=False)
            return device_id
        return None

    def _cache_key(self, user: str, password: str) -> bytes:
        message = user.strip().lower().encode() + b"\x00" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()
