"""Printing results: one JSON document with --json; rich tables on a terminal; plain when piped.

Everything printed as text may carry stored text (names, app ids, audit entries) that
came from a check-in file or a tampered database, so every value goes through
``safe``: control characters (C0, C1, DEL), bidi controls and other invisible
formatting characters are shown as escapes, never sent to the terminal. JSON output
is escaped by the encoder.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

_encoder = msgspec.json.Encoder()
# A time as format_time writes it, with a fraction of a second: people read to the second.
_FRACTION = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+(Z|[+-]\d\d:\d\d)$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


def print_json(doc: Any) -> None:
    text = _encoder.encode(doc).decode("utf-8")
    if not text.isprintable():
        # The encoder escapes C0 controls only; C1, DEL, bidi and zero-width characters
        # (all inside strings: JSON has nothing else) become \u escapes too.
        text = "".join(ch if ch.isprintable() else _json_escape(ch) for ch in text)
    sys.stdout.write(text + "\n")


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Colour and boxes only for a terminal. Piped output stays plain text and is never
    # cut to fit 80 columns: a script reading it needs whole e-mails and times.
    # No markup, emoji codes or highlighting: stored text is printed as it is.
    return Console(
        file=stream,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=not tty,
        width=None if tty else 100_000,
    )


def safe(text: str) -> str:
    """``text`` with every character a terminal would act on or hide shown as an escape.

    Python's ``isprintable`` is false for exactly these: categories Cc (C0, DEL, C1),
    Cf (bidi controls, zero-width characters), Cs, Co, Cn, Zl, Zp and every space but
    the ASCII one.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 check-in``, ``2 check-ins``, ``1,250 people``: the count and the right form."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def human(value: Any) -> str:
    """A value as a person writes it: yes/no, comma-separated lists, times to the second."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {human(v)}" for k, v in value.items())
    if isinstance(value, str):
        match = _FRACTION.match(value)
        return safe(f"{match.group(1)}{match.group(2)}" if match else value)
    return safe(str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = console()
    tty = out.is_terminal
    cells = [[human(v) for v in row] for row in rows]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells if i < len(r)) for i in range(len(columns))]
    widths: list[int | None] = [None] * len(columns)
    if tty:
        fitted = _fit(columns, cells, numeric, out.width)
        if fitted is None:  # not even the headers fit: one block of lines per row
            _records(out, title, columns, cells)
            return
        widths = list(fitted)
    t = Table(
        title=safe(title) if title else None,
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column, right, width in zip(columns, numeric, widths, strict=True):
        # On a narrow terminal a long cell ends in an ellipsis rather than wrapping
        # mid-word, and no column gets narrower than its header: headers never split.
        t.add_column(
            column,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=cell_len(column),
            width=width,
        )
    for row in cells:
        t.add_row(*(Text(v) for v in row))
    out.print(t)


def _fit(columns: Sequence[str], cells: list[list[str]], numeric: list[bool], width: int) -> list[int] | None:
    """Column widths that fit ``width``; None if even the narrowest allowed do not fit.

    No column is narrower than its header and numbers are never cut. Text columns give
    way first (the widest first) down to a dozen characters, then times (which keep
    their date, hour and minute), then text down to a few characters, the first
    column (the row's name) last.
    """
    n = len(columns)
    natural = [max([cell_len(h), *(cell_len(r[i]) for r in cells if i < len(r))]) for i, h in enumerate(columns)]
    fitted = list(natural)
    excess = sum(fitted) - (width - 2 * (n - 1))  # two spaces between columns
    times = [not numeric[i] and _all_times([r[i] for r in cells if i < len(r)]) for i in range(n)]
    text = [not (numeric[i] or times[i]) for i in range(n)]
    least = [min(natural[i], max(cell_len(columns[i]), 6)) for i in range(n)]
    # The first column names the row (an id, an e-mail address): kept whole while it can be.
    some = [natural[i] if i == 0 and natural[i] <= 32 else max(least[i], min(natural[i], 12)) for i in range(n)]
    cut = [min(natural[i], 17) if times[i] else natural[i] for i in range(n)]
    stages = (
        [some[i] if text[i] else natural[i] for i in range(n)],
        [some[i] if text[i] else cut[i] for i in range(n)],
        [(some if i == 0 else least)[i] if text[i] else cut[i] for i in range(n)],
        [least[i] if text[i] else cut[i] for i in range(n)],
    )
    for floor in stages:
        while excess > 0:
            room = [i for i in range(n) if fitted[i] > floor[i]]
            if not room:
                break
            fitted[max(room, key=lambda i: fitted[i])] -= 1
            excess -= 1
    return None if excess > 0 else fitted


def _all_times(values: list[str]) -> bool:
    return bool(values) and all(_TIME.match(v) or not v for v in values)


def _records(out: Console, title: str | None, columns: Sequence[str], cells: list[list[str]]) -> None:
    if title:
        out.print(Text(safe(title)))
    for n, row in enumerate(cells):
        if n:
            out.print()
        for column, value in zip(columns, row, strict=False):
            out.print(Text(f"{column}: {value}"), no_wrap=True, overflow="ellipsis")


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def line(text: str = "") -> None:
    console().print(Text(safe(text)))


def pairs(items: Iterable[tuple[str, Any]]) -> None:
    """``key: value`` lines; a nested mapping becomes ``key.sub: value`` lines; nothing
    (no value, an empty list) is ``-``."""
    out = console()
    for key, value in _flatten(items):
        out.print(Text(f"{safe(key)}: {human(value) or '-'}"))


def _flatten(items: Iterable[tuple[str, Any]], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in items:
        if isinstance(value, Mapping) and value:
            yield from _flatten(value.items(), f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
