"""``DecisionTable``: the gate's in-memory answers, folded from the store's changed rows."""

from __future__ import annotations

import pytest

from appban.gate.table import DecisionTable
from appban.gate.users import UserNames
from appban.store.records import GateRow

JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"
BLOCKED = "blocked:tiktok-mail"


def row(device_id: int, owner: str, eas: tuple[str, ...], reason: str = "ok", seq: int = 1) -> GateRow:
    return GateRow(device_id, owner, eas, "allow" if reason == "ok" else "deny", reason, seq)


@pytest.fixture
def table() -> DecisionTable:
    t = DecisionTable()
    t.apply(
        [
            row(1, JANE, ("EASJANE1", "EASJANE2"), BLOCKED, seq=3),
            row(2, BOB, ("EASBOB1",), seq=5),
        ]
    )
    return t


def test_reason_codes(table: DecisionTable) -> None:
    assert table.decide("EASBOB1", "bob.roe@example.com") == "ok"
    assert table.decide("EASJANE1", JANE) == BLOCKED
    assert table.decide("EASJANE2", JANE) == BLOCKED
    assert table.decide("EASBOB1", JANE) == "user_mismatch"
    assert table.decide("EASNOBODY", JANE) == "unknown_device"
    assert table.decide("", JANE) == "no_device_id"
    assert table.decide("EASBOB1", "") == "user_mismatch"
    assert table.decide("EASBOB1", None) == "user_unverified"


def test_lookup_is_exact(table: DecisionTable) -> None:
    # DeviceIds are compared as given: no case folding, no trimming.
    assert table.decide("easbob1", BOB) == "unknown_device"
    assert table.decide("EASBOB1 ", BOB) == "unknown_device"


def test_size_and_seq(table: DecisionTable) -> None:
    assert len(table) == 3
    assert table.seq == 5
    assert table.apply([row(2, BOB, ("EASBOB1",), seq=9)]) == 1
    assert table.seq == 9
    assert len(table) == 3


def test_a_changed_decision_replaces_the_old_one(table: DecisionTable) -> None:
    table.apply([row(1, JANE, ("EASJANE1", "EASJANE2"), "ok", seq=6)])
    assert table.decide("EASJANE1", JANE) == "ok"
    table.apply([row(1, JANE, ("EASJANE1", "EASJANE2"), "unverified:tiktok-mail", seq=7)])
    assert table.decide("EASJANE2", JANE) == "unverified:tiktok-mail"


def test_tombstones_drop_a_device_id_the_device_stopped_using(table: DecisionTable) -> None:
    table.apply([row(1, JANE, ("EASJANE2",), BLOCKED, seq=6)], [(6, "EASJANE1", 1)])
    assert table.decide("EASJANE1", JANE) == "unknown_device"
    assert table.decide("EASJANE2", JANE) == BLOCKED
    assert len(table) == 2


def test_tombstone_then_the_id_comes_back_in_the_same_batch(table: DecisionTable) -> None:
    # Dropped at seq 6, reported again at seq 7: the row (current) wins over the tombstone.
    table.apply([row(1, JANE, ("EASJANE1", "EASJANE2"), BLOCKED, seq=7)], [(6, "EASJANE1", 1)])
    assert table.decide("EASJANE1", JANE) == BLOCKED


def test_tombstone_of_an_unknown_id_or_other_device_changes_nothing(table: DecisionTable) -> None:
    table.apply([], [(6, "EASNOBODY", 1), (6, "EASBOB1", 1)])
    assert table.decide("EASBOB1", BOB) == "ok"
    assert len(table) == 3


def test_owner_change(table: DecisionTable) -> None:
    table.apply([row(2, JANE, ("EASBOB1",), seq=6)])
    assert table.decide("EASBOB1", BOB) == "user_mismatch"
    assert table.decide("EASBOB1", JANE) == "ok"


