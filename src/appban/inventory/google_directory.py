"""The ``google-directory`` format: Admin SDK Directory API ``mobiledevices.list`` responses.

A file holds pages ``{"kind": "admin#directory#mobiledevices", "etag", "mobiledevices":
[...], "nextPageToken"}`` (one, several concatenated or as JSON Lines), a plain array of
MobileDevice resources, or MobileDevice resources one per document. Field by field, from
https://developers.google.com/admin-sdk/directory/reference/rest/v1/mobiledevices:

- ``resourceId`` ("the unique ID the API service uses to identify the mobile device") is
  the source's device id; ``deviceId`` is the ActiveSync DeviceId for ``GOOGLE_SYNC``
  devices (Google Sync is Google's ActiveSync server; the API calls it the device's
  "serial number") and an app-generated id otherwise, which nothing else knows.
- ``email[]``: the first address is the owner. ``name[]`` is not read.
- A listed device syncs the company's Workspace account: it reads mail while its
  ``status`` is ``APPROVED`` (or not stated).
- ``applications[]`` is "not applicable to Google Sync and iOS devices": those have no app
  list (scope ``none``). On Android the list comes from the device policy app of the
  profile that holds the work account: the whole device's apps when that is the owner
  profile (``managedAccountIsOnOwnerProfile: true``, scope ``full``), the work profile's
  only otherwise (scope ``managed``, also when the field is absent).
- ``lastSync`` (RFC 3339) is the observation time; ``firstSync`` or the command's clock
  when absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import ijson

from appban.errors import BadInput
from appban.inventory._vendor import (
    boolean,
    json_records,
    listed,
    mapping,
    open_binary,
    text,
    vendor_time,
)
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import MAX_IDENT, MAX_TEXT, App, Checkin, build
from appban.text import identifiers_clean, safe_identifier, safe_text, text_clean

LIST_KEY = "mobiledevices"
PAGE_KINDS = ("admin#directory#mobiledevices", "directory#mobiledevices")


class GoogleDirectoryFormat:
    name = "google-directory"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        source = options.source or self.name
        paging = ("kind", "etag", "nextPageToken") if first_is_page(path, LIST_KEY, PAGE_KINDS) else ()
        try:
            for at, record in json_records(path, list_keys=(LIST_KEY,), page_keys=paging, max_bytes=options.max_bytes):
                checkin = _device(record, at, source, options)
                if checkin is not None:
                    yield None, checkin
        except BadInput as exc:
            raise exc.at(file=path) from None


def _device(record: Any, at: str, source: str, options: ReadOptions) -> Checkin | None:
    d = mapping(record, at)
    kind = (text(d, "type", at) or "").upper()
    model = text(d, "model", at)
    os = text(d, "os", at)
    platform = _platform(kind, os, model)
    if platform is None:
        return None  # a BlackBerry or Windows phone: no platform a policy can name
    id_key = "resourceId" if text(d, "resourceId", at) else "deviceId"
    device_id = text(d, id_key, at)
    if device_id is None:
        raise BadInput("missing", field=f"{at}.resourceId")
    owner, owner_at = None, f"{at}.email"
    for i, email in enumerate(listed(d, "email", at)):
        if not isinstance(email, str):
            raise BadInput("expected a string", field=f"{at}.email[{i}]")
        if email.strip():
            owner, owner_at = email, f"{at}.email[{i}]"
            break
    sync_id = text(d, "deviceId", at)
    status = (text(d, "status", at) or "APPROVED").upper()
    apps: list[App] = []
    scope = "none"
    if kind == "ANDROID":
        reports = listed(d, "applications", at)
        plain = plain_apps(reports)
        apps = plain if plain is not None else [_app(a, f"{at}.applications[{i}]") for i, a in enumerate(reports)]
        if apps:
            on_owner_profile = boolean(d, "managedAccountIsOnOwnerProfile", at)
            scope = "full" if on_owner_profile else "managed"
    observed = _observed(d, at, options)
    return build(
        source=source,
        device_id=device_id,
        platform=platform,
        owner=owner,
        observed_at=observed,
        apps=apps,
        model=model,
        os_version=os,
        eas_device_ids=[sync_id] if kind == "GOOGLE_SYNC" and sync_id else [],
        inventory_scope=scope,
        mail_access=True if status == "APPROVED" else None,
        identifiers=[
            (kind_, value)
            for kind_, key in (("serial", "serialNumber"), ("imei", "imei"), ("meid", "meid"))
            if (value := text(d, key, at)) is not None
        ],
        where={
            "device.id": f"{at}.{id_key}",
            "device.owner": owner_at,
            "device.model": f"{at}.model",
            "device.os_version": f"{at}.os",
            "device.eas_device_ids": f"{at}.deviceId",
            "device.serial": f"{at}.serialNumber",
            "device.imei": f"{at}.imei",
            "device.meid": f"{at}.meid",
            "apps": f"{at}.applications",
        },
    )


def _platform(kind: str, os: str | None, model: str | None) -> str | None:
    """ANDROID and IOS_SYNC say it; Google Sync devices say it in ``os`` ("iOS 13.5.1",
    "Android 10"). An iPad is ``ipados`` whatever its ``os`` says."""
    system = (os or "").lower()
    if kind == "ANDROID" or (kind != "IOS_SYNC" and system.startswith("android")):
        return "android"
    if kind == "IOS_SYNC" or system.startswith(("ios", "iphone")):
        return "ipados" if (model or "").lower().startswith("ipad") else "ios"
    return None


def _app(record: Any, at: str) -> App:
    a = mapping(record, at)
    package = checked(a, "packageName", at, identifier=True)
    name = checked(a, "displayName", at)
    if package is None and name is None:
        raise BadInput("an app needs a packageName or a displayName", field=at)
    return App(id=package, name=name, version=checked(a, "versionName", at))


def _observed(d: dict[str, Any], at: str, options: ReadOptions) -> int:
    for key in ("lastSync", "firstSync"):
        value = text(d, key, at)
        if value is not None:
            return vendor_time(value, f"{at}.{key}", options.timezone)
    return options.now


# -- shared by the Google readers (android_management, people_google) ----------------------


def plain_apps(
    records: list[Any],
    *,
    skip_removed: bool = False,
    signing: Callable[[dict[str, Any]], str | None | Literal[False]] | None = None,
) -> list[App] | None:
    """The apps of ``records`` (``packageName``, ``displayName``, ``versionName``) when
    every field is a string or absent and all are within bounds and clean, checked at
    once: the common case, without a path per app. None when any is not, so that the
    exact reader (``checked``, app by app) names the first problem, as it always has.
    ``skip_removed``: an app whose ``state`` is ``REMOVED`` is left out unread.
    ``signing(record)``: the app's signing digest, None, or False when not plain."""
    apps: list[App] = []
    ids: list[str] = []
    texts: list[str] = []
    for r in records:
        if type(r) is not dict:
            return None
        if skip_removed:
            state = r.get("state")
            if state == "REMOVED":
                continue
            if state is not None and type(state) is not str:
                return None
        package, name, version = r.get("packageName"), r.get("displayName"), r.get("versionName")
        if type(package) is str and package:
            ids.append(package)
            package = package.strip() or None
        elif package is None or package == "":
            package = None
        else:
            return None  # a number or another type: the exact reader takes it or names it
        if type(name) is str and name:
            texts.append(name)
        elif name is None or name == "":
            name = None
        else:
            return None
        if type(version) is str and version:
            texts.append(version)
        elif version is None or version == "":
            version = None
        else:
            return None
        if package is None and name is None:
            return None
        digest = signing(r) if signing is not None else None
        if digest is False:
            return None
        apps.append(App(package, name, version, digest))
    if (
        max(map(len, ids), default=0) > MAX_IDENT
        or max(map(len, texts), default=0) > MAX_TEXT
        or not identifiers_clean(" ".join(ids))
        or not text_clean(" ".join(texts))
    ):
        return None
    return apps


