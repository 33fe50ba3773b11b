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
from collections.abc import Collection, Iterable, Mapping, Sequence
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
    sys.stdout.write(json_text(doc) + "\n")


def json_text(doc: Any) -> str:
    """``doc`` as one line of JSON with nothing a terminal would act on or hide."""
    text = _encoder.encode(doc).decode("utf-8")
    if not text.isprintable():
        # The encoder escapes C0 controls only; C1, DEL, bidi and zero-width characters
        # (all inside strings: JSON has nothing else) become \u escapes too.
        text = "".join(ch if ch.isprintable() else _json_escape(ch) for ch in text)
    return text


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


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, whole: Collection[str] = ()
) -> None:
    """Rows under headers. On a terminal the table fits its width (see ``_fit``): numbers,
    times and the ``whole`` columns (identifiers, states) are never cut. Piped, nothing
    is cut and lines carry no trailing blanks."""
    out = console()
    tty = out.is_terminal
    cells = [[human(v) for v in row] for row in rows]
    n = len(columns)
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells if i < len(r)) for i in range(n)]
    times = [not numeric[i] and _all_times([r[i] for r in cells if i < len(r)]) for i in range(n)]
    kept = [numeric[i] or times[i] or columns[i] in whole for i in range(n)]
    widths: list[int | None] = [None] * n
    gap = 2
    if tty:
        fitted = _fit(columns, cells, kept, out.width)
        if fitted is None:  # the columns that are never cut do not fit: one block of lines per row
            _records(out, title, columns, cells)
            return
        fitted_widths, gap = fitted
        widths = list(fitted_widths)
    t = Table(
        title=safe(title) if title else None,
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        # Columns are two spaces apart (the box's blank divider and a padding), one
        # where a row's name would otherwise be cut.
        padding=(0, 1) if gap == 2 else 0,
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
    if tty:
        out.print(t)
        return
    with out.capture() as captured:
        out.print(t)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _fit(columns: Sequence[str], cells: list[list[str]], kept: list[bool], width: int) -> tuple[list[int], int] | None:
    """Column widths that fit ``width``, and the gap between columns; None if they cannot.

    Columns in ``kept`` (numbers, times, identifiers) are never cut, and no column is
    narrower than its header. Text gives way: the widest first down to a dozen
    characters, then down to a few; the first column (the row's name: an org unit, a
    person) keeps its whole width as long as it can, if need be with one space between
    columns instead of two.
    """
    n = len(columns)
    natural = [max([cell_len(h), *(cell_len(r[i]) for r in cells if i < len(r))]) for i, h in enumerate(columns)]
    least = [natural[i] if kept[i] else min(natural[i], max(cell_len(columns[i]), 6)) for i in range(n)]
    some = [max(least[i], min(natural[i], 12)) for i in range(n)]
    first_whole = [natural[i] if i == 0 else some[i] for i in range(n)]
    others_least = [natural[i] if i == 0 else least[i] for i in range(n)]
    first_some = [some[i] if i == 0 else least[i] for i in range(n)]
    for gap, stages in (
        (2, (first_whole, others_least)),
        (1, (first_whole, others_least, first_some, least)),
    ):
        fitted = list(natural)
        excess = sum(fitted) - (width - gap * (n - 1))
        for floor in stages:
            while excess > 0:
                room = [i for i in range(n) if fitted[i] > floor[i]]
                if not room:
                    break
                fitted[max(room, key=lambda i: fitted[i])] -= 1
                excess -= 1
        if excess <= 0:
            return fitted, gap
    return None


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
