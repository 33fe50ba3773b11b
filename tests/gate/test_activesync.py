"""``activesync.parse_uri``: who is asking, from either encoding of MS-ASHTTP's request line."""

from __future__ import annotations

import base64
import contextlib
import struct
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appban.gate import activesync
from appban.gate.activesync import MAX_ID, AmbiguousDeviceId, Garbage, LineCache, Request, device_id, parse_uri

PATH = "/Microsoft-Server-ActiveSync"


def encoded(
    device_id: bytes,
    *,
    version: int = 141,
    command: int = 0,
    locale: int = 0x0409,
    policy_key: bytes = b"",
    device_type: bytes = b"SmartPhone",
    params: tuple[tuple[int, bytes], ...] = (),
) -> str:
    """The base64 query of MS-ASHTTP 2.2.1.1.1.1, built field by field."""
    raw = bytes([version, command]) + struct.pack("<H", locale)
    for field in (device_id, policy_key, device_type):
        raw += bytes([len(field)]) + field
    for tag, value in params:
        raw += bytes([tag, len(value)]) + value
    return base64.b64encode(raw).decode()


# -- the plain query -----------------------------------------------------------------------


def test_plain_query() -> None:
    request = parse_uri(f"{PATH}?Cmd=Sync&User=jdoe&DeviceId=ABC123&DeviceType=iPhone")
    assert request == Request("ABC123", "jdoe", "Sync", "iPhone")


def test_plain_names_are_case_insensitive_and_values_percent_decoded() -> None:
    request = parse_uri(f"{PATH}?cmd=Ping&user=CORP%5Cjdoe&deviceid=Appl%20F17&devicetype=iPad#frag")
    assert (request.device_id, request.user, request.cmd, request.device_type) == (
        "Appl F17",
        "CORP\\jdoe",
        "Ping",
        "iPad",
    )


def test_plain_query_without_a_device_id() -> None:
    assert parse_uri(f"{PATH}?Cmd=Sync&User=jdoe").device_id == ""


@pytest.mark.parametrize("uri", [PATH, f"{PATH}?", "", "/"])
def test_no_query_is_no_device(uri: str) -> None:
    assert parse_uri(uri) == Request("", "")


# -- the base64 query (protocol 12.1 and later) --------------------------------------------


def test_base64_example_of_the_issue() -> None:
    request = parse_uri(f"{PATH}?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l")
    assert request == Request("v140Device", "", "Sync", "SmartPhone", "14.0")


def test_base64_user_is_tag_8_among_other_parameters() -> None:
    query = encoded(
        b"Appl9C808NA5",
        command=9,
        policy_key=b"\x01\x02\x03\x04",
        params=((1, b"attachment"), (8, b"CORP\\jdoe"), (7, b"x")),
    )
    request = parse_uri(f"{PATH}?{query}")
    assert request == Request("Appl9C808NA5", "CORP\\jdoe", "FolderSync", "SmartPhone", "14.1")


def test_base64_percent_encoded_and_unpadded() -> None:
    query = encoded(b"\xfb\xff" * 8, version=121)  # contains '+' and '/' in base64
    assert "+" in query or "/" in query
    escaped = quote(query.rstrip("="), safe="")
    assert parse_uri(f"{PATH}?{escaped}") == parse_uri(f"{PATH}?{query}")


def test_binary_device_id_of_protocol_12_1_is_upper_case_hex() -> None:
    binary = bytes(range(0xA0, 0xB0))
    request = parse_uri(f"{PATH}?{encoded(binary, version=121)}")
    assert request.device_id == "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
    assert request.protocol == "12.1"


def test_binary_device_id_with_ascii_control_bytes_is_hex_too() -> None:
    binary = b"\x00\x01ABC\x7f" + b"\x10" * 10
    assert parse_uri(f"{PATH}?{encoded(binary)}").device_id == binary.hex().upper()


def test_unknown_command_code_is_kept_as_a_number() -> None:
    assert parse_uri(f"{PATH}?{encoded(b'D1', command=200)}").cmd == "200"


