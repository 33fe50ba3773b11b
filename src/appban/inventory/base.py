"""What an inventory format is: a reader from a file to validated check-ins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from appban.inventory.checkin import Checkin


class InventoryFormat(Protocol):
    name: str

    def read(self, path: str, *, max_bytes: int) -> Iterator[tuple[int, Checkin]]:
        """Yield (line, check-in) in file order; raise BadInput naming file, line, field."""
        ...


def formats() -> dict[str, InventoryFormat]:
    from appban.inventory.appban_format import AppbanFormat
    from appban.inventory.csv_format import CsvFormat

    return {f.name: f for f in (AppbanFormat(), CsvFormat())}


# Formats SPEC names that arrive with the MDM import issue.
PLANNED = ("apple-mdm", "android-management", "google-directory", "intune", "jamf", "osquery")
