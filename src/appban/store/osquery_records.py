"""Rows of the osquery agents ``appban serve`` enrolls, and of MDM app lists it holds."""

from __future__ import annotations

from dataclasses import dataclass

from appban.clock import Micros


@dataclass(frozen=True)
class NodeFacts:
    """What an osquery agent told about its host at enrollment, as far as appban keeps it."""

    host: str  # the host_identifier: every result of the node is filed under it
    hostname: str | None = None
    serial: str | None = None
    uuid: str | None = None
    platform: str | None = None  # os_version.platform: darwin, windows, ubuntu, rhel...
    platform_like: str | None = None  # os_version.platform_like: debian, rhel...


@dataclass(frozen=True)
class OsqueryNode:
    id: int
    source: str
    facts: NodeFacts
    enrolled_at: Micros
    revoked_at: Micros | None


@dataclass(frozen=True)
class OsqueryRefresh:
    id: int
    node: int
    requested_at: Micros
    sent_at: Micros | None
    done_at: Micros | None


@dataclass(frozen=True)
class HeldApps:
    """An Apple MDM app list waiting for a DeviceInformation that tells its platform."""

    source: str
    device_key: str
    observed_at: Micros
    scope: str  # full | managed
    user_enrollment: bool
    apps: bytes  # JSON: [{"id", "name", "version"}]
    catalog_version: int | None  # the catalog the list was cut down with; None: whole
    received_at: Micros