# -- garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param(f"{PATH}?Cmd=Sync&User=a&DeviceId=AB%00CD", id="NUL"),
        pytest.param(f"{PATH}?Cmd=Sync&User=a%0d%0aX:1&DeviceId=AB", id="CRLF-in-user"),
        pytest.param(f"{PATH}?Cmd=Sync&User=a&DeviceId=%ff%fe", id="not-utf8"),
        pytest.param(f"{PATH}?Cmd=Sync&User=a&DeviceId=" + "A" * 5000, id="5KB-id"),
        pytest.param(f"{PATH}?Cmd=Sync&User=" + "u" * 5000 + "&DeviceId=A", id="5KB-user"),
        pytest.param(f"{PATH}?Cmd=Sync&DeviceId=A&" + "x" * 9000, id="9KB-uri"),
        pytest.param(f"{PATH}?not/base64!", id="neither"),
        pytest.param(f"{PATH}?AAAA", id="base64-too-short"),
        pytest.param(
            f"{PATH}?" + base64.b64encode(b"\x8c\x00\x09\x04\x20v140").decode(),
            id="base64-truncated-id",
        ),
        pytest.param(
            f"{PATH}?" + base64.b64encode(b"\x8c\x00\x09\x04\x02AB\x00").decode(),
            id="base64-no-device-type",
        ),
        pytest.param(
            f"{PATH}?" + encoded(b"AB")[:-4] + base64.b64encode(b"\x08\x09u").decode(),
            id="base64-truncated-param",
        ),
        pytest.param(f"{PATH}?" + encoded(b"AB", params=((8, b"a\x00b"),)), id="base64-NUL-in-user"),
        pytest.param(
            f"{PATH}?" + base64.b64encode(b"\x8c\x00\x09\x04\x02AB\x00\x00\x08").decode(),
            id="base64-tag-without-length",
        ),
    ],
)
def test_garbage(uri: str) -> None:
    with pytest.raises(Garbage):
        parse_uri(uri)


def test_bad_percent_escapes_are_kept_literally_not_crashes() -> None:
    # "%zz" is not an escape; it stays text, and no device has such an id.
    assert parse_uri(f"{PATH}?Cmd=Sync&User=a&DeviceId=%zz%").device_id == "%zz%"


def test_longest_accepted_device_id() -> None:
    assert parse_uri(f"{PATH}?DeviceId={'A' * MAX_ID}").device_id == "A" * MAX_ID


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_garbage(tail: str) -> None:
    for uri in (f"{PATH}?{tail}", f"{PATH}?{quote(tail)}", f"{PATH}?Cmd=Sync&DeviceId={tail}"):
        with contextlib.suppress(Garbage):
            parse_uri(uri)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_as_base64_parse_or_are_garbage(raw: bytes) -> None:
    try:
        request = parse_uri(f"{PATH}?{base64.b64encode(raw).decode()}")
    except Garbage:
        return
    assert all(ch.isprintable() for ch in request.device_id + request.user)


# -- two DeviceIds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Cmd=Sync&DeviceId=EASJANE&DeviceId=EASBOB",
        "Cmd=Sync&DeviceId=EASJANE&deviceid=EASBOB",
        "Cmd=Sync&DEVICEID=EASJANE&User=x&dEvIcEiD=EASJANE",  # the same value twice too
        "Cmd=Sync&DeviceId=EASJANE&Device%49d=EASBOB",  # an escaped letter is still the name
        "Cmd=Sync&DeviceId=EASJANE&Dev\u0131ceId=EASBOB",  # dotless i: DEVICEID in upper case
        "Cmd=Sync&DeviceId=&DeviceId=EASBOB",
    ],
)
def test_two_device_ids_are_ambiguous(query: str) -> None:
    with pytest.raises(AmbiguousDeviceId) as raised:
        parse_uri(f"{PATH}?{query}")
    assert raised.value.reason == "ambiguous_device_id"


@pytest.mark.parametrize(
    "query",
    [
        # The probe: base64 names Jane's phone, the plain parameter Bob's; the gate read
        # only Bob's and the server got both.
        f"{encoded(b'EASJANE1')}&DeviceId=EASBOB1",
        f"Cmd=Sync&DeviceId=EASBOB1&{encoded(b'EASJANE1')}",
        f"Cmd=Sync&DeviceId=EASBOB1&{quote(encoded(b'EASJANE1'), safe='')}",
        # A fragment: the gate cut it off, the server may read what follows.
        "DeviceId=EASBOB1#&DeviceId=EASJANE1",
        "Cmd=Sync&DeviceId=EASBOB1#x=1",
    ],
)
def test_a_second_encoding_or_a_fragment_is_ambiguous(query: str) -> None:
    with pytest.raises(AmbiguousDeviceId):
        parse_uri(f"{PATH}?{query}")


