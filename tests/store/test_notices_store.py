"""The store's outbox: planning once, claiming, leases, results, retries, cancelling;
and employees' exemption requests.

Run against every backend, as the contract suite is (``BACKENDS`` of test_contract.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_contract import BACKENDS, T

from appban.store import Store
from appban.store.records import ExemptionRequest, NewNotice

S = 1_000_000


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store, _reopen = BACKENDS[request.param](tmp_path)
    try:
        yield store
    finally:
        store.close()


def plan(store: Store, *rows: NewNotice) -> None:
    with store.transaction():
        store.add_notices(list(rows))


def notice(person: str, kind: str = "memo", *, occasion: str = "", devices: str = "", due: int = T) -> NewNotice:
    return NewNotice("p1", person, kind, occasion, "mail", devices, T, due)


def test_planning_the_same_notice_twice_keeps_one_and_gathers_its_devices(store: Store) -> None:
    plan(store, notice("ann@example.com", "blocked", occasion="1", devices="3"))
    plan(
        store,
        notice("ann@example.com", "blocked", occasion="1", devices="5"),
        notice("ann@example.com", "blocked", occasion="1", devices="3"),
    )
    rows = store.list_notices()
    assert [(r.person, r.devices, r.state) for r in rows] == [("ann@example.com", (3, 5), "pending")]
    # Another occasion is another notice.
    plan(store, notice("ann@example.com", "blocked", occasion="2", devices="3"))
    assert len(store.list_notices()) == 2


def test_claim_takes_due_notices_once_and_a_dead_senders_after_its_lease(store: Store) -> None:
    plan(store, notice("a@example.com"), notice("b@example.com"), notice("c@example.com", due=T + 60 * S))
    with store.transaction():
        first = store.claim_notices(T, 10, T + 5 * S)
    assert [n.person for n in first] == ["a@example.com", "b@example.com"]
    assert all(n.state == "sending" and n.attempts == 1 for n in first)
    with store.transaction():
        assert store.claim_notices(T + S, 10, T + 6 * S) == []  # held by the first sender
    with store.transaction():
        assert store.finish_notice(first[0].id, "sent", T + S)
    # The lease of the second ran out: its sender died mid-send. Another takes it.
    with store.transaction():
        again = store.claim_notices(T + 10 * S, 10, T + 15 * S)
    assert [(n.person, n.attempts) for n in again] == [("b@example.com", 2)]
    with store.transaction():
        assert store.finish_notice(again[0].id, "sent", T + 11 * S)
    with store.transaction():
        assert [n.person for n in store.claim_notices(T + 60 * S, 10, T + 65 * S)] == ["c@example.com"]
    assert store.next_notice_due() is None


def test_results_retry_and_failure(store: Store) -> None:
    plan(store, notice("a@example.com"), notice("b@example.com"))
    with store.transaction():
        a, b = store.claim_notices(T, 10, T + S)
        assert store.finish_notice(a.id, "pending", T, error="451 try later", next_try=T + 60 * S)
        assert store.finish_notice(b.id, "failed", T, error="550 no such user")
    assert store.next_notice_due() == T + 60 * S
    with store.transaction():
        assert store.claim_notices(T + 30 * S, 10, T + 31 * S) == []
    got = store.get_notice(b.id)
    assert got is not None and (got.state, got.last_error) == ("failed", "550 no such user")
    assert store.notice_counts() == {("p1", "memo", "failed"): 1, ("p1", "memo", "pending"): 1}
    with store.transaction():
        assert store.retry_notices(policy_id="p1") == 1
    got = store.get_notice(b.id)
    assert got is not None and (got.state, got.attempts) == ("pending", 0)
    # A result for a notice no longer being sent changes nothing.
    assert not store.finish_notice(b.id, "failed", T, error="late")


def test_cancel_touches_pending_only_and_a_send_in_flight_still_counts(store: Store) -> None:
    plan(store, notice("a@example.com"), notice("b@example.com"), notice("c@example.com", "reminder", occasion="9"))
    with store.transaction():
        (a,) = store.claim_notices(T, 1, T + S)
        assert store.cancel_notices("p1", at=T, why="policy withdrawn") == 2
        # The one being sent when the policy was withdrawn was sent: it says so.
        assert store.finish_notice(a.id, "sent", T + 1)
    assert {r.person: r.state for r in store.list_notices()} == {
        "a@example.com": "sent",
        "b@example.com": "cancelled",
        "c@example.com": "cancelled",
    }
    assert store.notified_people("p1") == [("a@example.com", "UTC")]


def test_marks_are_recorded_once(store: Store) -> None:
    with store.transaction():
        assert store.add_notice_mark("p1", "memo", T)
        assert not store.add_notice_mark("p1", "memo", T + 1)
    assert store.notice_marks("p1") == {"memo": T}
    assert store.notice_marks("p2") == {}


def test_exemption_requests_are_decided_once(store: Store) -> None:
    with store.transaction():
        rid = store.add_exemption_request(ExemptionRequest(0, "p1", "ann@example.com", None, "needs it", T, "pending"))
    assert [r.state for r in store.exemption_requests(state="pending")] == ["pending"]
    with store.transaction():
        assert store.decide_exemption_request(rid, "refused", T + 1, "admin", answer="no")
        assert not store.decide_exemption_request(rid, "granted", T + 2, "admin", exemption_id=4)
    got = store.get_exemption_request(rid)
    assert got is not None and (got.state, got.answer, got.exemption_id) == ("refused", "no", None)


def test_a_late_result_does_not_overwrite_the_sender_that_took_over(store: Store) -> None:
    plan(store, notice("a@example.com"))
    with store.transaction():
        (first,) = store.claim_notices(T, 10, T + S)
    with store.transaction():
        (second,) = store.claim_notices(T + 2 * S, 10, T + 3 * S)  # the first sender's lease ran out
    with store.transaction():
        assert not store.finish_notice(first.id, "failed", T + 2 * S, error="late", lease=first.claimed_until)
        assert store.finish_notice(second.id, "pending", T + 2 * S, lease=second.claimed_until, untried=True)
    got = store.get_notice(first.id)
    assert got is not None and (got.state, got.attempts, got.last_error) == ("pending", 1, "")
