"""Per-device mail passwords for IMAP, POP3 and SMTP, which carry no device id.

Issued once (printed, never stored). appban makes each password itself, with 144 bits
from the system's random source, so no dictionary holds it and a slow hash buys
nothing: the store keeps ``hmac-sha256$<hex>``, HMAC-SHA-256 of the password under the
database's own key (meta ``credential_key``, made by ``appban init``; it never leaves
the database). Checking a login costs one HMAC, microseconds, for a known user, an
unknown one or a wrong password alike: the same single call of ``hash_password``,
then one dict lookup, so the answer's timing tells no one who has a mail password.

Hashes of earlier versions (argon2, ``$argon2id$...``) are still accepted; such a
login is checked off the event loop (argon2 is slow on purpose) and, once it
succeeds, its hash is replaced with the keyed one (``Rehasher``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import queue
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appban.clock import format_time
from appban.errors import AppbanError, BadInput
from appban.policy.lifecycle import find_device
from appban.store import open_store
from appban.store.base import Store
from appban.store.records import Credential
from appban.text import ascii_lower
from appban.workspace import Workspace

log = logging.getLogger("appban.gate")

SCHEME = "hmac-sha256$"
_LEGACY = "$argon2"
_hasher = PasswordHasher()  # only verifies hashes made before the keyed scheme


def hash_password(key: bytes, password: str) -> str:
    """The stored form of a mail password: the one hash every login check runs."""
    digest = hmac.new(key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return SCHEME + digest


def credential_key(store: Store) -> bytes:
    """The database's key for mail-password hashes (meta ``credential_key``)."""
    text = store.get_meta("credential_key")
    if not text:
        raise AppbanError("the database has no credential_key: run `appban init` to upgrade it")
    return bytes.fromhex(text)


def issue(ws: Workspace, device_ref: str) -> dict[str, Any]:
    """A new mail password for the device (any earlier one is revoked); shown once."""
    device = find_device(ws, device_ref)
    assert device.id is not None
    password = secrets.token_urlsafe(18)  # 144 bits
    with ws.writing():
        digest = hash_password(credential_key(ws.store), password)
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


class Rehasher(threading.Thread):
    """Writes the keyed hash of an old (argon2) credential after its first good login.

    A login never waits for it: the gate already checks that credential by its keyed
    hash in memory; the write makes that last (and reach every other gate, which see
    the credential change at their next poll). A credential revoked or rehashed in
    the meantime is left alone; a failed write is logged and tried again at the
    credential's next login after a restart.
    """

    def __init__(self, db: str) -> None:
        super().__init__(name="appban-gate-rehash", daemon=True)
        self.db = db
        self.jobs: queue.Queue[tuple[int, str, str]] = queue.Queue(maxsize=10_000)
        self.written = 0

    def key(self) -> bytes:
        """The key of the database now at ``db`` (read when the gate starts or reloads)."""
        store = open_store(self.db, create=False)
        try:
            return credential_key(store)
        finally:
            store.close()

    def submit(self, credential_id: int, old: str, new: str) -> None:
        if not self.is_alive():
            self.start()
        with contextlib.suppress(queue.Full):  # the next good login of that credential asks again
            self.jobs.put_nowait((credential_id, old, new))

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                self._write(*job)
            except Exception as exc:  # noqa: BLE001 - the old hash keeps working meanwhile
                log.warning("could not store the new hash of mail password %d: %s", job[0], exc)

    def _write(self, credential_id: int, old: str, new: str) -> None:
        store = open_store(self.db, create=False)
        try:
            with store.transaction():
                if store.rehash_credential(credential_id, old, new, store.next_gate_seq()):
                    self.written += 1
        finally:
            store.close()


# What a login's password names: (credential id, device id, the user it was issued to).
Found = tuple[int, int, str]


