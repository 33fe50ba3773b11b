"""What the command line prints for a person: safe on a terminal, readable at 80 columns.

A tampered database (or a hostile source, before its text was checked) may hold
terminal escapes in any stored text: every listing and show command prints them as
visible escapes, never raw. Tables on an 80-column terminal cut long cells with an
ellipsis instead of wrapping them, and never split a header. ``device show`` and
``policy show`` print values as a person writes them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata

import pytest

from helpers_cli import NOW, Fleet, run_tty

ESC = "\x1b"
# Control sequences a terminal acts on: clear screen, set the window title (OSC ... BEL),
# a C1 CSI, and text that runs right to left.
PLANTS = {
    "clear": ESC + "[2J",
    "title": ESC + "]0;pwned\x07",
    "csi": "\x9b31m",
    "bidi": "\u202e",
    "isolate": "\u2066",
    "zero-width": "\u200b",
    "del": "\x7f",
}
EVIL = "".join(PLANTS.values())


def _sql_text(text: str) -> str:
    """``text`` as an SQLite expression (char() for every character outside printable ASCII)."""
    parts = [f"char({ord(ch)})" if not (" " <= ch <= "~") or ch == "'" else f"'{ch}'" for ch in text]
    return " || ".join(parts)


def plant(db: object) -> None:
    """Terminal escapes in people, devices, policies, exemptions, catalog and audit entries."""
    evil = _sql_text(EVIL)
    con = sqlite3.connect(str(db), isolation_level=None)
    try:
        for statement in (
            f"UPDATE people SET name = name || {evil}, org_unit = org_unit || {evil}, groups = groups || {evil}",
            f"UPDATE devices SET model = 'iPhone' || {evil}, os_version = '13' || {evil}",
            f"UPDATE policies SET body = json_set(body, '$.title', 'TikTok' || {evil}, '$.reason', 'why' || {evil})",
            f"UPDATE exemptions SET reason = 'travel' || {evil}",
            f"UPDATE catalog_families SET title = title || {evil}, publisher = publisher || {evil}",
            f"UPDATE audit_log SET subject = subject || {evil} WHERE seq = 2",
            f"UPDATE audit_log SET action = action || {evil} WHERE seq = 3",
            f"UPDATE audit_log SET data = '{{\"x\":\"' || {evil} || '\"}}' WHERE seq = 4",
        ):
            con.execute(statement)
    finally:
        con.close()


def unsafe(text: str) -> list[str]:
    """Characters a terminal would act on or hide: controls but the line end, format
    characters (bidi, zero-width), separators other than the space, surrogates."""
    return [
        f"U+{ord(ch):04X}"
        for ch in text
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
    ]


LISTINGS = [
    ["people", "list"],
    ["device", "list"],
    ["device", "list", "--policy", "tiktok-mail"],
    ["device", "show", "JANE-IPHONE"],
    ["policy", "list"],
    ["policy", "show", "tiktok-mail"],
    ["status"],
    ["status", "--by", "org_unit"],
    ["exempt", "list", "--all"],
    ["audit", "list"],
    ["audit", "verify"],
    ["catalog", "list"],
    ["catalog", "show", "tiktok"],
]


@pytest.fixture
def tampered(fleet: Fleet) -> Fleet:
    exempt = fleet.run(
        "exempt", "add", "--policy", "tiktok-mail", "--device", "BOB-PIXEL",
        "--until", "2020-08-01T00:00:00Z", "--reason", "travel",
    )  # fmt: skip
    assert exempt.code == 0, exempt.err
    plant(fleet.db)
    return fleet


@pytest.mark.parametrize("args", LISTINGS, ids=lambda a: "-".join(a[:2]) + ("-by" if "--by" in a else ""))
def test_stored_escapes_never_reach_the_terminal(tampered: Fleet, args: list[str]) -> None:
    result = tampered.run(*args)
    assert "Traceback" not in result.err
    assert result.code in (0, 1), result  # audit verify: 1, the log was tampered with
    assert result.out.strip()
    assert not unsafe(result.out), unsafe(result.out)
    assert not unsafe(result.err), unsafe(result.err)


def test_escapes_are_shown_not_dropped(tampered: Fleet) -> None:
    """An admin sees that something odd is stored: the escape, spelled out."""
    out = tampered.run("people", "list").out + tampered.run("audit", "verify").out
    assert "\\x1b[2J" in out and "\\u202e" in out and "\\x9b31m" in out


@pytest.mark.parametrize("args", [["people", "list"], ["audit", "list"], ["device", "show", "JANE-IPHONE"]])
def test_stored_escapes_on_a_real_terminal(tampered: Fleet, args: list[str]) -> None:
    result = run_tty("--db", str(tampered.db), "--now", NOW, *args)
    assert result.code == 0, result.err
    # Styling (SGR) was removed by run_tty; nothing else that a terminal acts on is left.
    assert not unsafe(result.out), unsafe(result.out)


def test_json_output_escapes_what_it_carries(tampered: Fleet) -> None:
    result = tampered.run("--json", "people", "list")
    assert result.code == 0 and not unsafe(result.out)
    assert json.loads(result.out)["people"][0]["name"].endswith(EVIL)


# -- 80 columns ---------------------------------------------------------------------------------

LONG_PEOPLE = """\
email,name,org_unit,groups,timezone
jane.doe@example.com,Jane Doe,Sales and Marketing for Europe and Africa,staff;travel;mobile-pilot,Europe/London
bob.roe@example.com,Bob Roe,Engineering,staff;security-research,America/New_York
"""


def _table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "headers"),
    [
        (["people", "list"], ["email", "name", "org unit", "groups", "timezone", "devices"]),
        (["device", "list"], ["id", "source", "source id", "platform", "owner", "observed"]),
        (["device", "list", "--policy", "tiktok-mail"], ["id", "owner", "platform", "state", "since", "detail"]),
        (["policy", "list"], ["id", "status", "rev", "mode", "apps", "effective", "deadline"]),
        (["status", "--by", "org_unit"], ["out_of_scope", "compliant", "violating", "blocked", "unverified"]),
        (["audit", "list"], ["seq", "at", "action", "subject", "data"]),
        (["exempt", "list", "--all"], ["id", "policy", "who", "from", "until", "status", "reason"]),
        (["catalog", "show", "tiktok"], ["kind", "value", "since", "provenance"]),
    ],
    ids=["people", "devices", "devices-policy", "policies", "status-by", "audit", "exemptions", "catalog"],
)
def test_tables_fit_80_columns(fleet: Fleet, args: list[str], headers: list[str]) -> None:
    people = fleet.write("long.csv", LONG_PEOPLE)
    assert fleet.run("people", "import", str(people)).code == 0
    exempt = fleet.run(
        "exempt", "add", "--policy", "tiktok-mail", "--person", "jane.doe@example.com",
        "--until", "2020-08-01T00:00:00Z", "--reason", "a long explanation of why this person needs the app",
    )  # fmt: skip
    assert exempt.code == 0, exempt.err
    result = run_tty("--db", str(fleet.db), "--now", NOW, *args, columns=80)
    assert result.code == 0, result.err
    lines = _table_lines(result.out)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    header = next(line for line in lines if all(h in line.split() or h in line for h in headers))
    for h in headers:  # every header whole, on one line
        assert re.search(rf"(^|\s){re.escape(h)}(\s|$)", header), (h, header)
    # No row wrapped onto a second line: every line below the rule starts a row.
    rule = lines.index(next(line for line in lines if set(line.strip()) == {"─"}))
    rows = lines[rule + 1 :]
    width_of_first = len(header) - len(header.lstrip())
    for row in rows:
        if row.startswith(("...", "the latest")) or re.match(r"^\d[\d,]* (people|person|entr|exemption)", row):
            continue
        assert len(row) - len(row.lstrip()) <= max(width_of_first, 8), ("a wrapped cell", row, lines)


def test_long_cells_end_in_an_ellipsis_on_a_terminal_and_stay_whole_when_piped(fleet: Fleet) -> None:
    people = fleet.write("long.csv", LONG_PEOPLE)
    assert fleet.run("people", "import", str(people)).code == 0
    tty = run_tty("--db", str(fleet.db), "--now", NOW, "people", "list", columns=80)
    assert "…" in tty.out
    assert "Sales and Marketing for Europe and Africa" not in tty.out
    assert "jane.doe@example.com" in tty.out  # the row's key is kept whole
    piped = fleet.run("people", "list")
    assert "Sales and Marketing for Europe and Africa" in piped.out
    assert "…" not in piped.out


def test_a_terminal_too_narrow_for_the_headers_gets_one_block_per_row(fleet: Fleet) -> None:
    result = run_tty("--db", str(fleet.db), "--now", NOW, "device", "list", "--policy", "tiktok-mail", columns=40)
    assert result.code == 0, result.err
    assert all(len(line) <= 40 for line in result.out.splitlines()), result.out
    assert "id: dev-1" in result.out and "owner: jane.doe@example.com" in result.out


# -- values as a person writes them -------------------------------------------------------------

PYTHON_LOOKS = ("['", "']", "True", "False", "None", "{'", "':")


def test_device_show_reads_like_a_person_wrote_it(fleet: Fleet) -> None:
    out = fleet.run("--now", "2020-07-12T12:00:00.250000Z", "device", "show", "JANE-IPHONE").out
    for looks in PYTHON_LOOKS:
        assert looks not in out, (looks, out)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", out), out  # times to the second
    assert "eas_device_ids: EASJANE1\n" in out
    assert "mail_access: yes\n" in out
    assert "as of 2020-07-12T12:00:00Z" in out


def test_policy_show_reads_like_a_person_wrote_it(fleet: Fleet) -> None:
    out = fleet.run("policy", "show", "tiktok-mail").out
    for looks in PYTHON_LOOKS:
        assert looks not in out, (looks, out)
    assert "apps: tiktok\n" in out
    assert "scope.platforms: ios, ipados, android\n" in out
    assert "scope.mail_access: required\n" in out
    assert "max_inventory_age: 7d\n" in out
    assert "reminders: 24h, 2h\n" in out  # as the policy file wrote them, not 1d


def test_plural_forms(fleet: Fleet) -> None:
    one = fleet.write(
        "one.jsonl",
        '{"device":{"id":"N1","platform":"ios","owner":"jane.doe@example.com"},'
        '"observed_at":"2020-07-11T00:00:00Z","apps":[]}\n',
    )
    out = fleet.run("import", "appban", str(one)).out
    assert out.startswith("1 check-in: 1 new device, "), out
    people = fleet.write("one.csv", "email,name,org_unit,groups,timezone\nann@example.com,Ann,Sales,staff,UTC\n")
    assert ": 1 person (1 new," in fleet.run("people", "import", str(people)).out


def test_plural_helper() -> None:
    from appban.output import plural

    assert [plural(n, "check-in") for n in (0, 1, 2)] == ["0 check-ins", "1 check-in", "2 check-ins"]
    assert plural(1, "person", "people") == "1 person"
    assert plural(1250, "person", "people") == "1,250 people"
    assert plural(1, "entry", "entries") == "1 entry"
