"""Times need an explicit offset: ``--now``, every time on the command line, policy files
and appban's own check-in formats. A naive time or a bare date is refused, naming the
option or field; vendor formats that document naive times as UTC say so explicitly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appban.clock import MAX_DURATION, format_time, parse_duration, parse_time
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


# -- every time appban writes, it reads back -----------------------------------------------------------

FIRST = parse_time("0001-01-01T00:00:00Z")
LAST = parse_time("9999-12-31T23:59:59.999999Z")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("0202-07-10T16:00:00Z", "0202-07-10T16:00:00Z"),
        ("0999-12-31T23:59:59.5Z", "0999-12-31T23:59:59.500000Z"),
        ("1000-01-01T00:00:00+00:00", "1000-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_the_year_has_four_digits(text: str, shown: str) -> None:
    """strftime's %Y writes year 202 as "202", which no ISO-8601 reader takes."""
    assert format_time(parse_time(text)) == shown


@given(st.integers(min_value=FIRST, max_value=LAST))
def test_every_time_written_reads_back(value: int) -> None:
    text = format_time(value)
    assert text is not None
    assert parse_time(text) == value


def test_status_at_year_one_prints_a_time_appban_reads(fleet: Fleet) -> None:
    for args in (["status"], ["--json", "status"]):
        result = fleet.run(*args, "--now", "0001-01-01T00:00:00Z")
        assert result.code == 0, result.err
        assert "0001-01-01T00:00:00Z" in result.out, result.out
    doc = json.loads(fleet.run("--json", "status", "--now", "0001-01-01T00:00:00Z").out)
    assert parse_time(doc["now"]) == FIRST


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2020-07-11T06:59:00+25:00", "the offset +25:00 is not a time zone offset"),
        ("2020-07-11T06:59:00-24:00", "the offset -24:00 is not a time zone offset"),
        ("2020-07-11 06:59:00 +99:00", "the offset +99:00"),
        ("2020-02-30T06:59:00Z", "2020-02 has no day 30"),
        ("2021-02-29T06:59:00Z", "2021-02 has no day 29"),
        ("2020-13-01T06:59:00Z", "month 13"),
        ("2020-07-11T24:00:00Z", "hour 24"),
        ("2020-07-11T06:60:00Z", "minute 60"),
        ("0000-07-11T06:59:00Z", "no year 0000"),
        ("yesterday", "not an ISO-8601 time"),
    ],
)
def test_a_time_out_of_range_says_which_part_in_appbans_words(text: str, problem: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_time(text, field="deadline")
    assert caught.value.field == "deadline"
    assert problem in caught.value.detail, caught.value.detail
    assert "timedelta" not in caught.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T10:00:009Z",  # Python 3.11's fromisoformat read it as 10:00:00
        "2026-11-28T10:00:00.Z",  # a decimal point without a digit
        "2020-07-10T16:00:00+02:00:30",  # an offset with seconds
        "2020-07-10T16:00:00.5+02:00:30.5",
        "2020-07-10T16Z",  # an hour alone
        "2020-07-10T1600Z",
        "20200710T160000Z",  # ISO-8601's basic format: no system appban reads writes it
        "2020-W28-5T16:00:00Z",  # a week date
        "2020-07-10T16:00:00UTC",
        "2020-07-10T16:00:00  Z",
        "2020-07-10T16:0:00Z",
        "\uff12\uff10\uff12\uff10-07-10T16:00:00Z",  # digits, but not ASCII ones
        "2020-07-10T16:00:00Z trailing",
    ],
)
def test_a_time_not_written_as_appban_reads_times_is_refused(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_time(text, field="observed_at")
    assert caught.value.field == "observed_at"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-07-10T16:00Z", "2020-07-10T16:00:00Z"),  # no seconds
        ("2020-07-10t16:00:00z", "2020-07-10T16:00:00Z"),  # RFC 3339 allows lower case
        ("2020-07-10T16:00:00,5Z", "2020-07-10T16:00:00.500000Z"),
        ("2020-07-10T16:00:00.1234567Z", "2020-07-10T16:00:00.123456Z"),  # .NET's seven digits, cut
        ("2020-07-10T16:00:00.123456789Z", "2020-07-10T16:00:00.123456Z"),
        ("2020-07-10T18:00:00+0200", "2020-07-10T16:00:00Z"),
        ("2020-07-10T18:00:00+02", "2020-07-10T16:00:00Z"),
        ("2020-07-10T16:00:00-00:00", "2020-07-10T16:00:00Z"),
        ("2020-07-10 16:00:00 +00:00", "2020-07-10T16:00:00Z"),
        ("2020-07-10T16:00:00 Z", "2020-07-10T16:00:00Z"),
    ],
)
def test_the_forms_of_a_time_appban_reads(text: str, expected: str) -> None:
    assert format_time(parse_time(text)) == expected


def test_vendor_formats_read_times_as_strictly() -> None:
    """Vendor readers know the zone of their naive times, but take no other form either."""
    from zoneinfo import ZoneInfo

    from appban.inventory._vendor import vendor_time

    with pytest.raises(BadInput) as caught:
        vendor_time("2026-11-28T10:00:009Z", "lastSyncDateTime")
    assert caught.value.field == "lastSyncDateTime"
    assert vendor_time("2020-07-10T16:00:00.1234567Z", "t") == JULY_10_16H + 123456
    assert vendor_time("2020-07-10T11:00:00.000-0500", "t") == JULY_10_16H
    assert vendor_time("2020-07-10T18:00:00", "t", ZoneInfo("Europe/Paris")) == JULY_10_16H


# -- durations have an upper bound ------------------------------------------------------------------


def test_durations_up_to_100_years_are_accepted() -> None:
    assert parse_duration("36525d") == MAX_DURATION
    assert parse_duration("5217w6d") == MAX_DURATION  # the same 36525 days


@pytest.mark.parametrize("text", ["36526d", "5218w", "876601h", "99999999999w", "9" * 31 + "s"])
def test_a_duration_longer_than_100_years_is_refused(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_duration(text, field="max_inventory_age")
    assert caught.value.field == "max_inventory_age"
    assert "longer than 100 years" in caught.value.detail
