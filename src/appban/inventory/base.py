"""What an inventory format is: a reader from a file to validated check-ins."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Protocol, runtime_checkable

from appban.clock import Micros
from appban.inventory.checkin import Checkin


@dataclass(frozen=True)
class ReadOptions:
    """What the command line tells every reader.

    ``source``: ``--source``, or None for the format's own name. ``timezone``: the
    zone of times written without an offset (``--timezone``, default UTC). ``now``:
    the command's clock, the observation time of a format that states none.
    ``max_bytes``: the most one record (a line, a device, a page) may take.
    ``owners``: the ``--owners`` mapping (key -> e-mail); readers need not use it,
    the importer applies it to every record that names no owner.
    """

    now: Micros
    max_bytes: int
    source: str | None = None
    timezone: tzinfo = UTC
    owners: Mapping[str, str] = field(default_factory=dict)


class InventoryFormat(Protocol):
    name: str

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        """Yield (line or None, check-in) in file order; raise BadInput naming file, line
        (or record index in the field's path) and field."""
        ...


@runtime_checkable
class MultiFileFormat(InventoryFormat, Protocol):
    """A format whose records of one device may be spread over several files (Apple
    MDM: one file per command result): all of an import's files are read together."""

    def read_files(self, paths: list[str], options: ReadOptions) -> Iterator[tuple[str, int | None, Checkin]]:
        """Yield (file, line or None, check-in)."""
        ...


# Every format, by the module that reads it: loaded when first named.
_FORMATS = {
    "appban": "appban.inventory.appban_format:AppbanFormat",
    "csv": "appban.inventory.csv_format:CsvFormat",
    "intune": "appban.inventory.intune:IntuneFormat",
    "jamf": "appban.inventory.jamf:JamfFormat",
    "workspace-one": "appban.inventory.workspace_one:WorkspaceOneFormat",
    "google-directory": "appban.inventory.google_directory:GoogleDirectoryFormat",
    "android-management": "appban.inventory.android_management:AndroidManagementFormat",
    "apple-mdm": "appban.inventory.apple_mdm:AppleMdmFormat",
    "osquery": "appban.inventory.osquery:OsqueryFormat",
    "exchange": "appban.inventory.exchange:ExchangeFormat",
}


def format_names() -> list[str]:
    return list(_FORMATS)


def get_format(name: str) -> InventoryFormat:
    module, _, cls = _FORMATS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]


def formats() -> Mapping[str, InventoryFormat]:
    return {name: get_format(name) for name in _FORMATS}
