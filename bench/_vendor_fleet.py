"""One synthetic fleet, written in each vendor's own format, for benchmarks and tests.

The people and apps are those of ``_fleet``: device ``i`` belongs to
``user{i}@example.com``, has ``apps`` apps drawn from ``_fleet.POOL`` and TikTok on
about ``tiktok`` of the devices. A device's facts depend only on the seed and its
index, so the same device written by two formats (a phone in Intune and in Exchange, a
laptop in Intune and in osquery) is the same device: same serial number, IMEI, UDID,
ActiveSync DeviceId, owner and apps.

Each writer streams: it writes one page (or line, or element) at a time, so a file of
any size is written without being held. The shapes follow the golden files of each
reader (tests/inventory/golden/<format>/), which follow the vendors' documentation:
numbers as strings where the vendor writes them so, empty strings and nulls, fields the
readers ignore.
"""

from __future__ import annotations

import base64
import hashlib
import plistlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import BinaryIO
from xml.sax.saxutils import escape

import _fleet
import msgspec

# When the fleet's devices last reported: 2020-07-10T15:00:00Z.
OBSERVED = 1_594_393_200
_PHONES = ("ios", "android")
_LAPTOPS = ("windows", "macos")
_TIKTOK_ID = {"ios": "com.zhiliaoapp.musically", "macos": "com.zhiliaoapp.musically"}
_OS_VERSION = {"ios": "13.5.1", "android": "10", "windows": "10.0.18363.900", "macos": "10.15.5"}
_MODEL = {"ios": "iPhone12,1", "android": "Pixel 3a", "windows": "Latitude 7400", "macos": "MacBookPro16,1"}
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class FleetApp:
    id: str | None  # None: the source knows the app by its name only
    name: str
    version: str


@dataclass(frozen=True)
class FleetDevice:
    index: int
    platform: str  # ios | android | windows | macos
    ownership: str  # corporate | personal
    owner: str
    serial: str
    imei: str | None  # phones
    udid: str | None  # Apple devices
    eas_id: str | None  # the ActiveSync DeviceId of a device that syncs mail
    apps: tuple[int, ...]  # indexes into POOL; -1 is TikTok
    tiktok: bool
    observed: int  # unix seconds

    @property
    def alias(self) -> str:
        return f"user{self.index}"

    def app_list(self) -> list[FleetApp]:
        return [app(self.platform, a) for a in self.apps]


def app(platform: str, index: int) -> FleetApp:
    """App ``index`` of the pool as ``platform`` reports it (-1: TikTok). Windows names
    its programs only."""
    if index < 0:
        ident = _TIKTOK_ID.get(platform, _fleet.TIKTOK[0])
        return FleetApp(None if platform == "windows" else ident, "TikTok", "16.5.0")
    ident = _fleet.POOL[index]
    name = ident.rsplit(".", 1)[1].title()
    return FleetApp(None if platform == "windows" else ident, name, f"{1 + index % 7}.{index % 13}.0")


def fleet(
    n: int,
    seed: int,
    *,
    apps: int = 150,
    tiktok: float = 0.10,
    platforms: tuple[str, ...] = _PHONES,
    mail: float = 1.0,
    start: int = 0,
) -> Iterator[FleetDevice]:
    """Devices ``start`` .. ``start + n - 1``, platforms taken in turn from ``platforms``;
    a ``mail`` fraction of them syncs mail (has an ActiveSync DeviceId)."""
    for i in range(start, start + n):
        yield device(i, seed, apps=apps, tiktok=tiktok, platform=platforms[i % len(platforms)], mail=mail)


def device(i: int, seed: int, *, apps: int, tiktok: float, platform: str, mail: float) -> FleetDevice:
    rng = random.Random(seed * 1_000_003 + i)
    chosen = rng.sample(range(len(_fleet.POOL)), apps)
    has_tiktok = rng.random() < tiktok
    if has_tiktok and apps:
        chosen[rng.randrange(apps)] = -1
    phone = platform in _PHONES
    apple = platform in ("ios", "macos")
    return FleetDevice(
        index=i,
        platform=platform,
        ownership="personal" if i % 3 else "corporate",
        owner=f"user{i}@example.com",
        serial=f"C{i:08d}{'JKLMNPQ'[i % 7]}{'XYZW'[i % 4]}5",
        imei=f"35{seed % 100:02d}{i:010d}{i % 10}" if phone else None,
        udid=f"00008030-{seed % 65536:04X}{i:012X}" if apple else None,
        eas_id=f"AS{seed % 256:02X}{i:022X}" if rng.random() < mail else None,
        apps=tuple(chosen),
        tiktok=has_tiktok and apps > 0,
        observed=OBSERVED - (i % 3600),
    )


