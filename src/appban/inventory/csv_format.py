"""The ``csv`` inventory format: one row per (device snapshot, app).

Header (columns in any order; only the first four are required)::

    device_id,platform,owner,observed_at,source,ownership,model,os_version,
    eas_device_ids,inventory_scope,mail_access,app_id,app_name,app_version,signing_sha256

Rows of one snapshot (same source, device_id and observed_at) are consecutive and
agree on the device columns. ``observed_at`` is compared as the instant it names,
not as text: ``15:00:00Z`` and ``15:00:00+00:00`` are one snapshot (a source may
write its offset either way), so consecutive rows that differ only in how they
write it belong together, and the same instant again after other rows is the
split snapshot that is refused. A device with no apps is one row with app_id and
app_name empty. ``eas_device_ids`` are separated by ``;``; ``mail_access`` is
``true``, ``false`` or empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

from appban.clock import Micros, parse_time
from appban.errors import BadInput
from appban.inventory._lines import CsvReader, open_text
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin, DuplicateApp, from_object

REQUIRED = ("device_id", "platform", "owner", "observed_at")
DEVICE = (
    "source",
    "device_id",
    "platform",
    "ownership",
    "owner",
    "model",
    "os_version",
    "eas_device_ids",
    "inventory_scope",
    "mail_access",
    "observed_at",
)
APP = ("app_id", "app_name", "app_version", "signing_sha256")
COLUMNS = DEVICE + APP
_FIELD_COLUMN = {
    "device.id": "device_id",
    "device.platform": "platform",
    "device.owner": "owner",
    "device.ownership": "ownership",
    "device.model": "model",
    "device.os_version": "os_version",
    "device.inventory_scope": "inventory_scope",
    "device.mail_access": "mail_access",
    "observed_at": "observed_at",
    "source": "source",
    "id": "app_id",
    "name": "app_name",
    "version": "app_version",
    "signing_sha256": "signing_sha256",
}


class CsvFormat:
    name = "csv"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        f = open_text(path)
        try:
            yield from _read(path, f, options.max_bytes)
        finally:
            f.close()


def _read(path: str, f: TextIO, max_bytes: int) -> Iterator[tuple[int, Checkin]]:
    reader = CsvReader(path, f, max_bytes)
    rows = iter(reader)
    header = reader.header(rows)
    if header is None:
        raise BadInput("empty file: expected a header line naming the columns", file=path)
    header = [h.strip() for h in header]
    reader.columns = header
    yield from _rows(path, header, rows, reader)


def _rows(path: str, header: list[str], rows: Iterator[list[str]], reader: CsvReader) -> Iterator[tuple[int, Checkin]]:
    at = reader.header_line
    for i, name in enumerate(header):
        if name not in COLUMNS:
            raise BadInput(
                f"unknown column {name[:60]!r} (known: {', '.join(COLUMNS)})",
                file=path,
                line=at,
                field=f"column {i + 1}",
            )
        if name in header[:i]:
            raise BadInput(f"column {name!r} twice", file=path, line=at)
    for name in REQUIRED:
        if name not in header:
            raise BadInput(f"missing required column {name!r}", file=path, line=at)
    seen: dict[tuple[str, str, Micros], int] = {}  # each snapshot's first line
    group: dict[str, Any] | None = None
    key: tuple[str, str, Micros] | None = None
    observed_text = ""  # the current snapshot's observed_at as its rows write it
    lines: list[int] = []
    start = 1
    for row in rows:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise BadInput(f"{len(row)} columns where the header has {len(header)}", file=path, line=line)
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        observed = cells["observed_at"]
        if key is not None and observed == observed_text:
            row_key = (cells.get("source") or "agent", cells["device_id"], key[2])  # same text, same instant
        else:
            row_key = (cells.get("source") or "agent", cells["device_id"], _instant(path, line, observed))
        if row_key != key:
            if group is not None:
                yield start, _checkin(path, group, start, lines)
            if row_key in seen:
                raise BadInput(
                    f"rows of one snapshot must be consecutive (its first row is line {seen[row_key]})",
                    file=path,
                    line=line,
                    field="device_id",
                )
            seen[row_key] = line
            key, start, lines, observed_text = row_key, line, [], observed
            group = _device(path, line, cells)
        else:
            assert group is not None
            for column in DEVICE:
                # observed_at is compared as an instant (row_key), however it is written
                if column in cells and column != "observed_at" and cells[column] != group["_cells"].get(column):
                    raise BadInput("differs from the snapshot's first row", file=path, line=line, field=column)
        app = _app(cells)
        if app:
            group["apps"].append(app)
            lines.append(line)
    if group is not None:
        yield start, _checkin(path, group, start, lines)


def _instant(path: str, line: int, text: str) -> Micros:
    """The time a row's observed_at names: the key of its snapshot."""
    try:
        return parse_time(text, field="observed_at")
    except BadInput as exc:
        raise exc.at(file=path, line=line) from None


def _device(path: str, line: int, cells: dict[str, str]) -> dict[str, Any]:
    device: dict[str, Any] = {
        "id": cells["device_id"],
        "platform": cells["platform"],
        "owner": cells["owner"],
    }
    for column in ("ownership", "model", "os_version", "inventory_scope"):
        if cells.get(column):
            device[column] = cells[column]
    if cells.get("eas_device_ids"):
        device["eas_device_ids"] = [e.strip() for e in cells["eas_device_ids"].split(";") if e.strip()]
    mail = cells.get("mail_access", "").lower()
    if mail:
        if mail not in ("true", "false"):
            raise BadInput("expected true, false or empty", file=path, line=line, field="mail_access")
        device["mail_access"] = mail == "true"
    body: dict[str, Any] = {
        "device": device,
        "observed_at": cells["observed_at"],
        "apps": [],
        "_cells": cells,
    }
    if cells.get("source"):
        body["source"] = cells["source"]
    return body


def _app(cells: dict[str, str]) -> dict[str, str] | None:
    app = {}
    for column, key in (
        ("app_id", "id"),
        ("app_name", "name"),
        ("app_version", "version"),
        ("signing_sha256", "signing_sha256"),
    ):
        if cells.get(column):
            app[key] = cells[column]
    if not app.get("id") and not app.get("name"):
        if app:
            return {"id": ""}  # a version without an app: let validation name it
        return None
    return app


def _checkin(path: str, group: dict[str, Any], start: int, lines: list[int]) -> Checkin:
    group.pop("_cells", None)
    try:
        return from_object(group)
    except DuplicateApp as exc:
        # One app per row: the other one is a line too.
        first, line = (lines[i] if i < len(lines) else start for i in (exc.first, exc.index))
        column = "app_id" if (exc.field or "").endswith(".id") else "app_name"
        raise BadInput(f"duplicate app (also line {first})", file=path, line=line, field=column) from None
    except BadInput as exc:
        field = exc.field or ""
        line = start
        if field.startswith("apps["):
            index = int(field[5 : field.index("]")])
            line = lines[index] if index < len(lines) else start
            field = field[field.index("]") + 2 :] if "]." in field else "app_id"
        elif field.startswith("device.eas_device_ids"):
            field = "eas_device_ids"  # one cell holds them all
        column = _FIELD_COLUMN.get(field, field)
        raise BadInput(exc.detail, file=path, line=line, field=column or None) from None
