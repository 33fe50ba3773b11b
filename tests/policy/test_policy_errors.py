"""Bad policy files (SPEC: Policy file) through ``appban policy apply FILE [--dry-run]``.

Every answer: exit 2, one printable line on stderr naming the file, the line and
the field, no traceback, and nothing written: the stored policy stays as it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appban.clock import parse_time
from helpers_cli import POLICY_YAML, Fleet, Result, assert_bad_input, where

# A second policy, valid, so that every refusal below is the defect's doing.
GOOD = """\
id: douyin-mail
title: Douyin is not permitted on devices that read company mail
reason: Security risks
apps:
  - tiktok
  - android:com.ss.android.ugc.aweme
scope:
  platforms: [android, ios]
  mail_access: required
  ownership: any
  include_groups: []
  exclude_groups: [security-research]
effective: 2020-07-10T16:00:00Z
deadline: 2020-07-11T06:59:00Z
mode: monitor
on_unverified: allow
max_inventory_age: 7d
reminders: [24h, 2h]
"""


def line_of(text: str, needle: str) -> int:
    """The last line that contains ``needle``."""
    return max(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def replace(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def apply(fleet: Fleet, path: Path, *more: str) -> Result:
    return fleet.run("policy", "apply", str(path), *more)


@pytest.fixture(params=["apply", "dry-run"])
def mode(request: pytest.FixtureRequest) -> list[str]:
    return [] if request.param == "apply" else ["--dry-run"]


def test_the_good_policy_is_accepted(fleet: Fleet) -> None:
    path = fleet.write("good.yaml", GOOD)
    result = apply(fleet, path)
    assert result.code == 0, result.err
    assert fleet.run("--json", "policy", "show", "douyin-mail").code == 0


def test_missing_file(fleet: Fleet, mode: list[str]) -> None:
    path = fleet.tmp / "absent.yaml"
    assert_bad_input(apply(fleet, path, *mode), where(path), "cannot read")
    fleet.assert_unchanged()


# -- syntax and shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (replace("  - tiktok\n", "  - [tiktok\n"), 7),  # noticed at the next key
        (replace("scope:\n  platforms", "scope:\n platforms"), 9),
        (replace("mode: monitor", "mode: monitor: now"), 15),
        (replace("reason: Security risks", 'reason: "Security risks'), 19),  # at the end
        (replace("  mail_access: required", "\tmail_access: required"), 9),
        (GOOD + "---\nid: second\n", 19),
    ],
    ids=["unclosed-flow", "indent", "colon", "unclosed-quote", "tab", "two-documents"],
)
def test_yaml_syntax_error(fleet: Fleet, mode: list[str], text: str, line: int) -> None:
    path = fleet.write("syntax.yaml", text)
    result = assert_bad_input(apply(fleet, path, *mode), "malformed YAML")
    # PyYAML marks where it noticed: the line named, or the one after.
    assert any(where(path, n) + ":" in result for n in (line - 1, line, line + 1)), result
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "text",
    ["", "# nothing\n", "- id: tiktok-mail\n- title: x\n", "just a string\n", "42\n", "null\n"],
    ids=["empty", "comment", "list", "string", "number", "null"],
)
def test_not_a_mapping(fleet: Fleet, mode: list[str], text: str) -> None:
    path = fleet.write("shape.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, 1), "mapping")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        (GOOD + "id: other\n", "id", 19),
        (
            replace("  ownership: any\n", "  ownership: any\n  ownership: corporate\n"),
            "scope.ownership",
            11,
        ),
        (replace("mode: monitor\n", "mode: monitor\nMode: enforce\nmode: enforce\n"), "mode", 17),
    ],
    ids=["top", "nested", "after-other"],
)
def test_duplicate_keys(fleet: Fleet, mode: list[str], text: str, field: str, line: int) -> None:
    path = fleet.write("dup.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line), f"field {field}:", "duplicate")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        (GOOD + "colour: red\n", "colour", 19),
        (replace("mode: monitor", "Mode: monitor"), "Mode", 15),
        (replace("  ownership: any", "  owners: any"), "scope.owners", 10),
        (replace("reason:", "<script>alert(1)</script>:"), "<script>", 3),
    ],
    ids=["top", "case", "scope", "markup-key"],
)
def test_unknown_field(fleet: Fleet, mode: list[str], text: str, field: str, line: int) -> None:
    path = fleet.write("unknown.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line), f"field {field}", "unknown field")
    fleet.assert_unchanged()


@pytest.mark.parametrize("field", ["id", "title", "apps", "effective", "deadline"])
def test_missing_required_field(fleet: Fleet, mode: list[str], field: str) -> None:
    text = "".join(line + "\n" for line in GOOD.splitlines() if not line.startswith(f"{field}:"))
    if field == "apps":
        text = text.replace("  - tiktok\n  - android:com.ss.android.ugc.aweme\n", "")
    path = fleet.write("missing.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path), f"field {field}:", "missing required field")
    fleet.assert_unchanged()


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "TikTok-Mail",
        "tiktok mail",
        "-tiktok",
        "tiktok-",
        "tiktok_mail",
        "t\u00efktok",
        "x" * 65,
        "123",
        "[a, b]",
        '""',
        '"a\\u0000b"',
    ],
    ids=[
        "upper",
        "space",
        "leading-dash",
        "trailing-dash",
        "underscore",
        "non-ascii",
        "65-chars",
        "number",
        "list",
        "empty",
        "nul",
    ],
)
def test_bad_id(fleet: Fleet, mode: list[str], value: str) -> None:
    path = fleet.write("id.yaml", replace("id: douyin-mail", f"id: {value}"))
    assert_bad_input(apply(fleet, path, *mode), where(path, 1), "field id:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("max_inventory_age: 7d", "max_inventory_age: 7 days", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: 0d", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: -1d", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: 7", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: 1y", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: .nan", "max_inventory_age"),
        ("reminders: [24h, 2h]", "reminders: [24h, 2 hours]", "reminders[1]"),
        ("reminders: [24h, 2h]", "reminders: 24h", "reminders"),
    ],
    ids=["words", "zero", "negative", "number", "years", "nan", "reminder", "not-a-list"],
)
def test_bad_duration(fleet: Fleet, mode: list[str], old: str, new: str, field: str) -> None:
    text = replace(old, new)
    path = fleet.write("duration.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, new)), f"field {field}:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("deadline: 2020-07-11T06:59:00Z", "deadline: 2020-07-09T06:59:00Z", "deadline"),
        ("effective: 2020-07-10T16:00:00Z", "effective: tomorrow", "effective"),
        ("effective: 2020-07-10T16:00:00Z", "effective: 2020-07-10", "effective"),
        ("effective: 2020-07-10T16:00:00Z", "effective: 1594396800", "effective"),
        ("deadline: 2020-07-11T06:59:00Z", "deadline: 2020-02-30T06:59:00Z", "deadline"),
        ("deadline: 2020-07-11T06:59:00Z", 'deadline: "2020-07-11T06:59:00+25:00"', "deadline"),
        ("deadline: 2020-07-11T06:59:00Z", "deadline: " + "2" * 10_240, "deadline"),
    ],
    ids=["before-effective", "words", "date-only", "number", "feb-30", "bad-offset", "10KB"],
)
def test_bad_time(fleet: Fleet, mode: list[str], old: str, new: str, field: str) -> None:
    text = replace(old, new)
    path = fleet.write("time.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, new[:20])), f"field {field}:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ("  - tiktok\n", "  - snapchat\n", "apps[0]", "unknown app family 'snapchat'"),
        ("  - tiktok\n", "  - TikTok\n", "apps[0]", "unknown app family"),
        ("  - tiktok\n", "  - tiktok\n  - tiktok\n", "apps[1]", "twice"),
        (
            "  - android:com.ss.android.ugc.aweme\n",
            "  - symbian:com.ss.android.ugc.aweme\n",
            "apps[1]",
            "unknown platform",
        ),
        (
            "  - android:com.ss.android.ugc.aweme\n",
            "  - 'android:com.x;rm -rf /'\n",
            "apps[1]",
            "bad identifier",
        ),
        ("  - android:com.ss.android.ugc.aweme\n", "  - 'android:'\n", "apps[1]", "bad identifier"),
        ("  - android:com.ss.android.ugc.aweme\n", "  - 42\n", "apps[1]", "expected"),
        ("  - android:com.ss.android.ugc.aweme\n", "  - {family: tiktok}\n", "apps[1]", "expected"),
        (
            "apps:\n  - tiktok\n  - android:com.ss.android.ugc.aweme\n",
            "apps: []\n",
            "apps",
            "at least one",
        ),
        (
            "apps:\n  - tiktok\n  - android:com.ss.android.ugc.aweme\n",
            "apps: tiktok\n",
            "apps",
            "expected a list",
        ),
    ],
    ids=[
        "unknown",
        "case",
        "twice",
        "platform",
        "identifier",
        "empty-identifier",
        "number",
        "mapping",
        "none",
        "not-a-list",
    ],
)
def test_bad_apps(fleet: Fleet, mode: list[str], old: str, new: str, field: str, problem: str) -> None:
    text = replace(old, new)
    path = fleet.write("apps.yaml", text)
    line = line_of(text, new.splitlines()[-1])
    assert_bad_input(apply(fleet, path, *mode), where(path, line), f"field {field}:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("mode: monitor", "mode: destroy", "mode"),
        ("mode: monitor", "mode: yes", "mode"),
        ("on_unverified: allow", "on_unverified: maybe", "on_unverified"),
        ("  platforms: [android, ios]", "  platforms: [android, symbian]", "scope.platforms[1]"),
        ("  platforms: [android, ios]", "  platforms: android", "scope.platforms"),
        ("  mail_access: required", "  mail_access: sometimes", "scope.mail_access"),
        ("  ownership: any", "  ownership: stolen", "scope.ownership"),
        (
            "  exclude_groups: [security-research]",
            "  exclude_groups: [42]",
            "scope.exclude_groups[0]",
        ),
        (
            "  exclude_groups: [security-research]",
            "  exclude_groups: [" + "g" * 300 + "]",
            "scope.exclude_groups[0]",
        ),
        ("  include_groups: []", "  include_groups: staff", "scope.include_groups"),
    ],
    ids=[
        "mode",
        "mode-bool",
        "on_unverified",
        "platform",
        "platforms-not-list",
        "mail_access",
        "ownership",
        "group-number",
        "group-long",
        "groups-not-list",
    ],
)
def test_bad_choice_or_scope(fleet: Fleet, mode: list[str], old: str, new: str, field: str) -> None:
    text = replace(old, new)
    path = fleet.write("choice.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, new.strip()[:20])), f"field {field}:")
    fleet.assert_unchanged()


def test_scope_not_a_mapping(fleet: Fleet, mode: list[str]) -> None:
    text = replace("scope:\n  platforms: [android, ios]\n", "scope:\n  - platforms\n")
    text = "".join(line + "\n" for line in text.splitlines() if not line.startswith("  ") or line.startswith("  -"))
    path = fleet.write("scope.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "scope:")), "field scope:", "mapping")
    fleet.assert_unchanged()


# -- hostile strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("title", "'<script>alert(1)</script>'", "markup"),
        ("title", '"Remove TikTok <img src=x onerror=alert(1)>"', "markup"),
        ("title", '"Remove\\u0000TikTok"', "control character"),
        ("title", '"Remove \\e[2J TikTok"', "control character"),
        ("title", '"\\u202ekoTkiT evomeR"', "control character"),
        ("title", '"Remove\\nTikTok"', "control character"),
        ("title", "T" * 10_240, "longer than"),
        ("title", "[a, b]", "expected text"),
        ("title", '"   "', "empty"),
        ("reason", "'</p><p>'", "markup"),
        ("reason", '"Security\\u2066 risks"', "control character"),
    ],
    ids=[
        "script",
        "img",
        "nul",
        "escape",
        "bidi",
        "newline",
        "10KB",
        "list",
        "blank",
        "reason-markup",
        "reason-bidi",
    ],
)
def test_hostile_text(fleet: Fleet, mode: list[str], field: str, value: str, problem: str) -> None:
    text = "".join((f"{field}: {value}" if line.startswith(f"{field}:") else line) + "\n" for line in GOOD.splitlines())
    path = fleet.write("hostile.yaml", text)
    assert_bad_input(
        apply(fleet, path, *mode),
        where(path, line_of(text, f"{field}:")),
        f"field {field}:",
        problem,
    )
    fleet.assert_unchanged()


def test_python_tag_is_not_executed(fleet: Fleet, mode: list[str]) -> None:
    marker = fleet.tmp / "pwned"
    text = replace("reason: Security risks", f"reason: !!python/object/apply:os.system ['touch {marker}']")
    path = fleet.write("tag.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, 3), "malformed YAML")
    assert not marker.exists()
    fleet.assert_unchanged()


def test_billion_laughs(fleet: Fleet, mode: list[str]) -> None:
    """Nine levels of nine aliases: a few hundred bytes that expand to 9**9 items."""
    bomb = "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"x-{level}: &{level} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    path = fleet.write("lol.yaml", GOOD + bomb)
    started = time.monotonic()
    result = apply(fleet, path, *mode)
    elapsed = time.monotonic() - started
    assert_bad_input(result, where(path, 19), "field x-a:", "unknown field")
    assert elapsed < 5, f"took {elapsed:.1f}s"
    fleet.assert_unchanged()


def test_aliases_in_a_valid_field_do_not_expand(fleet: Fleet, mode: list[str]) -> None:
    groups = "  exclude_groups: &a [" + ", ".join(["g"] * 9) + "]\n"
    groups += "  include_groups: [" + ", ".join(["*a"] * 9) + "]\n"
    text = replace("  include_groups: []\n  exclude_groups: [security-research]\n", groups)
    path = fleet.write("alias.yaml", text)
    started = time.monotonic()
    result = apply(fleet, path, *mode)
    assert time.monotonic() - started < 5
    line = assert_bad_input(result, "field scope.include_groups[0]:")
    assert where(path, line_of(text, "include_groups")) + ":" in line, line  # the alias's line
    fleet.assert_unchanged()


def test_deeply_nested(fleet: Fleet) -> None:
    path = fleet.write("deep.yaml", GOOD + "x-deep: " + "[" * 1_000 + "]" * 1_000 + "\n")
    assert_bad_input(apply(fleet, path), where(path))
    fleet.assert_unchanged()


def test_non_utf8_bytes(fleet: Fleet, mode: list[str]) -> None:
    raw = replace("reason: Security risks", "reason: S\u00e9curit\u00e9").encode("utf-8")
    raw = raw.replace("\u00e9".encode(), b"\xe9")
    path = fleet.write("latin1.yaml", raw)
    offset = raw.index(b"\xe9")
    assert_bad_input(apply(fleet, path, *mode), where(path, 3), f"not UTF-8 at byte offset {offset}")
    fleet.assert_unchanged()


def test_a_100_mb_file_is_refused_without_reading_it_all(fleet: Fleet, mode: list[str]) -> None:
    path = fleet.tmp / "huge.yaml"
    with open(path, "wb") as f:
        f.write(GOOD.encode() + b"# ")
        chunk = b"#" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b"\n")
    started = time.monotonic()
    result = apply(fleet, path, *mode)
    elapsed = time.monotonic() - started
    assert_bad_input(result, where(path), "larger than")
    assert elapsed < 5, f"took {elapsed:.1f}s"
    fleet.assert_unchanged()


def test_a_bad_update_leaves_the_stored_policy_as_it_was(fleet: Fleet, mode: list[str]) -> None:
    text = replace("deadline: 2020-07-11T06:59:00Z", "deadline: 2020-07-01T00:00:00Z", POLICY_YAML)
    path = fleet.write("update.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "deadline:")), "field deadline:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        ("effective: 2020-07-10T16:00:00", "offset"),  # YAML reads it as a naive datetime
        ("effective: 2020-07-10 16:00:00", "offset"),
        ('effective: "2020-07-10T16:00:00"', "offset"),  # quoted: a naive time in text
        ('effective: "2020-07-10"', "date"),
        ("effective: 2020-07-10", "date"),  # YAML reads it as a date
    ],
    ids=["naive", "naive-space", "naive-quoted", "date-quoted", "date"],
)
def test_a_time_without_an_offset_is_refused(fleet: Fleet, mode: list[str], new: str, problem: str) -> None:
    """Which zone a naive time meant cannot be known; a guess moves the deadline by hours."""
    text = replace("effective: 2020-07-10T16:00:00Z", new)
    path = fleet.write("naive.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "effective:")), "field effective:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "deadline",
    ["2020-07-11T06:59:00Z", "2020-07-11T08:59:00+02:00", "2020-07-11 06:59:00 +00:00", '"2020-07-11T01:59:00-05:00"'],
)
def test_times_with_an_offset_are_accepted(fleet: Fleet, deadline: str) -> None:
    path = fleet.write("offset.yaml", replace("deadline: 2020-07-11T06:59:00Z", f"deadline: {deadline}"))
    result = apply(fleet, path, "--json")
    assert result.code == 0, result.err
    shown = fleet.run("policy", "show", "douyin-mail", "--json")
    assert json.loads(shown.out)["deadline"] == "2020-07-11T06:59:00Z"


# -- durations: bounded, and each reminder once ----------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("max_inventory_age: 7d", "max_inventory_age: 99999999999w", "max_inventory_age"),
        ("max_inventory_age: 7d", "max_inventory_age: 36526d", "max_inventory_age"),
        ("reminders: [24h, 2h]", "reminders: [24h, 99999999999999h]", "reminders[1]"),
        ("reminders: [24h, 2h]", "reminders: [5218w]", "reminders[0]"),
    ],
    ids=["huge-age", "100-years-and-a-day", "huge-reminder", "reminder-over-100-years"],
)
def test_a_duration_longer_than_100_years_is_refused(
    fleet: Fleet, mode: list[str], old: str, new: str, field: str
) -> None:
    """An unbounded duration reached the database as an integer SQLite cannot hold:
    "internal error: OverflowError", exit 1, no file, no line, no field."""
    text = replace(old, new)
    path = fleet.write("huge.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, new)), f"field {field}:", "100 years")
    fleet.assert_unchanged()


def test_a_duration_of_100_years_is_accepted(fleet: Fleet) -> None:
    text = replace("max_inventory_age: 7d", "max_inventory_age: 36525d")
    text = replace("reminders: [24h, 2h]", "reminders: [5217w6d, 2h]", text)
    path = fleet.write("century.yaml", text)
    result = apply(fleet, path)
    assert result.code == 0, result.err
    shown = json.loads(fleet.run("policy", "show", "douyin-mail", "--json").out)
    assert (shown["max_inventory_age"], shown["reminders"]) == ("36525d", ["5217w6d", "2h"])


@pytest.mark.parametrize(
    ("reminders", "field", "first"),
    [
        ("[1w, 168h]", "reminders[1]", "reminders[0]"),
        ("[24h, 2h, 1d]", "reminders[2]", "reminders[0]"),
        ("[2h, 120m]", "reminders[1]", "reminders[0]"),
        ("[24h, 2h, 90m, 7200s]", "reminders[3]", "reminders[1]"),
    ],
    ids=["week-hours", "day", "minutes", "seconds"],
)
def test_the_same_reminder_twice_is_refused(
    fleet: Fleet, mode: list[str], reminders: str, field: str, first: str
) -> None:
    """Two reminders at one time before the deadline would send one notice twice."""
    text = replace("reminders: [24h, 2h]", f"reminders: {reminders}")
    path = fleet.write("reminders.yaml", text)
    line = line_of(text, "reminders:")
    assert_bad_input(apply(fleet, path, *mode), where(path, line), f"field {field}:", first)
    fleet.assert_unchanged()


def test_a_reminder_before_the_year_0001_is_refused(fleet: Fleet, mode: list[str]) -> None:
    text = replace("effective: 2020-07-10T16:00:00Z", "effective: 0001-01-01T00:00:00Z")
    text = replace("deadline: 2020-07-11T06:59:00Z", "deadline: 0050-01-01T00:00:00Z", text)
    text = replace("reminders: [24h, 2h]", "reminders: [24h, 3000w]", text)
    path = fleet.write("early-reminder.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "reminders:")), "field reminders[1]:", "0001")
    fleet.assert_unchanged()


# -- times appban writes, it reads back ------------------------------------------------------------


@pytest.mark.parametrize("effective", ["0202-07-10T16:00:00Z", "0001-01-01T00:00:00Z", "0999-12-31T23:59:59.5Z"])
def test_a_policy_from_before_the_year_1000_applies_and_reloads(fleet: Fleet, effective: str) -> None:
    """Its times were stored as "202-07-10T16:00:00Z" (no padding), which the apply
    itself then failed to read back: "field time: not an ISO-8601 time"."""
    text = replace("effective: 2020-07-10T16:00:00Z", f"effective: {effective}")
    path = fleet.write("early.yaml", text)
    for more in (["--dry-run"], []):
        result = apply(fleet, path, *more)
        assert result.code == 0, result.err
    shown = fleet.run("policy", "show", "douyin-mail", "--json")
    assert shown.code == 0, shown.err
    assert parse_time(json.loads(shown.out)["effective"]) == parse_time(effective)
    assert fleet.run("status", "--policy", "douyin-mail").code == 0
    again = apply(fleet, path, "--json")  # the stored one is read back and compared
    assert again.code == 0, again.err


# -- YAML: aliases at their own line, words YAML reads as something else ---------------------------


@pytest.mark.parametrize(
    ("where_", "alias", "field"),
    [
        ("reminders: [24h, 2h]", "reminders: [24h, *a]", "reminders[1]"),
        ("reminders: [24h, 2h]", "reminders: *a", "reminders"),
        ("  platforms: [android, ios]", "  platforms: [ios, *a]", "scope.platforms[1]"),
        ("  platforms: [android, ios]", "  platforms: [ios]\n  <<: *a", "scope.<<"),
    ],
    ids=["item", "value", "nested-item", "merge"],
)
def test_an_error_through_an_alias_names_the_alias_line(
    fleet: Fleet, mode: list[str], where_: str, alias: str, field: str
) -> None:
    """The anchor is on line 1 and the alias's value is the anchor's node: errors used
    to name line 1. The field is where the alias is."""
    text = replace(where_, alias, replace("id: douyin-mail", "id: &a douyin-mail"))
    path = fleet.write("alias.yaml", text)
    line = line_of(text, "*a")
    assert line > 1
    assert_bad_input(apply(fleet, path, *mode), where(path, line), f"field {field}:")
    fleet.assert_unchanged()


def test_an_undefined_alias_names_its_line(fleet: Fleet, mode: list[str]) -> None:
    text = replace("reminders: [24h, 2h]", "reminders: *a")
    path = fleet.write("undefined.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "*a")), "undefined alias 'a'")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "deadline",
    ["2020-07-11T06:59:00+25:00", "2020-07-11 06:59:00 +25:00", '"2020-07-11T06:59:00+25:00"'],
    ids=["plain", "yaml-space", "quoted"],
)
def test_an_offset_out_of_range_is_said_in_appbans_words(fleet: Fleet, mode: list[str], deadline: str) -> None:
    """PyYAML builds the offset and Python refuses it, in words about timedelta."""
    text = replace("deadline: 2020-07-11T06:59:00Z", f"deadline: {deadline}")
    path = fleet.write("offset.yaml", text)
    line = assert_bad_input(
        apply(fleet, path, *mode), where(path, line_of(text, "deadline:")), "field deadline:", "offset +25:00"
    )
    assert "timedelta" not in line and "..." not in line, line
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("old", "new", "field", "word"),
    [
        ("  platforms: [android, ios]", "  platforms: [ios, no]", "scope.platforms[1]", "no"),
        ("mode: monitor", "mode: yes", "mode", "yes"),
        ("mode: monitor", "mode: Off", "mode", "Off"),
        ("  ownership: any", "  ownership: ~", "scope.ownership", "~"),
        ("  exclude_groups: [security-research]", "  exclude_groups: [on]", "scope.exclude_groups[0]", "on"),
        ("  exclude_groups: [security-research]", "  exclude_groups: [007]", "scope.exclude_groups[0]", "007"),
        ("reason: Security risks", "reason: 1.5", "reason", "1.5"),
        ("max_inventory_age: 7d", "max_inventory_age: 0x10", "max_inventory_age", "0x10"),
        ("  - tiktok\n", "  - NO\n", "apps[0]", "NO"),
    ],
    ids=["platform", "mode-yes", "mode-off", "null", "group-on", "group-octal", "float", "hex", "app"],
)
def test_a_word_yaml_reads_as_another_type_is_shown_as_written(
    fleet: Fleet, mode: list[str], old: str, new: str, field: str, word: str
) -> None:
    """YAML 1.1 reads no, yes, on, off, ~ and 007 as false, true, null and 7; the error
    used to say 'False'. It shows what the file says, and how to write the text."""
    text = replace(old, new)
    path = fleet.write("word.yaml", text)
    line = assert_bad_input(
        apply(fleet, path, *mode), where(path, line_of(text, new.strip())), f"field {field}:", f"'{word}'", "quote"
    )
    assert "False" not in line and "True" not in line and "None" not in line, line
    fleet.assert_unchanged()


def test_a_key_yaml_reads_as_a_boolean_is_named_as_written(fleet: Fleet, mode: list[str]) -> None:
    text = GOOD + "no: 5\n"
    path = fleet.write("key.yaml", text)
    assert_bad_input(apply(fleet, path, *mode), where(path, line_of(text, "no: 5")), "field no:", "unknown field")
    fleet.assert_unchanged()


@pytest.mark.parametrize("blank", ["\u2800", "\u3164", "\u200b"])
def test_a_group_with_a_blank_looking_character_is_refused(fleet: Fleet, mode: list[str], blank: str) -> None:
    """Groups are matched exactly: "security\u2800research" is not the excluded group."""
    text = replace("  exclude_groups: [security-research]", f'  exclude_groups: ["security{blank}research"]')
    path = fleet.write("group.yaml", text)
    line = assert_bad_input(
        apply(fleet, path, *mode), where(path, line_of(text, "exclude_groups")), "field scope.exclude_groups[0]:"
    )
    assert f"U+{ord(blank):04X}" in line, line
    fleet.assert_unchanged()