def _iso(seconds: int, fraction: str = "") -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _guid(i: int, salt: int = 0) -> str:
    h = f"{((i + 1) * 2654435761 + salt) & 0xFFFFFFFF:08x}{i + 1:024x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _spaced_imei(imei: str | None) -> str:
    """An IMEI as Intune and Jamf show it: ``35 209900 176148 1``."""
    return f"{imei[:2]} {imei[2:8]} {imei[8:14]} {imei[14:]}" if imei else ""


def _pages(
    f: BinaryIO,
    devices: Iterator[FleetDevice],
    page_size: int,
    encode_device: Callable[[FleetDevice], bytes],
    wrap: Callable[[int, bytes, bool], bytes],
) -> int:
    """Pages of ``page_size`` encoded devices, one page a line (JSON Lines of pages, as
    a paging client appends each response); ``wrap(page_number, items, last)``."""
    count = page = 0
    batch: list[bytes] = []
    pending: bytes | None = None
    for d in devices:
        batch.append(encode_device(d))
        count += 1
        if len(batch) == page_size:
            if pending is not None:
                f.write(wrap(page - 1, pending, False) + b"\n")
            pending, batch, page = b",".join(batch), [], page + 1
    if batch:
        if pending is not None:
            f.write(wrap(page - 1, pending, False) + b"\n")
        pending, page = b",".join(batch), page + 1
    if pending is not None:
        f.write(wrap(page - 1, pending, True) + b"\n")
    return count


def _splice(head: Mapping[str, object], key: str, items: bytes) -> bytes:
    """``head`` encoded, with ``key`` holding the already encoded ``items`` last."""
    return _encode(head)[:-1] + (b"," if head else b"") + _encode(key) + b":[" + items + b"]}"


# -- Microsoft Graph managedDevice pages (Intune), detectedApps expanded ---------------------

_INTUNE_OS = {"ios": "iOS", "android": "Android", "windows": "Windows", "macos": "macOS"}
_INTUNE_ENROLLMENT = {
    ("ios", "corporate"): "appleBulkWithUser",
    ("ios", "personal"): "deviceEnrollmentManager",
    ("android", "corporate"): "androidEnterpriseFullyManaged",
    ("android", "personal"): "androidEnterpriseWorkProfile",
    ("windows", "corporate"): "windowsAzureADJoin",
    ("windows", "personal"): "windowsBulkUserless",
    ("macos", "corporate"): "appleBulkWithUser",
    ("macos", "personal"): "userEnrollment",
}


@cache
def _intune_app(platform: str, index: int) -> bytes:
    a = app(platform, index)
    digest = hashlib.sha256(f"{platform}/{a.name}/{a.version}".encode()).hexdigest()
    return _encode({"id": digest, "displayName": a.name, "version": a.version, "sizeInByte": 0, "deviceCount": 0})


def _intune_device(d: FleetDevice, mail_known: bool = True) -> bytes:
    eas = d.eas_id if mail_known else None
    head = {
        "@odata.type": "#microsoft.graph.managedDevice",
        "id": _guid(d.index),
        "userId": _guid(d.index, 7),
        "deviceName": f"{d.alias}'s {_MODEL[d.platform]}",
        "managedDeviceOwnerType": "company" if d.ownership == "corporate" else "personal",
        "enrolledDateTime": "2019-11-04T16:02:43.797191Z",
        "lastSyncDateTime": _iso(d.observed, ".1234567"),
        "operatingSystem": _INTUNE_OS[d.platform],
        "complianceState": "compliant",
        "jailBroken": "False",
        "managementAgent": "mdm",
        "osVersion": _OS_VERSION[d.platform],
        "easActivated": eas is not None,
        "easDeviceId": eas or "",
        "deviceEnrollmentType": _INTUNE_ENROLLMENT[d.platform, d.ownership],
        "emailAddress": d.owner,
        "azureADDeviceId": _guid(d.index, 11),
        "isSupervised": d.ownership == "corporate",
        "exchangeAccessState": "allowed" if eas else "none",
        "userPrincipalName": d.owner,
        "model": _MODEL[d.platform],
        "manufacturer": "Apple" if d.udid else "Google" if d.platform == "android" else "Dell Inc.",
        "imei": _spaced_imei(d.imei),
        "serialNumber": d.serial,
        "phoneNumber": "",
        "meid": "",
        "udid": d.udid,
        "totalStorageSpaceInBytes": 63966969856,
        "freeStorageSpaceInBytes": 41204121600,
        "detectedApps@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
        f"managedDevices('{_guid(d.index)}')/detectedApps",
    }
    return _splice(head, "detectedApps", b",".join(_intune_app(d.platform, a) for a in d.apps))


