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
