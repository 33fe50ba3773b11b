"""Per-device mail passwords: keyed hashes, old argon2 ones migrated, failure limits, and
the CLI-to-gate path.

A login costs one HMAC-SHA-256 whoever it names, so a known and an unknown user are
told apart by nothing; an old argon2 hash is checked once, then replaced.
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
from appban.gate.credentials import SCHEME, CredentialCache, hash_password
from appban.gate.server import Gate
from appban.gate.table import DecisionTable
from appban.gate.throttle import LoginLimits
from appban.store import open_store
from appban.store.records import Credential, GateRow
from helpers_semantics import Appban

# Cheap parameters for unit tests; verification reads them from the hash itself.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
KEY = b"k" * 32
JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"
BLOCKED = "blocked:tiktok-mail"


def row(cred_id: int, device_id: int, user: str, password: str, *, seq: int, revoked: bool = False) -> Credential:
    return Credential(cred_id, device_id, user, hash_password(KEY, password), 1 if revoked else None, seq)


def old_row(cred_id: int, device_id: int, user: str, password: str, *, seq: int) -> Credential:
    return Credential(cred_id, device_id, user, FAST.hash(password), None, seq)


class Counting:
    """Counts calls of a function it stands in for."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0
        self.during: Any = None  # called inside, to simulate a concurrent change

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.during is not None:
            self.during()
        return self.real(*args)

    def verify(self, digest: str, password: str) -> bool:
        return bool(self(digest, password))


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> Counting:
    counting = Counting(credentials.hash_password)
    monkeypatch.setattr(credentials, "hash_password", counting)
    return counting


@pytest.fixture
def argon(monkeypatch: pytest.MonkeyPatch) -> Counting:
    counting = Counting(credentials._hasher.verify)
    monkeypatch.setattr(credentials, "_hasher", counting)
    return counting


@pytest.fixture
def cache() -> CredentialCache:
    c = CredentialCache(key=KEY)
    c.apply([row(1, 10, JANE, "jane-pw", seq=3), row(2, 20, BOB, "bob-pw", seq=4)])
    return c


class Rehashes:
    def __init__(self) -> None:
        self.jobs: list[tuple[int, str, str]] = []

    def submit(self, credential_id: int, old: str, new: str) -> None:
        self.jobs.append((credential_id, old, new))

    def key(self) -> bytes:
        return KEY


def owns_exactly(user: str, owner: str) -> bool:
    return user.lower() == owner


# -- the keyed hash --------------------------------------------------------------------------


def test_find_by_keyed_hash(cache: CredentialCache) -> None:
    assert cache.find("jane-pw") == (1, 10, JANE)
    assert cache.find("bob-pw") == (2, 20, BOB)
    assert cache.find("guess") is None
    assert cache.seq == 4 and cache.devices == {10, 20} and cache.active == {1, 2}


def test_the_stored_hash_is_keyed_and_names_its_scheme() -> None:
    digest = hash_password(KEY, "pw")
    assert digest.startswith(SCHEME) and len(digest) == len(SCHEME) + 64
    assert "pw" not in digest.removeprefix(SCHEME)
    assert hash_password(b"other key" * 4, "pw") != digest


def test_a_revoked_password_is_found_no_more(cache: CredentialCache) -> None:
    cache.apply([Credential(1, 10, JANE, "ignored", 99, 7)])
    assert cache.find("jane-pw") is None
    assert cache.active == {2} and cache.devices == {20} and cache.seq == 7


def test_reissue_replaces_the_old_password(cache: CredentialCache) -> None:
    cache.apply([Credential(2, 20, BOB, "x", 5, 8), row(3, 20, BOB, "bob-new", seq=8)])
    assert cache.find("bob-pw") is None
    assert cache.find("bob-new") == (3, 20, BOB)


def test_unknown_schemes_match_nothing() -> None:
    c = CredentialCache(key=KEY)
    c.apply([Credential(1, 10, JANE, "md5$abc", None, 1)])
    assert c.find("abc") is None and c.active == set()


# -- the same work for a known and an unknown user -------------------------------------------


def gate_for(cache: CredentialCache, **limits: Any) -> Gate:
    table = DecisionTable()
    table.apply([GateRow(10, JANE, (), "allow", "ok", 3), GateRow(20, BOB, (), "allow", "ok", 4)], (), {10, 20})
    return Gate(
        table,
        cache,
        None,
        auth_wait=3,
        limits=LoginLimits(limits.get("per_user", 10), limits.get("per_client", 30), 600.0),
    )


def mail(gate: Gate, user: str, password: str, client: str = "192.0.2.10") -> dict[str, str]:
    headers = {
        b"auth-user": user.encode(),
        b"auth-pass": password.encode(),
        b"auth-protocol": b"imap",
        b"auth-login-attempt": b"1",
        b"client-ip": client.encode(),
    }
    answer, _ = gate.mail_quick(headers)
    assert answer is not None, "answered at once, never sent off the loop"
    head = answer.decode("latin-1").split("\r\n\r\n")[0].split("\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("mallory@example.com", "guess"),  # no such user
        ("nobody", "jane-pw"),  # no such user, someone's real password
        (JANE, "guess"),  # a user with a mail password, wrong password
        ("jane.doe", "bob-pw"),  # a user with a mail password, another's password
    ],
)
def test_a_failed_login_costs_one_hash_whoever_it_names(
    cache: CredentialCache, hashes: Counting, argon: Counting, user: str, password: str
) -> None:
    gate = gate_for(cache)
    answer = mail(gate, user, password)
    assert answer["auth-status"] == "unknown_device"
    assert (hashes.calls, argon.calls) == (1, 0)