class TestOneDeviceIdManyDevices:
    """A phone reported by two sources is two devices with one ActiveSync DeviceId."""

    def test_same_owner_any_deny_wins(self) -> None:
        t = DecisionTable()
        t.apply([row(1, JANE, ("EASX",), "ok"), row(2, JANE, ("EASX",), BLOCKED)])
        assert t.decide("EASX", JANE) == BLOCKED
        t.apply([row(2, JANE, ("EASX",), "ok", seq=2)])
        assert t.decide("EASX", JANE) == "ok"
        t.apply([row(1, JANE, ("EASX",), BLOCKED, seq=3)])
        assert t.decide("EASX", JANE) == BLOCKED
        assert len(t) == 1

    def test_deny_found_after_an_allowed_entry(self) -> None:
        t = DecisionTable()
        t.apply(
            [
                row(1, JANE, ("EASX",), "ok"),
                row(2, BOB, ("EASX",)),
                row(3, JANE, ("EASX",), BLOCKED),
            ]
        )
        assert t.decide("EASX", JANE) == BLOCKED
        assert t.decide("EASX", BOB) == "ok"

    def test_different_owners_each_get_their_own_answer(self) -> None:
        t = DecisionTable()
        t.apply([row(1, JANE, ("EASX",), BLOCKED), row(2, BOB, ("EASX",), "ok")])
        assert t.decide("EASX", JANE) == BLOCKED
        assert t.decide("EASX", BOB) == "ok"
        assert t.decide("EASX", "ann.lee@example.com") == "user_mismatch"

    def test_tombstone_of_one_keeps_the_other(self) -> None:
        t = DecisionTable()
        t.apply(
            [
                row(1, JANE, ("EASX",), BLOCKED),
                row(2, JANE, ("EASX",), "ok"),
                row(3, BOB, ("EASX",)),
            ]
        )
        t.apply([], [(2, "EASX", 1)])
        assert t.decide("EASX", JANE) == "ok"
        t.apply([], [(3, "EASX", 3)])
        assert t.decide("EASX", BOB) == "user_mismatch"
        assert t.decide("EASX", JANE) == "ok"
        t.apply([], [(4, "EASX", 2)])
        assert t.decide("EASX", JANE) == "unknown_device"
        assert len(t) == 0


