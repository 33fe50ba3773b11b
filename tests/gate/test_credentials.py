"""Per-device mail passwords: the gate's cache of verified logins, and the CLI-to-gate path.

argon2 is slow on purpose (about half a second here), so the gate verifies a login once
and remembers it under a keyed hash; the cache is bounded and forgets a credential
the moment the follower sees it revoked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from helpers_gate import NOTES, TIKTOK, Answer, GateProcess, device, live_fleet, wait_for, wall

from appban.gate import credentials
from appban.gate.credentials import CredentialCache
from helpers_semantics import Appban

# Cheap parameters for unit tests; verification reads them from the hash itself.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"
BLOCKED = "blocked:tiktok-mail"

Row = tuple[int, int, str, str, int | None, int]


def row(cred_id: int, device_id: int, user: str, password: str, *, seq: int, revoked: bool = False) -> Row:
    return (cred_id, device_id, user, FAST.hash(password), 1 if revoked else None, seq)


class Counting:
    """The module's hasher, counting verifications."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.calls = 0
        self.during: Any = None  # called inside verify, to simulate a concurrent change

    def verify(self, digest: str, password: str) -> bool:
        self.calls += 1
        if self.during is not None:
            self.during()
        return self.real.verify(digest, password)


@pytest.fixture
def argon(monkeypatch: pytest.MonkeyPatch) -> Counting:
    counting = Counting(credentials._hasher)
    monkeypatch.setattr(credentials, "_hasher", counting)
    return counting


@pytest.fixture
def cache() -> CredentialCache:
    c = CredentialCache()
    c.apply([row(1, 10, JANE, "jane-pw", seq=3), row(2, 20, BOB, "bob-pw", seq=4)])
    return c


# -- the cache -------------------------------------------------------------------------------


def test_verify(cache: CredentialCache, argon: Counting) -> None:
    assert cache.verify(JANE, "jane-pw", "") == 10
    assert cache.verify(JANE, "bob-pw", "") is None
    assert cache.verify(BOB, "bob-pw", "") == 20
    assert cache.verify("nobody@example.com", "bob-pw", "") is None
    assert cache.seq == 4
    assert cache.devices == {10, 20}


def test_a_cache_hit_avoids_argon2(cache: CredentialCache, argon: Counting) -> None:
    assert cache.cached(JANE, "jane-pw") is None
    assert cache.verify(JANE, "jane-pw", "") == 10
    assert argon.calls == 1
    for _ in range(100):
        assert cache.cached(JANE, "jane-pw") == 10
        assert cache.cached(" Jane.Doe@Example.com ", "jane-pw") == 10  # same user, same key
    assert argon.calls == 1


def test_failed_logins_are_never_cached(cache: CredentialCache, argon: Counting) -> None:
    for _ in range(3):
        assert cache.verify(JANE, "guess", "") is None
        assert cache.cached(JANE, "guess") is None
    assert argon.calls == 3
    # A user with no credential costs no argon2 at all.
    assert cache.verify("mallory@example.com", "guess", "") is None
    assert argon.calls == 3


@pytest.mark.parametrize(
    ("user", "domain", "device_id"),
    [
        ("jane.doe", "", 10),
        ("CORP\\jane.doe", "", 10),
        ("jane.doe", "example.com", 10),
        ("jane.doe", "other.org", None),
        ("JANE.DOE@EXAMPLE.COM", "other.org", 10),
        ("jane", "", None),
    ],
)
def test_forms_of_the_user(cache: CredentialCache, user: str, domain: str, device_id: int | None) -> None:
    assert cache.verify(user, "jane-pw", domain) == device_id


def test_the_cache_is_bounded_least_recently_used_first(argon: Counting) -> None:
    c = CredentialCache(size=3)
    c.apply([row(i, 100 + i, JANE, f"pw-{i}", seq=i) for i in range(1, 6)])
    for i in (1, 2, 3):
        assert c.verify(JANE, f"pw-{i}", "") == 100 + i
    assert c.cached(JANE, "pw-1") == 101  # now the most recently used
    for i in (4, 5):
        assert c.verify(JANE, f"pw-{i}", "") == 100 + i
    assert len(c._verified) == 3
    hits = {i: c.cached(JANE, f"pw-{i}") for i in range(1, 6)}
    assert hits == {1: 101, 2: None, 3: None, 4: 104, 5: 105}
    # Evicted is only forgotten, not refused: argon2 again (against each of Jane's
    # passwords in turn until one matches).
    calls = argon.calls
    assert c.verify(JANE, "pw-2", "") == 102
    assert argon.calls == calls + 2


def test_revocation_evicts_cached_logins(cache: CredentialCache, argon: Counting) -> None:
    assert cache.verify(JANE, "jane-pw", "") == 10
    assert cache.verify("CORP\\jane.doe", "jane-pw", "") == 10
    cache.apply([(1, 10, JANE, "ignored", 99, 7)])
    assert cache.cached(JANE, "jane-pw") is None
    assert cache.cached("CORP\\jane.doe", "jane-pw") is None
    assert cache.verify(JANE, "jane-pw", "") is None
    assert 1 not in cache.active and cache.devices == {20}
    assert cache.seq == 7
    assert len(cache._verified) == 0
    assert cache.cached(BOB, "bob-pw") is None and cache.verify(BOB, "bob-pw", "") == 20


def test_reissue_replaces_the_old_password(cache: CredentialCache) -> None:
    assert cache.verify(BOB, "bob-pw", "") == 20
    cache.apply([(2, 20, BOB, "x", 5, 8), row(3, 20, BOB, "bob-new", seq=8)])
    assert cache.cached(BOB, "bob-pw") is None
    assert cache.verify(BOB, "bob-pw", "") is None
    assert cache.verify(BOB, "bob-new", "") == 20


