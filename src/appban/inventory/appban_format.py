"""SPEC's ``appban`` format: one JSON check-in, or JSON Lines of them.

If the file's first non-blank line is a whole JSON value, the file is JSON Lines;
otherwise the whole file is one (pretty-printed) check-in. Lines are read with a
bound, so an oversize line is refused without reading it whole.

One file is one account of the fleet: the same device (``source``, ``device.id``)
twice with the same ``observed_at`` must say the same thing. Otherwise which of
the two is true cannot be known (the store would keep the first and call the
second "no newer"), so the file is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import msgspec

from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, decode_json
from appban.text import NotUtf8


class AppbanFormat:
    name = "appban"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        max_bytes = options.max_bytes
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


def _first_line(f: BinaryIO, max_bytes: int) -> tuple[int, bytes | None]:
    number = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return number, None
        number += 1
        if raw.strip():
            return number, raw


def _is_whole_json(line: bytes) -> bool:
    try:
        msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False  # the whole-document decode names the problem
    return True


def _lines(path: str, f: BinaryIO, number: int, raw: bytes, max_bytes: int) -> Iterator[tuple[int, Checkin]]:
    seen = _Snapshots(path, f)
    offset = f.tell() - len(raw)  # where the line starts; counted from here on (tell() costs a system call)
    while raw:
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise BadInput(f"check-in larger than {max_bytes} bytes", file=path, line=number)
        if raw.strip():
            try:
                checkin = decode_json(raw)
            except NotUtf8 as exc:  # its offset counts from the line's start: make it the file's
                raise exc.shifted(offset, file=path, line=number) from None
            except BadInput as exc:
                # A line is one document: its line is the file's line.
                raise BadInput(exc.detail, file=path, line=number, field=exc.field) from None
            seen.check(checkin, number, offset)
            yield number, checkin
        offset += len(raw)
        raw = f.readline(max_bytes + 1)
        number += 1


def _single(path: str, data: bytes) -> tuple[int, Checkin]:
    try:
        return 1, decode_json(data)
    except BadInput as exc:
        line = exc.line
        if line is None:  # a rule checked after decoding: find its field in the text
            from appban.inventory import _json_text  # an error path: loaded when first needed

            line = _json_text.parse(data).line(exc.field)
        raise BadInput(exc.detail, file=path, line=line, field=exc.field) from None


class _Snapshots:
    """Where each (source, device, observed_at) of a JSON Lines file was first seen.

    Only the line and its offset are kept; the rare second sighting reads the
    first one again to compare what the two say.
    """

    def __init__(self, path: str, f: BinaryIO) -> None:
        self.path = path
        self.f = f
        self.first: dict[tuple[str, str, int], tuple[int, int]] = {}

    def check(self, c: Checkin, line: int, offset: int) -> None:
        key = (c.source, c.device.id, c.observed_at)
        found = self.first.setdefault(key, (line, offset))
        if found == (line, offset):
            return
        first_line, first_offset = found
        here = self.f.tell()
        self.f.seek(first_offset)
        earlier = decode_json(self.f.readline())
        self.f.seek(here)
        field = _first_difference(earlier, c)
        if field is not None:
            raise BadInput(
                f"the same device and observed_at as line {first_line}, but different {field}",
                file=self.path,
                line=line,
                field=field,
            )


def _first_difference(a: Checkin, b: Checkin) -> str | None:
    """The first field in which two check-ins of one snapshot differ (apps in any order)."""
    for name in a.device.__struct_fields__:
        x, y = getattr(a.device, name), getattr(b.device, name)
        if name == "eas_device_ids":
            x, y = sorted(x), sorted(y)
        if x != y:
            return f"device.{name}"
    if sorted(a.apps, key=_app_key) != sorted(b.apps, key=_app_key):
        return "apps"
    return None


def _app_key(app: App) -> tuple[str, str]:
    return (app.id or "", app.name or "")
