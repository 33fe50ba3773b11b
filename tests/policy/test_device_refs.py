"""Commands that take a device ID accept the id its source reported or appban's own id
(SPEC); when one text is both, for two different devices, they ask which."""

from __future__ import annotations

from helpers_semantics import BEFORE, Appban, checkin


def test_an_id_that_is_both_appbans_and_another_sources_is_refused(ab: Appban) -> None:
    ab.ingest(checkin("phone-1", owner="ann@example.com"), checkin("dev-1", owner="bob@example.com"), now=BEFORE)
    result = ab.run("device", "show", "dev-1", now=BEFORE)
    assert result.code == 2, result.err
    assert "dev-1" in result.err and "agent:phone-1" in result.err and "agent:dev-1" in result.err
    # Either device by an unambiguous name.
    assert ab("device", "show", "agent:phone-1", now=BEFORE)["owner"] == "ann@example.com"
    assert ab("device", "show", "agent:dev-1", now=BEFORE)["owner"] == "bob@example.com"
    assert ab("device", "show", "dev-2", now=BEFORE)["owner"] == "bob@example.com"


def test_appbans_id_alone_still_names_its_device(ab: Appban) -> None:
    ab.ingest(checkin("phone-1", owner="ann@example.com"), now=BEFORE)
    assert ab("device", "show", "dev-1", now=BEFORE)["source_id"] == "phone-1"


def test_a_person_is_named_with_ascii_case_folding_only(ab: Appban) -> None:
    """--person is an e-mail address as appban keeps it: A-Z lower-cased, nothing else
    folded (the Kelvin sign is not k), at most 254 characters."""
    ab.apply()
    ab.ingest(checkin("phone-1", owner="kate@example.com"), now="2020-07-10T15:40:00Z")
    exempt = ["exempt", "add", "--policy", "tiktok-mail", "--until", "2020-08-01T00:00:00Z", "--reason", "travel"]
    assert ab(*exempt, "--person", "KATE@Example.COM", now="2020-07-10T15:40:00Z")["person"] == "kate@example.com"
    kelvin = ab.run(*exempt, "--person", "\u212aate@example.com", now="2020-07-10T15:40:00Z")
    assert kelvin.code == 0 and kelvin.json["person"] == "\u212aate@example.com"
    too_long = ab.run(*exempt, "--person", "a" * 250 + "@example.com", now="2020-07-10T15:40:00Z")
    assert too_long.code == 2 and "--person" in too_long.err
    wrong = ab.run(
        "attest",
        "--policy",
        "tiktok-mail",
        "--device",
        "phone-1",
        "--person",
        "\u212aate@example.com",
        now="2020-07-10T15:40:00Z",
    )
    assert wrong.code == 2 and "does not own" in wrong.err
