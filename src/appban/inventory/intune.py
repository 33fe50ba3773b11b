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
from appban.inventory.checkin import MAX_TEXT, App, Checkin, build
from appban.text import safe_text, text_clean

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

    def read_files(self, paths: list[str], options: ReadOptions) -> Iterator[tuple[str, int | None, Checkin]]:
        """Each file on its own, except Graph JSON files of which one holds detectedApp
        records: those are read together, so that detectedApp pages in one file give
        their apps to the devices of managedDevices pages in another."""
        json_files = []
        for path in paths:
            try:
                if _first_byte(path) in (b"{", b"["):
                    json_files.append(path)
            except BadInput as exc:
                raise exc.at(file=path) from None
        together = len(json_files) > 1 and any(_mentions_detected_apps(p) for p in json_files)
        for path in paths:
            if not (together and path in json_files):
                for line, checkin in self.read(path, options):
                    yield path, line, checkin
        if not together:
            return
        with _Spill() as spill:
            for n, path in enumerate(json_files):
                try:
                    _spill_json(path, spill, options.max_bytes, tag=f"{n}\x00")
                except BadInput as exc:
                    raise exc.at(file=path) from None
            for fields, tagged, apps in spill.devices():
                index, _, at = tagged.partition("\x00")
                path = json_files[int(index)]
                try:
                    yield path, None, _device_checkin(fields, at, apps, options)
                except BadInput as exc:
                    raise exc.at(file=path) from None


def _first_byte(path: str) -> bytes:
    with open_binary(path) as f:
        return f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")[:1]


# -- Graph JSON ------------------------------------------------------------------------------


def _read_json(path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
    # A single entity's response starts like a page ("@odata.context") but holds no "value".
    paging = () if _is_entity(path) else _PAGING
    records = json_records(path, list_keys=("value",), page_keys=paging, max_bytes=options.max_bytes)
    if not _mentions_detected_apps(path):
        for at, record in records:
            device = mapping(record, at)
            if _kind(device, at) == "app":
                raise BadInput("a detectedApp without its managedDevices", field=at)
            apps = _graph_apps(listed(device, "detectedApps", at), at) if "detectedApps" in device else None
            yield None, _device_checkin(device, at, apps, options)
        return
    with _Spill() as spill:
        _spill_json(path, spill, options.max_bytes)
        for fields, at, apps in spill.devices():
            yield None, _device_checkin(fields, at, apps, options)


def _spill_json(path: str, spill: _Spill, max_bytes: int, tag: str = "") -> None:
    """Every device and detectedApp record of a Graph JSON file into ``spill``; each
    device's place in the file is kept as ``tag`` + its path."""
    paging = () if _is_entity(path) else _PAGING
    for at, record in json_records(path, list_keys=("value",), page_keys=paging, max_bytes=max_bytes):
        r = mapping(record, at)
        if _kind(r, at) == "app":
            app = _graph_app(r, at)
            _check_apps([app], at, "")
            for i, d in _each(r, "managedDevices", at):
                d_at = f"{at}.managedDevices[{i}]"
                spill.add(spill.device(_device_key(d, d_at), tag + d_at, _kept(d), full=False), [app])
        else:
            apps = _graph_apps(listed(r, "detectedApps", at), at)
            _check_apps(apps, at, "detectedApps")
            spill.add(spill.device(_device_key(r, at), tag + at, _kept(r), full=True), apps)


def _device_key(record: Any, at: str) -> str:
    key = text(mapping(record, at), "id", at, required=True)
    assert key is not None
    return key


def _kept(record: dict[str, Any]) -> dict[str, Any]:
    """The managedDevice properties appban reads: all that goes to the spill file."""
    return {k: record[k] for k in _DEVICE_FIELDS if k in record}


def _each(record: dict[str, Any], key: str, at: str) -> Iterator[tuple[int, Any]]:
    return enumerate(listed(record, key, at))


def _is_entity(path: str) -> bool:
    with open_binary(path) as f:
        head = f.read(4096)
    return re.search(rb'"@odata\.context"\s*:\s*"[^"]*/\$entity"', head) is not None


def _mentions_detected_apps(path: str) -> bool:
    """True when the file may hold detectedApp records that name their devices: the
    ``managedDevices`` key is theirs alone. A byte search, so a device whose text holds
    the word only costs the slower path."""
    needle = b'"managedDevices"'
    with open_binary(path) as f:
        tail = b""
        while chunk := f.read(1 << 20):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-len(needle) :]
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


def _graph_apps(records: list[Any], at: str) -> list[App]:
    """A device's detectedApps: the common record (a name, a version or none, as
    strings) read inline; at the first other, all again app by app, so that the first
    problem is named as ``_graph_app`` names it."""
    apps: list[App] = []
    add = apps.append
    for r in records:
        if type(r) is dict:
            name, version = r.get("displayName"), r.get("version")
            if type(name) is str and name and (version is None or type(version) is str):
                add(App(None, name, version or None))
                continue
        return [_graph_app(a, f"{at}.detectedApps[{i}]") for i, a in enumerate(records)]
    return apps