def test_plain_parameters_that_merely_look_like_base64_are_fine() -> None:
    request = parse_uri(f"{PATH}?Cmd=GetAttachment&AttachmentName=abcdefghijklmnop&DeviceId=EASBOB1&User=bob")
    assert request.device_id == "EASBOB1"


def test_garbage_reason_is_no_device_id() -> None:
    with pytest.raises(Garbage) as raised:
        parse_uri(f"{PATH}?Cmd=Sync&DeviceId=AB%00CD")
    assert raised.value.reason == "no_device_id"


# -- invisible characters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "EASJANE\u200b",  # zero-width space
        "EAS\u200dJANE",  # zero-width joiner
        "\ufeffEASJANE",  # byte order mark
        "EAS\u2060JANE",  # word joiner
        "EASJANE\u00ad",  # soft hyphen
        "EAS\u202eJANE",  # right-to-left override
        "EAS\u00a0JANE",  # no-break space
        "EAS\u3164JANE",  # Hangul filler
        "EASJANE\u0301",  # a combining mark
        "EAS\x85JANE",  # a C1 control
    ],
)
def test_invisible_characters_in_a_device_id_are_garbage(text: str) -> None:
    with pytest.raises(Garbage):
        device_id(text)
    with pytest.raises(Garbage):
        parse_uri(f"{PATH}?Cmd=Sync&User=jane&DeviceId={quote(text)}")


@pytest.mark.parametrize("text", ["EASJANE", "Appl F17", "ÉQUIPE7", "電話1"])
def test_visible_device_ids_are_kept_exactly(text: str) -> None:
    assert device_id(text) == text
    assert parse_uri(f"{PATH}?Cmd=Sync&User=jane&DeviceId={quote(text)}").device_id == text


def test_a_blank_device_id_is_none() -> None:
    assert parse_uri(f"{PATH}?Cmd=Sync&User=jane&DeviceId=%20%20").device_id == ""


# -- the cache -----------------------------------------------------------------------------


def test_the_cache_is_capped_by_bytes() -> None:
    cache = LineCache(1_000_000)
    for i in range(2_000):
        uri = f"{PATH}?Cmd=Sync&User=jane&DeviceId=D{i}&DeviceType=iPhone&x={'y' * 8000}"
        cache.put(uri, parse_uri(uri))
        assert cache.bytes <= cache.max_bytes
    # Every entry is charged at least its line's own size, so the cap holds for real.
    assert 0 < len(cache) * 8000 <= cache.max_bytes
    assert cache.get(uri) is not None  # the newest stays


def test_the_cache_charges_what_it_holds() -> None:
    import sys

    cache = LineCache(10_000_000)
    uris = [f"{PATH}?Cmd=Ping&User=u{i}&DeviceId=D{i}" for i in range(100)]
    for uri in uris:
        cache.put(uri, parse_uri(uri))
    assert cache.bytes >= sum(sys.getsizeof(u) for u in uris) + len(uris) * LineCache.ENTRY_OVERHEAD
    cache.put(uris[0], parse_uri(uris[0]))  # replacing an entry does not count it twice
    assert len(cache) == 100
    cache.clear()
    assert (len(cache), cache.bytes) == (0, 0)


def test_the_module_cache_stays_under_its_cap_with_distinct_long_lines() -> None:
    import tracemalloc

    activesync._CACHE.clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(6_000):  # about 48 MB of distinct 8 KB lines
            parse_uri(f"{PATH}?Cmd=Sync&DeviceId=D{i}&x={'y' * 8000}")
            assert activesync._CACHE.bytes <= activesync.CACHE_BYTES
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        activesync._CACHE.clear()
    assert held <= activesync.CACHE_BYTES * 1.25, f"{held / 1e6:.1f} MB held"
