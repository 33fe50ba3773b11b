"""Errors that carry their exit status (SPEC: 2 bad input or usage, 1 anything else)."""

from __future__ import annotations


class AppbanError(Exception):
    """Something went wrong that is not the caller's input."""

    exit_code = 1
    http_status = 500


class BadInput(AppbanError):
    """Bad input or usage. The message names the file, line and field where known."""

    exit_code = 2
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        elif self.line is not None:
            where = f"line {self.line}"
        parts = [p for p in (where, f"field {self.field}" if self.field else "") if p]
        head = ": ".join(parts)
        return f"{head}: {self.detail}" if head else self.detail

    def at(self, *, file: str | None = None, line: int | None = None) -> BadInput:
        """The same error, placed in a file and line it did not know about."""
        return BadInput(
            self.detail,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            field=self.field,
        )


class Busy(AppbanError):
    """Another writer held the database for longer than this command would wait."""

    http_status = 503


class NotFound(BadInput):
    """A named thing (policy, device, family) does not exist."""

    http_status = 404


def one_line(text: str, limit: int = 200) -> str:
    """Render untrusted text for a one-line message: no control characters, bounded length."""
    cleaned = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + f"... ({len(text)} characters)"
    return cleaned
