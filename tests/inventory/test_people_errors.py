"""Bad people CSVs (SPEC: ``email,name,org_unit,groups,timezone``) through
``appban people import FILE``.

Every answer: exit 2, one printable line on stderr naming the file, the line and
the field, no traceback, and nothing written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers_cli import Fleet, Result, assert_bad_input, where

HEADER = "email,name,org_unit,groups,timezone"
GOOD = [
    "amy.poe@example.com,Amy Poe,Sales,staff,Europe/Paris",
    "joe.loe@example.com,Joe Loe,Engineering,staff;oncall,Asia/Kolkata",
    "kim.moe@example.com,Kim Moe,Finance,,",
]


def people_csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def person(
    email: str = "zed.qoe@example.com",
    name: str = "Zed Qoe",
    org_unit: str = "Legal",
    groups: str = "staff",
    timezone: str = "UTC",
) -> str:
    return ",".join((email, name, org_unit, groups, timezone))


def import_people(fleet: Fleet, path: Path) -> Result:
    return fleet.run("people", "import", str(path))


def test_the_good_file_is_accepted(fleet: Fleet) -> None:
    path = fleet.write("good.csv", people_csv(*GOOD, person()))
    result = import_people(fleet, path)
    assert result.code == 0, result.err
    assert fleet.people() == 6


def test_missing_file(fleet: Fleet) -> None:
    path = fleet.tmp / "absent.csv"
    assert_bad_input(import_people(fleet, path), where(path), "cannot read")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "header",
    [
        "email,name,org_unit,groups",
        "email,name,org_unit,groups,timezone,manager",
        "name,email,org_unit,groups,timezone",
        "e-mail,name,org_unit,groups,timezone",
        "<b>email</b>,name,org_unit,groups,timezone",
    ],
    ids=["fewer", "more", "order", "spelling", "markup"],
)
def test_bad_header(fleet: Fleet, header: str) -> None:
    path = fleet.write("header.csv", people_csv(*GOOD, header=header))
    assert_bad_input(
        import_people(fleet, path),
        where(path, 1),
        "header must be email,name,org_unit,groups,timezone",
    )
    fleet.assert_unchanged()


@pytest.mark.parametrize("row", [person() + ",extra", "zed.qoe@example.com,Zed Qoe,Legal"], ids=["more", "fewer"])
def test_wrong_number_of_cells(fleet: Fleet, row: str) -> None:
    path = fleet.write("cells.csv", people_csv(*GOOD, row))
    assert_bad_input(import_people(fleet, path), where(path, 5), "columns")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "email",
    [
        "zed",
        "",
        "zed@",
        "@example.com",
        "zed qoe@example.com",
        "<zed@example.com>",
        "zed@example..com",
        "zed@example.com;bob@example.com",
        "z" * 300 + "@example.com",
        "zed\u202e@example.com",
        "zed\u200b@example.com",
        "zed\x00@example.com",
        "zed@ex\u0430mple.com",
    ],
    ids=[
        "bare",
        "empty",
        "no-domain",
        "no-local",
        "space",
        "brackets",
        "dots",
        "two",
        "long",
        "bidi",
        "zero-width",
        "nul",
        "cyrillic-domain",
    ],
)
def test_bad_email(fleet: Fleet, email: str) -> None:
    path = fleet.write("email.csv", people_csv(*GOOD, person(email=email)))
    assert_bad_input(import_people(fleet, path), where(path, 5), "field email:")
    fleet.assert_unchanged()


@pytest.mark.parametrize("again", ["amy.poe@example.com", "AMY.POE@example.com", "  Amy.Poe@EXAMPLE.com "])
def test_duplicate_email(fleet: Fleet, again: str) -> None:
    path = fleet.write("dup.csv", people_csv(*GOOD, person(), person(email=again, name="Another Amy")))
    assert_bad_input(import_people(fleet, path), where(path, 6), "field email:", "duplicate", "line 2")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("cells", "field", "problem"),
    [
        ({"name": "<script>alert(1)</script>"}, "name", "markup"),
        ({"org_unit": "<iframe src=//evil>"}, "org_unit", "markup"),
        ({"groups": "staff;<img src=x onerror=alert(1)>"}, "groups", "markup"),
        ({"name": "Zed\x00Qoe"}, "name", "control character"),
        ({"name": "Zed \x1b[31mQoe"}, "name", "control character"),
        ({"name": "\u202eeoQ deZ"}, "name", "control character"),
        ({"org_unit": "Legal\u2067"}, "org_unit", "control character"),
        ({"groups": "staff;\x07bell"}, "groups", "control character"),
        ({"name": "Z" * 10_240}, "name", "longer than"),
        ({"org_unit": "O" * 10_240}, "org_unit", "longer than"),
        ({"groups": "staff;" + "g" * 10_240}, "groups", "longer than"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else v,
)
def test_hostile_string(fleet: Fleet, cells: dict[str, str], field: str, problem: str) -> None:
    path = fleet.write("hostile.csv", people_csv(*GOOD, person(**cells)))
    assert_bad_input(import_people(fleet, path), where(path, 5), f"field {field}:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "timezone",
    [
        "Mars/Olympus_Mons",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/London ; rm -rf /",
        "+05:30",
        "T" * 10_240,
        "Europe\\London",
    ],
    ids=["unknown", "traversal", "absolute", "injection", "offset", "10KB", "backslash"],
)
def test_bad_timezone(fleet: Fleet, timezone: str) -> None:
    path = fleet.write("tz.csv", people_csv(*GOOD, person(timezone=timezone)))
    assert_bad_input(import_people(fleet, path), where(path, 5), "field timezone:", "time zone")
    fleet.assert_unchanged()


def test_non_utf8_bytes(fleet: Fleet) -> None:
    rows = [person(email=f"p{i}@example.com", name=f"Person {i}") for i in range(400)]
    rows[250] = person(email="jos@example.com", name="Jos\u00e9")
    raw = people_csv(*rows).encode("utf-8").replace("\u00e9".encode(), b"\xe9")
    path = fleet.write("latin1.csv", raw)
    assert_bad_input(import_people(fleet, path), where(path, 252), "UTF-8")
    fleet.assert_unchanged()


def test_nul_bytes_everywhere(fleet: Fleet) -> None:
    path = fleet.write("nul.csv", people_csv(*GOOD).encode() + b"\x00" * 1000 + b"\n")
    assert_bad_input(import_people(fleet, path), where(path, 5))
    fleet.assert_unchanged()


def test_a_100_mb_line_is_refused_without_reading_it_all(fleet: Fleet) -> None:
    path = fleet.tmp / "huge-line.csv"
    chunk = b"g" * (1 << 20)
    with open(path, "wb") as f:
        f.write(people_csv(*GOOD).encode() + b"zed@example.com,Zed,Legal,")
        for _ in range(100):
            f.write(chunk)
        f.write(b",UTC\n")
    started = time.monotonic()
    result = import_people(fleet, path)
    elapsed = time.monotonic() - started
    assert_bad_input(result, where(path, 5), "longer than")
    assert elapsed < 5, f"took {elapsed:.1f}s"
    fleet.assert_unchanged()


@pytest.mark.slow
def test_a_100_mb_file_whose_last_line_is_bad_writes_nothing(fleet: Fleet) -> None:
    path = fleet.tmp / "huge.csv"
    name, org = "N" * 190, "O" * 190
    groups = ";".join(f"{i}" * 190 for i in range(10))  # wide rows: fewer of them to parse
    number = 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        while f.tell() < 100 * 1024 * 1024:
            block = []
            for _ in range(2000):
                number += 1
                block.append(f"p{number}@example.com,{name},{org},{groups},UTC\n")
            f.write("".join(block))
        number += 1
        f.write(person(email="p2@example.com") + "\n")  # the first row's address again
    assert path.stat().st_size >= 100 * 1024 * 1024
    assert_bad_input(import_people(fleet, path), where(path, number), "field email:", "duplicate")
    fleet.assert_unchanged()


@pytest.mark.parametrize("end", ["\n", ""], ids=["newline", "no-newline"])
def test_an_unterminated_quote_at_the_end_of_the_file_is_refused(fleet: Fleet, end: str) -> None:
    path = fleet.write("open-quote.csv", people_csv(*GOOD) + person(groups='"staff;oncall') + end)
    assert_bad_input(import_people(fleet, path), where(path, 5), "field groups:", "never closed")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "empty file"), ("\n\n", "empty file"), (HEADER + "\n", "no people"), (HEADER, "no people")],
    ids=["empty", "blank-lines", "header-only", "header-no-newline"],
)
def test_a_file_with_no_people_is_refused(fleet: Fleet, content: str, problem: str) -> None:
    path = fleet.write("empty.csv", content)
    assert_bad_input(import_people(fleet, path), where(path), problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize("email", ["zed\u180e@example.com", "zed\u2062@example.com", "\u034fzed@example.com"])
def test_an_invisible_character_in_an_email_is_refused(fleet: Fleet, email: str) -> None:
    path = fleet.write("invisible.csv", people_csv(*GOOD, person(email=email)))
    assert_bad_input(import_people(fleet, path), where(path, 5), "field email:")
    fleet.assert_unchanged()


# -- e-mail addresses, groups and bytes ------------------------------------------------------------


def test_an_address_with_the_kelvin_sign_is_not_another_with_k(fleet: Fleet) -> None:
    """str.lower() folds U+212A KELVIN SIGN into ASCII k: two people would become one
    (and the second refused as a duplicate). Only A-Z are lower-cased."""
    rows = [person(email="kim.moe@example.com"), person(email="\u212aim.moe@example.com", name="Other")]
    path = fleet.write("kelvin.csv", people_csv(*GOOD[:2], *rows))
    result = import_people(fleet, path)
    assert result.code == 0, result.err
    listed = fleet.run("people", "list", "--json")
    assert listed.code == 0, listed.err
    emails = {p["email"] for p in json.loads(listed.out)["people"]}
    assert {"kim.moe@example.com", "\u212aim.moe@example.com"} <= emails


@pytest.mark.parametrize("blank", ["\u2800", "\u3164", "\uffa0", "\u200b", "\u00a0"])
@pytest.mark.parametrize("field", ["email", "groups"])
def test_a_blank_looking_character_in_an_email_or_a_group_is_refused(fleet: Fleet, blank: str, field: str) -> None:
    """Groups are matched exactly by policies' include_groups and exclude_groups: a
    group "security\u2800research" would look like the excluded one and not be it."""
    cells = (
        {"email": f"zed{blank}.qoe@example.com"} if field == "email" else {"groups": f"staff;security{blank}research"}
    )
    path = fleet.write("blank.csv", people_csv(*GOOD, person(**cells)))
    assert_bad_input(import_people(fleet, path), where(path, 5), f"field {field}:")
    fleet.assert_unchanged()


def test_an_email_longer_than_254_characters_is_refused(fleet: Fleet) -> None:
    email = "z" * 243 + "@example.com"  # 255 characters
    path = fleet.write("long.csv", people_csv(*GOOD, person(email=email)))
    assert_bad_input(import_people(fleet, path), where(path, 5), "field email:", "254")
    fleet.assert_unchanged()


def test_non_utf8_bytes_are_named_by_their_offset_in_the_file(fleet: Fleet) -> None:
    rows = [person(email=f"p{i}@example.com", name=f"P\u00e8rson {i}") for i in range(20)]
    rows[12] = person(email="jos@example.com", name="Jos\u00e9")
    raw = people_csv(*rows).encode("utf-8").replace("\u00e9".encode(), b"\xe9")
    path = fleet.write("offset.csv", raw)
    offset = raw.index(b"\xe9")
    assert_bad_input(import_people(fleet, path), where(path, 14), f"not UTF-8 at byte offset {offset}")
    fleet.assert_unchanged()
