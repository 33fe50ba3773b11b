"""An attestation is its owner's word: it counts while the person who gave it owns the
device. A phone handed to someone else (a check-in naming a new owner) is judged on
evidence again, by the incremental evaluation and by the sweep alike, until its new
owner says the app is gone."""

from __future__ import annotations

from typing import Any

from appban.store import open_store
from helpers_semantics import AFTER, BEFORE, NEXT_DAY, Appban, checkin

HANDED_OVER = "2020-07-12T10:00:00Z"
LATER = "2020-07-12T11:00:00Z"
BYOD = "ann-byod"  # an iPhone whose source lists managed apps only: the owner's word is all there is


def _phone(owner: str, at: str) -> dict[str, Any]:
    return checkin(BYOD, at=at, platform="ios", ownership="personal", inventory_scope="managed", apps=[], owner=owner)


def _attest(ab: Appban, person: str, now: str) -> Any:
    return ab("attest", "--policy", "tiktok-mail", "--device", BYOD, "--person", person, now=now)


def _ann_attested(ab: Appban) -> None:
    ab.ingest(_phone("ann@example.com", BEFORE))
    ab.apply(on_unverified="block")
    ab("evaluate", now=AFTER)
    assert _attest(ab, "ann@example.com", NEXT_DAY)["state"] == "compliant"
    assert ab.decide(f"EAS-{BYOD}", "ann", NEXT_DAY) == ("allow", "ok")


def _evidence(ab: Appban, now: str) -> list[dict[str, Any]]:
    return list(ab.show(BYOD, now)["policies"]["tiktok-mail"]["evidence"])


def test_a_former_owners_word_does_not_keep_a_handed_over_phone_compliant(ab: Appban) -> None:
    _ann_attested(ab)
    ab.ingest(_phone("bob@example.com", HANDED_OVER), now=HANDED_OVER)
    assert ab.state(BYOD, HANDED_OVER) == "unverified"
    assert ab.decide(f"EAS-{BYOD}", "bob", HANDED_OVER) == ("deny", "unverified:tiktok-mail")
    assert not any(e["kind"] == "attestation" for e in _evidence(ab, HANDED_OVER))
    # The sweep agrees with the check-in's evaluation.
    ab("evaluate", now=LATER)
    assert ab.state(BYOD, LATER) == "unverified"
    # Ann's word stays in the database (audited, history), it just no longer counts.
    assert ab.sql("SELECT person FROM attestations") == [("ann@example.com",)]
    # Bob's own word counts.
    assert _attest(ab, "bob@example.com", LATER)["state"] == "compliant"
    assert {"kind": "attestation", "person": "bob@example.com", "attested_at": LATER} in _evidence(ab, LATER)


def test_the_sweep_does_not_count_a_former_owners_word(ab: Appban) -> None:
    """The owner changed without a check-in re-evaluating the device (a database edited
    by hand, a migration): the full evaluation's SQL sweep judges it on evidence."""
    _ann_attested(ab)
    ab.write_sql(f"UPDATE devices SET owner = 'bob@example.com' WHERE source_id = '{BYOD}'")
    ab("evaluate", now=LATER)
    assert ab.state(BYOD, LATER) == "unverified"
    assert ab.decide(f"EAS-{BYOD}", "bob", LATER) == ("deny", "unverified:tiktok-mail")


def test_the_store_counts_the_owners_word_only(ab: Appban) -> None:
    _ann_attested(ab)
    store = open_store(ab.db, create=False)
    try:
        device = store.get_device_by_key("agent", BYOD)
        assert device is not None and device.id is not None
        ann = store.attested_at("tiktok-mail", device.id)
        assert ann is not None and store.attestations("tiktok-mail") == {device.id: ann}
        with store.transaction():
            store.add_attestation("tiktok-mail", device.id, "bob@example.com", ann + 1)  # not his (yet)
        assert store.attested_at("tiktok-mail", device.id) == ann
        with store.transaction():
            store.db.execute("UPDATE devices SET owner = 'bob@example.com' WHERE id = ?", (device.id,))  # type: ignore[attr-defined]
        assert store.attested_at("tiktok-mail", device.id) == ann + 1
        assert store.attestations("tiktok-mail") == {device.id: ann + 1}
        with store.transaction():
            store.db.execute("UPDATE devices SET owner = 'cat@example.com' WHERE id = ?", (device.id,))  # type: ignore[attr-defined]
        assert store.attested_at("tiktok-mail", device.id) is None
        assert store.attestations("tiktok-mail") == {}
    finally:
        store.close()