# A page at most this long on one line is decoded at once; a longer one is streamed.
def checked(record: dict[str, Any], key: str, at: str, *, identifier: bool = False) -> str | None:
    """A string field checked as a check-in's app id (``identifier``) or text is, the
    error naming the vendor's field: readers that skip some records (removed apps)
    cannot let ``build`` name them by their place in the kept list."""
    value = text(record, key, at)
    if value is None:
        return None
    # An app's values are chosen by its maker or the device's user, not the admin: one
    # that fails the checks is made safe, never refused (build cuts one too long), so
    # that no app can cost a device its inventory (docs/formats.md, Text).
    if identifier:
        return safe_identifier(value.strip()) or None
    return safe_text(value)


def first_is_page(path: str, list_key: str, kinds: tuple[str, ...]) -> bool:
    """Whether the file's first document is a list response: it has ``list_key`` or
    ``nextPageToken``, or its ``kind`` names a list (an empty page has no list).

    Google's list pages and single resources both begin with ``kind``, so the first key
    alone cannot tell them apart. Reads up to the first telling key, at most the first
    document; bytes that are not JSON are left to ``json_records`` to refuse.
    """
    f = open_binary(path)
    try:
        events = ijson.parse(f, multiple_values=True)
        kind_next = False
        for prefix, event, value in events:
            if prefix != "" and not kind_next:
                continue
            if kind_next:
                return event == "string" and value in kinds
            if event == "map_key":
                if value in (list_key, "nextPageToken"):
                    return True
                kind_next = value == "kind"
            elif event in ("end_map", "start_array"):
                return False
    except (ijson.JSONError, UnicodeDecodeError):
        return False
    finally:
        f.close()
    return False
