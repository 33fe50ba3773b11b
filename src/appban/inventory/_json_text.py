"""Reading JSON text exactly, for the errors the fast decoder only detects.

msgspec decodes and validates check-ins in one fast pass, but where it says what
went wrong is its own wording, which changes between releases. When a check-in
fails (or may hold a field given twice), it is read again here: slowly, exactly,
and with appban's own words. ``parse`` gives the document's value and where each
field and item starts, and refuses, naming the line and the field:

- bytes that are not UTF-8;
- anything RFC 8259 does not allow (no NaN, no comments, no trailing commas,
  no byte-order mark, no lone surrogate escapes);
- a field given twice in one object (JSON parsers keep the last silently).

The parser keeps its own stack instead of recursing, and refuses nesting deeper
than ``MAX_DEPTH`` (appban's formats need a few levels): a megabyte of ``[`` costs
neither a recursion error nor seconds of reading.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from appban.errors import BadInput, one_line
from appban.text import NotUtf8

Path = tuple[str | int, ...]

_TOKEN = re.compile(
    r"[ \t\n\r]*(?:"
    r'("[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4})[^"\\\x00-\x1f]*)*")'  # 1: a string
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"  # 2: a number
    r"|(true|false|null)"  # 3: a literal
    r"|([{}\[\]:,])"  # 4: punctuation
    r")"
)
_SPACE = " \t\n\r"
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIELD_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")
_LITERALS = {"true": True, "false": False, "null": None}
MAX_DEPTH = 64

# What the parser expects next.
_VALUE, _VALUE_OR_CLOSE, _KEY_OR_CLOSE, _KEY, _COLON, _NEXT, _DONE = range(7)


class Doc:
    """A parsed JSON document and where each of its fields and items starts."""

    def __init__(self, text: str, value: Any, starts: dict[int, Any], root: int) -> None:
        self.text = text
        self.value = value
        self._starts = starts  # id(container) -> {key: offset} or [offset, ...]
        self._root = root

    def line(self, field: str | None) -> int:
        """The line of ``field`` (``apps[3].version``), or of the nearest part of it found."""
        offset = self._root
        node = self.value
        for part in split_field(field or ""):
            if isinstance(node, dict):
                found = isinstance(part, str) and part in node
            else:
                found = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not found:
                break
            offset, node = self._starts[id(node)][part], node[part]
        return line_at(self.text, offset)


def split_field(field: str) -> Path:
    """``apps[3].version`` -> ``("apps", 3, "version")``."""
    return tuple(int(m[1]) if m[1] is not None else m[2] for m in _FIELD_PART.finditer(field))


def format_field(path: Path) -> str | None:
    """``("apps", 3, "version")`` -> ``apps[3].version``; keys from the input are made printable."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + one_line(part, 60)
    return out or None


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse(data: bytes) -> Doc:
    """The document in ``data``; raises BadInput naming the line and field of the first problem."""
    try:
        text = data.decode("utf-8")
        bad_byte = None
    except UnicodeDecodeError as exc:
        # Keep reading, to say which field holds the bytes: each becomes one
        # surrogate character, so offsets before it and line numbers are unchanged.
        text = data.decode("utf-8", "surrogateescape")
        bad_byte = exc.start
    return _Parser(text, bad_byte).run()


