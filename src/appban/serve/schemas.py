"""The shapes ``appban serve`` answers with, as msgspec types: the OpenAPI document's
schemas are generated from these and from ``CheckinBody`` (see ``openapi``).

The handlers build plain dicts of the same shape; a test holds them to these types.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from appban.inventory.checkin import CheckinBody


class ErrorDetail(msgspec.Struct):
    status: int
    message: str
    field: str | None
    index: int | None


class Error(msgspec.Struct):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


class ItemError(msgspec.Struct):
    field: str | None
    message: str


class ItemResult(msgspec.Struct, omit_defaults=True):
    index: int
    device: str | None
    status: Literal["applied", "ignored", "rejected"]
    error: ItemError | None = None


class CheckinResults(msgspec.Struct):
    """A 202 answer: one result per posted item, in order."""

    results: list[ItemResult]


TYPES = (CheckinBody, Error, CheckinResults)