def _graph_app(record: Any, at: str) -> App:
    """A detectedApp as an app; its text is checked with the rest of its record's
    (``_check_apps``)."""
    if type(record) is not dict:
        mapping(record, at)  # raises, naming what it is
    name = record.get("displayName")
    if type(name) is not str or not name:
        name = text(record, "displayName", at, required=True)
    version = record.get("version")
    if version is not None and type(version) is not str:
        version = text(record, "version", at)
    return App(name=name, version=version or None)


def _check_apps(apps: list[App], at: str, key: str) -> None:
    """Every app's name and version within bounds and free of controls and markup:
    checked at once, and one by one only where they are not. An app's values are its
    maker's or the user's, not the admin's: one that fails is made safe, never refused
    (build cuts one too long) (docs/formats.md, Text)."""
    texts = [t for a in apps for t in (a.name, a.version) if t is not None]
    if text_clean(" ".join(texts)) and max(map(len, texts), default=0) <= MAX_TEXT:
        return
    for app in apps:
        if app.name is not None:
            app.name = safe_text(app.name)
        if app.version is not None:
            app.version = safe_text(app.version)


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
        width = len(header)
        device_at, name_at = columns["DeviceId"], columns["ApplicationName"]
        versions_at = [columns[c] for c in ("ApplicationVersion", "ApplicationShortVersion") if c in columns]
        with _Spill() as spill:
            for row in rows:  # the common row takes the plain path; _csv_app says what is wrong
                line = reader.line_num
                if len(row) != width:
                    if not any(cell.strip() for cell in row):
                        continue
                    raise BadInput(f"{len(row)} columns where the header has {width}", line=line)
                device, name = row[device_at].strip(), row[name_at].strip()
                version = next((v for v in (row[i].strip() for i in versions_at) if v), None)
                if not (device and name and len(name) <= MAX_TEXT and len(version or "") <= MAX_TEXT) or not (
                    text_clean(f"{name} {version}")
                ):
                    if not any(cell.strip() for cell in row):
                        continue
                    try:
                        app = _csv_app({column: row[i].strip() for column, i in columns.items()})
                    except BadInput as exc:
                        raise exc.at(line=line) from None
                    name, version = app.name or name, app.version
                seq = spill.known(device)
                if seq is None:
                    cells = {column: row[i].strip() for column, i in columns.items()}
                    seq = spill.device(device, str(line), cells, full=False)
                spill.add_one(seq, name, version)
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
    # An app's values are made safe, never refused (see _check_apps).
    return App(name=safe_text(name), version=None if version is None else safe_text(version))


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

    Apps and device records go to a temporary SQLite file; memory holds a number per
    device (its order) and a batch of rows. A device is kept as first met; a full
    record (a managedDevice of its own) replaces one seen only inside a detectedApp's
    managedDevices, never another full one.
    """

    _BATCH = 20_000

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="appban-intune-")
        self._db = sqlite3.connect(os.path.join(self._dir.name, "spill.db"), isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;
            CREATE TABLE devices (seq INTEGER PRIMARY KEY, at TEXT, data TEXT);
            CREATE TABLE apps (device INTEGER, name TEXT, version TEXT);
            BEGIN;
            """
        )
        self._seq: dict[str, int] = {}  # device key -> its order; negative while only partly known
        self._devices: list[tuple[int, str, str]] = []
        self._apps: list[tuple[int, str | None, str | None]] = []

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()
        self._dir.cleanup()

    def device(self, key: str, at: str, data: dict[str, Any], *, full: bool) -> int:
        seq = self._seq.get(key)
        if seq is None:
            seq = len(self._seq) + 1
            self._seq[key] = seq if full else -seq
            self._devices.append((seq, at, json.dumps(data)))
            if len(self._devices) >= self._BATCH:
                self._flush()
            return seq
        if seq < 0 and full:  # the device's own record, after a detectedApp named it
            seq = self._seq[key] = -seq
            self._flush()
            self._db.execute("UPDATE devices SET at = ?, data = ? WHERE seq = ?", (at, json.dumps(data), seq))
        return abs(seq)

    def known(self, key: str) -> int | None:
        seq = self._seq.get(key)
        return None if seq is None else abs(seq)

    def add_one(self, device: int, name: str, version: str | None) -> None:
        self._apps.append((device, name, version))
        if len(self._apps) >= self._BATCH:
            self._flush()

    def add(self, device: int, apps: list[App]) -> None:
        self._apps.extend((device, a.name, a.version) for a in apps)
        if len(self._apps) >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO devices VALUES (?, ?, ?)", self._devices)
        self._db.executemany("INSERT INTO apps VALUES (?, ?, ?)", self._apps)
        self._devices.clear()
        self._apps.clear()

    def devices(self) -> Iterator[tuple[dict[str, Any], str, list[App]]]:
        self._flush()
        self._seq.clear()
        self._db.execute("CREATE INDEX apps_device ON apps (device)")  # rowid keeps the order met
        self._db.execute("COMMIT")
        apps = self._db.execute("SELECT device, name, version FROM apps ORDER BY device, rowid")
        pending = next(apps, None)
        for seq, at, data in self._db.execute("SELECT seq, at, data FROM devices ORDER BY seq"):
            mine: list[App] = []
            while pending is not None and pending[0] == seq:
                mine.append(App(name=pending[1], version=pending[2]))
                pending = next(apps, None)
            yield json.loads(data), at, mine
