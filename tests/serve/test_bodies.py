"""read_body's gzip reader: a bomb never expands in memory past the limit."""

from __future__ import annotations

import gzip
import zlib

import pytest

from appban.serve.bodies import _Gunzip
from appban.serve.responses import ApiError


def test_a_gzip_bomb_stops_one_byte_past_the_limit() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()  # 64 MB in about 64 KB
    limit = 1 << 20
    sink = _Gunzip(limit)
    with pytest.raises(ApiError) as refused:
        for at in range(0, len(bomb), 4096):
            sink.feed(bomb[at : at + 4096])
    assert refused.value.status_code == 413
    # What was decompressed and kept: never more than one byte past the limit.
    assert sink.size == limit + 1
    assert sum(map(len, sink.parts)) <= limit


def test_exactly_at_the_limit_is_accepted() -> None:
    data = b"x" * 1000
    sink = _Gunzip(1000)
    sink.feed(gzip.compress(data))
    assert sink.finish() == data


def test_empty_deflate_blocks_without_output_are_bounded_by_the_wire_size() -> None:
    # A stream of empty stored blocks grows on the wire and gives nothing: the compressed
    # bytes count against the limit too.
    limit = 10_000
    sink = _Gunzip(limit)
    header = gzip.compress(b"")[:10]
    empty_block = b"\x00\x00\x00\xff\xff"  # BFINAL=0, stored, length 0
    with pytest.raises(ApiError) as refused:
        sink.feed(header)
        for _ in range(limit):
            sink.feed(empty_block)
    assert refused.value.status_code == 413
