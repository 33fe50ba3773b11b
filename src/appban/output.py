"""Printing results: one JSON document with --json; rich tables on a terminal; plain when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_encoder = msgspec.json.Encoder()


def print_json(doc: Any) -> None:
    sys.stdout.write(_encoder.encode(doc).decode("utf-8") + "\n")


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Colour and boxes only for a terminal. Piped output stays plain text and is never
    # cut to fit 80 columns: a script reading it needs whole e-mails and times.
    return Console(file=stream, highlight=False, soft_wrap=not tty, width=None if tty else 100_000)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = console()
    tty = out.is_terminal
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    t = Table(title=title, box=box.SIMPLE_HEAD if tty else None, show_edge=tty, pad_edge=False)
    for i, column in enumerate(columns):
        numeric = bool(cells) and all(_is_number(r[i]) for r in cells if i < len(r))
        t.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in cells:
        t.add_row(*(escape(v) for v in row))
    out.print(t)


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def line(text: str = "") -> None:
    console().print(escape(text))


def pairs(items: Iterable[tuple[str, Any]]) -> None:
    out = console()
    for key, value in items:
        out.print(f"{escape(key)}: {escape('' if value is None else str(value))}")
