"""The ``intune`` inventory format: Microsoft Intune's managed devices and the apps it detected.

What a file may hold, told apart by its first character and its records:

- JSON (``{`` or ``[``): Microsoft Graph ``managedDevice`` collections, as pages
  (``{"@odata.context", "value": [...], "@odata.nextLink"}``, one or several
  concatenated, or JSON Lines of pages), a plain array, or single entities
  (``.../$entity``). A device with ``detectedApps`` expanded carries its own app list;
  one without has no inventory here (scope ``none``: identifiers and mail access
  only). The same file may hold ``detectedApp`` records (``@odata.type``
  ``#microsoft.graph.detectedApp``, or ``managedDevices``/``sizeInByte``/
  ``deviceCount`` present) with their ``managedDevices`` expanded: every device is
  then given the apps whose ``managedDevices`` name it.
- CSV (anything else): the Intune export API's ``AppInvRawData`` report, one row
  per (device, discovered app), columns ``ApplicationKey, ApplicationName,
  ApplicationPublisher, ApplicationShortVersion, ApplicationVersion, DeviceId,
  DeviceName, OSDescription, OSVersion, Platform, UserId, EmailAddress, UserName``
  (names compared without case; others, such as ``Platform_loc``, ignored).

Rows of one device may be anywhere in a CSV, and a detectedApp names its devices
across the file: both are grouped through a temporary SQLite file, so memory stays
bounded by one record whatever the file's size. A file of managedDevice records
alone is streamed as it is read.

Scope, from Graph's ``detectedApp`` reference ("Unmanaged apps will only appear for
devices marked as corporate owned"): ``full`` for a company-owned device, unless its
enrolment shows only a work profile or Apple User Enrollment (then ``managed``);
``managed`` for a personal or unknown-owner device, and for every AppInvRawData row
(the report says nothing of ownership); ``none`` without an app list or for a device
that has never synced. Intune's detectedApp has no bundle id or package name, only a
display name: apps go by name.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

from appban.errors import BadInput
from appban.inventory._lines import CsvReader, open_text
from appban.inventory._vendor import boolean, json_records, listed, mapping, open_binary, text, vendor_time
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import MAX_TEXT, App, Checkin, build, check_text

_PAGING = ("@odata.context", "@odata.nextLink", "@odata.count", "@odata.deltaLink")

# The managedDevice properties read; nothing else is kept, not even in the spill file.
_DEVICE_FIELDS = (
    "id",
    "emailAddress",
    "userPrincipalName",
    "operatingSystem",
    "osVersion",
    "model",
    "serialNumber",
    "imei",
    "meid",
    "udid",
    "easActivated",
    "easDeviceId",
    "managedDeviceOwnerType",
    "ownerType",
    "deviceEnrollmentType",
    "lastSyncDateTime",
    "enrolledDateTime",
)
_OWNERSHIP = {"company": "corporate", "personal": "personal", "unknown": "unknown"}
# deviceEnrollmentType values under which Intune sees only the work side of a device.
_WORK_SIDE_ONLY = frozenset(
    {"appleuserenrollment", "appleuserenrollmentwithserviceaccount", "androidenterprisecorporateworkprofile"}
)
# operatingSystem as Intune reports an Android work profile (personally owned).
_WORK_PROFILE_OS = frozenset({"androidforwork"})
_IDENTIFIERS = (("serial", "serialNumber"), ("imei", "imei"), ("meid", "meid"), ("udid", "udid"))

# The AppInvRawData columns read (names compared without case); the rest are ignored.
_CSV_COLUMNS = (
    "DeviceId",
    "ApplicationName",
    "ApplicationVersion",
    "ApplicationShortVersion",
    "Platform",
    "OSDescription",
    "OSVersion",
    "EmailAddress",
)
_CSV_REQUIRED = ("DeviceId", "ApplicationName", "Platform")


class IntuneFormat:
    name = "intune"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        try:
            if _first_byte(path) in (b"{", b"["):
                yield from _read_json(path, options)
            else:
                yield from _read_csv(path, options)
        except BadInput as exc:
            raise exc.at(file=path) from None


def _first_byte(path: str) -> bytes:
    with open_binary(path) as f:
        return f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")[:1]


# -- Graph JSON ------------------------------------------------------------------------------


def _read_json(path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
    # A single entity's response starts like a page ("@odata.context") but holds no "value".
    paging = () if _is_entity(path) else _PAGING
    records = json_records(path, list_keys=("value",), page_keys=paging)
    if not _mentions_detected_apps(path):
        for at, record in records:
            device = mapping(record, at)
            if _kind(device, at) == "app":
                raise BadInput("a detectedApp without its managedDevices", field=at)
            apps = None
            if "detectedApps" in device:
                apps = [
                    _graph_app(a, f"{at}.detectedApps[{i}]") for i, a in enumerate(listed(device, "detectedApps", at))
                ]
            yield None, _device_checkin(device, at, apps, options)
        return
    with _Spill() as spill:
        for at, record in records:
            r = mapping(record, at)
            if _kind(r, at) == "app":
                app = spill.app(_graph_app(r, at))
                for i, d in _each(r, "managedDevices", at):
                    d_at = f"{at}.managedDevices[{i}]"
                    key = spill.device(mapping(d, d_at), d_at, full=False)
                    spill.pair(key, app)
            else:
                key = spill.device(r, at, full=True)
                for i, a in _each(r, "detectedApps", at):
                    spill.pair(key, spill.app(_graph_app(a, f"{at}.detectedApps[{i}]")))
        for fields, at, apps in spill.devices():
            yield None, _device_checkin(fields, at, apps, options)


def _each(record: dict[str, Any], key: str, at: str) -> Iterator[tuple[int, Any]]:
    return enumerate(listed(record, key, at))


def _is_entity(path: str) -> bool:
    with open_binary(path) as f:
        head = f.read(4096)
    return re.search(rb'"@odata\.context"\s*:\s*"[^"]*/\$entity"', head) is not None


def _mentions_detected_apps(path: str) -> bool:
    """True when the file may hold detectedApp records (a key or type only they have).

    A byte search, so a device's text holding these words only costs the slower path."""
    needles = (b'"managedDevices"', b'graph.detectedApp"', b'"sizeInByte"', b'"deviceCount"')
    keep = max(len(n) for n in needles)
    with open_binary(path) as f:
        tail = b""
        while chunk := f.read(1 << 20):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-keep:]
    return False


