"""People, from SPEC's CSV: ``email,name,org_unit,groups,timezone`` (groups split on ``;``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appban.errors import BadInput
from appban.inventory._lines import CsvReader, open_text
from appban.store.records import Person
from appban.text import check_identifier, check_text, normalise_email

HEADER = ["email", "name", "org_unit", "groups", "timezone"]
_TZ = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
_LIMIT = 200


def read_people(path: str, *, max_bytes: int) -> Iterator[tuple[int, Person]]:
    f = open_text(path)
    reader = CsvReader(path, f, max_bytes)
    rows = iter(reader)
    try:
        header = reader.header(rows)
        if header is None:
            raise BadInput(f"empty file: expected the header {','.join(HEADER)}", file=path)
        if [h.strip().lower() for h in header] != HEADER:
            raise BadInput(f"header must be {','.join(HEADER)}", file=path, line=reader.header_line)
        reader.columns = HEADER
        seen: dict[str, int] = {}
        for row in rows:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(HEADER):
                raise BadInput(f"{len(row)} columns, expected {len(HEADER)}", file=path, line=line)
            try:
                person = _person(row)
            except BadInput as exc:
                raise exc.at(file=path, line=line) from None
            if person.email in seen:
                raise BadInput(
                    f"duplicate person (also line {seen[person.email]})",
                    file=path,
                    line=line,
                    field="email",
                )
            seen[person.email] = line
            yield line, person
    finally:
        f.close()


def _person(row: list[str]) -> Person:
    email, name, org_unit, groups_text, timezone = (c.strip() for c in row)
    email = normalise_email(email, "email")
    for field, value in (("name", name), ("org_unit", org_unit)):
        if len(value) > _LIMIT:
            raise BadInput(f"longer than {_LIMIT} characters", field=field)
        check_text(value, field)
    groups = tuple(sorted({g.strip() for g in groups_text.split(";") if g.strip()}))
    for g in groups:
        if len(g) > _LIMIT:
            raise BadInput(f"a group longer than {_LIMIT} characters", field="groups")
        # A name policies match exactly: nothing in it may be invisible.
        check_identifier(g, "groups")
    timezone = timezone or "UTC"
    if not _TZ.match(timezone) or len(timezone) > 64:
        raise BadInput(f"unknown time zone {timezone[:64]!r}", field="timezone")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {timezone!r}", field="timezone") from None
    return Person(email, name, org_unit, groups, timezone)