def test_a_good_login_costs_one_hash_too(cache: CredentialCache, hashes: Counting, argon: Counting) -> None:
    gate = gate_for(cache)
    assert mail(gate, "jane.doe", "jane-pw")["auth-status"] == "no_upstream"  # no upstream set here
    assert mail(gate, "JANE.DOE@EXAMPLE.COM", "jane-pw")["x-appban-reason"] == "no_upstream"
    assert (hashes.calls, argon.calls) == (2, 0)


# -- failure limits --------------------------------------------------------------------------


def test_too_many_failures_are_throttled(cache: CredentialCache, hashes: Counting) -> None:
    gate = gate_for(cache, per_user=3)
    for _ in range(3):
        assert mail(gate, "jane.doe", "guess")["auth-status"] == "unknown_device"
    refused = mail(gate, "jane.doe", "another guess")
    assert (refused["auth-status"], refused["auth-wait"], refused["x-appban-reason"]) == ("throttled", "3", "throttled")
    # Other users are not touched; a known and an unknown name are throttled alike.
    assert mail(gate, "bob.roe", "bob-pw")["auth-status"] == "no_upstream"
    for _ in range(3):
        mail(gate, "mallory", "guess")
    assert mail(gate, "mallory", "guess")["auth-status"] == "throttled"
    assert gate.metrics.decisions[("mail", "throttled")] == 2


def test_the_right_password_is_never_throttled(cache: CredentialCache) -> None:
    """The probe: after a gate restart (or from a new address, or at a second gate),
    ten guesses at Bob's name made his real password "throttled": anyone could lock a
    user out. The right password has 144 random bits: it always passes."""
    gate = gate_for(cache, per_user=3, per_client=3)
    for _ in range(5):  # someone guesses at Jane's name, from one address and others
        mail(gate, "jane.doe", "guess", client="203.0.113.66")
        mail(gate, "jane.doe", "guess")
    assert mail(gate, "jane.doe", "guess")["auth-status"] == "throttled"
    assert mail(gate, "jane.doe", "jane-pw")["auth-status"] == "no_upstream"
    assert mail(gate, "jane.doe", "jane-pw", client="203.0.113.66")["auth-status"] == "no_upstream"


def test_a_client_that_fails_for_many_users_is_throttled(cache: CredentialCache) -> None:
    gate = gate_for(cache, per_client=4)
    for i in range(4):
        mail(gate, f"user{i}", "guess", client="203.0.113.66")
    assert mail(gate, "bob.roe", "a guess", client="203.0.113.66")["auth-status"] == "throttled"
    assert mail(gate, "bob.roe", "a guess", client="192.0.2.10")["auth-status"] == "unknown_device"
    # Bob himself, behind the same address (a shared NAT), still gets in.
    assert mail(gate, "bob.roe", "bob-pw", client="203.0.113.66")["auth-status"] == "no_upstream"


# -- old argon2 hashes -----------------------------------------------------------------------


def test_an_old_argon2_hash_is_checked_once_then_replaced(argon: Counting, hashes: Counting) -> None:
    rehashes = Rehashes()
    c = CredentialCache(key=KEY, rehasher=rehashes)  # type: ignore[arg-type]
    old = old_row(1, 10, JANE, "jane-pw", seq=3)
    c.apply([old])
    assert c.find("jane-pw") is None and c.has_legacy("CORP\\Jane.Doe") and not c.has_legacy("bob")
    assert c.verify_legacy(JANE, "guess", owns_exactly) is None
    assert c.verify_legacy("bob.roe@example.com", "jane-pw", owns_exactly) is None  # not Bob's: not tried
    assert argon.calls == 1
    assert c.verify_legacy(JANE, "jane-pw", owns_exactly) == 10
    assert argon.calls == 2
    # Moved to its keyed hash at once, and handed to the Rehasher to store.
    assert c.find("jane-pw") == (1, 10, JANE) and not c.has_legacy(JANE)
    assert rehashes.jobs == [(1, old.hash, hash_password(KEY, "jane-pw"))]
    # The follower then reads the stored hash back: nothing changes.
    c.apply([Credential(1, 10, JANE, hash_password(KEY, "jane-pw"), None, 9)])
    assert c.find("jane-pw") == (1, 10, JANE) and c.active == {1}


