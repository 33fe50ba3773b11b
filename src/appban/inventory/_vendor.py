"""What the vendor formats share: streaming JSON pages, typed fields, vendors' times.

A vendor's export is a sequence of JSON documents: one page, several pages
concatenated or as JSON Lines, a plain array, or records one per document (JSON
Lines of devices). ``json_records`` streams the records out of any of these with
ijson's C parser, so a file of any size is read in memory bounded by one record.

Field access (``text``, ``boolean``, ``integer``, ``listed``, ``mapping``) checks
the type a vendor documents, and a wrong one is a BadInput naming the record's path
(``value[12].serialNumber``). Vendors write numbers as strings and booleans as
``"true"``: where their documentation says so, the reader says so too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, tzinfo
from decimal import Decimal
from typing import Any, BinaryIO

import ijson
import msgspec

from appban.clock import Micros, parse_time, read_time
from appban.errors import BadInput

_SPACE = b" \t\r\n\xef\xbb\xbf"


def open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", file=path) from None


def json_records(
    path: str,
    *,
    list_keys: Iterable[str],
    page_keys: Iterable[str] = (),
    max_bytes: int | None = None,
) -> Iterator[tuple[str, Any]]:
    """Each record of a vendor's JSON file, with its path for errors (``_streamed_records``
    says which shapes). With ``max_bytes``, a file of documents one a line (pages as
    JSON Lines: how paging clients write them) is read a line at a time with msgspec,
    each line at most ``max_bytes``; the records, paths and errors are the same."""
    lists = tuple(list_keys)
    if max_bytes is None:
        return _streamed_records(path, list_keys=lists, page_keys=page_keys)
    return _quick_records(path, max_bytes, list_keys=lists, page_keys=page_keys)


def _streamed_records(
    path: str,
    *,
    list_keys: Iterable[str],
    page_keys: Iterable[str] = (),
) -> Iterator[tuple[str, Any]]:
    """Each record of a vendor's JSON file, with its path for errors.

    The first document decides the shape: a page (an object whose first key is one of
    ``list_keys`` or a paging key in ``page_keys``: every ``list_keys`` array of every
    page is read, record paths ``value[i]`` counted across the file), a plain array
    (``[i]``), or records one per document (``[i]``, the document's index).
    Raises BadInput for bytes that are not JSON.
    """
    lists = tuple(list_keys)
    f = open_binary(path)
    try:
        start = 3 if f.read(3) == b"\xef\xbb\xbf" else 0  # a byte-order mark: not JSON, allowed
        f.seek(start)
        shape, key = _shape(path, f, lists, frozenset(page_keys))
        f.seek(start)
        if shape == "empty":
            return
        if shape == "page":
            n = 0
            for key in lists:
                f.seek(start)
                for record in _items(path, f, f"{key}.item", n):
                    yield f"{key}[{n}]", record
                    n += 1
            if n == 0:
                raise BadInput(f"no {' or '.join(repr(k) for k in lists)} list in the file's pages", file=path)
        else:
            prefix = "item" if shape == "array" else ""
            for n, record in enumerate(_items(path, f, prefix, 0)):
                yield f"[{n}]", record
    finally:
        f.close()


def _shape(path: str, f: BinaryIO, lists: tuple[str, ...], paging: frozenset[str]) -> tuple[str, str]:
    start = f.tell()
    head = f.read(4096).lstrip(_SPACE)
    if not head:
        return "empty", ""
    if head[:1] == b"[":
        return "array", ""
    if head[:1] != b"{":
        raise BadInput("not JSON: expected an object or an array", file=path, line=1)
    f.seek(start)
    try:
        for prefix, event, value in ijson.parse(f, multiple_values=True):
            if event == "map_key" and prefix == "":
                return ("page" if value in lists or value in paging else "record"), value
            if event == "end_map" and prefix == "":
                return "record", ""
    except ijson.JSONError:
        raise BadInput("not valid JSON", file=path) from None
    except UnicodeDecodeError:
        raise BadInput("not UTF-8", file=path) from None
    return "empty", ""


def _items(path: str, f: BinaryIO, prefix: str, done: int) -> Iterator[Any]:
    """ijson's items; ``done`` counts the records given before, and on, for errors."""
    try:
        for item in ijson.items(f, prefix, multiple_values=True, use_float=True):
            yield item
            done += 1
    except ijson.JSONError:
        raise BadInput(f"not valid JSON (after {done:,} records)", file=path) from None
    except UnicodeDecodeError:
        raise BadInput(f"not UTF-8 (after {done:,} records)", file=path) from None


# Typed access to a record's fields. ``at`` is the record's path; errors name at.key.


def mapping(record: Any, at: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BadInput(f"expected an object, got {_kind(record)}", field=at)
    return record


def text(record: dict[str, Any], key: str, at: str, *, required: bool = False) -> str | None:
    """A string field; numbers are taken as their text (vendors mix the two). Empty is None."""
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise BadInput("missing", field=f"{at}.{key}")
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BadInput(f"expected a string, got {_kind(value)}", field=f"{at}.{key}")
    return str(value)


def boolean(record: dict[str, Any], key: str, at: str) -> bool | None:
    """A boolean field, also as the strings "true"/"false" (any case)."""
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadInput(f"expected true or false, got {_shown(value)}", field=f"{at}.{key}")


def integer(record: dict[str, Any], key: str, at: str) -> int | None:
    """An integer field, also as a string of digits (Google's int64, Jamf's ids)."""
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        return int(value)
    raise BadInput(f"expected an integer, got {_shown(value)}", field=f"{at}.{key}")


def listed(record: dict[str, Any], key: str, at: str) -> list[Any]:
    """A list field; absent or null is empty."""
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"expected a list, got {_kind(value)}", field=f"{at}.{key}")
    return value


def child(record: dict[str, Any], key: str, at: str) -> dict[str, Any]:
    """An object field; absent or null is empty."""
    value = record.get(key)
    if value is None:
        return {}
    return mapping(value, f"{at}.{key}")


def vendor_time(value: str, field: str, zone: tzinfo = UTC) -> Micros:
    """An ISO-8601 time as vendors write it; one without an offset is in ``zone``
    (``--timezone``). More than six digits of a second (.NET writes seven) are cut."""
    cleaned = _FRACTION.sub(lambda m: m.group(1)[:7], value.strip())
    if _DATE_ONLY.fullmatch(cleaned):
        raise BadInput(f"{cleaned[:40]!r} is a date: a time is needed", field=field)
    parsed = read_time(cleaned, field=field)  # strict: fromisoformat took "10:00:009" as 10:00:00
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parse_time(parsed, field=field)


_FRACTION = re.compile(r"(\.\d+)")
_DATE_ONLY = re.compile(r"[0-9W-]+")


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _shown(value: object) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    return _kind(value)


# -- JSON documents one a line, read a line at a time --------------------------------------


def _quick_records(
    path: str, max_bytes: int, *, list_keys: tuple[str, ...], page_keys: Iterable[str] = ()
) -> Iterator[tuple[str, Any]]:
    """``_streamed_records``, faster for a file of JSON documents one a line (pages as
    JSON Lines, as exports are written), each line no longer than ``max_bytes``.

    A line is decoded at once by msgspec, which reads every document ijson reads, and
    refuses every other but integers beyond 64 bits (yajl's limit): lines that may hold
    one are left to ijson. At the first line not read quickly the file is read again by
    ``_streamed_records``, the records already given skipped, so the records, their
    paths and the errors are always that function's.
    """
    given = 0
    try:
        for record in _line_records(path, max_bytes, list_keys, frozenset(page_keys)):
            yield record
            given += 1
        return
    except _Unsure:
        pass
    records = _streamed_records(path, list_keys=list_keys, page_keys=page_keys)
    yield from itertools.islice(records, given, None)


class _Unsure(Exception):
    """A line the quick reader cannot show it reads as ijson does."""


# A number follows ":", "," or "[" (white space and a minus sign aside). Digits made
# "0", those three ":", and the rest of a number's neighbours dropped, a number of 19
# digits or more is ":" and 19 zeros; a string may look so too (it is then left to ijson).
_NUMBERS = bytes.maketrans(b"123456789,[", b"000000000::")
_LONG_NUMBER = b":" + b"0" * 19


def _line_records(
    path: str, max_bytes: int, list_keys: tuple[str, ...], page_keys: frozenset[str]
) -> Iterator[tuple[str, Any]]:
    if len(list_keys) != 1:
        raise _Unsure  # _vendor reads each list of every page in turn
    key = list_keys[0]
    quoted = f'"{key}"'.encode()
    decode = msgspec.json.decode
    paged: bool | None = None  # the first document decides, as in _vendor
    n = 0
    with open_binary(path) as f:
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
        while line := f.readline(max_bytes + 1):
            if len(line) > max_bytes:
                raise _Unsure
            if not line.strip(b" \t\r\n"):
                continue
            if _LONG_NUMBER in line.translate(_NUMBERS, b" \t\r\n-"):
                raise _Unsure
            try:
                doc = decode(line)
            except (msgspec.DecodeError, RecursionError):
                raise _Unsure from None
            if type(doc) is not dict:
                raise _Unsure
            if paged is None:
                first = next(iter(doc), None)
                paged = first in list_keys or first in page_keys
            if not paged:
                yield f"[{n}]", doc
                n += 1
                continue
            records = doc.get(key)
            # Named once: counted in the bytes, where an escape could spell it unseen.
            if type(records) is list and line.count(quoted) == 1 and b"\\u" not in line:
                for record in records:
                    yield f"{key}[{n}]", record
                    n += 1
            elif key in doc:
                raise _Unsure  # not a list, or perhaps named twice: as ijson reads it
        if paged and n == 0:
            raise _Unsure  # _vendor says what is missing
