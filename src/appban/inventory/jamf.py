"""The ``jamf`` inventory format: Jamf Pro's mobile devices, from either of its APIs.

- The Classic API's XML (``GET /JSSResource/mobiledevices/id/{id}``): one
  ``<mobile_device>``, or a ``<mobile_devices>`` element holding many full records.
  Read with defusedxml's streaming parser (a DTD, entities or external references
  are refused); each record is dropped once read, so a file of any size is read in
  memory bounded by one record.
- The Jamf Pro API's JSON inventory (``GET /api/v2/mobile-devices/detail``):
  ``{"totalCount", "results": [...]}`` pages, concatenated pages, a plain array or
  JSON Lines of ``results`` records, streamed by ``_vendor.json_records``.

Both name the same device by the same Jamf id, so the two exports of one server are
one source's records. What Jamf can see decides the scope: on a personally owned
device (a personal device profile, User Enrollment) Jamf collects managed apps only.
A record without an applications section lists no apps at all (scope ``none``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from xml.etree.ElementTree import Element, ParseError

import defusedxml
from defusedxml.ElementTree import iterparse

from appban.clock import Micros
from appban.errors import BadInput
from appban.inventory import _vendor
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, build

# deviceOwnershipType (Jamf Pro API) and device_ownership_level (Classic API), without
# spaces and case. Institutional and account-driven Device Enrollment devices report
# every app; the personal kinds report only the apps the organisation manages.
_CORPORATE = frozenset({"institutional", "accountdrivendeviceenrollment"})
_PERSONAL = frozenset({"personal", "personaldeviceprofile", "userenrollment", "accountdrivenuserenrollment"})
# What is not a phone or a tablet: no mail, no policy applies (Apple TV, Apple Watch, Vision Pro).
_NOT_MOBILE = re.compile(r"appletv|apple tv|tvos|watch|realitydevice|vision|visionos", re.IGNORECASE)
# How far the parser may read past the start of the record it is in, beyond the
# largest record accepted: it reads ahead in blocks of 16 KiB.
_READ_AHEAD = 64 * 1024


class JamfFormat:
    name = "jamf"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        source = options.source or self.name
        with _vendor.open_binary(path) as f:
            xml = f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"<"
        records = _xml_devices(path, options.max_bytes) if xml else _json_devices(path, options)
        for device in records:
            if device is None:
                continue
            try:
                yield None, device.checkin(source, options.now)
            except BadInput as exc:
                raise exc.at(file=path) from None


@dataclass
class _Device:
    """What appban reads of one Jamf record, and where in the file each value was."""

    at: str
    device_id: str
    platform: str
    owner: str | None
    observed_at: Micros | None  # None: Jamf holds no inventory for the device yet
    level: str | None
    supervised: bool | None
    model: str | None
    os_version: str | None
    eas_id: str | None
    apps: list[App] | None  # None: the record has no applications section
    identifiers: list[tuple[str, str]]
    where: dict[str, str] = field(default_factory=dict)

    def checkin(self, source: str, now: Micros) -> Checkin:
        ownership, scope = _ownership_and_scope(self.level, self.supervised)
        apps = self.apps
        if apps is None or self.observed_at is None:
            scope, apps = "none", []
        return build(
            source=source,
            device_id=self.device_id,
            platform=self.platform,
            owner=self.owner,
            observed_at=now if self.observed_at is None else self.observed_at,
            apps=apps,
            ownership=ownership,
            model=self.model,
            os_version=self.os_version,
            inventory_scope=scope,
            # The device tells Jamf its ActiveSync DeviceId whether or not it syncs mail:
            # a link to the mail server's record, not a sign that it reads mail.
            identifiers=[*self.identifiers, ("eas", self.eas_id)] if self.eas_id else self.identifiers,
            where=self.where,
        )


def _ownership_and_scope(level: str | None, supervised: bool | None) -> tuple[str, str]:
    """Ownership and what Jamf can see of the device's apps.

    Apple's MDM lets a server list every app on a device it enrolled as the
    organisation's, and only the apps it manages on a personal one (User Enrollment,
    a personal device profile). A kind Jamf does not document yet counts as personal
    unless the device is supervised, which only an organisation's device can be.
    """
    kind = (level or "").replace(" ", "").lower()
    if kind in _CORPORATE:
        return "corporate", "full"
    if kind in _PERSONAL:
        return "personal", "managed"
    if supervised:
        return "corporate", "full"
    return "unknown", "managed"


def _platform(kind: str | None, model_identifier: str | None, model: str | None) -> str | None:
    """ios or ipados, by the model (iPad...), else by the OS Jamf names; None for what is
    not a phone or a tablet."""
    names = " ".join(v for v in (kind, model_identifier, model) if v)
    if _NOT_MOBILE.search(names):
        return None
    hardware = f"{model_identifier or ''} {model or ''}".lower()
    if "ipad" in hardware or (kind or "").lower() == "ipados":
        return "ipados"
    return "ios"


def _digits(value: str | None) -> str | None:
    """An IMEI or MEID as Jamf writes it (``35 396408 016305 0``), without the spaces."""
    return value.replace(" ", "") if value else None


def _identifiers(serial: str | None, udid: str | None, imei: str | None, meid: str | None) -> list[tuple[str, str]]:
    pairs = (("serial", serial), ("udid", udid), ("imei", _digits(imei)), ("meid", _digits(meid)))
    return [(kind, value) for kind, value in pairs if value]


# -- the Classic API's XML ---------------------------------------------------------------------


def _xml_devices(path: str, max_bytes: int) -> Iterator[_Device | None]:
    f = _vendor.open_binary(path)
    try:
        for at, element in _xml_records(path, f, max_bytes):
            try:
                yield _classic_device(at, element)
            except BadInput as exc:
                raise exc.at(file=path) from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        raise BadInput(f"not well-formed XML (column {column})", file=path, line=line) from None
    except defusedxml.DefusedXmlException:
        raise BadInput("XML with a DTD, entities or external references is refused", file=path) from None
    except LookupError:  # the XML declaration names an encoding Python does not know
        raise BadInput("XML in an unknown character encoding", file=path, line=1) from None
    finally:
        f.close()


def _xml_records(path: str, f: BinaryIO, max_bytes: int) -> Iterator[tuple[str, Element]]:
    """Each ``<mobile_device>`` record, with its path for errors; read elements are
    dropped at once, and no record may take more than ``max_bytes``."""
    source = _Bounded(path, f, max_bytes)
    depth = 0
    root: Element | None = None
    record_depth = 0
    index = 0
    for event, element in iterparse(source, events=("start", "end"), forbid_dtd=True):
        if event == "start":
            depth += 1
            if depth == 1:
                root = element
                if element.tag not in ("mobile_device", "mobile_devices"):
                    shown = str(element.tag)[:40]
                    raise BadInput(f"expected <mobile_device> or <mobile_devices>, got <{shown}>", file=path, line=1)
                record_depth = 1 if element.tag == "mobile_device" else 2
            continue
        if depth == record_depth and element.tag == "mobile_device":
            yield ("mobile_device" if record_depth == 1 else f"mobile_device[{index}]"), element
            index += 1
        if depth == 2 and record_depth == 2 and root is not None:  # a child of the list, read: drop it
            root.clear()
            source.mark(index)
        depth -= 1


class _Bounded:
    """The file as the XML parser reads it, refusing to read more than a record may
    take since the last record was dropped: text without tags is bounded too."""

    def __init__(self, path: str, f: BinaryIO, max_bytes: int) -> None:
        self.path = path
        self.f = f
        self.limit = max_bytes + _READ_AHEAD
        self.read_bytes = 0
        self.marked = 0
        self.index = 0

    def mark(self, index: int) -> None:
        self.marked = self.read_bytes
        self.index = index

    def read(self, size: int = -1) -> bytes:
        if self.read_bytes - self.marked > self.limit:
            raise BadInput(
                f"a record larger than {self.limit - _READ_AHEAD:,} bytes",
                file=self.path,
                field=f"mobile_device[{self.index}]",
            )
        data = self.f.read(size)
        self.read_bytes += len(data)
        return data


def _classic_device(at: str, record: Element) -> _Device | None:
    general = record.find("general")
    if general is None:
        raise BadInput(
            "no <general> section: the list of /JSSResource/mobiledevices holds no inventory; export each device by id",
            field=at,
        )
    g = f"{at}.general"
    identifier = _xml_text(general, "model_identifier")
    platform = _platform(_xml_text(general, "os_type"), identifier, _xml_text(general, "model"))
    if platform is None:
        return None
    device_id = _xml_text(general, "id")
    if device_id is None:
        raise BadInput("missing", field=f"{g}.id")
    email = _xml_text(record, "location/email_address")
    network = record.find("network")
    return _Device(
        at=at,
        device_id=device_id,
        platform=platform,
        owner=email,
        observed_at=_classic_time(general, g),
        level=_xml_text(general, "device_ownership_level"),
        supervised=_xml_bool(general, "supervised", g),
        model=identifier or _xml_text(general, "model"),
        os_version=_xml_text(general, "os_version"),
        eas_id=_xml_text(general, "exchange_activesync_device_identifier"),
        apps=_classic_apps(record.find("applications"), f"{at}.applications.application"),
        identifiers=_identifiers(
            _xml_text(general, "serial_number"),
            _xml_text(general, "udid"),
            None if network is None else _xml_text(network, "imei"),
            None if network is None else _xml_text(network, "meid"),
        ),
        where={
            "device.id": f"{g}.id",
            "device.owner": f"{at}.location.email_address",
            "device.model": f"{g}.model_identifier",
            "device.os_version": f"{g}.os_version",
            "device.eas": f"{g}.exchange_activesync_device_identifier",
            "device.serial": f"{g}.serial_number",
            "device.udid": f"{g}.udid",
            "device.imei": f"{at}.network.imei",
            "device.meid": f"{at}.network.meid",
            "apps": f"{at}.applications.application",
        },
    )


def _classic_time(general: Element, at: str) -> Micros | None:
    """The last inventory update: the epoch in milliseconds, else the UTC text
    (``2017-07-07T18:37:04.555-0500``). Jamf writes 0 and nothing for a device that
    never sent an inventory."""
    epoch = _xml_text(general, "last_inventory_update_epoch")
    if epoch is not None:
        if not re.fullmatch(r"\d{1,15}", epoch):
            raise BadInput(
                f"expected milliseconds since 1970, got {epoch[:40]!r}", field=f"{at}.last_inventory_update_epoch"
            )
        if int(epoch) > 0:
            return int(epoch) * 1000
    utc = _xml_text(general, "last_inventory_update_utc")
    if utc is None:
        return None
    return _vendor.vendor_time(utc, f"{at}.last_inventory_update_utc")


def _classic_apps(applications: Element | None, at: str) -> list[App] | None:
    if applications is None:
        return None
    apps = []
    for app in applications.iterfind("application"):
        version = _xml_text(app, "application_short_version") or _xml_text(app, "application_version")
        apps.append(App(id=_xml_text(app, "identifier"), name=_xml_text(app, "application_name"), version=version))
    return apps


def _xml_text(element: Element, path: str) -> str | None:
    value = element.findtext(path)
    if value is None:
        return None
    return value.strip() or None


def _xml_bool(element: Element, key: str, at: str) -> bool | None:
    value = _xml_text(element, key)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise BadInput(f"expected true or false, got {value[:40]!r}", field=f"{at}.{key}")
    return value.lower() == "true"


# -- the Jamf Pro API's JSON -------------------------------------------------------------------


def _json_devices(path: str, options: ReadOptions) -> Iterator[_Device | None]:
    for at, record in _vendor.json_records(
        path, list_keys=("results",), page_keys=("totalCount",), max_bytes=options.max_bytes
    ):
        try:
            yield _pro_device(at, _vendor.mapping(record, at), options)
        except BadInput as exc:
            raise exc.at(file=path) from None


def _pro_device(at: str, record: dict[str, Any], options: ReadOptions) -> _Device | None:
    general = _vendor.child(record, "general", at)
    hardware = _vendor.child(record, "hardware", at)
    user = _vendor.child(record, "userAndLocation", at)
    network = _vendor.child(record, "network", at)
    g, h = f"{at}.general", f"{at}.hardware"
    kind = _vendor.text(record, "deviceType", at)
    platform = _platform(kind, _vendor.text(hardware, "modelIdentifier", h), _vendor.text(hardware, "model", h))
    if platform is None:
        return None
    device_id = _vendor.text(record, "mobileDeviceId", at, required=True)
    assert device_id is not None  # required
    updated = _vendor.text(general, "lastInventoryUpdateDate", g)
    observed = (
        None if updated is None else _vendor.vendor_time(updated, f"{g}.lastInventoryUpdateDate", options.timezone)
    )
    return _Device(
        at=at,
        device_id=device_id,
        platform=platform,
        owner=_vendor.text(user, "emailAddress", f"{at}.userAndLocation"),
        observed_at=observed,
        level=_vendor.text(general, "deviceOwnershipType", g),
        supervised=_vendor.boolean(general, "supervised", g),
        model=_vendor.text(hardware, "modelIdentifier", h) or _vendor.text(hardware, "model", h),
        os_version=_vendor.text(general, "osVersion", g),
        eas_id=_vendor.text(general, "exchangeDeviceId", g),
        apps=_pro_apps(record, at),
        identifiers=_identifiers(
            _vendor.text(hardware, "serialNumber", h),
            _vendor.text(general, "udid", g),
            _vendor.text(network, "imei", f"{at}.network"),
            _vendor.text(network, "meid", f"{at}.network"),
        ),
        where={
            "device.id": f"{at}.mobileDeviceId",
            "device.owner": f"{at}.userAndLocation.emailAddress",
            "device.model": f"{h}.modelIdentifier",
            "device.os_version": f"{g}.osVersion",
            "device.eas": f"{g}.exchangeDeviceId",
            "device.serial": f"{h}.serialNumber",
            "device.udid": f"{g}.udid",
            "device.imei": f"{at}.network.imei",
            "device.meid": f"{at}.network.meid",
            "apps": f"{at}.applications",
        },
    )


def _pro_apps(record: dict[str, Any], at: str) -> list[App] | None:
    """The record's apps. An app whose identifier, name and shortVersion are strings (as
    Jamf writes them) is read at once; any other is read by ``_pro_app``, which says what
    is wrong with it."""
    if record.get("applications") is None:
        return None
    apps: list[App] = []
    append = apps.append
    for i, item in enumerate(_vendor.listed(record, "applications", at)):
        if type(item) is dict:
            ident, name, version = item.get("identifier"), item.get("name"), item.get("shortVersion")
            if type(ident) is str and type(name) is str and type(version) is str and version:
                append(App(ident or None, name or None, version))
                continue
        append(_pro_app(item, f"{at}.applications[{i}]"))
    return apps


def _pro_app(item: Any, at: str) -> App:
    app = _vendor.mapping(item, at)
    version = _vendor.text(app, "shortVersion", at) or _vendor.text(app, "version", at)
    return App(id=_vendor.text(app, "identifier", at), name=_vendor.text(app, "name", at), version=version)
