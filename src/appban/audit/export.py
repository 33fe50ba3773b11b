"""``appban audit export``: the hash chain as JSON Lines, verifiable without appban.

The first line describes the format: the hash algorithm, the fields that are hashed,
their separator and encoding, the hash before the first entry, and the head at the
time of the export. Each further line is one entry with everything needed to
recompute its hash: ``seq``, ``at`` (integer microseconds, as stored and hashed),
``time`` (the same moment, readable), ``action``, ``subject``, ``data`` (the JSON
text exactly as hashed, not parsed), ``prev_hash`` and ``hash``. A few lines of any
language verify it; docs/concepts.md shows them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

from appban.audit.log import GENESIS, HASHED_FIELDS, SEPARATOR, time_of
from appban.clock import Micros, format_time
from appban.errors import BadInput
from appban.output import json_text
from appban.store.records import AuditEntry

FORMAT = "appban-audit-chain"
VERSION = 1


def header(entries: int, head: AuditEntry | None, exported_at: Micros) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "hash": "sha256",
        "hashed_fields": list(HASHED_FIELDS),
        "separator": SEPARATOR,
        "encoding": "utf-8",
        "hashed_text": (
            "the hashed fields in this order, joined by the separator, encoded as UTF-8; "
            "seq and at as decimal integers; data as the JSON text given; the hash in lower-case hex"
        ),
        "genesis": GENESIS,
        "at_unit": "microseconds since 1970-01-01T00:00:00Z",
        "entries": entries,
        "head": {"seq": head.seq, "digest": head.hash} if head else None,
        "exported_at": format_time(exported_at),
    }


def entry_line(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at,
        "time": time_of(e.at),  # None for what is not a time (a tampered entry)
        "action": e.action,
        "subject": e.subject,
        "data": e.data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def export(entries: Iterable[AuditEntry], path: str, exported_at: Micros) -> dict[str, Any]:
    """Write the chain to ``path``, or to standard output for ``-``; what was written.

    A file is replaced whole or not at all: the chain goes to a new file beside it,
    renamed over it at the end. A symbolic link is followed (the file it names is
    replaced, the link stays); anything else that is not a regular file (a folder, a
    named pipe, a device) is refused: renaming over it would destroy it, and writing
    into it could not be atomic. A new file gets the usual mode (0666 less the umask);
    a replaced one keeps its mode.
    """
    if path == "-":
        with tempfile.TemporaryFile() as body:
            count, last = _write_entries(entries, body)
            _to_stdout(_header_line(count, last, exported_at), body)
    else:
        target, st = _target(path)
        try:
            with tempfile.TemporaryFile(dir=os.path.dirname(target)) as body:
                count, last = _write_entries(entries, body)
                _replace(target, st, _header_line(count, last, exported_at), body)
        except OSError as exc:
            raise BadInput(f"cannot write: {exc.strerror}", file=path) from None
    return {
        "file": path,
        "entries": count,
        "head": {"seq": last.seq, "digest": last.hash} if last else None,
    }


def _write_entries(entries: Iterable[AuditEntry], body: BinaryIO) -> tuple[int, AuditEntry | None]:
    """Entries first into a scratch file: the header, first in the output, counts them
    and names the head as read in the same pass."""
    count, last = 0, None
    for e in entries:
        body.write(json_text(entry_line(e)).encode("utf-8") + b"\n")
        count, last = count + 1, e
    body.seek(0)
    return count, last


def _header_line(count: int, last: AuditEntry | None, exported_at: Micros) -> bytes:
    return json_text(header(count, last, exported_at)).encode("utf-8") + b"\n"


def _target(path: str) -> tuple[str, os.stat_result | None]:
    """The file an export to ``path`` replaces (a link's target), and its status if it exists."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    except OSError as exc:
        raise BadInput(f"cannot write: {exc.strerror}", file=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(
            f"{_kind(st.st_mode)}, not a regular file: an export replaces a file whole "
            "(give a file's path, or - for standard output)",
            file=path,
        )
    return target, st


def _replace(target: str, st: os.stat_result | None, first: bytes, body: BinaryIO) -> None:
    fd, partial = _new_file(os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            if st is not None:
                os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):  # only root may give a file away
                        os.fchown(out.fileno(), st.st_uid, st.st_gid)
            out.write(first)
            shutil.copyfileobj(body, out)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _new_file(folder: str) -> tuple[int, str]:
    """A new, empty file in ``folder`` with the mode a new file gets (0666 less the umask)."""
    while True:
        name = os.path.join(folder, f".appban-export-{secrets.token_hex(8)}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _to_stdout(first: bytes, body: BinaryIO) -> None:
    sys.stdout.flush()
    raw = getattr(sys.stdout, "buffer", None)
    if raw is not None:
        raw.write(first)
        shutil.copyfileobj(body, raw)
        raw.flush()
        return
    sys.stdout.write(first.decode("utf-8"))  # a text stream (tests capture stdout so)
    for line in body:
        sys.stdout.write(line.decode("utf-8"))
