"""Reading a CSV file: bounded lines, strict quoting, errors that name their line and column.

``csv.reader`` reads a whole line before it can say the line is too long, and a
text file raises a decode error for a block, not a line. Both would miss SPEC's
"name the file and line" and the first would read a 100 MB line whole; so lines
are read here, each at most ``max_bytes`` characters, and bytes that are not
UTF-8 are kept (as surrogate escapes) until the line holding them is known.

Quoting is strict: a quote that is never closed (the cell would swallow the rest
of the file) or text after a closing quote is an error, not a guess. The csv
module says only that something is wrong; where and what is found again here, by
reading the record's text with the same rules.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import TextIO

from appban.errors import BadInput
from appban.text import NotUtf8

_ESCAPED = re.compile("[\udc80-\udcff]")


def open_text(path: str) -> TextIO:
    try:
        # Not utf-8-sig: a byte-order mark is dropped by _Lines, which counts its bytes.
        return open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", file=path) from None


class CsvReader:
    """The rows of a CSV file (RFC 4180 quoting, ``,`` between cells), strictly read.

    ``line_num`` is the physical line the last row ended on. Set ``columns`` once
    the header is read, so that errors name the column.
    """

    def __init__(self, path: str, f: TextIO, max_bytes: int, *, delimiter: str = ",") -> None:
        self.path = path
        self.columns: list[str] | None = None
        self.header_line = 1
        self.delimiter = delimiter
        self._lines = _Lines(path, f, max_bytes)
        csv.field_size_limit(max_bytes)
        self._reader = csv.reader(self._lines, strict=True, delimiter=delimiter)

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def header(self, rows: Iterator[list[str]]) -> list[str] | None:
        """The first row that is not blank, from ``rows`` (``iter(self)``); None if there is none."""
        for row in rows:
            if any(cell.strip() for cell in row):
                self.header_line = self.line_num
                return row
        return None

    def __iter__(self) -> Iterator[list[str]]:
        while True:
            start = self._reader.line_num + 1
            self._lines.record.clear()
            self._lines.recorded = 0
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error:
                raise self._diagnose(start) from None
            yield row

    def _diagnose(self, start: int) -> BadInput:
        """What is wrong with the record that starts on line ``start``."""
        text = "".join(self._lines.record)
        line, column, quote_line = start, 0, start
        state = "start"
        for ch in text:
            if state == "quoted":
                if ch == '"':
                    state = "quote"
            elif state == "quote":  # just after a quote inside a quoted cell
                if ch == '"':
                    state = "quoted"  # a doubled quote: one quote character
                elif ch == self.delimiter:
                    column, state = column + 1, "start"
                elif ch in "\r\n":
                    break
                else:
                    return self._error(
                        "text after a closing quote: quote the whole cell, and double any quote inside it",
                        line,
                        column,
                    )
            elif ch == self.delimiter:
                column, state = column + 1, "start"
            elif ch in "\r\n":
                break
            elif state == "start" and ch == '"':
                state, quote_line = "quoted", line
            else:
                state = "cell"
            if ch == "\n":
                line += 1
        if state == "quoted":
            if self._lines.eof:
                message = "a quote that is never closed: the cell runs to the end of the file"
                return self._error(message, quote_line, column)
            return self._error(
                f"a quoted cell longer than {self._lines.max_bytes} characters: is a quote never closed?",
                quote_line,
                column,
            )
        return BadInput("malformed CSV", file=self.path, line=self._reader.line_num)

    def _error(self, message: str, line: int, column: int) -> BadInput:
        columns = self.columns
        field = columns[column] if columns is not None and column < len(columns) else f"column {column + 1}"
        return BadInput(message, file=self.path, line=line, field=field)


class _Lines:
    """The lines of ``f`` for ``csv.reader``, each checked; keeps the current record's text."""

    def __init__(self, path: str, f: TextIO, max_bytes: int) -> None:
        self.path = path
        self.f = f
        self.max_bytes = max_bytes
        self.number = 0
        self.eof = False
        self.record: list[str] = []
        self.recorded = 0  # characters in record; it keeps at most about max_bytes
        self.offset = 0  # bytes before the current line
        self.size = 0  # bytes in the current line

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.max_bytes + 1)
        if not line:
            self.eof = True
            raise StopIteration
        self.number += 1
        self.offset += self.size
        if self.number == 1 and line.startswith("\ufeff"):  # a byte-order mark: allowed, not data
            self.offset = len("\ufeff".encode())
            line = line[1:]
        if len(line) > self.max_bytes:
            raise BadInput(f"line longer than {self.max_bytes} characters", file=self.path, line=self.number)
        if line.isascii():
            self.size = len(line)
        else:
            self.size = len(line.encode("utf-8", "surrogateescape"))
            bad = _ESCAPED.search(line)
            if bad is not None:
                raise self._not_utf8(line[: bad.start()])
        if self.recorded <= self.max_bytes:
            self.record.append(line)
            self.recorded += len(line)
        return line

    def _not_utf8(self, before: str) -> NotUtf8:
        """The first byte that is not UTF-8 on this line, ``before`` being the text before it."""
        offset = self.offset + len(before.encode("utf-8", "surrogateescape"))
        return NotUtf8(offset, file=self.path, line=self.number)
