"""Tables on an 80-column terminal: what may be cut and what never is.

Numbers, times and identifiers are never cut (a time cut to ``2020-07-10T16:00…`` or an
id cut to ``00008101-0C…`` is no longer one); free text and names give way first. The
first column names the row (an org unit under ``status --by``) and keeps its width
before anything but the columns that are never cut.
"""

from __future__ import annotations

import re

import pytest

from appban import output
from helpers_cli import NOW, Fleet, run_tty

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CUT_TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:]*…")

LONG_PEOPLE = """\
email,name,org_unit,groups,timezone
jane.doe@example.com,Jane Doe With A Long Family Name,Engineering,staff;travel,Europe/London
bob.roe@example.com,Bob Roe,Customer Care,staff;security-research,America/New_York
"""


@pytest.fixture
def crowded(fleet: Fleet) -> Fleet:
    """Long names, org units and exemption reasons: tables that must give way at 80 columns."""
    people = fleet.write("long.csv", LONG_PEOPLE)
    assert fleet.run("people", "import", str(people)).code == 0
    exempt = fleet.run(
        "exempt", "add", "--policy", "tiktok-mail", "--person", "bob.roe@example.com",
        "--until", "2020-08-01T00:00:00Z", "--reason", "a long explanation of why this person needs the app",
    )  # fmt: skip
    assert exempt.code == 0, exempt.err
    return fleet


def tty(fleet: Fleet, *args: str) -> list[str]:
    result = run_tty("--db", str(fleet.db), "--now", NOW, *args, columns=80)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    return lines


@pytest.mark.parametrize(
    ("args", "times"),
    [
        (["device", "list", "--policy", "tiktok-mail"], 1),
        (["audit", "list"], 1),
        (["exempt", "list", "--all"], 2),
        (["policy", "list"], 2),
    ],
    ids=["devices-policy", "audit", "exemptions", "policies"],
)
def test_times_are_never_cut(crowded: Fleet, args: list[str], times: int) -> None:
    lines = tty(crowded, *args)
    text = "\n".join(lines)
    assert not CUT_TIME.search(text), text
    rows = [line for line in lines if TIME.search(line) and " as of " not in line]  # table rows
    assert rows, text
    for row in rows:
        assert len(TIME.findall(row)) == times, row


def test_ids_are_never_cut(crowded: Fleet) -> None:
    long_id = "5A8F3C2E-91B4-4D7A-8E6F-0C1D2B3A4F5E"  # an Intune device id
    checkin = crowded.write(
        "long-id.json",
        f'{{"source":"intune","device":{{"id":"{long_id}","platform":"windows",'
        '"owner":"bob.roe@example.com"},"observed_at":"2020-07-12T11:00:00Z","apps":[]}',
    )
    assert crowded.run("import", "appban", str(checkin)).code == 0
    text = "\n".join(tty(crowded, "device", "list", "--policy", "tiktok-mail"))
    assert re.search(r"^dev-1\s", text, re.M) and re.search(r"^dev-2\s", text, re.M), text
    text = "\n".join(tty(crowded, "device", "list"))
    for source_id in ("JANE-IPHONE", "BOB-PIXEL", long_id):
        assert re.search(rf"(^|\s){source_id}(\s|$)", text), text
    text = "\n".join(tty(crowded, "catalog", "show", "tiktok"))
    assert "com.zhiliaoapp.musically " in text and "com.ss.android.ugc.trill.go " in text


def test_free_text_gives_way(crowded: Fleet) -> None:
    text = "\n".join(tty(crowded, "exempt", "list", "--all"))
    assert "a long explanation of why this person needs the app" not in text
    assert "…" in text


def test_status_by_org_unit_keeps_the_org_unit_whole(crowded: Fleet) -> None:
    lines = tty(crowded, "status", "--by", "org_unit")
    header = next(line for line in lines if "out_of_scope" in line)
    assert header.split() == ["org_unit", "out_of_scope", "compliant", "violating", "blocked", "unverified",
                              "exempt", "people"]  # fmt: skip
    text = "\n".join(lines)
    # 80 columns less the state columns (whose headers never split) leave 14: names that fit stay whole.
    assert "\nEngineering " in text and "\nCustomer Care " in text, text


def test_a_first_column_too_long_for_any_gap_is_cut_last(crowded: Fleet) -> None:
    people = crowded.write(
        "longer.csv",
        "email,name,org_unit,groups,timezone\n"
        "jane.doe@example.com,Jane,Sales and Marketing for Europe the Middle East and Africa,staff,UTC\n",
    )
    assert crowded.run("people", "import", str(people)).code == 0
    lines = tty(crowded, "status", "--by", "org_unit")
    header = next(line for line in lines if "out_of_scope" in line)
    for h in ("org_unit", "out_of_scope", "unverified", "people"):
        assert re.search(rf"(^|\s){h}(\s|$)", header), header
    assert any(line.startswith("Sales and M") and "…" in line for line in lines), lines


def test_piped_tables_have_no_trailing_blanks(crowded: Fleet) -> None:
    for args in (["audit", "list"], ["device", "list"], ["people", "list"], ["status", "--by", "platform"]):
        out = crowded.run(*args).out
        assert out and all(line == line.rstrip() for line in out.splitlines()), (args, out)


def test_fit_never_cuts_kept_columns() -> None:
    columns = ["id", "at", "detail"]
    cells = [["dev-1", "2020-07-10T16:00:00Z", "x" * 200]]
    fitted = output._fit(columns, cells, [True, True, False], 40)
    assert fitted is not None
    widths, _gap = fitted
    assert widths[:2] == [5, 20] and sum(widths) + 2 * _gap <= 40
    # When the kept columns alone do not fit, there is no table (one block per row instead).
    assert output._fit(columns, cells, [True, True, False], 24) is None
