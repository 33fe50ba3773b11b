"""Failure limits for mail logins (gate/throttle.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from appban.gate.throttle import LoginLimits, client_key, user_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_user_is_throttled_after_its_limit_and_drains(clock: Clock) -> None:
    limits = LoginLimits(3, 100, 60.0, clock=clock)
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert not limits.throttled("jane.doe", ip)
        limits.failed("jane.doe", ip)
    # The user's budget is spent, from whichever address; other users are not touched.
    assert limits.throttled("jane.doe", "198.51.100.9")
    assert limits.throttled("CORP\\Jane.Doe", "198.51.100.9")
    assert limits.throttled("jane.doe@example.com", "198.51.100.9")
    assert not limits.throttled("bob", "198.51.100.9")
    clock.now += 20  # one failure's worth drains (3 per 60 s)
    assert not limits.throttled("jane.doe", "198.51.100.9")
    limits.failed("jane.doe", "198.51.100.9")
    assert limits.throttled("jane.doe", "198.51.100.9")


def test_a_client_is_throttled_across_users(clock: Clock) -> None:
    limits = LoginLimits(100, 5, 60.0, clock=clock)
    for i in range(5):
        limits.failed(f"user{i}", "192.0.2.7")
    assert limits.throttled("someone.else", "192.0.2.7")
    assert not limits.throttled("someone.else", "192.0.2.8")
    clock.now += 60
    assert not limits.throttled("someone.else", "192.0.2.7")


def test_ipv6_clients_are_counted_by_their_64(clock: Clock) -> None:
    limits = LoginLimits(100, 2, 60.0, clock=clock)
    limits.failed("a", "2001:db8:1:2::1")
    limits.failed("b", "2001:db8:1:2:ffff::9")
    assert limits.throttled("c", "2001:db8:1:2::abcd")
    assert not limits.throttled("c", "2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("") == ""


def test_success_forgives_the_users_failures_not_the_clients(clock: Clock) -> None:
    limits = LoginLimits(2, 2, 60.0, clock=clock)
    limits.failed("jane.doe", "192.0.2.1")
    limits.failed("jane.doe", "192.0.2.1")
    limits.succeeded("jane.doe")
    assert not limits.throttled("jane.doe", "192.0.2.2")
    assert limits.throttled("jane.doe", "192.0.2.1")


def test_zero_means_no_limit(clock: Clock) -> None:
    limits = LoginLimits(0, 0, 60.0, clock=clock)
    for _ in range(1000):
        limits.failed("jane", "192.0.2.1")
    assert not limits.throttled("jane", "192.0.2.1")


def test_keys_are_bounded(clock: Clock) -> None:
    limits = LoginLimits(5, 5, 60.0, clock=clock, max_keys=100)
    for i in range(10_000):
        limits.failed(f"made-up-{i}", f"10.0.{i // 256}.{i % 256}")
        assert len(limits.users.levels) <= 100 and len(limits.clients.levels) <= 100


def test_user_key_is_the_local_part() -> None:
    assert user_key("CORP\\Jane.Doe") == user_key("jane.doe@example.com") == user_key("JANE.DOE") == "jane.doe"
