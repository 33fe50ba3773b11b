"""A progress bar on stderr for a person watching; nothing at all for a pipe or --json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from appban import output


class Tracker(Protocol):
    def phase(self, text: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def phase(self, text: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def silent() -> Tracker:
    return _Silent()


@contextmanager
def tracker(enabled: bool) -> Iterator[Tracker]:
    if not enabled:
        yield _Silent()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.console(stderr=True),
        transient=True,
    )
    task = bar.add_task("", total=None)

    class _Bar:
        def phase(self, text: str, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, description=text, total=total, completed=0)
            else:
                bar.update(task, description=text)

        def advance(self, n: int = 1) -> None:
            bar.advance(task, n)

    with bar:
        yield _Bar()
