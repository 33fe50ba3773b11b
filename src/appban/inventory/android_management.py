"""The ``android-management`` format: Android Management API ``Device`` resources.

A file holds one Device, ``enterprises.devices.list`` pages (``{"devices": [...],
"nextPageToken"}``, one or several), a plain array of Devices, or JSON Lines of them.
Field by field, from
https://developers.google.com/android/management/reference/rest/v1/enterprises.devices:

- ``name`` (``enterprises/{enterpriseId}/devices/{deviceId}``) is the source's device id.
- Identifiers: ``hardwareInfo.serialNumber`` (not when it equals
  ``hardwareInfo.enterpriseSpecificId``, as it does on personally-owned devices from
  Android 12), ``networkInfo.imei`` and ``.meid``, and ``hardwareInfo.enterpriseSpecificId``
  (the Android enterprise-specific id).
- Owner: a Device names its user by an enterprise user id, never an e-mail (the API asks
  that ``user.accountIdentifier`` hold no personal data), so the owner is unknown unless
  ``user.accountIdentifier`` is an e-mail address; ``--owners`` maps the rest.
- ``ownership``: ``COMPANY_OWNED`` corporate, ``PERSONALLY_OWNED`` personal.
- Scope: ``applicationReports`` are sent only when the policy enables application
  reports; without them the record lists no apps (scope ``none``). With them, a
  ``DEVICE_OWNER`` (fully managed) device reports every app (``full``); a
  ``PROFILE_OWNER`` (work profile) reports only the work profile's apps (``managed``), and
  so does a record that names no management mode.
- Apps: ``state: REMOVED`` is not installed. ``signingKeyCertFingerprints`` are documented
  as SHA-1 digests in hexadecimal; SHA-256 forms (hexadecimal, or base64 as elsewhere in
  the API) are kept as the app's ``signing_sha256``, SHA-1 ones are checked and dropped:
  the catalog holds SHA-256 certificate digests only.
- ``lastStatusReportTime`` (when the apps were reported) is the observation time, else
  ``lastPolicySyncTime``, else the command's clock. A device whose ``state`` or
  ``appliedState`` is ``DELETED`` (a final status report) is skipped, and so is an empty
  object (an empty list response).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any, Literal

from appban.errors import BadInput
from appban.inventory._vendor import child, json_records, listed, mapping, text, vendor_time
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, build
from appban.inventory.google_directory import checked, plain_apps
from appban.text import EMAIL

_OWNERSHIP = {"COMPANY_OWNED": "corporate", "PERSONALLY_OWNED": "personal"}
_HEX = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")


class AndroidManagementFormat:
    name = "android-management"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        source = options.source or self.name
        try:
            pages = json_records(
                path, list_keys=("devices",), page_keys=("nextPageToken",), max_bytes=options.max_bytes
            )
            for at, record in pages:
                checkin = _device(record, at, source, options)
                if checkin is not None:
                    yield None, checkin
        except BadInput as exc:
            raise exc.at(file=path) from None


def _device(record: Any, at: str, source: str, options: ReadOptions) -> Checkin | None:
    d = mapping(record, at)
    if not d or "DELETED" in (text(d, "state", at), text(d, "appliedState", at)):
        return None
    name = text(d, "name", at, required=True)
    assert name is not None
    hw_at, net_at = f"{at}.hardwareInfo", f"{at}.networkInfo"
    hw, net = child(d, "hardwareInfo", at), child(d, "networkInfo", at)
    specific = text(hw, "enterpriseSpecificId", hw_at)
    serial = text(hw, "serialNumber", hw_at)
    identifiers = [
        (kind, value)
        for kind, value in (
            ("serial", serial if serial != specific else None),
            ("imei", text(net, "imei", net_at)),
            ("meid", text(net, "meid", net_at)),
            ("android_id", specific),
        )
        if value is not None
    ]
    reports = listed(d, "applicationReports", at)
    apps = plain_apps(reports, skip_removed=True, signing=_plain_signing)
    if apps is None:
        apps = [app for i, r in enumerate(reports) if (app := _app(r, f"{at}.applicationReports[{i}]")) is not None]
    mode = text(d, "managementMode", at)
    scope = "none" if not reports else "full" if mode == "DEVICE_OWNER" else "managed"
    user_at = f"{at}.user"
    account = text(child(d, "user", at), "accountIdentifier", user_at)
    return build(
        source=source,
        device_id=name,
        platform="android",
        owner=account if account is not None and EMAIL.match(account.strip()) else None,
        observed_at=_observed(d, at, options),
        apps=apps,
        ownership=_OWNERSHIP.get(text(d, "ownership", at) or "", "unknown"),
        model=text(hw, "model", hw_at),
        os_version=text(child(d, "softwareInfo", at), "androidVersion", f"{at}.softwareInfo"),
        inventory_scope=scope,
        identifiers=identifiers,
        where={
            "device.id": f"{at}.name",
            "device.owner": f"{user_at}.accountIdentifier",
            "device.model": f"{hw_at}.model",
            "device.os_version": f"{at}.softwareInfo.androidVersion",
            "device.serial": f"{hw_at}.serialNumber",
            "device.imei": f"{net_at}.imei",
            "device.meid": f"{net_at}.meid",
            "device.android_id": f"{hw_at}.enterpriseSpecificId",
            "apps": f"{at}.applicationReports",
        },
    )


def _app(record: Any, at: str) -> App | None:
    r = mapping(record, at)
    if text(r, "state", at) == "REMOVED":
        return None
    package = checked(r, "packageName", at, identifier=True)
    name = checked(r, "displayName", at)
    if package is None and name is None:
        raise BadInput("an app needs a packageName or a displayName", field=at)
    fingerprints = listed(r, "signingKeyCertFingerprints", at)
    return App(
        id=package,
        name=name,
        version=checked(r, "versionName", at),
        signing_sha256=signing_sha256(fingerprints, f"{at}.signingKeyCertFingerprints"),
    )


def signing_sha256(fingerprints: list[Any], at: str) -> str | None:
    """The first SHA-256 certificate digest among ``fingerprints``, as 64 lower-case hex
    digits. Each may be hexadecimal (colons allowed) or base64 (standard or URL-safe);
    SHA-1 digests are valid but not kept. Anything else is refused."""
    found = None
    for i, value in enumerate(fingerprints):
        field = f"{at}[{i}]"
        if not isinstance(value, str):
            raise BadInput("expected a string", field=field)
        digest = _digest(value)
        if digest is None:
            raise BadInput("not a SHA-1 or SHA-256 certificate fingerprint (hexadecimal or base64)", field=field)
        if len(digest) == 32 and found is None:
            found = digest.hex()
    return found


def _plain_signing(record: dict[str, Any]) -> str | None | Literal[False]:
    """``signing_sha256`` of a report's fingerprints when all are strings that are
    fingerprints (False otherwise: the exact reader names the first that is not).
    Apps share signers, so each fingerprint's digest is worked out once."""
    fingerprints = record.get("signingKeyCertFingerprints")
    if fingerprints is None:
        return None
    if type(fingerprints) is not list:
        return False
    found = None
    for value in fingerprints:
        if type(value) is not str:
            return False
        digest = _KNOWN.get(value)
        if digest is None:
            raw = _digest(value)
            if raw is None:
                return False
            if len(_KNOWN) >= _KNOWN_MAX:
                _KNOWN.clear()
            digest = _KNOWN[value] = raw.hex() if len(raw) == 32 else ""
        if digest and found is None:
            found = digest
    return found


# Fingerprints met, with their SHA-256 digest in hexadecimal ("" for a SHA-1 one).
_KNOWN: dict[str, str] = {}
_KNOWN_MAX = 100_000


def _digest(value: str) -> bytes | None:
    value = value.strip()
    plain = value.replace(":", "")
    if _HEX.fullmatch(plain):
        return bytes.fromhex(plain)
    if len(value) > 64:
        return None
    standard = value.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) in (20, 32) else None


def _observed(d: dict[str, Any], at: str, options: ReadOptions) -> int:
    for key in ("lastStatusReportTime", "lastPolicySyncTime"):
        value = text(d, key, at)
        if value is not None:
            return vendor_time(value, f"{at}.{key}", options.timezone)
    return options.now