class TestUsers:
    """The name rules (users.py) as the table applies them; test_users.py has the rest."""

    @pytest.mark.parametrize("user", ["jane.doe@example.com", "Jane.Doe@Example.COM", "jane.doe", "JANE.DOE"])
    def test_forms_of_the_owner_without_mail_domains(self, table: DecisionTable, user: str) -> None:
        # No domains configured: a bare name is the one known person with that local part.
        assert table.decide("EASJANE1", user) == BLOCKED

    @pytest.mark.parametrize(
        "user",
        [
            "jane.doe@example.org",
            "jane",
            "jane.doe2",
            " jane.doe",  # compared exactly: no trimming
            "EXAMPLE\\jane.doe",  # no NetBIOS domain accepted: any prefix is refused
            "CORP\\Jane.Doe@example.com",
            "",
        ],
    )
    def test_others_are_not_the_owner(self, table: DecisionTable, user: str) -> None:
        assert table.decide("EASJANE1", user) == "user_mismatch"

    def test_kelvin_sign_is_not_k(self) -> None:
        t = DecisionTable()
        t.apply([row(1, "kate@example.com", ("EASKATE",))])
        assert t.decide("EASKATE", "Kate@example.com") == "ok"
        assert t.decide("EASKATE", "\u212aate@example.com") == "user_mismatch"
        assert t.decide("EASKATE", "\u212aate") == "user_mismatch"

    def test_a_bare_name_two_people_share_matches_neither(self) -> None:
        t = DecisionTable()
        t.apply([row(1, JANE, ("EASJANE1",)), row(2, "jane.doe@other.example", ("EASOTHER",))])
        assert t.namesakes is not None
        t.namesakes.update("jane.doe", [JANE, "jane.doe@other.example"])  # as the follower would
        assert t.decide("EASJANE1", "jane.doe") == "user_mismatch"
        assert t.decide("EASOTHER", "jane.doe") == "user_mismatch"
        assert t.decide("EASOTHER", "jane.doe@other.example") == "ok"
        # The other one's only device goes: the name is Jane's alone again.
        t.namesakes.update("jane.doe", [JANE])
        assert t.decide("EASJANE1", "jane.doe") == "ok"

    def test_owners_that_come_or_go_are_told_to_the_follower(self) -> None:
        t = DecisionTable()
        t.apply([row(1, JANE, ("EASJANE1",)), row(2, BOB, ("EASBOB1",))])
        assert t.take_touched() == {"jane.doe", "bob.roe"}
        assert t.take_touched() == set()
        # Bob's phone passes to another Jane: both local parts may have changed hands.
        t.apply([row(2, "jane.doe@other.example", ("EASBOB1",), seq=2)])
        assert t.take_touched() == {"jane.doe", "bob.roe"}
        # A mail-password device (no DeviceId) makes its owner known too, and forgetting it
        # is a change as well.
        t.apply([row(3, "ann@third.example", (), seq=3)], (), {3})
        assert t.take_touched() == {"ann"}
        t.forget_mail_devices(set())
        assert t.take_touched() == {"ann"}
        t.apply([], [(4, "EASJANE1", 1)])  # Jane's phone stops using its DeviceId
        assert t.take_touched() == {"jane.doe"}

    def test_with_one_mail_domain_nothing_is_tracked(self) -> None:
        t = DecisionTable(names=UserNames(("example.com",)))
        t.apply([row(1, JANE, ("EASJANE1",))])
        assert t.take_touched() == set()

    def test_with_one_mail_domain_a_bare_name_is_that_address(self) -> None:
        t = DecisionTable(names=UserNames(("example.com",)))
        t.apply([row(1, JANE, ("EASJANE1",)), row(2, "jane.doe@other.org", ("EASOTHER",))])
        assert t.decide("EASJANE1", "jane.doe") == "ok"
        assert t.decide("EASJANE1", "CORP\\jane.doe") == "user_mismatch"  # CORP not accepted
        # A bare name never matches an owner of another domain by its local part.
        assert t.decide("EASOTHER", "jane.doe") == "user_mismatch"
        assert t.decide("EASOTHER", "jane.doe@other.org") == "ok"

    def test_accepted_netbios_domains_complete_like_a_bare_name(self) -> None:
        t = DecisionTable(names=UserNames(("example.com",), ("corp",)))
        t.apply([row(1, JANE, ("EASJANE1",))])
        assert t.decide("EASJANE1", "CORP\\Jane.Doe") == "ok"
        assert t.decide("EASJANE1", "corp\\jane.doe@example.com") == "ok"
        assert t.decide("EASJANE1", "OTHER\\jane.doe") == "user_mismatch"
        assert t.decide("EASJANE1", "CORP\\x\\jane.doe") == "user_mismatch"

    def test_unverified_user(self, table: DecisionTable) -> None:
        assert table.decide("EASJANE1", None) == "user_unverified"
        # Unknown and missing DeviceIds are told as such first.
        assert table.decide("EASNOBODY", None) == "unknown_device"
        assert table.decide("", None) == "no_device_id"


def test_unknown_devices_may_be_allowed() -> None:
    t = DecisionTable(unknown_device="allow")
    t.apply([row(1, JANE, ("EASJANE1",), BLOCKED)])
    assert t.decide("EASNOBODY", JANE) == "unknown_device"
    assert t.allows("unknown_device")
    assert not t.allows("no_device_id")
    assert not t.allows("user_mismatch")
    assert not t.allows(BLOCKED)
    assert t.allows("ok")
    assert not DecisionTable().allows("unknown_device")


def test_decisions_of_devices_with_a_mail_password_are_kept_by_id(table: DecisionTable) -> None:
    table.apply([row(1, JANE, ("EASJANE1",), BLOCKED, seq=6), row(2, BOB, ("EASBOB1",), seq=6)], (), {2})
    assert table.by_device == {2: (BOB, "ok")}
    table.apply([row(1, JANE, (), BLOCKED, seq=7)], (), {1, 2})
    assert table.by_device == {1: (JANE, BLOCKED), 2: (BOB, "ok")}
    table.apply([row(2, BOB, ("EASBOB1",), BLOCKED, seq=8)], (), {1, 2})
    assert table.by_device[2] == (BOB, BLOCKED)
    table.forget_mail_devices({1})  # device 2's password was revoked
    assert table.by_device == {1: (JANE, BLOCKED)}