def _kind(record: dict[str, Any], at: str) -> str:
    odata_type = record.get("@odata.type")
    if isinstance(odata_type, str):
        name = odata_type.lstrip("#").lower()
        if name == "microsoft.graph.detectedapp":
            return "app"
        if name.endswith("manageddevice"):
            return "device"
        raise BadInput(f"not a managedDevice or a detectedApp: {odata_type[:60]!r}", field=f"{at}.@odata.type")
    if "managedDevices" in record or "sizeInByte" in record or "deviceCount" in record:
        return "app"
    return "device"


def _graph_app(record: Any, at: str) -> App:
    app = mapping(record, at)
    name = text(app, "displayName", at, required=True)
    version = text(app, "version", at)
    _check_app_text(name, f"{at}.displayName")
    _check_app_text(version, f"{at}.version")
    return App(name=name, version=version)


def _check_app_text(value: str | None, field: str) -> None:
    if value is not None and len(value) > MAX_TEXT:
        raise BadInput(f"longer than {MAX_TEXT} characters", field=field)
    check_text(value, field)


def _device_checkin(device: dict[str, Any], at: str, apps: list[App] | None, options: ReadOptions) -> Checkin:
    """One managedDevice, with its apps (None: Intune's app list for it is not in the file)."""
    device_id = text(device, "id", at, required=True)
    assert device_id is not None
    os_name = text(device, "operatingSystem", at, required=True)
    assert os_name is not None
    model = text(device, "model", at)
    platform = _platform(os_name, model, f"{at}.operatingSystem")
    owner_key = "emailAddress" if text(device, "emailAddress", at) else "userPrincipalName"
    owner = text(device, owner_key, at)
    owner_type = text(device, "managedDeviceOwnerType", at) or text(device, "ownerType", at) or "unknown"
    ownership = _OWNERSHIP.get(owner_type.lower())
    if ownership is None:
        raise BadInput(f"unknown owner type {owner_type[:40]!r}", field=f"{at}.managedDeviceOwnerType")
    synced = _real_time(text(device, "lastSyncDateTime", at))
    if synced is not None:
        observed = vendor_time(synced, f"{at}.lastSyncDateTime", options.timezone)
    else:  # never synced: nothing was inventoried, whatever the file lists
        apps = None
        enrolled = _real_time(text(device, "enrolledDateTime", at))
        observed = vendor_time(enrolled, f"{at}.enrolledDateTime", options.timezone) if enrolled else options.now
    eas = text(device, "easDeviceId", at)
    identifiers = []
    for kind, key in _IDENTIFIERS:
        value = text(device, key, at)
        if value is not None:
            identifiers.append((kind, value.replace(" ", "") if kind in ("imei", "meid") else value))
    enrollment = (text(device, "deviceEnrollmentType", at) or "").lower()
    return build(
        source=options.source or IntuneFormat.name,
        device_id=device_id,
        platform=platform,
        owner=owner,
        observed_at=observed,
        apps=apps or [],
        ownership=ownership,
        model=model,
        os_version=text(device, "osVersion", at),
        eas_device_ids=[eas] if eas else [],
        inventory_scope=_scope(apps is not None, ownership, enrollment, os_name.lower()),
        mail_access=boolean(device, "easActivated", at),
        identifiers=identifiers,
        where={
            "device.id": f"{at}.id",
            "device.platform": f"{at}.operatingSystem",
            "device.owner": f"{at}.{owner_key}",
            "device.model": f"{at}.model",
            "device.os_version": f"{at}.osVersion",
            "device.eas_device_ids": f"{at}.easDeviceId",
            "apps": f"{at}.detectedApps",
            **{f"device.{kind}": f"{at}.{key}" for kind, key in _IDENTIFIERS},
        },
    )