def test_revoked_while_argon2_runs_is_refused_and_not_cached(cache: CredentialCache, argon: Counting) -> None:
    argon.during = lambda: cache.apply([(1, 10, JANE, "x", 5, 9)])
    assert cache.verify(JANE, "jane-pw", "") is None
    argon.during = None
    assert cache.cached(JANE, "jane-pw") is None
    assert len(cache._verified) == 0


def test_passwords_are_not_kept_in_the_clear(cache: CredentialCache) -> None:
    assert cache.verify(JANE, "jane-pw", "") == 10
    (key,) = cache._verified
    assert b"jane-pw" not in key and b"jane" not in key
    other = CredentialCache()
    assert other._cache_key(JANE, "jane-pw") != cache._cache_key(JANE, "jane-pw")


def test_concurrent_revocations_and_logins(argon: Counting) -> None:
    c = CredentialCache(size=50)
    hashes = [row(i, i, JANE, f"pw-{i}", seq=i) for i in range(1, 21)]
    c.apply(hashes)
    for i in range(1, 21):
        c.verify(JANE, f"pw-{i}", "")
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for n in range(200):
                i = n % 20 + 1
                c.apply([(i, i, JANE, "", 1, 100 + n)])
                c.apply([hashes[i - 1][:5] + (200 + n,)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        try:
            for n in range(2000):
                c.cached(JANE, f"pw-{n % 20 + 1}")
                c.candidates(JANE, "")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=churn),
        threading.Thread(target=read),
        threading.Thread(target=read),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- through the CLI and a running gate ------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Appban, GateProcess]]:
    ab = live_fleet(tmp_path)
    with GateProcess(ab.db, "--mail-upstream", "127.0.0.1:1143") as gate:
        yield ab, gate


def login(gate: GateProcess, user: str, password: str, protocol: str = "imap") -> Answer:
    return gate.get(
        "/auth/mail",
        {
            "Auth-Method": "plain",
            "Auth-User": user,
            "Auth-Pass": password,
            "Auth-Protocol": protocol,
            "Auth-Login-Attempt": "1",
            "Client-IP": "198.51.100.4",
        },
    )


def known_credentials(gate: GateProcess) -> float:
    return gate.metrics()["appban_gate_mail_credentials"]


def test_issue_and_revoke_reach_the_gate_within_a_second(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    assert login(gate, "bob.roe", "guess").headers["auth-status"] != "OK"
    issued = ab("device", "credential", "issue", "BOB-PIXEL", now=wall())
    _, took = wait_for(lambda: known_credentials(gate) == 1, timeout=3)
    assert took < 1.0
    first = wait_for(lambda: login(gate, "bob.roe", issued["password"]).headers["auth-status"] == "OK", timeout=3)
    assert first
    ok = login(gate, "bob.roe@example.com", issued["password"], "smtp")
    assert (ok.headers["auth-status"], ok.headers["auth-server"], ok.headers["auth-port"]) == (
        "OK",
        "127.0.0.1",
        "1143",
    )

    ab("device", "credential", "revoke", "BOB-PIXEL", now=wall())
    _, took = wait_for(lambda: login(gate, "bob.roe", issued["password"]).headers["auth-status"] != "OK", timeout=3)
    assert took < 1.0, f"revocation took {took:.2f}s"
    refused = login(gate, "bob.roe", issued["password"], "smtp")
    assert refused.headers["auth-status"] != "OK" and refused.headers["auth-error-code"].startswith("535")
    assert known_credentials(gate) == 0

    again = ab("device", "credential", "issue", "BOB-PIXEL", now=wall())
    wait_for(lambda: login(gate, "bob.roe", again["password"]).headers["auth-status"] == "OK", timeout=3)
    assert login(gate, "bob.roe", issued["password"]).headers["auth-status"] != "OK"


def test_a_mail_login_follows_its_devices_decision(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    jane = ab("device", "credential", "issue", "JANE-IPHONE", now=wall())["password"]
    denied = wait_for(lambda: login(gate, "jane.doe", jane).headers["auth-status"] == BLOCKED, timeout=3)
    assert denied
    # The device reports clean: the same (now cached) password gets in within a second.
    ab.ingest(device("JANE-IPHONE", JANE, ["EASJANE1"], [NOTES], at=wall(-1)), now=wall())
    _, took = wait_for(lambda: login(gate, "jane.doe", jane).headers["auth-status"] == "OK", timeout=3)
    assert took < 1.0
    ab.ingest(device("JANE-IPHONE", JANE, ["EASJANE1"], [NOTES, TIKTOK], at=wall(-1)), now=wall())
    _, took = wait_for(lambda: login(gate, "jane.doe", jane).reason == BLOCKED, timeout=3)
    assert took < 1.0


def test_the_password_of_an_earlier_owner_is_refused(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    bob = ab("device", "credential", "issue", "BOB-PIXEL", now=wall())["password"]
    wait_for(lambda: login(gate, "bob.roe", bob).headers["auth-status"] == "OK", timeout=3)
    # The phone is handed to Jane; Bob's password must not keep working for Bob.
    ab.ingest(device("BOB-PIXEL", JANE, ["EASBOB1"], [NOTES], at=wall(-1)), now=wall())
    _, took = wait_for(lambda: login(gate, "bob.roe", bob).reason == "user_mismatch", timeout=3)
    assert took < 1.0
    assert login(gate, "jane.doe", bob).headers["auth-status"] != "OK"