def test_revoked_while_argon2_runs_is_refused_and_not_moved(argon: Counting) -> None:
    rehashes = Rehashes()
    c = CredentialCache(key=KEY, rehasher=rehashes)  # type: ignore[arg-type]
    c.apply([old_row(1, 10, JANE, "jane-pw", seq=3)])
    argon.during = lambda: c.apply([Credential(1, 10, JANE, "x", 5, 9)])
    assert c.verify_legacy(JANE, "jane-pw", owns_exactly) is None
    assert c.find("jane-pw") is None and rehashes.jobs == []


def test_an_old_hash_goes_off_the_loop_and_its_success_forgives_failures(argon: Counting) -> None:
    c = CredentialCache(key=KEY)
    c.apply([old_row(1, 10, JANE, "jane-pw", seq=3)])
    gate = gate_for(c, per_user=2)
    headers = {b"auth-user": b"jane.doe", b"auth-pass": b"jane-pw", b"client-ip": b"192.0.2.10"}
    answer, request = gate.mail_quick(headers)
    assert answer is None and request[:2] == ("jane.doe", "jane-pw")
    assert gate.mail_verify("jane.doe", "jane-pw") == 10
    assert not gate.limits.throttled("jane.doe", "198.51.100.1")
    assert mail(gate, "jane.doe", "jane-pw")["auth-status"] == "no_upstream"  # now the keyed hash
    assert argon.calls == 1


def test_concurrent_revocations_and_logins() -> None:
    c = CredentialCache(key=KEY)
    rows = [row(i, i, JANE, f"pw-{i}", seq=i) for i in range(1, 21)]
    c.apply(rows)
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for n in range(300):
                i = n % 20 + 1
                c.apply([Credential(i, i, JANE, "", 1, 100 + n)])
                c.apply([rows[i - 1]._replace(seq=200 + n)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        try:
            for n in range(3000):
                found = c.find(f"pw-{n % 20 + 1}")
                assert found is None or found[2] == JANE
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=read), threading.Thread(target=read)]
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
    _, took = wait_for(lambda: login(gate, BOB, bob).reason == "user_mismatch", timeout=3)
    assert took < 1.0
    # By his bare name too: the password is for a device that is Jane's now.
    assert login(gate, "bob.roe", bob).reason == "user_mismatch"
    assert login(gate, "jane.doe", bob).headers["auth-status"] != "OK"


def test_issued_passwords_are_stored_under_the_keyed_hash(live: tuple[Appban, GateProcess]) -> None:
    ab, _gate = live
    issued = ab("device", "credential", "issue", "BOB-PIXEL", now=wall())
    store = open_store(ab.db, create=False)
    try:
        (stored,) = [c for c in store.credentials(0) if c.revoked_at is None]
        key = bytes.fromhex(store.get_meta("credential_key") or "")
    finally:
        store.close()
    assert stored.hash == hash_password(key, issued["password"])
    assert issued["password"] not in stored.hash and len(issued["password"]) >= 24  # 144 bits


def test_an_old_argon2_password_works_and_is_migrated_on_use(live: tuple[Appban, GateProcess]) -> None:
    ab, gate = live
    # A database from before the keyed scheme: its credential holds an argon2 hash.
    store = open_store(ab.db, create=False)
    try:
        (bob,) = store.devices_by_eas("EASBOB1")
        assert bob.id is not None
        with store.transaction():
            seq = store.next_gate_seq()
            store.add_credential(bob.id, bob.owner, FAST.hash("old-password"), 1, seq)
            store.set_decision(bob.id, bob.decision, bob.reason, seq)
    finally:
        store.close()
    wait_for(lambda: known_credentials(gate) == 1, timeout=3)
    assert login(gate, "bob.roe", "old-password").headers["auth-status"] == "OK"

    def stored() -> str:
        s = open_store(ab.db, create=False)
        try:
            return str(s.credentials(0)[-1].hash)
        finally:
            s.close()

    migrated, _ = wait_for(lambda: stored() if stored().startswith(SCHEME) else "", timeout=5)
    assert migrated.startswith(SCHEME)
    assert login(gate, "bob.roe", "old-password").headers["auth-status"] == "OK"
    assert login(gate, "bob.roe", "wrong").headers["auth-status"] != "OK"


def test_guessing_is_throttled_with_auth_wait(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    env = {"APPBAN_MAIL_USER_FAILURES": "3", "APPBAN_AUTH_WAIT": "7"}
    with GateProcess(ab.db, "--mail-upstream", "127.0.0.1:1143", env=env) as gate:
        password = ab("device", "credential", "issue", "BOB-PIXEL", now=wall())["password"]
        wait_for(lambda: known_credentials(gate) == 1, timeout=3)
        for _ in range(3):
            refused = login(gate, "bob.roe", "guess")
            assert (refused.headers["auth-status"], refused.headers["auth-wait"]) == ("unknown_device", "7")
        throttled = login(gate, "bob.roe", "another guess")
        assert (throttled.reason, throttled.headers["auth-status"], throttled.headers["auth-wait"]) == (
            "throttled",
            "throttled",
            "7",
        )
        assert gate.metrics()['appban_gate_decisions_total{endpoint="mail",reason="throttled"}'] == 1
        # Bob's own password still gets him in: guessing at his name cannot lock him out.
        assert login(gate, "bob.roe", password).headers["auth-status"] == "OK"