def write_intune(
    f: BinaryIO,
    devices: Iterator[FleetDevice],
    page_size: int = 100,
    mail_known: Callable[[FleetDevice], bool] | None = None,
) -> int:
    """``mail_known(d)`` False: Intune has no Exchange connector's word on ``d`` (its
    easActivated is false and its easDeviceId empty), as for mail Intune does not see."""

    def wrap(page: int, items: bytes, last: bool) -> bytes:
        head = _encode(
            {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices"}
        )[:-1]
        tail = (
            b""
            if last
            else b',"@odata.nextLink":"https://graph.microsoft.com/v1.0/deviceManagement/managedDevices'
            + f"?$expand=detectedApps&$skiptoken=page{page + 1}".encode()
            + b'"'
        )
        return head + b',"value":[' + items + b"]" + tail + b"}"

    def encode(d: FleetDevice) -> bytes:
        return _intune_device(d, mail_known is None or mail_known(d))

    return _pages(f, devices, page_size, encode, wrap)


# -- Jamf Pro: the Classic API's XML and the Jamf Pro API's JSON --------------------------------

_JAMF_LEVEL = {"corporate": "Institutional", "personal": "Personal"}


@cache
def _jamf_xml_app(index: int) -> bytes:
    a = app("ios", index)
    return (
        f"<application><application_name>{escape(a.name)}</application_name>"
        f"<application_version>{escape(a.version)}</application_version>"
        f"<application_short_version>{escape(a.version)}</application_short_version>"
        f"<identifier>{escape(a.id or '')}</identifier></application>"
    ).encode()


def write_jamf_xml(f: BinaryIO, devices: Iterator[FleetDevice], size: int) -> int:
    """A ``<mobile_devices>`` list of full records (``size``: how many follow)."""
    f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<mobile_devices><size>%d</size>\n' % size)
    count = 0
    for d in devices:
        epoch_ms = d.observed * 1000
        f.write(
            (
                "<mobile_device><general>"
                f"<id>{d.index + 1}</id><display_name>{d.alias} iPhone</display_name>"
                f"<device_name>{d.alias} iPhone</device_name><name>{d.alias} iPhone</name><asset_tag/>"
                f"<last_inventory_update_epoch>{epoch_ms}</last_inventory_update_epoch>"
                f"<last_inventory_update_utc>{_iso(d.observed)[:-1]}.000+0000</last_inventory_update_utc>"
                f"<os_type>iOS</os_type><os_version>{_OS_VERSION['ios']}</os_version><os_build>17F80</os_build>"
                f"<serial_number>{d.serial}</serial_number><udid>{d.udid}</udid><phone_number/>"
                f"<model>iPhone 11</model><model_identifier>{_MODEL['ios']}</model_identifier>"
                f"<device_ownership_level>{_JAMF_LEVEL[d.ownership]}</device_ownership_level>"
                f"<managed>true</managed><supervised>{str(d.ownership == 'corporate').lower()}</supervised>"
                f"<exchange_activesync_device_identifier>{d.eas_id or ''}</exchange_activesync_device_identifier>"
                "<battery_level>60</battery_level></general>"
                f"<location><username>{d.alias}</username><realname>User {d.index}</realname>"
                f"<email_address>{d.owner}</email_address><position/><department>Sales</department></location>"
                f"<applications><size>{len(d.apps)}</size>"
            ).encode()
            + b"".join(_jamf_xml_app(a) for a in d.apps)
            + (
                "</applications><network><home_carrier_network>Verizon</home_carrier_network>"
                f"<imei>{_spaced_imei(d.imei)}</imei><meid/>"
                "<data_roaming_enabled>false</data_roaming_enabled></network></mobile_device>\n"
            ).encode()
        )
        count += 1
    f.write(b"</mobile_devices>\n")
    return count


@cache
def _jamf_json_app(index: int) -> bytes:
    a = app("ios", index)
    return _encode(
        {
            "identifier": a.id,
            "name": a.name,
            "version": f"{index}",
            "shortVersion": a.version,
            "managementStatus": "Unmanaged",
            "validationStatus": True,
            "bundleSize": "285212672",
            "dynamicSize": "104857600",
        }
    )


def _jamf_json_device(d: FleetDevice) -> bytes:
    head = {
        "mobileDeviceId": str(d.index + 1),
        "deviceType": "iOS",
        "hardware": {
            "capacityMb": 121820,
            "serialNumber": d.serial,
            "wifiMacAddress": "00:00:00:00:00:00",
            "model": "iPhone 11",
            "modelIdentifier": _MODEL["ios"],
            "extensionAttributes": [],
        },
        "userAndLocation": {"username": d.alias, "realName": f"User {d.index}", "emailAddress": d.owner},
        "general": {
            "udid": d.udid,
            "displayName": f"{d.alias} iPhone",
            "siteId": "-1",
            "lastInventoryUpdateDate": _iso(d.observed),
            "osVersion": _OS_VERSION["ios"],
            "osRapidSecurityResponse": None,
            "managed": True,
            "supervised": d.ownership == "corporate",
            "deviceOwnershipType": _JAMF_LEVEL[d.ownership],
            "exchangeDeviceId": d.eas_id,
        },
        "network": {"imei": _spaced_imei(d.imei), "meid": None, "phoneNumber": ""},
        "certificates": [],
    }
    return _splice(head, "applications", b",".join(_jamf_json_app(a) for a in d.apps))


def write_jamf_json(f: BinaryIO, devices: Iterator[FleetDevice], total: int, page_size: int = 100) -> int:
    def wrap(_page: int, items: bytes, _last: bool) -> bytes:
        return b'{"totalCount":%d,"results":[' % total + items + b"]}"

    return _pages(f, devices, page_size, _jamf_json_device, wrap)


# -- Workspace ONE UEM: device search pages, each device with its apps response ---------------


@cache
def _w1_app(platform: str, index: int) -> bytes:
    a = app(platform, index)
    return _encode(
        {
            "ApplicationName": a.name,
            "Version": a.version,
            "BuildVersion": f"{a.version}.{index}",
            "Status": "Installed",
            "Size": "93061120",
            "ApplicationIdentifier": a.id,
            "Type": "Public",
            "IsManaged": False,
        }
    )


def _w1_device(d: FleetDevice) -> bytes:
    apple = d.platform == "ios"
    head = {
        "EasIds": {"EasId": [d.eas_id]} if d.eas_id else {},
        "Udid": d.udid if apple else f"{d.index:032x}",
        "SerialNumber": d.serial,
        "MacAddress": "A4670606153E",
        "Imei": _spaced_imei(d.imei),
        "EasId": d.eas_id or "",
        "DeviceFriendlyName": f"{d.alias} {_MODEL[d.platform]}",
        "LocationGroupId": {"Id": {"Value": 1111}, "Name": "Example Corp"},
        "UserId": {"Id": {"Value": 100000 + d.index}, "Name": f"User {d.index}"},
        "UserName": d.alias,
        "UserEmailAddress": d.owner,
        "Ownership": "C" if d.ownership == "corporate" else "E",
        "PlatformId": {"Id": {"Value": 2 if apple else 5}, "Name": "Apple" if apple else "Android"},
        "Platform": "Apple" if apple else "Android",
        "Model": "iPhone 11 (64 GB Black)" if apple else "Pixel 3a",
        "OperatingSystem": _OS_VERSION[d.platform],
        "LastSeen": _iso(d.observed, ".150")[:-1],
        "EnrollmentStatus": "Enrolled",
        "ComplianceStatus": "Compliant",
        "CompromisedStatus": False,
        "LastEnrolledOn": "2020-06-23T12:44:21.720",
        "LastComplianceCheckOn": "0001-01-01T00:00:00.000",
        "IsSupervised": d.ownership == "corporate",
        "BatteryLevel": "60%",
        "Id": {"Value": 5000 + d.index},
        "Uuid": _guid(d.index, 3),
    }
    apps = b",".join(_w1_app(d.platform, a) for a in d.apps)
    return (
        _encode(head)[:-1]
        + b',"DeviceApps":{"DeviceApps":['
        + apps
        + b'],"Page":0,"PageSize":500,"Total":%d}}' % len(d.apps)
    )


def write_workspace_one(f: BinaryIO, devices: Iterator[FleetDevice], total: int, page_size: int = 100) -> int:
    def wrap(page: int, items: bytes, _last: bool) -> bytes:
        return b'{"Devices":[' + items + b'],"Page":%d,"PageSize":%d,"Total":%d}' % (page, page_size, total)

    return _pages(f, devices, page_size, _w1_device, wrap)


# -- Google: Directory API mobiledevices and Android Management API devices ---------------------


@cache
def _google_app(index: int) -> bytes:
    a = app("android", index)
    return _encode(
        {
            "packageName": a.id,
            "displayName": a.name,
            "versionName": a.version,
            "versionCode": 1000 + index,
            "permission": ["android.permission.INTERNET"],
        }
    )


def _google_device(d: FleetDevice) -> bytes:
    head = {
        "kind": "admin#directory#mobiledevice",
        "etag": f'"etag{d.index}"',
        "resourceId": f"AFiQxQ8{d.index:012d}",
        "deviceId": f"{d.index:016x}",
        "name": [f"User {d.index}"],
        "email": [d.owner],
        "model": _MODEL["android"],
        "os": "Android 10",
        "type": "ANDROID",
        "status": "APPROVED",
        "hardwareId": d.imei,
        "firstSync": "2020-03-02T09:14:55.287Z",
        "lastSync": _iso(d.observed, ".104"),
        "userAgent": "Google Apps Device Policy 11.19.00",
        "serialNumber": d.serial,
        "imei": d.imei,
        "meid": "",
        "managedAccountIsOnOwnerProfile": d.ownership == "corporate",
        "securityPatchLevel": "1591056000000",
        "privilege": "Device administrator",
    }
    return _splice(head, "applications", b",".join(_google_app(a) for a in d.apps))


def write_google_directory(f: BinaryIO, devices: Iterator[FleetDevice], page_size: int = 100) -> int:
    def wrap(page: int, items: bytes, last: bool) -> bytes:
        tail = b"" if last else b',"nextPageToken":"token%d"' % (page + 1)
        return (
            b'{"kind":"admin#directory#mobiledevices","etag":"\\"e\\"","mobiledevices":[' + items + b"]" + tail + b"}"
        )

    return _pages(f, devices, page_size, _google_device, wrap)


@cache
def _amapi_app(index: int) -> bytes:
    a = app("android", index)
    sha1 = hashlib.sha1(f"signer{index // 10}".encode()).hexdigest()
    return _encode(
        {
            "packageName": a.id,
            "versionName": a.version,
            "versionCode": 1000 + index,
            "events": [{"eventType": "INSTALLED", "createTime": "2020-03-02T09:20:00Z"}],
            "displayName": a.name,
            "signingKeyCertFingerprints": [sha1],
            "installerPackageName": "com.android.vending",
            "applicationSource": "INSTALLED_FROM_PLAY_STORE",
            "state": "INSTALLED",
            "userFacingType": "USER_FACING",
        }
    )


def _amapi_device(d: FleetDevice) -> bytes:
    corporate = d.ownership == "corporate"
    head = {
        "name": f"enterprises/LC02my9vtl/devices/{d.index:016x}",
        "userName": f"enterprises/LC02my9vtl/users/{100000000 + d.index}",
        "managementMode": "DEVICE_OWNER" if corporate else "PROFILE_OWNER",
        "state": "ACTIVE",
        "appliedState": "ACTIVE",
        "policyCompliant": True,
        "enrollmentTime": "2020-03-02T09:12:31.482Z",
        "lastStatusReportTime": _iso(d.observed, ".350126"),
        "lastPolicySyncTime": _iso(d.observed, ".001"),
        "appliedPolicyVersion": "17",
        "apiLevel": 29,
        "softwareInfo": {"androidVersion": "10", "securityPatchLevel": "2020-06-05"},
        "hardwareInfo": {
            "brand": "google",
            "manufacturer": "Google",
            "serialNumber": d.serial,
            "model": _MODEL["android"],
            "enterpriseSpecificId": f"ESID{d.index:012d}",
        },
        "networkInfo": {"imei": d.imei, "meid": "", "networkOperatorName": "T-Mobile"},
        "ownership": "COMPANY_OWNED" if corporate else "PERSONALLY_OWNED",
    }
    return _splice(head, "applicationReports", b",".join(_amapi_app(a) for a in d.apps))


def write_android_management(f: BinaryIO, devices: Iterator[FleetDevice], page_size: int = 100) -> int:
    def wrap(page: int, items: bytes, last: bool) -> bytes:
        tail = b"" if last else b',"nextPageToken":"token%d"' % (page + 1)
        return b'{"devices":[' + items + b"]" + tail + b"}"

    return _pages(f, devices, page_size, _amapi_device, wrap)


# -- Apple MDM: MicroMDM webhook events, one a line, results as base64 XML plists --------------


@cache
def _installed_app(index: int) -> dict[str, object]:
    a = app("ios", index)
    return {
        "BundleSize": 1036288,
        "DynamicSize": 8192,
        "Identifier": a.id,
        "Installing": False,
        "IsValidated": True,
        "Name": a.name,
        "ShortVersion": a.version,
        "Version": str(1000 + index),
    }


def _acknowledge(d: FleetDevice, command: str, payload: dict[str, object], at: int) -> bytes:
    plist = plistlib.dumps(
        {"CommandUUID": command, **payload, "Status": "Acknowledged", "UDID": d.udid}, fmt=plistlib.FMT_XML
    )
    return _encode(
        {
            "topic": "mdm.Connect",
            "event_id": f"{d.index:08d}-{command}",
            "created_at": _iso(at, ".132723950"),
            "acknowledge_event": {
                "udid": d.udid,
                "status": "Acknowledged",
                "command_uuid": command,
                "url_params": None,
                "raw_payload": base64.b64encode(plist).decode(),
            },
        }
    )


def write_apple_mdm(f: BinaryIO, devices: Iterator[FleetDevice]) -> int:
    """For each device its DeviceInformation answer, then its InstalledApplicationList."""
    count = 0
    for d in devices:
        info = {
            "BuildVersion": "17F80",
            "DeviceName": f"{d.alias} iPhone",
            "EASDeviceIdentifier": d.eas_id or "",
            "IMEI": _spaced_imei(d.imei),
            "IsSupervised": d.ownership == "corporate",
            "Model": "MWLT2LL/A",
            "ModelName": "iPhone",
            "OSVersion": _OS_VERSION["ios"],
            "ProductName": _MODEL["ios"],
            "SerialNumber": d.serial,
            "UDID": d.udid,
        }
        apps = [_installed_app(a) for a in d.apps]
        f.write(_acknowledge(d, f"{d.index:08d}_DeviceInformation", {"QueryResponses": info}, d.observed - 60))
        f.write(b"\n")
        f.write(
            _acknowledge(d, f"{d.index:08d}_InstalledApplicationList", {"InstalledApplicationList": apps}, d.observed)
        )
        f.write(b"\n")
        count += 1
    return count


# -- osquery: snapshot result lines of apps (macOS) and programs (Windows) ----------------------


@cache
def _osquery_row(platform: str, index: int) -> bytes:
    a = app(platform, index)
    if platform == "windows":
        return _encode(
            {
                "name": a.name,
                "version": a.version,
                "install_location": f"C:\\Program Files\\{a.name}\\",
                "install_source": "",
                "language": "",
                "publisher": "Example",
                "uninstall_string": "",
                "install_date": "20200501",
                "identifying_number": "{%08X-40C1-2702-1900-000001000000}" % (index + 1),
            }
        )
    return _encode(
        {
            "name": f"{a.name}.app",
            "display_name": a.name,
            "bundle_name": a.name,
            "bundle_identifier": a.id,
            "bundle_short_version": a.version,
            "bundle_version": str(1000 + index),
            "path": f"/Applications/{a.name}.app",
            "last_opened_time": "-1.0",
        }
    )


def write_osquery(f: BinaryIO, devices: Iterator[FleetDevice]) -> int:
    """One snapshot line per host: ``apps`` on a Mac, ``programs`` on Windows."""
    count = 0
    for d in devices:
        query = "pack_inventory_programs" if d.platform == "windows" else "pack_inventory_apps"
        calendar = datetime.fromtimestamp(d.observed, UTC).strftime("%a %b %d %H:%M:%S %Y UTC")
        tail = {
            "name": query,
            "hostIdentifier": f"host-{d.index:08d}",
            "calendarTime": calendar,
            "unixTime": str(d.observed),
            "epoch": "0",
            "counter": "0",
            "numerics": False,
            "decorations": {
                "host_uuid": d.udid or _guid(d.index, 5).upper(),
                "hostname": f"host-{d.index:08d}",
                "hardware_serial": d.serial,
                "username": d.alias,
            },
        }
        rows = b",".join(_osquery_row(d.platform, a) for a in d.apps)
        f.write(b'{"action":"snapshot","snapshot":[' + rows + b"]," + _encode(tail)[1:] + b"\n")
        count += 1
    return count


# -- Exchange: Get-MobileDevice | Export-Csv (Windows PowerShell 5.1, with #TYPE) ---------------

EXCHANGE_COLUMNS = (
    "RunspaceId",
    "FriendlyName",
    "DeviceId",
    "DeviceImei",
    "DeviceMobileOperator",
    "DeviceOS",
    "DeviceOSLanguage",
    "DeviceTelephoneNumber",
    "DeviceType",
    "DeviceUserAgent",
    "DeviceModel",
    "FirstSyncTime",
    "UserDisplayName",
    "DeviceAccessState",
    "DeviceAccessStateReason",
    "ClientVersion",
    "ClientType",
    "IsManaged",
    "IsCompliant",
    "Name",
    "Identity",
    "Guid",
    "WhenChanged",
)
_EAS_TYPE = {"ios": "iPhone", "android": "Android", "windows": "WindowsMail", "macos": "MacMail"}
_EAS_OS = {"ios": "iOS 13.5.1 17F80", "android": "Android 10.0.0", "windows": "Windows 10.0.18363", "macos": "macOS"}


def write_exchange(f: BinaryIO, devices: Iterator[FleetDevice]) -> int:
    """Every device with an ActiveSync DeviceId, as one mail partnership; the mailbox is
    named by its alias (``user{i}``) only, as Get-MobileDevice names it."""
    f.write(b"#TYPE Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration.MobileDevice\r\n")
    f.write(",".join(f'"{c}"' for c in EXCHANGE_COLUMNS).encode() + b"\r\n")
    count = 0
    for d in devices:
        if d.eas_id is None:
            continue
        kind = _EAS_TYPE[d.platform]
        synced = datetime.fromtimestamp(d.observed - 86400 * 30, UTC)
        values = (
            "5c8f3a52-1f0e-4b8e-9a3c-2d7c5e8b9f01",
            f"{d.alias}'s {kind}",
            d.eas_id,
            d.imei or "",
            "",
            _EAS_OS[d.platform],
            "en-GB",
            "",
            kind,
            f"Apple-{_MODEL['ios']}/1705.80" if d.platform == "ios" else "Android-SAMSUNG/100.1",
            _MODEL[d.platform].replace(",", "C"),
            f"{synced.month}/{synced.day}/{synced.year} {synced:%I:%M:%S %p}".replace(" 0", " "),
            f"EURPR01A003.prod.outlook.com/Microsoft Exchange Hosted Organizations/example.onmicrosoft.com/{d.alias}",
            "Allowed",
            "Global",
            "16.1",
            "EAS",
            "False",
            "False",
            f"{kind}\u00a7{d.eas_id}",
            f"{d.alias}\\ExchangeActiveSyncDevices\\{kind}\u00a7{d.eas_id}",
            _guid(d.index, 13),
            "7/10/2020 3:00:00 PM",
        )
        f.write(",".join(f'"{v}"' for v in values).encode() + b"\r\n")
        count += 1
    return count


# -- appban's own format: one check-in per physical device, carrying what every source saw ----


def appban_checkin(
    d: FleetDevice,
    *,
    apps: list[FleetApp] | None = None,
    source: str = "agent",
    scope: str = "full",
    mail: bool | None = None,
) -> bytes:
    """``d`` as one appban check-in, with ``apps`` (default: its own app list)."""
    listed = d.app_list() if apps is None else apps
    return _encode(
        {
            "source": source,
            "device": {
                "id": f"device-{d.index:08d}",
                "platform": d.platform,
                "ownership": d.ownership,
                "owner": d.owner,
                "eas_device_ids": [d.eas_id] if d.eas_id else [],
                "inventory_scope": scope,
                **({"mail_access": mail} if mail is not None else {}),
            },
            "observed_at": _iso(d.observed),
            "apps": [{"id": a.id, "name": a.name, "version": a.version} for a in listed],
        }
    )
