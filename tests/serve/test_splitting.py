"""How a body is cut into items: JSON arrays counted before they are decoded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appban.serve.checkins import JSON, NDJSON, _split
from appban.serve.responses import ApiError

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='ab,[]{}"\\ \u00e9', max_size=5))


def nested(depth: int) -> st.SearchStrategy[object]:
    """JSON values with groups nested at most ``depth`` deep (a check-in is 3)."""
    value: st.SearchStrategy[object] = scalars
    for _ in range(depth):
        value = st.one_of(
            scalars,
            st.lists(value, max_size=4),
            st.dictionaries(st.text(alphabet="ab,]", max_size=3), value, max_size=3),
        )
    return value


@settings(max_examples=300, deadline=None)
@given(items=st.lists(nested(9), max_size=12), most=st.integers(0, 12), spaced=st.booleans())
def test_an_array_is_cut_into_its_items_or_refused_when_longer(items: list[object], most: int, spaced: bool) -> None:
    """However deep an item (deeper ones than a check-in are followed bracket by bracket)."""
    body = json.dumps(items, separators=(", ", ": ") if spaced else (",", ":")).encode()
    if len(items) > most:
        with pytest.raises(ApiError) as refused:
            _split(body, JSON, most=most)
        assert refused.value.status_code == 413
        assert refused.value.field == "APPBAN_SERVE_MAX_ITEMS"
    else:
        assert [json.loads(x) for x in _split(body, JSON, most=most)] == items


def deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def test_an_item_nested_deeper_than_a_checkin_is_an_item_all_the_same() -> None:
    """Its own decoding rejects it; the items beside it are cut as usual."""
    # Enough commas that the items are counted before decoding.
    body = b"[" + b",".join([b"0"] * 30 + [deep(7)] + [b"0"] * 30) + b"]"
    assert _split(body, JSON, most=61) == [b"0"] * 30 + [deep(7)] + [b"0"] * 30
    with pytest.raises(ApiError) as refused:
        _split(body, JSON, most=60)
    assert refused.value.status_code == 413
    # Few commas: decoded at once.
    assert _split(b"[0," + deep(7) + b"]", JSON, most=100) == [b"0", deep(7)]


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_nesting_deeper_than_the_decoder_follows_is_an_item(depth: int, dense: bool) -> None:
    """msgspec gives up (RecursionError) past about a thousand levels: the item is cut all the
    same, and one object alone is the body's one item."""
    others = [b"0"] * (200 if dense else 1)
    body = b"[" + b",".join([*others, deep(depth), *others]) + b"]"
    assert _split(body, JSON, most=1000) == [*others, deep(depth), *others]
    one = b'{"device":' + deep(depth) + b"}"
    assert _split(one, JSON, most=1) == [one]


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b"[" + b"[" * 5000 + b'"' + b"]" * 5001, b"[" + deep(2000) + b"}", b"{" * 100_000]
)
def test_a_deep_group_that_never_closes_is_400(body: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        _split(body, JSON, most=100)
    assert refused.value.status_code == 400


@pytest.mark.parametrize("body", [b"[0,0,0", b"[0,0,,0]", b'["a,b', b"[0 0]"])
def test_a_malformed_array_is_400_however_it_is_counted(body: bytes) -> None:
    for most in (0, 1, 100):
        with pytest.raises(ApiError) as refused:
            _split(body * 1000 if most == 0 else body, JSON, most=most)
        assert refused.value.status_code in (400, 413)
    with pytest.raises(ApiError) as refused:
        _split(body, JSON, most=100)
    assert refused.value.status_code == 400


def test_json_lines_blank_lines_are_no_items() -> None:
    assert _split(b'\n{"a":1}\r\n  \n\t\n2\n', NDJSON, most=2) == [b'{"a":1}\r', b"2"]
    with pytest.raises(ApiError) as refused:
        _split(b"1\n2\n3\n", NDJSON, most=2)
    assert refused.value.status_code == 413 and "3 lines" in refused.value.message


@pytest.mark.parametrize("body", [b"", b"\n", b" \r\n\t\n\n"])
def test_json_lines_with_no_line_is_400_like_an_empty_json_body(body: bytes) -> None:
    for kind in (NDJSON, JSON):
        with pytest.raises(ApiError) as refused:
            _split(body, kind, most=10)
        assert refused.value.status_code == 400 and "empty" in refused.value.message
