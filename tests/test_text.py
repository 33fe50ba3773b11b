"""What text appban accepts (``appban.text``), and that the packages that share it
do not reach for it through each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appban.errors import BadInput
from appban.text import (
    MAX_EMAIL,
    NotUtf8,
    ascii_lower,
    check_eas_device_id,
    check_identifier,
    check_text,
    identifiers_clean,
    normalise_email,
    text_clean,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "appban"


@pytest.mark.parametrize(
    "value",
    [
        "A\u200bB",  # zero-width space (Cf)
        "A\u200cB",  # zero-width non-joiner
        "A\u200dB",  # zero-width joiner
        "A\u2060B",  # word joiner
        "\ufeffAB",  # byte-order mark
        "A\u00adB",  # soft hyphen
        "A\u180eB",  # Mongolian vowel separator
        "A\u2062B",  # invisible times
        "A\u202eB",  # right-to-left override
        "A\u034fB",  # combining grapheme joiner (default-ignorable, not Cf)
        "A\ufe0fB",  # variation selector
        "A\u3164B",  # Hangul filler
        "A\u115fB",  # Hangul choseong filler
        "A\u1160B",  # Hangul jungseong filler
        "A\uffa0B",  # halfwidth Hangul filler
        "A\u2800B",  # Braille pattern blank (a symbol whose glyph is empty)
        "\u2800",
        "A\U0001d159B",  # musical symbol null notehead (blank too)
        "A\U000e0041B",  # tag character
        "A\u00a0B",  # no-break space
        "A\u2003B",  # em space
        "A\tB",
        "A\x00B",
        "A\x85B",
        "A<script>",
    ],
)
def test_an_identifier_with_an_invisible_character_is_refused(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_identifier(value, "device.id")
    assert caught.value.field == "device.id"
    assert re.search(r"U\+[0-9A-F]{4}|markup", caught.value.detail), caught.value.detail


@pytest.mark.parametrize("value", ["00008020-000915083C80012E", "com.zhiliaoapp.musically", "Jane's iPhone", "Ünïcødé"])
def test_visible_identifiers_are_accepted(value: str) -> None:
    check_identifier(value, "device.id")


@pytest.mark.parametrize("value", ["V2UVOT7J157L7C1FLLSAABSOV4", "ApplDNQXK1ABCD", "0123456789abcdef", "a-b_c.d~!"])
def test_activesync_device_ids(value: str) -> None:
    check_eas_device_id(value, "eas")


@pytest.mark.parametrize("value", ["EAS 1", "EAS\u200b1", "\u00c9AS1", "EAS\x7f", "EAS\u00a0"])
def test_activesync_device_ids_are_printable_ascii_without_spaces(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_eas_device_id(value, "device.eas_device_ids[0]")
    assert caught.value.field == "device.eas_device_ids[0]"


def test_free_text_keeps_emoji_sequences() -> None:
    check_text("Dev \U0001f469\u200d\U0001f4bb \u2764\ufe0f", "apps[0].name")
    with pytest.raises(BadInput):
        check_text("Dev \u202e", "apps[0].name")


def test_policy_does_not_import_inventory() -> None:
    """Policies and inventory both use ``appban.text``; neither imports the other for it."""
    for path in sorted((SRC / "policy").glob("*.py")):
        text = path.read_text("utf-8")
        assert not re.search(r"^\s*(from|import) appban\.inventory", text, re.M), path.name


def test_blank_symbols_are_named_in_the_error() -> None:
    with pytest.raises(BadInput) as caught:
        check_identifier("NEW\u2800PHONE", "device.id")
    assert "U+2800 (BRAILLE PATTERN BLANK)" in caught.value.detail


@pytest.mark.parametrize("value", ["\u2800 braille", "Hangul \u3164"])
def test_free_text_is_not_held_to_the_identifier_rule(value: str) -> None:
    check_text(value, "apps[0].name")


# -- e-mail addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jane.doe@example.com", "jane.doe@example.com"),
        ("  Jane.Doe@EXAMPLE.COM\t", "jane.doe@example.com"),
        ("\u212aate@example.com", "\u212aate@example.com"),  # KELVIN SIGN stays; str.lower() makes it k
        ("J\u00dcRGEN@example.com", "j\u00dcrgen@example.com"),  # only A-Z are lower-cased
        ("\u0130NCI@example.com", "\u0130nci@example.com"),  # str.lower() would add U+0307
        ("STRASSE@example.com", "strasse@example.com"),
        ("Stra\u00dfe@example.com", "stra\u00dfe@example.com"),  # casefold() would make it strasse
    ],
)
def test_an_email_is_lower_cased_in_ascii_only(text: str, expected: str) -> None:
    assert normalise_email(text, "owner") == expected
    assert normalise_email(text, "owner") == ascii_lower(text.strip())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("jane", "not an e-mail address"),
        ("", "not an e-mail address"),
        ("jane doe@example.com", "not an e-mail address"),
        ("jane@ex\u0430mple.com", "not an e-mail address"),  # Cyrillic a in the domain
        ("jane\u200b@example.com", "not an e-mail address"),
        ("jane\u2800@example.com", "U+2800"),
        ("jane\u3164@example.com", "U+3164"),
        ("jane\ufe0f@example.com", "U+FE0F"),
        ("j" * (MAX_EMAIL - 11) + "@example.com", "at most 254 characters"),
    ],
    ids=[
        "bare",
        "empty",
        "space",
        "cyrillic-domain",
        "zero-width",
        "braille-blank",
        "hangul-filler",
        "selector",
        "255",
    ],
)
def test_what_is_not_an_email_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(BadInput) as caught:
        normalise_email(text, "--person")
    assert caught.value.field == "--person"
    assert problem in caught.value.detail, caught.value.detail


def test_the_longest_email_is_accepted() -> None:
    address = "j" * (MAX_EMAIL - 12) + "@example.com"
    assert len(address) == MAX_EMAIL
    assert normalise_email(address, "email") == address


# -- bytes that are not UTF-8 -------------------------------------------------------------------------


def test_not_utf8_says_where_as_a_byte_offset() -> None:
    error = NotUtf8(225, file="people.csv", line=4, field="name")
    assert str(error) == "people.csv:4: field name: not UTF-8 at byte offset 225"
    moved = error.shifted(1000, line=9)
    assert (moved.offset, moved.line, moved.field) == (1225, 9, "name")
    assert isinstance(moved, BadInput) and moved.exit_code == 2


def test_a_lone_surrogate_is_not_text() -> None:
    """JSON may escape one ("\\ud800"): it decodes to no character, and nothing can store it."""
    with pytest.raises(BadInput, match="control character"):
        check_text("TikTok\ud800", "apps[0].name")


def _passes(check: Any, value: str) -> bool:
    try:
        check(value, "f")
    except BadInput:
        return False
    return True


TEXTS = st.text(
    alphabet=st.sampled_from(
        ["a", "Z", " ", "<", "b", "/", "3", "\t", "\x7f", "é", "\u200b", "\u202e", "\ud800", "\u2800"]
    ),
    max_size=12,
)


@settings(max_examples=2000, deadline=None)
@given(TEXTS)
def test_the_quick_whole_checks_agree_with_the_field_checks(value: str) -> None:
    """text_clean and identifiers_clean decide a batch at once: exactly when the check of
    each field would pass."""
    assert text_clean(value) == _passes(check_text, value)
    assert identifiers_clean(value) == _passes(check_identifier, value)