class _Parser:
    def __init__(self, text: str, bad_byte: int | None) -> None:
        self.text = text
        self.bad_byte = bad_byte
        self.stack: list[Any] = []  # open containers, outermost first
        self.keys: list[str | None] = []  # for each open object: the member being read
        self.starts: dict[int, Any] = {}
        self.state = _VALUE
        self.root: Any = None

    def run(self) -> Doc:
        text, match, stack = self.text, _TOKEN.match, self.stack
        pos = 0
        while self.state != _DONE:
            m = match(text, pos)
            if m is None:
                self._unexpected(pos)
            kind = m.lastindex or 0
            at = m.start(kind)
            token = m.group(kind)
            pos = m.end()
            state = self.state
            if kind == 4:
                self._punctuation(token, at)
            elif state in (_KEY_OR_CLOSE, _KEY):
                if kind != 1:
                    self._unexpected(at)
                self._key(self._string(token, at), at)
            elif state in (_VALUE, _VALUE_OR_CLOSE):
                if kind == 1:
                    value: Any = self._string(token, at)
                elif kind == 2:
                    value = _number(token)
                else:
                    value = _LITERALS[token]
                self._add(value, at)
                self.state = _NEXT if stack else _DONE
            else:
                self._unexpected(at)
        rest = len(text) - len(text[pos:].lstrip(_SPACE))
        if rest < len(text):
            self._fail("more text after the end of the document", rest)
        return Doc(text, self.root, self.starts, len(text) - len(text.lstrip(_SPACE)))

    def _punctuation(self, ch: str, at: int) -> None:
        state, stack = self.state, self.stack
        if ch in "{[":
            if state not in (_VALUE, _VALUE_OR_CLOSE):
                self._unexpected(at)
            container: Any = {} if ch == "{" else []
            if len(stack) >= MAX_DEPTH:
                self._fail(f"nested more than {MAX_DEPTH} levels deep", at, syntax=False, depth=4)
            self._add(container, at)
            self.starts[id(container)] = {} if ch == "{" else []
            stack.append(container)
            self.keys.append(None)
            self.state = _KEY_OR_CLOSE if ch == "{" else _VALUE_OR_CLOSE
        elif ch in "}]":
            top = stack[-1] if stack else None
            if ch == "}":
                ok = isinstance(top, dict) and state in (_KEY_OR_CLOSE, _NEXT)
            else:
                ok = isinstance(top, list) and state in (_VALUE_OR_CLOSE, _NEXT)
            if not ok:
                self._unexpected(at)
            stack.pop()
            self.keys.pop()
            self.state = _NEXT if stack else _DONE
        elif ch == ":":
            if state != _COLON:
                self._unexpected(at)
            self.state = _VALUE
        else:  # ","
            if state != _NEXT:
                self._unexpected(at)
            if isinstance(stack[-1], dict):
                self.keys[-1] = None
                self.state = _KEY
            else:
                self.state = _VALUE

    def _key(self, key: str, at: int) -> None:
        obj = self.stack[-1]
        starts = self.starts[id(obj)]
        self.keys[-1] = key
        if key in obj:
            first = line_at(self.text, starts[key])
            self._fail(f"given twice (first on line {first})", at, duplicate=True)
        starts[key] = at
        self.state = _COLON

    def _add(self, value: Any, at: int) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top, list):
            self.starts[id(top)].append(at)
            top.append(value)
        else:
            top[self.keys[-1]] = value

    def _string(self, token: str, at: int) -> str:
        if self.bad_byte is not None and _ESCAPED.search(token):
            self._not_utf8(at)
        if "\\" not in token:
            return token[1:-1]
        value: str = json.loads(token)  # a token the pattern above checked: escapes only
        if _SURROGATE.search(value):
            self._fail("a \\u escape that is half of a surrogate pair", at)
        return value

    # -- errors ------------------------------------------------------------------------

    def _unexpected(self, at: int) -> NoReturn:
        text = self.text
        at = len(text) - len(text[at:].lstrip(_SPACE))
        if at >= len(text):
            self._fail("the text ends before the document does (cut short?)", len(text.rstrip(_SPACE)))
        ch = text[at]
        if self.bad_byte is not None and _ESCAPED.match(ch):
            self._not_utf8(at)
        if ch == '"':
            self._bad_string(at)
        if ch == "\ufeff" and at == 0:
            self._fail("starts with a byte-order mark: save the file as UTF-8 without one", at)
        found = f"found {ch!r}"
        expected = {
            _VALUE: "a value",
            _VALUE_OR_CLOSE: "a value or ']'",
            _KEY_OR_CLOSE: "a field name in double quotes or '}'",
            _KEY: "a field name in double quotes",
            _COLON: "':' after the field name",
            _NEXT: "',' or '}'" if isinstance(self.stack[-1] if self.stack else None, dict) else "',' or ']'",
        }[self.state]
        self._fail(f"expected {expected}, {found}", at)

    def _bad_string(self, at: int) -> NoReturn:
        """Why the string opening at ``at`` is not one: an escape, a control character, no end."""
        text, i = self.text, at + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                escape = text[i + 1 : i + 2]
                if escape == "u":
                    if not re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
                        self._fail("a \\u escape needs four hexadecimal digits", i)
                    i += 6
                    continue
                if escape not in ('"', "\\", "/", "b", "f", "n", "r", "t"):
                    self._fail(f"unknown escape \\{one_line(escape)}", i)
                i += 2
                continue
            if ch < " ":
                self._fail("a control character in a string: write it as an escape (\\n, \\u0009)", i)
            i += 1
        self._fail("a string that never ends", at)

    def _not_utf8(self, at: int) -> NoReturn:
        assert self.bad_byte is not None
        raise NotUtf8(self.bad_byte, line=line_at(self.text, at), field=format_field(self._path()))

    def _fail(
        self, message: str, at: int, *, syntax: bool = True, duplicate: bool = False, depth: int | None = None
    ) -> NoReturn:
        """Raise BadInput for ``at``, naming the field being read (its first ``depth`` parts)."""
        prefix = "malformed JSON: " if syntax and not duplicate else ""
        field = format_field(self._path()[:depth])
        raise BadInput(prefix + message, line=line_at(self.text, at), field=field)

    def _path(self) -> Path:
        """Where the parser is: the member or item being read."""
        path: list[str | int] = []
        last = len(self.stack) - 1
        for depth, (container, key) in enumerate(zip(self.stack, self.keys, strict=True)):
            if isinstance(container, dict):
                if key is None:
                    break
                path.append(key)
            elif depth < last or self.state == _NEXT:
                path.append(len(container) - 1)
            else:
                path.append(len(container))
        return tuple(path)


def _number(token: str) -> int | float:
    if "." in token or "e" in token or "E" in token or len(token) > 4000:
        return float(token)
    return int(token)