class CredentialCache:
    """Active credentials, by keyed hash (and, for old argon2 ones, by user).

    Shared by three threads: the follower applies changes, the event loop checks
    logins, argon2 runs in an executor. The lock guards the dicts, never a hash.
    """

    def __init__(
        self,
        *,
        key: bytes | None = None,
        rehasher: Rehasher | None = None,
    ) -> None:
        self.rehasher = rehasher
        # Without a key (a cache filled only by replace_with), a random one: every
        # login still costs one HMAC, and no keyed hash matches.
        self.key = key if key is not None else (rehasher.key() if rehasher is not None else secrets.token_bytes(32))
        self.by_digest: dict[str, Found] = {}
        self.legacy: dict[str, dict[int, tuple[int, str]]] = {}  # user -> id -> (device, argon2 hash)
        self.legacy_by_local: dict[str, set[str]] = {}  # local part -> users with an argon2 hash
        self.stored: dict[int, tuple[str, str]] = {}  # id -> (its stored hash, its user)
        self.devices: set[int] = set()
        self.active: set[int] = set()
        self.seq = 0
        self._lock = threading.Lock()

    def replace_with(self, other: CredentialCache) -> None:
        """Take another cache's credentials; with a Rehasher, the key is read again (the
        database at the gate's path may be a different one, with its own key)."""
        key = self.rehasher.key() if self.rehasher is not None else self.key
        with self._lock:
            self.key = key
            self.by_digest, self.legacy, self.legacy_by_local = other.by_digest, other.legacy, other.legacy_by_local
            self.stored, self.devices, self.active, self.seq = other.stored, other.devices, other.active, other.seq

    def apply(self, rows: Iterable[Credential]) -> None:
        with self._lock:
            for row in rows:
                self._forget(row.id)
                if row.revoked_at is None:
                    self._add(row)
                self.seq = max(self.seq, row.seq)
            self.devices = {d for _c, d, _u in self.by_digest.values()}
            self.devices.update(d for creds in self.legacy.values() for d, _h in creds.values())

    def _add(self, row: Credential) -> None:
        if row.hash.startswith(SCHEME):
            self.by_digest[row.hash] = (row.id, row.device_id, row.username)
        elif row.hash.startswith(_LEGACY):
            self.legacy.setdefault(row.username, {})[row.id] = (row.device_id, row.hash)
            self.legacy_by_local.setdefault(row.username.partition("@")[0], set()).add(row.username)
        else:
            return  # a scheme this version does not know: it matches nothing
        self.stored[row.id] = (row.hash, row.username)
        self.active.add(row.id)

    def _forget(self, credential_id: int) -> None:
        found = self.stored.pop(credential_id, None)
        if found is None:
            return
        digest, user = found
        self.active.discard(credential_id)
        self.by_digest.pop(digest, None)
        creds = self.legacy.get(user)
        if creds is not None and creds.pop(credential_id, None) is not None and not creds:
            del self.legacy[user]
            local = user.partition("@")[0]
            users = self.legacy_by_local.get(local, set())
            users.discard(user)
            if not users:
                self.legacy_by_local.pop(local, None)

    # -- checking a login ------------------------------------------------------------------

    def find(self, password: str) -> Found | None:
        """The active credential this password is, by its keyed hash: one HMAC, one lookup."""
        digest = hash_password(self.key, password)
        with self._lock:
            return self.by_digest.get(digest)

    def has_legacy(self, user: str) -> bool:
        """Whether an old (argon2) credential could be this user's: then it must be checked."""
        local = ascii_lower(user).rpartition("\\")[2].partition("@")[0]
        with self._lock:
            return local in self.legacy_by_local

    def verify_legacy(self, user: str, password: str, owns: Callable[[str, str], bool]) -> int | None:
        """The device whose old argon2 credential this is (slow), or None.

        Only credentials of users ``user`` names (``owns(user, owner)``) are tried. A
        match moves the credential to its keyed hash at once, and the Rehasher stores it.
        """
        local = ascii_lower(user).rpartition("\\")[2].partition("@")[0]
        with self._lock:
            users = [u for u in sorted(self.legacy_by_local.get(local, ())) if owns(user, u)]
            candidates = [(cid, dev, h, u) for u in users for cid, (dev, h) in self.legacy.get(u, {}).items()]
        for cred_id, device_id, digest, owner in candidates:
            try:
                _hasher.verify(digest, password)
            except (VerificationError, InvalidHashError):
                continue
            keyed = hash_password(self.key, password)
            with self._lock:
                if self.stored.get(cred_id, ("",))[0] != digest:  # revoked (or rehashed) while argon2 ran
                    return None
                self._forget(cred_id)
                self._add(Credential(cred_id, device_id, owner, keyed, None, self.seq))
            if self.rehasher is not None:
                self.rehasher.submit(cred_id, digest, keyed)
            return device_id
        return None
