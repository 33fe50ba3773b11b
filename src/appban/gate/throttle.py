"""Failed mail logins, counted per user and per client address, to slow guessing.

Each key has a leaky bucket: a failure adds one, and ``limit`` failures drain away
over ``window`` seconds. A key whose bucket holds more than ``limit - 1`` is throttled: the
gate refuses its logins (reason ``throttled``, with ``Auth-Wait``) without checking
the password. A user is keyed by the local part of the name, so ``jdoe``,
``jdoe@example.com`` and ``CORP\\jdoe`` share one budget; a client by its IP address,
an IPv6 client by its /64 (one host usually holds a whole /64).

Keys are bounded: past ``max_keys`` the least recently failed are forgotten, so a
flood of made-up names or addresses cannot grow the gate without limit.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from appban import settings
from appban.text import ascii_lower


class Bucket:
    """Failures per key, draining at ``limit`` per ``window`` seconds."""

    def __init__(self, limit: int, window: float, *, max_keys: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.rate = limit / window if window > 0 else float("inf")
        self.max_keys = max_keys
        self.clock = clock
        self.levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (level, at)

    def level(self, key: str) -> float:
        found = self.levels.get(key)
        if found is None:
            return 0.0
        level, at = found
        return max(0.0, level - (self.clock() - at) * self.rate)

    def full(self, key: str) -> bool:
        # ``limit`` failures fill it; one failure's worth must drain before the next try.
        return self.limit > 0 and self.level(key) > self.limit - 1

    def add(self, key: str) -> None:
        if self.limit <= 0:
            return
        self.levels[key] = (self.level(key) + 1, self.clock())
        self.levels.move_to_end(key)
        while len(self.levels) > self.max_keys:
            self.levels.popitem(last=False)

    def clear(self, key: str) -> None:
        self.levels.pop(key, None)


class LoginLimits:
    """Per-user and per-client failure limits; shared by the event loop and the thread
    that verifies old (argon2) hashes, hence the lock."""

    def __init__(
        self,
        per_user: int,
        per_client: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = Bucket(per_user, window, max_keys=max_keys, clock=clock)
        self.clients = Bucket(per_client, window, max_keys=max_keys, clock=clock)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> LoginLimits:
        return cls(
            settings.get("mail_user_failures"),
            settings.get("mail_client_failures"),
            settings.get("mail_failure_window"),
        )

    def throttled(self, user: str, client: str) -> bool:
        with self._lock:
            return self.users.full(user_key(user)) or self.clients.full(client_key(client))

    def failed(self, user: str, client: str) -> None:
        with self._lock:
            self.users.add(user_key(user))
            self.clients.add(client_key(client))

    def succeeded(self, user: str) -> None:
        """The user's own password worked: its failures are forgiven (the client's are not)."""
        with self._lock:
            self.users.clear(user_key(user))


def user_key(user: str) -> str:
    """The local part of a user name in any of its forms, ASCII lower-cased."""
    name = ascii_lower(user).rpartition("\\")[2]
    return name.partition("@")[0][:256]


def client_key(client: str) -> str:
    """The client's address; for IPv6, its /64."""
    text = client.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
