"""People from Microsoft Graph: ``user`` pages and one group's ``members`` pages.

Read at the reader level (``read_graph_users``, ``read_graph_members``): the
command line's ``people import --format graph|graph-members`` is wired elsewhere.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.errors import BadInput
from appban.inventory.people_graph import WINDOWS_ZONES, iana_zone, read_graph_members, read_graph_users
from appban.store.records import Person
from fuzzing import examples

GOLDEN = Path(__file__).parent / "golden" / "graph"
MAX = 1 << 20


def test_user_pages() -> None:
    """Two concatenated pages of GET /users?$select=...,department,mailboxSettings, users as
    in the documented examples (Adele Vance, Alex Wilber, Megan Bowen):
    https://learn.microsoft.com/graph/api/user-list?view=graph-rest-1.0
    https://learn.microsoft.com/graph/api/resources/user?view=graph-rest-1.0
    https://learn.microsoft.com/graph/api/resources/mailboxsettings?view=graph-rest-1.0
    """
    got = [p for _, p in read_graph_users(str(GOLDEN / "users.json"), MAX)]
    assert got == [
        # A Windows zone name, as Exchange Online keeps it, becomes its IANA zone.
        Person("adelev@contoso.com", "Adele Vance", "Retail", (), "America/Los_Angeles"),
        # No mail: the user principal name; no department and no mailbox settings.
        Person("alexw@contoso.com", "Alex Wilber", "", (), "UTC"),
        Person("meganb@contoso.com", "Megan Bowen", "Marketing", (), "Europe/Berlin"),
    ]


def test_group_member_pages() -> None:
    """A page of GET /groups/{id}/members: users among a nested group and a device, which
    are not people:
    https://learn.microsoft.com/graph/api/group-list-members?view=graph-rest-1.0
    """
    got = [e for _, e in read_graph_members(str(GOLDEN / "group-members.json"), MAX)]
    assert got == ["adelev@contoso.com", "alexw@contoso.com"]


def test_every_windows_zone_maps_to_a_zone_appban_knows() -> None:
    for windows, iana in WINDOWS_ZONES.items():
        assert ZoneInfo(iana), windows


@pytest.mark.parametrize(
    ("zone", "iana"),
    [
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("India Standard Time", "Asia/Kolkata"),
        ("Asia/Tokyo", "Asia/Tokyo"),
        ("Customized Time Zone", "UTC"),
        ("UTC+05", "UTC"),
        (None, "UTC"),
        ("", "UTC"),
    ],
)
def test_iana_zone(zone: str | None, iana: str) -> None:
    assert iana_zone(zone) == iana


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"displayName": "No Address"}, ("value[0]", "mail or userPrincipalName")),
        ({"mail": "not an address"}, ("value[0].mail", "not an e-mail address")),
        ({"mail": "a@example.com", "displayName": "<script>"}, ("value[0].displayName", "markup")),
        ({"mail": "a@example.com", "department": "x" * 300}, ("value[0].department", "longer than")),
        ({"mail": "a@example.com", "mailboxSettings": {"timeZone": "Mars/Olympus"}}, ("timeZone", "unknown")),
        ({"mail": "a@example.com", "mailboxSettings": []}, ("value[0].mailboxSettings", "expected an object")),
        ({"mail": 12}, ("value[0].mail", "not an e-mail address")),
    ],
    ids=["no-email", "email", "markup", "long", "zone", "settings", "number"],
)
def test_bad_users(tmp_path: Path, user: dict[str, Any], expected: tuple[str, str]) -> None:
    path = _write(tmp_path, {"value": [user]})
    with pytest.raises(BadInput) as caught:
        list(read_graph_users(str(path), MAX))
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, message


def test_a_user_twice_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"value": [{"mail": "A@example.com"}, {"userPrincipalName": "a@example.com"}]})
    with pytest.raises(BadInput, match=r"duplicate person \(also value\[0\]\)"):
        list(read_graph_users(str(path), MAX))


def test_a_user_member_without_an_address_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"value": [{"@odata.type": "#microsoft.graph.user", "id": "x"}]})
    with pytest.raises(BadInput, match=r"field value\[0\]"):
        list(read_graph_members(str(path), MAX))


_FUZZ = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", ["users.json", "group-members.json"])
@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_bytes(tmp_path: Path, name: str, data: st.DataObject) -> None:
    raw = bytearray((GOLDEN / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if data.draw(st.booleans()):
            del raw[at : at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.sampled_from([b"{", b"]", b'"', b",", b"null", b"1", b"\\ud800", b"\xff"]))
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    reader = read_graph_users if name == "users.json" else read_graph_members
    with contextlib.suppress(BadInput):
        list(reader(str(path), MAX))  # type: ignore[operator]


def _write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "page.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path
