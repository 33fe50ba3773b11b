"""SPEC's ``appban`` format: one JSON check-in, or JSON Lines of them.

If the file's first non-blank line is a whole JSON value, the file is JSON Lines;
otherwise the whole file is one (pretty-printed) check-in. Lines are read with a
bound, so an oversize line is refused without reading it whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from appban.errors import BadInput
from appban.inventory.checkin import Checkin, decode_json

_BYTE = re.compile(r"\(byte (\d+)\)|at byte (\d+)")


class AppbanFormat:
    name = "appban"

    def read(self, path: str, *, max_bytes: int) -> Iterator[tuple[int, Checkin]]:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in finally, generator
        except OSError as exc:
            raise BadInput(f"cannot read: {exc.strerror}", file=path) from None
        try:
            first_line, first = _first_line(f, max_bytes)
            if first is None:
                return
            if _is_whole_json(first):
                yield from _lines(path, f, first_line, first, max_bytes)
            else:
                f.seek(0)
                data = f.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise BadInput(f"check-in larger than {max_bytes} bytes", file=path, line=first_line)
                yield _single(path, data)
        finally:
            f.close()


def _first_line(f: object, max_bytes: int) -> tuple[int, bytes | None]:
    number = 0
    while True:
        raw = f.readline(max_bytes + 1)  # type: ignore[attr-defined]
        if not raw:
            return number, None
        number += 1
        if raw.strip():
            return number, raw


def _is_whole_json(line: bytes) -> bool:
    import msgspec

    try:
        msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False  # the whole-document decode names the problem
    return True


def _lines(path: str, f: object, number: int, raw: bytes, max_bytes: int) -> Iterator[tuple[int, Checkin]]:
    while raw:
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise BadInput(f"check-in larger than {max_bytes} bytes", file=path, line=number)
        if raw.strip():
            try:
                yield number, decode_json(raw)
            except BadInput as exc:
                raise exc.at(file=path, line=number) from None
        raw = f.readline(max_bytes + 1)  # type: ignore[attr-defined]
        number += 1


def _single(path: str, data: bytes) -> tuple[int, Checkin]:
    try:
        return 1, decode_json(data)
    except BadInput as exc:
        raise exc.at(file=path, line=_line_of(data, exc)) from None


def _line_of(data: bytes, exc: BadInput) -> int:
    """Where in a multi-line document the error is: the byte offset, or the field's key."""
    if exc.detail.endswith("truncated"):
        return data.rstrip().count(b"\n") + 1
    found = _BYTE.search(exc.detail)
    if found:
        offset = int(found.group(1) or found.group(2))
        return data.count(b"\n", 0, offset) + 1
    if exc.field:
        key = re.sub(r"\[\d+\]", "", exc.field).rsplit(".", 1)[-1]
        index = data.find(b'"' + key.encode() + b'"')
        if index >= 0:
            return data.count(b"\n", 0, index) + 1
    return 1
