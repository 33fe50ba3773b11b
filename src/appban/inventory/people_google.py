"""People from Google Workspace: Admin SDK Directory API ``users.list`` and ``members.list``.

``users.list`` pages (``{"kind": "admin#directory#users", "etag", "users": [...],
"nextPageToken"}``, https://developers.google.com/admin-sdk/directory/reference/rest/v1/users)
give each person's ``primaryEmail``, ``name.fullName`` and ``orgUnitPath``. A User resource
has no time zone (its calendar's is elsewhere), so people read here are in UTC.
Nothing else of the resource is read.

``members.list`` pages (``{"kind": "admin#directory#members", "etag", "members": [...],
"nextPageToken"}``, https://developers.google.com/admin-sdk/directory/reference/rest/v1/members)
list one group's members, without naming the group: the command line names it. Only
members of ``type: USER`` are people; a nested ``GROUP`` or the whole ``CUSTOMER`` is
not expanded (import that group's own pages under the same name).
"""

from __future__ import annotations

from collections.abc import Iterator

from appban.errors import BadInput
from appban.inventory._vendor import child, json_records, mapping, text
from appban.inventory.people import _person
from appban.store.records import Person
from appban.text import normalise_email

_PAGING = ("kind", "etag", "nextPageToken", "trigger_event")
# people.py names a person's fields as its CSV columns; here they are the resource's.
_USER_FIELDS = {"email": "primaryEmail", "name": "name.fullName", "org_unit": "orgUnitPath"}


def read_google_users(path: str, max_bytes: int) -> Iterator[tuple[int | None, Person]]:
    """Each user of ``users.list`` pages as a Person, checked as a people CSV's rows are.

    ``max_bytes`` is taken for the people readers' common signature and not applied:
    pages are streamed a record at a time, and no record's size is known before it is
    parsed."""
    seen: dict[str, str] = {}
    try:
        for at, record in json_records(path, list_keys=("users",), page_keys=_PAGING):
            user = mapping(record, at)
            email = text(user, "primaryEmail", at, required=True) or ""
            name = text(child(user, "name", at), "fullName", f"{at}.name") or ""
            org_unit = text(user, "orgUnitPath", at) or ""
            try:
                person = _person([email, name, org_unit, "", "UTC"])
            except BadInput as exc:
                field = _USER_FIELDS.get(exc.field or "", exc.field)
                raise BadInput(exc.detail, field=f"{at}.{field}") from None
            if person.email in seen:
                raise BadInput(f"duplicate person (also {seen[person.email]})", field=f"{at}.primaryEmail")
            seen[person.email] = at
            yield None, person
    except BadInput as exc:
        raise exc.at(file=path) from None


def read_google_members(path: str, max_bytes: int) -> Iterator[tuple[int | None, str]]:
    """The e-mail address of each ``USER`` member of ``members.list`` pages, once each."""
    seen: set[str] = set()
    try:
        for at, record in json_records(path, list_keys=("members",), page_keys=_PAGING):
            member = mapping(record, at)
            if (text(member, "type", at) or "USER").upper() != "USER":
                continue
            email = normalise_email(text(member, "email", at, required=True) or "", f"{at}.email")
            if email not in seen:
                seen.add(email)
                yield None, email
    except BadInput as exc:
        raise exc.at(file=path) from None
