"""People from Google Workspace: Directory API ``users.list`` and ``members.list`` pages.

Golden files (tests/inventory/golden/google/): ``users.page1.json`` is two ``users.list``
pages concatenated, ``members.staff.json`` one ``members.list`` page, shaped as the User
and Member resources are documented. The command line's ``--format google`` is not wired
yet, so these tests read at the reader's level.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from test_google_directory import FUZZ, mutated

from appban.errors import BadInput
from appban.inventory.people_google import read_google_members, read_google_users
from appban.store.records import Person

GOLDEN = Path(__file__).parent / "golden" / "google"
USERS = GOLDEN / "users.page1.json"
MEMBERS = GOLDEN / "members.staff.json"


def test_the_documented_user_pages() -> None:
    """Users as documented at
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/users and list
    pages as at https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/list
    (``kind``, ``etag``, ``users``, ``nextPageToken``): primaryEmail, name.fullName and
    orgUnitPath are read; a User has no time zone, so every person is in UTC."""
    people = [p for _line, p in read_google_users(str(USERS), 1 << 20)]
    assert people == [
        Person("jane.doe@example.com", "Jane Doe", "/Sales/EMEA", (), "UTC"),
        Person("bob.roe@example.com", "Bob Roe", "/", (), "UTC"),
        Person("kim.moe@example.com", "", "/Finance", (), "UTC"),
    ]


def test_the_documented_member_page() -> None:
    """Members as documented at
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/members: only
    ``type: USER`` members are people; nested groups and the whole customer are not."""
    assert [e for _line, e in read_google_members(str(MEMBERS), 1 << 20)] == [
        "jane.doe@example.com",
        "bob.roe@example.com",
    ]


def _write(folder: str, doc: object) -> str:
    path = os.path.join(folder, "page.json")
    Path(path).write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("user", "field", "detail"),
    [
        ({"name": {"fullName": "X"}}, "users[0].primaryEmail", "missing"),
        ({"primaryEmail": "nobody"}, "users[0].primaryEmail", "not an e-mail"),
        ({"primaryEmail": "a@example.com", "name": "A"}, "users[0].name", "expected an object"),
        ({"primaryEmail": "a@example.com", "orgUnitPath": "/<script>"}, "users[0].orgUnitPath", "markup"),
        ({"primaryEmail": "a@example.com", "name": {"fullName": "x" * 201}}, "users[0].name.fullName", "200"),
    ],
)
def test_bad_users_name_file_record_and_field(user: dict[str, object], field: str, detail: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, {"kind": "admin#directory#users", "users": [user]})
        with pytest.raises(BadInput) as caught:
            list(read_google_users(path, 1 << 20))
    message = str(caught.value)
    assert message.startswith(f"{path}: field {field}"), message
    assert detail in message


def test_a_person_listed_twice_is_refused() -> None:
    twice = {"users": [{"primaryEmail": "a@example.com"}, {"primaryEmail": "A@example.com"}]}
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, twice)
        with pytest.raises(BadInput, match=r"users\[1\]\.primaryEmail: duplicate person \(also users\[0\]\)"):
            list(read_google_users(path, 1 << 20))


def test_a_user_member_without_an_address_is_refused() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, {"kind": "admin#directory#members", "members": [{"type": "USER", "id": "1"}]})
        with pytest.raises(BadInput, match=r"members\[0\]\.email: missing"):
            list(read_google_members(path, 1 << 20))


def _reads_or_refuses(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "page.json")
        Path(path).write_bytes(data)
        for reader in (read_google_users, read_google_members):
            try:
                list(reader(path, 1 << 20))
            except BadInput as exc:
                assert path in str(exc)


@FUZZ
@given(mutated(json.loads(USERS.read_text().split("\n}\n", 1)[0] + "\n}")))
def test_fuzzed_user_pages_read_or_are_refused(data: bytes) -> None:
    _reads_or_refuses(data)


@FUZZ
@given(mutated(json.loads(MEMBERS.read_text())))
def test_fuzzed_member_pages_read_or_are_refused(data: bytes) -> None:
    _reads_or_refuses(data)