def _real_time(value: str | None) -> str | None:
    """Graph writes 0001-01-01T00:00:00Z for a time that never happened."""
    if value is None or value.lstrip().startswith("0001-01-01"):
        return None
    return value


def _scope(inventoried: bool, ownership: str, enrollment: str, os_name: str) -> str:
    if not inventoried:
        return "none"
    if ownership != "corporate" or enrollment in _WORK_SIDE_ONLY or os_name in _WORK_PROFILE_OS:
        return "managed"
    return "full"


def _platform(value: str, model: str | None, field: str) -> str:
    """appban's platform for Intune's operatingSystem (or a report's Platform)."""
    v = value.strip().lower()
    if v.startswith("ipados") or (v.startswith(("ios", "iphone")) and (model or "").lower().startswith("ipad")):
        return "ipados"
    for prefix, platform in (
        ("ios", "ios"),
        ("iphone", "ios"),
        ("android", "android"),
        ("windows", "windows"),
        ("mac", "macos"),
        ("os x", "macos"),
        ("chrome", "chromeos"),
        ("linux", "linux"),
    ):
        if v.startswith(prefix):
            return platform
    raise BadInput(f"unknown operating system {value[:40]!r}", field=field)


# -- AppInvRawData CSV ------------------------------------------------------------------------


