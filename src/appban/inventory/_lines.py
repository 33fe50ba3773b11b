"""Reading a CSV file as lines: bounded, and with errors that name their line.

``csv.reader`` reads a whole line before it can say the line is too long, and a
text file raises a decode error for a block, not a line. Both would miss SPEC's
"name the file and line" and the first would read a 100 MB line whole; so lines
are read here, each at most ``max_bytes`` characters, and bytes that are not
UTF-8 are kept (as surrogate escapes) until the line holding them is known.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TextIO

from appban.errors import BadInput

_ESCAPED = re.compile("[\udc80-\udcff]")


def open_text(path: str) -> TextIO:
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", file=path) from None


def lines(path: str, f: TextIO, max_bytes: int) -> Iterator[str]:
    """The lines of ``f`` for ``csv.reader``; line N is ``csv.reader.line_num`` N."""
    number = 0
    while True:
        line = f.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_bytes:
            raise BadInput(f"line longer than {max_bytes} characters", file=path, line=number)
        if not line.isascii() and _ESCAPED.search(line):
            raise BadInput("not UTF-8", file=path, line=number)
        yield line
