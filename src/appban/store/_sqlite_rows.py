"""How the SQLite store reads and writes a device's row: shared by the store and its
linked devices' records (a record is read in a device row's layout)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appban.store.records import DeviceRow

DEVICE_COLS = (
    "id, source, source_id, platform, ownership, owner, inventory_scope, observed_at, model, "
    "os_version, mail_reported, eas_ids, catalog_version, credential, decision, reason, gate_seq, "
    "identifiers, epoch, counter, linked, mail_seen"
)


def device_row(row: tuple[Any, ...]) -> DeviceRow:
    return DeviceRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        None if row[10] is None else bool(row[10]),
        tuple(row[11].split()) if row[11] else (),
        row[12],
        bool(row[13]),
        row[14],
        row[15],
        row[16],
        split_identifiers(row[17]),
        row[18],
        row[19],
        bool(row[20]),
        row[21],
    )


# The next id of a table whose rows may be deleted (devices folded into another,
# records unlinked): one past both the highest id there and the highest ever removed.
NEXT_ID = (
    "(SELECT max(coalesce((SELECT max(id) FROM {table}), 0), "
    "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{table}_high'), 0)) + 1)"
)


def join_identifiers(pairs: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{kind}:{value}" for kind, value in pairs)


def split_identifiers(text: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    return tuple((kind, value) for kind, _, value in (line.partition(":") for line in text.split("\n")))
