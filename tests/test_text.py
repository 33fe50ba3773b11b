"""What text appban accepts (``appban.text``), and that the packages that share it
do not reach for it through each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appban.errors import BadInput
from appban.text import check_eas_device_id, check_identifier, check_text

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
