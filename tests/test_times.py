"""Times need an explicit offset: ``--now``, every time on the command line, policy files
and appban's own check-in formats. A naive time or a bare date is refused, naming the
option or field; vendor formats that document naive times as UTC say so explicitly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from appban.clock import parse_duration, parse_time
from appban.errors import BadInput
from helpers_cli import Fleet, assert_bad_input

JULY_10_16H = 1594396800 * 1_000_000  # 2020-07-10T16:00:00Z


@pytest.mark.parametrize(
    "value",
    [
        "2020-07-10T16:00:00Z",
        "2020-07-10T18:00:00+02:00",
        "2020-07-10T11:00:00-05:00",
        "2020-07-10 16:00:00+00:00",
        " 2020-07-10T16:00:00Z ",
        datetime(2020, 7, 10, 16, tzinfo=UTC),
        datetime(2020, 7, 10, 17, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_a_time_with_an_offset(value: object) -> None:
    assert parse_time(value, field="t") == JULY_10_16H


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2020-07-10T16:00:00", "no offset"),
        ("2020-07-10 16:00", "no offset"),
        ("2020-07-10T16:00:00.123456", "no offset"),
        ("2020-07-10", "is a date"),
        ("20200710", "is a date"),
        (datetime(2020, 7, 10, 16), "no offset"),  # PyYAML's reading of an unquoted naive time
        (date(2020, 7, 10), "is a date"),  # PyYAML's reading of an unquoted date
    ],
)
def test_a_naive_time_or_a_date_is_refused(value: object, problem: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_time(value, field="effective")
    assert caught.value.field == "effective"
    assert problem in caught.value.detail


def test_formats_that_document_naive_times_as_utc_can_say_so() -> None:
    assert parse_time("2020-07-10T16:00:00", naive_is_utc=True) == JULY_10_16H
    assert parse_time(datetime(2020, 7, 10, 16), naive_is_utc=True) == JULY_10_16H
    with pytest.raises(BadInput):
        parse_time(date(2020, 7, 10), naive_is_utc=True)


def test_a_zero_duration_only_where_allowed() -> None:
    with pytest.raises(BadInput):
        parse_duration("0s")
    assert parse_duration("0s", allow_zero=True) == 0
    assert parse_duration("5m", allow_zero=True) == 300_000_000


@pytest.mark.parametrize("value", ["2020-07-12T12:00:00", "2020-07-12", "2020-07-12 12:00"])
@pytest.mark.parametrize("position", ["global", "command"])
def test_now_without_an_offset_is_refused(fleet: Fleet, value: str, position: str) -> None:
    args = ["--now", value, "--json", "status"] if position == "global" else ["--json", "status", "--now", value]
    assert_bad_input(fleet.run(*args), "--now")
    fleet.assert_unchanged()


def test_until_without_an_offset_is_refused(fleet: Fleet) -> None:
    result = fleet.run(
        "exempt",
        "add",
        "--policy",
        "tiktok-mail",
        "--person",
        "jane.doe@example.com",
        "--until",
        "2020-08-01T00:00:00",
        "--reason",
        "travelling",
    )
    assert_bad_input(result, "--until", "offset")
    fleet.assert_unchanged()