def _read_csv(path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
    f = open_text(path)
    try:
        reader = CsvReader(path, f, options.max_bytes)
        rows = iter(reader)
        header = reader.header(rows)
        if header is None:
            raise BadInput("empty file: expected an Intune AppInvRawData export", file=path)
        reader.columns = header
        columns = _csv_columns(header, reader.header_line)
        with _Spill() as spill:
            for row in rows:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise BadInput(f"{len(row)} columns where the header has {len(header)}", line=line)
                cells = {column: row[i].strip() for column, i in columns.items()}
                try:
                    app = _csv_app(cells)
                except BadInput as exc:
                    raise exc.at(line=line) from None
                spill.pair(spill.device(cells, str(line), full=False, key=cells["DeviceId"]), spill.app(app))
            for cells, first, apps in spill.devices():
                try:
                    checkin = _csv_checkin(cells, apps, options)
                except BadInput as exc:
                    raise exc.at(line=int(first)) from None
                yield int(first), checkin
    finally:
        f.close()


def _csv_columns(header: list[str], line: int) -> dict[str, int]:
    """Where each column read is, by its documented name (the first of two alike)."""
    found = {h.strip().lower(): i for i, h in reversed(list(enumerate(header)))}
    columns: dict[str, int] = {}
    for column in _CSV_COLUMNS:
        if column.lower() in found:
            columns[column] = found[column.lower()]
        elif column in _CSV_REQUIRED:
            raise BadInput(f"not an Intune AppInvRawData export: no {column} column", line=line)
    return columns


def _csv_app(cells: dict[str, str]) -> App:
    if not cells["DeviceId"]:
        raise BadInput("empty", field="DeviceId")
    name = cells["ApplicationName"]
    if not name:
        raise BadInput("an app needs a name", field="ApplicationName")
    version_column = "ApplicationVersion" if cells.get("ApplicationVersion") else "ApplicationShortVersion"
    version = cells.get(version_column) or None
    _check_app_text(name, "ApplicationName")
    _check_app_text(version, version_column)
    return App(name=name, version=version)


def _csv_checkin(cells: dict[str, str], apps: list[App], options: ReadOptions) -> Checkin:
    platform_column = "Platform" if cells["Platform"] else "OSDescription"
    return build(
        source=options.source or IntuneFormat.name,
        device_id=cells["DeviceId"],
        platform=_platform(cells.get(platform_column, ""), None, platform_column),
        owner=cells.get("EmailAddress") or None,
        # The report states no time of its own: it is as of the import.
        observed_at=options.now,
        apps=apps,
        os_version=cells.get("OSVersion") or None,
        inventory_scope="managed",
        where={"device.id": "DeviceId", "device.owner": "EmailAddress", "device.os_version": "OSVersion"},
    )


# -- grouping through a temporary file ----------------------------------------------------------


class _Spill:
    """Devices and apps met anywhere in a file, given back a device at a time, in the
    order devices were first met, each with its apps in the order they were met.

    A device is kept as first met; a full record (a managedDevice of its own) replaces
    one seen only inside a detectedApp's managedDevices, never another full one.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="appban-intune-")
        self._db = sqlite3.connect(os.path.join(self._dir.name, "spill.db"), isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;
            CREATE TABLE devices (key TEXT PRIMARY KEY, seq INTEGER, at TEXT, full INTEGER, data TEXT);
            CREATE TABLE apps (seq INTEGER PRIMARY KEY, name TEXT, version TEXT);
            CREATE TABLE pairs (device TEXT, app INTEGER);
            BEGIN;
            """
        )
        self._devices = 0
        self._apps = 0

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()
        self._dir.cleanup()

    def device(self, record: dict[str, Any], at: str, *, full: bool, key: str | None = None) -> str:
        if key is None:
            key = text(record, "id", at, required=True)
            assert key is not None
            record = {k: record[k] for k in _DEVICE_FIELDS if k in record}
        self._devices += 1
        self._db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
            " SET at = excluded.at, full = 1, data = excluded.data WHERE excluded.full = 1 AND full = 0",
            (key, self._devices, at, int(full), json.dumps(record)),
        )
        return key

    def app(self, app: App) -> int:
        self._apps += 1
        self._db.execute("INSERT INTO apps VALUES (?, ?, ?)", (self._apps, app.name, app.version))
        return self._apps

    def pair(self, device: str, app: int) -> None:
        self._db.execute("INSERT INTO pairs VALUES (?, ?)", (device, app))

    def devices(self) -> Iterator[tuple[dict[str, Any], str, list[App]]]:
        self._db.execute("CREATE INDEX pairs_device ON pairs (device, app)")
        self._db.execute("COMMIT")
        rows = self._db.execute(
            "SELECT d.key, d.at, d.data, a.name, a.version FROM devices d"
            " LEFT JOIN pairs p ON p.device = d.key LEFT JOIN apps a ON a.seq = p.app"
            " ORDER BY d.seq, p.app"
        )
        current: str | None = None
        data: dict[str, Any] = {}
        at = ""
        apps: list[App] = []
        for key, row_at, row_data, name, version in rows:
            if key != current:
                if current is not None:
                    yield data, at, apps
                current, at, data, apps = key, row_at, json.loads(row_data), []
            if name is not None:
                apps.append(App(name=name, version=version))
        if current is not None:
            yield data, at, apps
