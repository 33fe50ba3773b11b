"""An app's id, name and version made safe rather than refused (appban.text.safe_text,
safe_identifier): whatever a maker or a user names an app, the result passes the
checks every other text goes through, and clean values are left exactly as they are."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appban.inventory.checkin import App, build
from appban.text import check_identifier, check_text, identifiers_clean, safe_identifier, safe_text, text_clean

# Any character, and often the ones the checks refuse.
AWKWARD = st.sampled_from(
    ["<", ">", "</", "<script>", "\u202e", "\u200b", "\x00", "\x1b", "\u2800", "\ufe0f", "\ud800"]
)
TEXT = st.lists(st.one_of(st.characters(), AWKWARD), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_safe_text_passes_the_text_check(value: str) -> None:
    made = safe_text(value)
    check_text(made, "name")  # raises if it does not pass
    assert len(made) == len(value)  # one character for one: nothing hidden, nothing added
    if text_clean(value):
        assert made == value


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_safe_identifier_passes_the_identifier_check(value: str) -> None:
    made = safe_identifier(value)
    check_identifier(made, "id")
    assert len(made) == len(value)
    if identifiers_clean(value):
        assert made == value


def test_what_is_harmless_stays_as_written() -> None:
    for value in ("Notes <3 & more", "a > b", "Dev \U0001f469\u200d\U0001f4bb Notes", "TikTok"):
        assert safe_text(value) == value
    assert safe_text("</> HTML Editor") == "\u2039/\u203a HTML Editor"
    assert safe_text("Safari\u202e") == "Safari\ufffd"


def test_a_vendor_record_keeps_every_app_made_safe_and_cut() -> None:
    apps = [
        App("com.example.htmleditor", "</> HTML Editor", "2.1"),
        App(None, "<script>alert(1)</script>", "1\x00"),
        App("com.example" + "x" * 300, "N" * 2000, "1"),
    ]
    checkin = build(source="osquery", device_id="h/apps", platform="macos", owner=None, observed_at=0, apps=apps)
    assert [a.name for a in checkin.apps][:2] == [
        "\u2039/\u203a HTML Editor",
        "\u2039script\u203aalert(1)\u2039/script\u203a",
    ]
    assert checkin.apps[1].version == "1\ufffd"
    assert len(checkin.apps[2].id or "") == 256 and (checkin.apps[2].id or "").endswith("\u2026")
    assert len(checkin.apps[2].name or "") == 1024
    assert checkin.app_ids == [a.id for a in checkin.apps]
