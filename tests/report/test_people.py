"""``appban people list``: everyone known, filtered by org unit or group, one JSON document."""

from __future__ import annotations

import pytest

from helpers_semantics import Appban, checkin

PEOPLE = [
    ("ann@example.com", "Ann Lee", "Sales", "staff;travel", "Europe/London"),
    ("bob@example.com", "Bob Roe", "Engineering", "staff;security-research", "America/New_York"),
    ("cat@example.com", "Cat Poe", "Sales", "staff-contractors", "UTC"),
]


@pytest.fixture
def people(ab: Appban) -> Appban:
    ab.people(PEOPLE)
    ab.ingest(checkin("a1"), checkin("a2"), checkin("b1", owner="bob@example.com"))
    return ab


def emails(doc: dict[str, object]) -> list[str]:
    return [p["email"] for p in doc["people"]]  # type: ignore[index, union-attr]


def test_everyone_with_their_devices(people: Appban) -> None:
    doc = people("people", "list")
    assert doc["count"] == 3
    assert doc["people"][0] == {
        "email": "ann@example.com",
        "name": "Ann Lee",
        "org_unit": "Sales",
        "groups": ["staff", "travel"],
        "timezone": "Europe/London",
        "devices": 2,
    }
    assert [p["devices"] for p in doc["people"]] == [2, 1, 0]


def test_filters(people: Appban) -> None:
    assert emails(people("people", "list", "--org-unit", "Sales")) == ["ann@example.com", "cat@example.com"]
    assert emails(people("people", "list", "--group", "staff")) == ["ann@example.com", "bob@example.com"]
    assert emails(people("people", "list", "--group", "security-research")) == ["bob@example.com"]
    assert emails(people("people", "list", "--org-unit", "Sales", "--group", "travel")) == ["ann@example.com"]
    # A group is a whole name, never a pattern or a part of another name.
    assert emails(people("people", "list", "--group", "staff%")) == []
    assert emails(people("people", "list", "--group", "taff")) == []
    assert emails(people("people", "list", "--org-unit", "sales")) == []


def test_limit_and_text(people: Appban) -> None:
    doc = people("people", "list", "--limit", "1")
    assert (doc["count"], emails(doc)) == (3, ["ann@example.com"])
    text = people.run("people", "list", as_json=False)
    assert text.code == 0 and "ann@example.com" in text.out and text.out.endswith("3 people\n")
    one = people.run("people", "list", "--group", "travel", as_json=False)
    assert one.out.endswith("1 person\n")
    none = people.run("people", "list", "--group", "nobody", as_json=False)
    assert none.out == "no people match\n"
