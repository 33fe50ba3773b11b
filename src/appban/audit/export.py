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

import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

import msgspec

from appban.audit.log import GENESIS, HASHED_FIELDS, SEPARATOR
from appban.clock import Micros, format_time
from appban.errors import BadInput
from appban.store.records import AuditEntry

FORMAT = "appban-audit-chain"
VERSION = 1
_encode = msgspec.json.Encoder().encode


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
        "time": format_time(e.at),
        "action": e.action,
        "subject": e.subject,
        "data": e.data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def export(entries: Iterable[AuditEntry], path: str, exported_at: Micros) -> dict[str, Any]:
    """Write the chain to ``path`` (replaced whole, or not at all); what was written."""
    folder = os.path.dirname(os.path.abspath(path))
    count, last = 0, None
    try:
        # Entries first into a scratch file: the header, first in the file, counts them
        # and names the head as read in the same pass.
        with tempfile.TemporaryFile(dir=folder) as body:
            for e in entries:
                body.write(_encode(entry_line(e)) + b"\n")
                count, last = count + 1, e
            body.seek(0)
            fd, partial = tempfile.mkstemp(dir=folder, prefix=".appban-export-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(_encode(header(count, last, exported_at)) + b"\n")
                    shutil.copyfileobj(body, out)
                os.replace(partial, path)
            except BaseException:
                os.unlink(partial)
                raise
    except OSError as exc:
        raise BadInput(f"cannot write: {exc.strerror}", file=path) from None
    return {
        "file": path,
        "entries": count,
        "head": {"seq": last.seq, "digest": last.hash} if last else None,
    }
