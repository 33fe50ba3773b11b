"""The store's sightings: upsert, cap, expiry, the unseen DeviceIds and the mail_seen mark.

Run against every backend, as the contract suite is (``BACKENDS`` of test_contract.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_contract import BACKENDS, T, add_device, device

from appban.store import Store
from appban.store.records import Sighting, SightingsWritten

H = 3_600_000_000


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store, _reopen = BACKENDS[request.param](tmp_path)
    try:
        yield store
    finally:
        store.close()


def sighting(eas: str, user: str = "ann", times: int = 1, device_type: str = "iPhone") -> Sighting:
    return Sighting(eas, user, device_type, "activesync", times)


def record(store: Store, rows: list[Sighting], at: int, max_rows: int = 1_000) -> SightingsWritten:
    with store.transaction():
        return store.record_sightings(rows, at, max_rows)


def unseen(store: Store, since: int = 0) -> dict[str, tuple[int, int, int]]:
    return {r.eas_id: (r.first_seen, r.last_seen, r.times) for r in store.unseen_devices(since)}


def test_a_key_seen_again_keeps_its_first_time_and_adds_its_count(store: Store) -> None:
    assert record(store, [sighting("EAS1", times=3), sighting("EAS2")], T) == SightingsWritten(0, 2, 0)
    assert record(store, [sighting("EAS1", times=4)], T + H) == SightingsWritten(1, 0, 0)
    assert unseen(store) == {"EAS1": (T, T + H, 7), "EAS2": (T, T, 1)}
    # A flush stamped earlier (another gate's clock a little behind) never moves last_seen back.
    record(store, [sighting("EAS1")], T + 1)
    assert unseen(store)["EAS1"] == (T, T + H, 8)
    assert store.sightings_held() == (2, 0)


def test_user_device_type_and_protocol_are_part_of_the_key(store: Store) -> None:
    rows = [
        sighting("EAS1", "ann"),
        sighting("EAS1", "bob"),
        sighting("EAS1", "ann", device_type="Android"),
        Sighting("", "ann", "", "imap", 2),
    ]
    assert record(store, rows, T).inserted == 4
    listed = list(store.unseen_devices(0))
    # The IMAP login carries no DeviceId: recorded, not an unseen device.
    assert sorted((r.user, r.device_type) for r in listed) == [("ann", "Android"), ("ann", "iPhone"), ("bob", "iPhone")]


def test_past_the_cap_new_keys_are_refused_and_counted_while_known_ones_update(store: Store) -> None:
    assert record(store, [sighting("EAS1"), sighting("EAS2")], T, max_rows=3) == SightingsWritten(0, 2, 0)
    # Room for one more: the most frequent new key gets it.
    written = record(store, [sighting("EAS3"), sighting("EAS4", times=9), sighting("EAS1")], T + 1, max_rows=3)
    assert written == SightingsWritten(1, 1, 1)
    assert set(unseen(store)) == {"EAS1", "EAS2", "EAS4"}
    written = record(store, [sighting("EAS5"), sighting("EAS2", times=5)], T + 2, max_rows=3)
    assert written == SightingsWritten(1, 0, 1)
    assert unseen(store)["EAS2"] == (T, T + 2, 6)
    assert store.sightings_held() == (3, 2)


def test_expiry_drops_rows_not_seen_since_and_makes_room(store: Store) -> None:
    record(store, [sighting("OLD"), sighting("KEPT")], T, max_rows=2)
    record(store, [sighting("KEPT")], T + 10 * H, max_rows=2)
    assert record(store, [sighting("NEW")], T + 10 * H, max_rows=2).refused == 1
    assert not store.sightings_due(T)
    assert store.sightings_due(T + 1)
    with store.transaction():
        assert store.expire_sightings(T + 1) == 1
    assert store.sightings_held() == (1, 1)
    assert record(store, [sighting("NEW")], T + 11 * H, max_rows=2).inserted == 1
    assert set(unseen(store)) == {"KEPT", "NEW"}
    # The listing's own bound: rows last seen before ``since`` are left out.
    assert set(unseen(store, since=T + 11 * H)) == {"NEW"}


def test_a_device_id_any_device_has_is_not_unseen(store: Store) -> None:
    add_device(store, device("phone-1", owner="ann@example.com", eas=("EASKNOWN",)))
    jamf = add_device(store, device("jamf-21", owner="ann@example.com", eas=(), identifiers=(("eas", "EASJAMF"),)))
    with store.transaction():
        store.set_identifiers("agent", "jamf-21", "ann@example.com", jamf, [("eas", "EASJAMF")], new=True)
    record(store, [sighting("EASKNOWN"), sighting("EASJAMF"), sighting("EASSHADOW")], T)
    assert set(unseen(store)) == {"EASSHADOW"}


def test_sighted_devices_are_those_a_sighting_would_show_reading_mail(store: Store) -> None:
    jamf = add_device(store, device("jamf-21", owner="ann@example.com", eas=()))
    reads = add_device(store, device("jamf-22", owner="bob@example.com", eas=(), mail_reported=True))
    with store.transaction():
        store.set_identifiers("jamf", "jamf-21", "ann@example.com", jamf, [("eas", "EASA")], new=True)
        store.set_identifiers("jamf", "jamf-22", "bob@example.com", reads, [("eas", "EASB")], new=True)
    # Bob's already reads mail (its source says so): a sighting adds nothing to it.
    assert [(d.eas_id, d.device_id, d.owner) for d in store.sighted_devices(["EASA", "EASB", "NONE"])] == [
        ("EASA", jamf, "ann@example.com")
    ]
    stored = store.get_device(jamf)
    assert stored is not None and not stored.mail_access and stored.mail_seen is None
    with store.transaction():
        assert store.mark_mail_seen([jamf], T) == 1
        assert store.mark_mail_seen([jamf], T + H) == 0  # the first time counts
    stored = store.get_device(jamf)
    assert stored is not None and stored.mail_seen == T and stored.mail_access
    assert store.sighted_devices(["EASA"]) == []


def test_an_update_of_a_device_keeps_its_mail_seen_mark(store: Store) -> None:
    jamf = add_device(store, device("jamf-21", owner="ann@example.com", eas=()))
    with store.transaction():
        store.mark_mail_seen([jamf], T)
    stored = store.get_device(jamf)
    assert stored is not None
    stored.mail_seen = None  # an import builds the row from its report, which says nothing of it
    with store.transaction():
        store.update_device(stored, ())
    again = store.get_device(jamf)
    assert again is not None and again.mail_seen == T
