"""The ``workspace-one`` inventory format: Workspace ONE UEM's REST responses.

A file holds device search responses (``GET /API/mdm/devices/search``:
``{"Devices": [...], "Page", "PageSize", "Total"}``), one page, several pages
concatenated or as JSON Lines, a plain array of devices, or devices one per line.

Workspace ONE lists a device's apps in a separate response
(``GET /API/mdm/devices/{id}/apps``: ``{"DeviceApps": [...], "Page", "PageSize",
"Total"}``) that does not name its device. So an export joins them: each device
carries its apps under ``DeviceApps``, either that response as returned or its
``DeviceApps`` list. A device without ``DeviceApps`` is read with no app list
(scope ``none``): what it says about its owner and its ActiveSync ids still counts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from appban.clock import Micros
from appban.errors import BadInput
from appban.inventory import _vendor
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, build

# Workspace ONE's Platform names (spaces and case aside) -> appban's platform. Other
# platforms (Apple TV, Windows Phone, BlackBerry, QNX, ...) are no phone or computer a
# policy names: their records are skipped.
_PLATFORMS = {
    "apple": "ios",
    "android": "android",
    "appleosx": "macos",
    "macos": "macos",
    "winrt": "windows",
    "windowspc": "windows",
    "windowsdesktop": "windows",
    "chromebook": "chromeos",
    "chromeos": "chromeos",
    "linux": "linux",
}
# Ownership: C corporate, S corporate shared, E employee owned. Workspace ONE's
# default privacy settings do not collect personal apps of employee-owned devices,
# so those list managed apps only; an undefined ownership proves nothing either way.
_OWNERSHIP = {"c": ("corporate", "full"), "s": ("corporate", "full"), "e": ("personal", "managed")}
# App statuses that say the app is not on the device (assigned, removed).
_ABSENT = re.compile(r"notinstalled|uninstalled|removed", re.IGNORECASE)
# Workspace ONE writes 0001-01-01T00:00:00 for a time it does not know.
_NEVER = "0001-01-01"


class WorkspaceOneFormat:
    name = "workspace-one"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        source = options.source or self.name
        pages = _vendor.json_records(
            path, list_keys=("Devices",), page_keys=("Page", "PageSize", "Total"), max_bytes=options.max_bytes
        )
        for at, record in pages:
            try:
                checkin = _checkin(at, _vendor.mapping(record, at), source, options)
            except BadInput as exc:
                raise exc.at(file=path) from None
            if checkin is not None:
                yield None, checkin


def _checkin(at: str, record: dict[str, Any], source: str, options: ReadOptions) -> Checkin | None:
    kind = (_vendor.text(record, "Platform", at) or "").replace(" ", "").lower()
    platform = _PLATFORMS.get(kind)
    if platform is None:
        return None
    model = _vendor.text(record, "Model", at)
    if platform == "ios" and model and "ipad" in model.lower():
        platform = "ipados"
    device_id = _vendor.integer(_vendor.child(record, "Id", at), "Value", f"{at}.Id")
    if device_id is None:
        raise BadInput("missing", field=f"{at}.Id.Value")
    ownership, scope = _OWNERSHIP.get((_vendor.text(record, "Ownership", at) or "").lower(), ("unknown", "managed"))
    observed = _last_seen(record, at, options)
    apps, apps_at = _apps(record, at)
    if apps is None or observed is None:
        scope, apps = "none", []
    eas = _eas_ids(record, at)
    return build(
        source=source,
        device_id=str(device_id),
        platform=platform,
        owner=_vendor.text(record, "UserEmailAddress", at),
        observed_at=options.now if observed is None else observed,
        apps=apps,
        ownership=ownership,
        model=model,
        os_version=_vendor.text(record, "OperatingSystem", at),
        eas_device_ids=eas,
        inventory_scope=scope,
        # Workspace ONE learns a device's ActiveSync id from the mail server or its
        # gateway, when the device syncs mail.
        mail_access=True if eas else None,
        identifiers=_identifiers(record, at, platform),
        where={
            "device.id": f"{at}.Id.Value",
            "device.owner": f"{at}.UserEmailAddress",
            "device.model": f"{at}.Model",
            "device.os_version": f"{at}.OperatingSystem",
            "device.eas_device_ids": f"{at}.EasIds",
            "device.serial": f"{at}.SerialNumber",
            "device.udid": f"{at}.Udid",
            "device.host": f"{at}.Udid",
            "device.imei": f"{at}.Imei",
            "apps": apps_at,
        },
    )


def _last_seen(record: dict[str, Any], at: str, options: ReadOptions) -> Micros | None:
    """LastSeen, the device's last contact: written without an offset (read in
    ``--timezone``); none, or year 1, when the device never reported."""
    value = _vendor.text(record, "LastSeen", at)
    if value is None or value.startswith(_NEVER):
        return None
    return _vendor.vendor_time(value, f"{at}.LastSeen", options.timezone)


def _identifiers(record: dict[str, Any], at: str, platform: str) -> list[tuple[str, str]]:
    """Serial number and IMEI name the hardware. Udid is Apple's UDID on Apple devices;
    on others Workspace ONE makes it up, and it names the device only within it."""
    udid_kind = "udid" if platform in ("ios", "ipados", "macos") else "host"
    pairs = (
        ("serial", _vendor.text(record, "SerialNumber", at)),
        (udid_kind, _vendor.text(record, "Udid", at)),
        ("imei", _vendor.text(record, "Imei", at)),
    )
    return [(kind, value.replace(" ", "") if kind == "imei" else value) for kind, value in pairs if value]


def _eas_ids(record: dict[str, Any], at: str) -> list[str]:
    """EasId, and every id of EasIds ({"EasId": [...]}, {} when none)."""
    ids = []
    single = _vendor.text(record, "EasId", at)
    if single:
        ids.append(single)
    many = _vendor.child(record, "EasIds", at)
    for i, value in enumerate(_vendor.listed(many, "EasId", f"{at}.EasIds")):
        if not isinstance(value, str):
            raise BadInput("expected a string", field=f"{at}.EasIds.EasId[{i}]")
        if value and value not in ids:
            ids.append(value)
    return ids


def _apps(record: dict[str, Any], at: str) -> tuple[list[App] | None, str]:
    """The device's apps (the apps response embedded as returned, or its list), and
    the path of that list."""
    if record.get("DeviceApps") is None:
        return None, f"{at}.DeviceApps"
    value = record["DeviceApps"]
    path = f"{at}.DeviceApps"
    if isinstance(value, dict):
        page = value
        items = _vendor.listed(page, "DeviceApps", path)
        path = f"{path}.DeviceApps"
        total = _vendor.integer(page, "Total", f"{at}.DeviceApps")
        if total is not None and total > len(items):
            raise BadInput(
                f"{len(items):,} of the device's {total:,} apps: join every page of its apps",
                field=f"{at}.DeviceApps.Total",
            )
    else:
        items = _vendor.listed(record, "DeviceApps", at)
    apps: list[App] = []
    append = apps.append
    for i, item in enumerate(items):
        # Workspace ONE writes these fields as strings: such an app is read at once; any
        # other is read by _app, which says what is wrong with it.
        if type(item) is dict:
            status, name = item.get("Status"), item.get("ApplicationName")
            version, ident = item.get("Version"), item.get("ApplicationIdentifier")
            if (
                (status is None or type(status) is str)
                and (name is None or type(name) is str)
                and (version is None or type(version) is str)
                and (ident is None or type(ident) is str)
            ):
                if not (status and _absent(status)):
                    append(App(ident or None, name or None, version or None))
                continue
        app = _app(item, f"{path}[{i}]")
        if app is not None:
            append(app)
    return apps, path


def _app(item: Any, at: str) -> App | None:
    """An app, or None for one the device does not have."""
    app = _vendor.mapping(item, at)
    if _absent(_vendor.text(app, "Status", at) or ""):
        return None
    name = _vendor.text(app, "ApplicationName", at)
    version = _vendor.text(app, "Version", at)
    return App(id=_vendor.text(app, "ApplicationIdentifier", at), name=name, version=version)


@functools.lru_cache(maxsize=256)  # a handful of statuses, on every app
def _absent(status: str) -> bool:
    return _ABSENT.search(status.replace(" ", "")) is not None
