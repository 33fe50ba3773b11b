"""``audit export FILE``: what happens to what is already at FILE.

A regular file is replaced whole (keeping its mode), a symbolic link is followed (its
target replaced, the link kept), and anything else (a named pipe, a device, a folder)
is refused naming the path, untouched. ``-`` writes the chain to standard output.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers_cli import NOW, Fleet, assert_bad_input, run_process


def export(fleet: Fleet, target: Path | str, *args: str) -> tuple[int | None, str, str]:
    result = fleet.run("audit", "export", str(target), *args)
    return result.code, result.out, result.err


def chain_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and lines[0]["format"] == "appban-audit-chain"
    assert lines[0]["entries"] == len(lines) - 1 > 0
    return lines


@pytest.fixture
def umask() -> Iterator[int]:
    """A known umask for the test, the old one restored after."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def test_a_new_file_gets_the_usual_mode(fleet: Fleet, umask: int) -> None:
    target = fleet.tmp / "chain.jsonl"
    code, _out, err = export(fleet, target)
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    chain_lines(target.read_text(encoding="utf-8"))


def test_a_replaced_file_keeps_its_mode(fleet: Fleet, umask: int) -> None:
    target = fleet.tmp / "chain.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o644)
    code, _out, err = export(fleet, target)
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    chain_lines(target.read_text(encoding="utf-8"))


def test_a_symbolic_link_is_followed_and_kept(fleet: Fleet) -> None:
    real = fleet.tmp / "kept" / "chain.jsonl"
    real.parent.mkdir()
    real.write_text("old\n", encoding="utf-8")
    link = fleet.tmp / "latest.jsonl"
    link.symlink_to(real)
    code, out, err = export(fleet, link)
    assert code == 0, err
    assert str(link) in out
    assert link.is_symlink() and os.readlink(link) == str(real)
    chain_lines(real.read_text(encoding="utf-8"))
    assert sorted(p.name for p in real.parent.iterdir()) == ["chain.jsonl"]  # no scratch file left


def test_a_dangling_link_creates_its_target(fleet: Fleet) -> None:
    real = fleet.tmp / "chain.jsonl"
    link = fleet.tmp / "latest.jsonl"
    link.symlink_to(real)
    code, _out, err = export(fleet, link)
    assert code == 0, err
    assert link.is_symlink()
    chain_lines(real.read_text(encoding="utf-8"))


def test_a_named_pipe_is_refused_untouched(fleet: Fleet) -> None:
    """Replacing it would leave its reader with nothing; writing into it could not be atomic.
    (Refused before anything opens it: a test that hangs here has opened the pipe.)"""
    fifo = fleet.tmp / "chain.fifo"
    os.mkfifo(fifo)
    assert_bad_input(fleet.run("audit", "export", str(fifo)), str(fifo), "a named pipe, not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_link_to_a_named_pipe_is_refused(fleet: Fleet) -> None:
    fifo = fleet.tmp / "chain.fifo"
    os.mkfifo(fifo)
    link = fleet.tmp / "latest.jsonl"
    link.symlink_to(fifo)
    assert_bad_input(fleet.run("audit", "export", str(link)), str(link), "a named pipe, not a regular file")
    assert link.is_symlink() and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_link_to_a_device_is_refused(fleet: Fleet) -> None:
    """Through a link, so that a regression replaces the link, never the device itself."""
    before = os.stat("/dev/null")
    link = fleet.tmp / "null.jsonl"
    link.symlink_to("/dev/null")
    assert_bad_input(fleet.run("audit", "export", str(link)), str(link), "a device, not a regular file")
    assert link.is_symlink()
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_folder_is_refused(fleet: Fleet) -> None:
    folder = fleet.tmp / "exports"
    folder.mkdir()
    assert_bad_input(fleet.run("audit", "export", str(folder)), str(folder), "a folder, not a regular file")
    assert folder.is_dir() and not any(folder.iterdir())


def test_dash_writes_the_chain_to_standard_output(fleet: Fleet) -> None:
    result = fleet.run("audit", "export", "-")
    assert (result.code, result.err) == (0, ""), result.err
    lines = chain_lines(result.out)
    assert not (fleet.tmp / "-").exists()
    # The same chain as a file holds.
    target = fleet.tmp / "chain.jsonl"
    assert export(fleet, target)[0] == 0
    in_file = chain_lines(target.read_text(encoding="utf-8"))
    assert lines[1:] == in_file[1:]


def test_dash_from_a_real_process(fleet: Fleet) -> None:
    result = run_process("--db", str(fleet.db), "--now", NOW, "audit", "export", "-")
    assert (result.code, result.err) == (0, ""), result.err
    chain_lines(result.out)


def test_dash_with_json_is_a_usage_error(fleet: Fleet) -> None:
    assert_bad_input(fleet.run("--json", "audit", "export", "-"), "--json")
