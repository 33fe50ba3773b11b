"""Apple MDM command results: what a device answered to ``InstalledApplicationList``,
``ManagedApplicationList`` and ``DeviceInformation``.

A file is one result as a property list (XML or binary), or the JSON webhook events
an open-source MDM server posts (MicroMDM, NanoMDM: one event, an array of them, or
one a line), whose ``acknowledge_event.raw_payload`` is the result, base64-encoded.
Check-in events (``checkin_event``) and results of other commands are skipped.

A device's apps and its DeviceInformation arrive as separate results, so the file is
read twice: first each device's DeviceInformation (platform, model, identifiers) and
which app list of it is the newest; then that app list becomes the device's check-in.
Memory holds a few identifiers per device, never a device's apps. A device with
DeviceInformation and no app list in the file is a record that lists no apps.

``webhook_reports`` reads one webhook request's body (bytes: one event or an array of
them) for ``appban serve``, each event on its own: what it says about a device, nothing
for an event that is not about apps or device facts, or why it is refused.
``device_checkin`` makes a device's facts and an app list (of the same or of another
request) one check-in.

Property lists are bounded: a result at most ``max_bytes``, nested at most
``MAX_DEPTH`` levels. XML goes through defusedxml (no entity declarations, no
external references) and is converted here; binary goes through plistlib and is then
walked with a budget, so that a small file sharing one container many times over
cannot make the walk exponential.
"""

from __future__ import annotations

import base64
import binascii
import plistlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml
import msgspec
from defusedxml import DefusedXmlException

from appban.clock import Micros
from appban.errors import BadInput
from appban.inventory._vendor import boolean, child, json_records, listed, mapping, open_binary, text, vendor_time
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, build

MAX_DEPTH = 32
_SPACE = b" \t\r\n\xef\xbb\xbf"
# ProductName / ModelName / Model prefixes (iPhone12,1; iPad8,12; MacBookPro14,3; Mac14,2).
_PLATFORMS = (("iPhone", "ios"), ("iPod", "ios"), ("iPad", "ipados"), ("Mac", "macos"), ("iMac", "macos"))
# Other Apple products (Apple TV, Watch, Vision Pro, HomePod): no platform appban evaluates.
_OTHER_PRODUCTS = ("AppleTV", "Apple TV", "Watch", "RealityDevice", "Apple Vision", "AudioAccessory", "HomePod")
# ManagedApplicationList statuses of an app that is on the device (Apple's
# ManagedApplicationListResponse): the others are on their way, refused or removed.
_INSTALLED = frozenset(
    {
        "Managed",
        "Updating",
        "ValidatingUpdate",
        "PromptingForUpdate",
        "PromptingForUpdateLogin",
        "UpdateRejected",
        "PromptingForManagement",
        "ManagementRejected",
        "UserInstalledApp",
    }
)
_GO_ZERO_TIME = "0001-01-01T00:00:00"  # what a Go server writes for a time it never set


class AppleMdmFormat:
    name = "apple-mdm"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        for _path, line, checkin in self.read_files([path], options):
            yield line, checkin

    def read_files(self, paths: list[str], options: ReadOptions) -> Iterator[tuple[str, int | None, Checkin]]:
        """The devices of all ``paths`` together: a device's DeviceInformation and its
        app list may be results in different files (one file per command result)."""
        source = options.source or self.name
        devices: dict[str, DeviceFacts] = {}
        first: dict[str, str] = {}  # device key -> the file that first named it
        for n, path in enumerate(paths):
            try:
                for result in _results(path, options):
                    result.index |= n << _FILE_SHIFT
                    _note(result, devices)
                    for key in devices.keys() - first.keys():
                        first[key] = path
            except BadInput as exc:
                raise exc.at(file=path) from None
        # An Apple TV's or a Watch's apps: no platform appban evaluates.
        kept = [d for d in devices.values() if d.platform != "other"]
        chosen = {d.apps.index: d for d in kept if d.apps is not None}
        for n, path in enumerate(paths):
            here = {i & _INDEX_MASK for i in chosen if i >> _FILE_SHIFT == n}
            if not here:
                continue
            for result in _results(path, options, only=here):
                try:
                    yield path, None, _checkin(source, chosen[result.index | n << _FILE_SHIFT], result, options)
                except BadInput as exc:
                    raise exc.at(file=path) from None
        for device in kept:
            # DeviceInformation that did not ask for ProductName: no platform, no apps.
            if device.apps is None and device.platform is not None:
                try:
                    yield first[device.key], None, _checkin(source, device, None, options)
                except BadInput as exc:
                    raise exc.at(file=first[device.key]) from None


# A result's index: its file's place among the import's files, above its place in the file.
_FILE_SHIFT = 40
_INDEX_MASK = (1 << _FILE_SHIFT) - 1


@dataclass
class _Result:
    """One command result: its place in the file (for errors) and its property list."""

    index: int
    at: str
    observed: Micros | None
    payload: dict[str, Any]
    status: str | None
    udid: str | None
    enrollment_id: str | None
    user_enrollment: bool


@dataclass
class _Newest:
    index: int
    observed: Micros | None
    kind: str


@dataclass
class DeviceFacts:
    """What results say about one device: its key (EnrollmentID or UDID), its facts
    from DeviceInformation, and (reading files) which app list of it is the newest."""

    key: str
    at: str  # where the device's id was read, for errors
    user_enrollment: bool
    platform: str | None = None  # "other": an Apple product appban does not evaluate
    model: str | None = None
    os_version: str | None = None
    supervised: bool | None = None
    info_at: str | None = None
    observed: Micros | None = None
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    apps: _Newest | None = None


def _results(path: str, options: ReadOptions, only: set[int] | None = None) -> Iterator[_Result]:
    """Every command result in the file that answered a command (Status Acknowledged);
    with ``only``, those of these indexes, the others not decoded."""
    f = open_binary(path)
    try:
        head = f.read(4096).lstrip(_SPACE)
    finally:
        f.close()
    if head.startswith(b"bplist") or head.startswith(b"<"):
        data = _read_bounded(path, options.max_bytes)
        payload = _plist(data, path, "")
        yield from _acknowledged(_Result(0, "", None, payload, None, None, None, False))
        return
    if not head.startswith((b"{", b"[")):
        raise BadInput("not a property list, nor JSON webhook events", file=path)
    for index, (at, record) in enumerate(json_records(path, list_keys=())):
        if only is not None and index not in only:
            continue
        event = mapping(record, at)
        ack = child(event, "acknowledge_event", at)
        if not ack:
            if "checkin_event" in event:
                continue  # Authenticate, TokenUpdate, CheckOut: no inventory
            raise BadInput("neither acknowledge_event nor checkin_event: not an MDM webhook event", file=path, field=at)
        yield from _acknowledged(_envelope(index, at, event, ack, options))


def _envelope(index: int, at: str, event: dict[str, Any], ack: dict[str, Any], options: ReadOptions) -> _Result:
    ev = _step(at, "acknowledge_event")
    raw = text(ack, "raw_payload", ev, required=True) or ""
    if len(raw) > options.max_bytes * 4 // 3 + 4:
        raise BadInput(f"a result larger than {options.max_bytes} bytes", field=f"{ev}.raw_payload")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("not base64", field=f"{ev}.raw_payload") from None
    created = text(event, "created_at", at)
    observed = None
    if created is not None and not created.startswith(_GO_ZERO_TIME):
        observed = vendor_time(created, _step(at, "created_at"), options.timezone)
    ids = child(ack, "ids", ev)  # NanoMDM: the enrollment's type
    kind = text(ids, "type", f"{ev}.ids") or ""
    return _Result(
        index,
        f"{ev}.raw_payload:",
        observed,
        _plist(data, None, f"{ev}.raw_payload:"),
        text(ack, "status", ev),
        text(ack, "udid", ev),
        text(ack, "enrollment_id", ev),
        kind.startswith("User Enrollment"),
    )


def _acknowledged(result: _Result) -> Iterator[_Result]:
    payload, at = result.payload, result.at
    status = text(payload, "Status", at) or result.status
    # Error, NotNow, Idle, CommandFormatError: the device answered nothing to read.
    # A result with UserID came on a user channel (macOS, Shared iPad): one user's view.
    if status == "Acknowledged" and "UserID" not in payload:
        yield result


def _note(result: _Result, devices: dict[str, DeviceFacts]) -> None:
    """Pass one: the device's DeviceInformation, and whether this app list is its newest."""
    payload, at = result.payload, result.at
    kind = _kind(payload, at)
    if kind is None:
        return
    device = _device(result, devices)
    if kind == "DeviceInformation":
        answers_at = _step(at, "QueryResponses")
        _information(device, child(payload, "QueryResponses", at), answers_at)
        if result.observed is not None:
            device.observed = max(device.observed or result.observed, result.observed)
        return
    newest = device.apps
    if newest is None or (result.observed or 0) >= (newest.observed or 0):
        device.apps = _Newest(result.index, result.observed, kind)


def _kind(payload: dict[str, Any], at: str) -> str | None:
    request = text(payload, "RequestType", at)
    if request is None:  # devices did not always say which command they answer
        for key in ("InstalledApplicationList", "ManagedApplicationList"):
            if key in payload:
                return key
        return "DeviceInformation" if "QueryResponses" in payload else None
    if request in ("InstalledApplicationList", "ManagedApplicationList", "DeviceInformation"):
        key = "QueryResponses" if request == "DeviceInformation" else request
        if key not in payload:
            raise BadInput("missing", field=_step(at, key))
        return request
    return None


def _device(result: _Result, devices: dict[str, DeviceFacts]) -> DeviceFacts:
    payload, at = result.payload, result.at
    enrollment_id = text(payload, "EnrollmentID", at) or result.enrollment_id
    udid = text(payload, "UDID", at) or result.udid
    # User Enrollment: the result names the enrollment, never the device (Apple hides
    # UDID, serial number and IMEI from a personal device's MDM).
    user_enrollment = enrollment_id is not None or result.user_enrollment
    key = enrollment_id or udid
    if key is None:
        raise BadInput("missing: a result names its device by UDID or EnrollmentID", field=_step(at, "UDID"))
    device = devices.get(key)
    if device is None:
        field_name = "EnrollmentID" if enrollment_id else "UDID"
        device = devices[key] = DeviceFacts(key, _step(at, field_name), user_enrollment)
        device.identifiers.append(("enrollment_id", key) if enrollment_id else ("udid", key))
    return device


def _information(device: DeviceFacts, answers: dict[str, Any], at: str) -> None:
    """DeviceInformation's QueryResponses: the later result in the file wins."""
    device.info_at = at
    product = text(answers, "ProductName", at) or text(answers, "Model", at) or text(answers, "ModelName", at)
    if product is not None:
        device.platform = _platform(product) or device.platform
        device.model = product
    device.os_version = text(answers, "OSVersion", at) or device.os_version
    supervised = boolean(answers, "IsSupervised", at)
    device.supervised = supervised if supervised is not None else device.supervised
    found = [("serial", text(answers, "SerialNumber", at)), ("imei", text(answers, "IMEI", at))]
    found.append(("meid", text(answers, "MEID", at)))
    # Every iPhone has an ActiveSync DeviceId, whether or not it syncs mail: a link to
    # the mail server's record of it, not a sign that it reads mail.
    found.append(("eas", text(answers, "EASDeviceIdentifier", at)))
    # iOS 12 and later: one IMEI / MEID per SIM (eSIM and physical) in ServiceSubscriptions.
    for i, sub in enumerate(listed(answers, "ServiceSubscriptions", at)):
        sub_at = f"{at}.ServiceSubscriptions[{i}]"
        sub = mapping(sub, sub_at)
        found += [("imei", text(sub, "IMEI", sub_at)), ("meid", text(sub, "MEID", sub_at))]
    for kind, value in found:
        if value is None:
            continue
        if kind in ("imei", "meid"):
            value = re.sub(r"\s+", "", value)  # Apple writes an IMEI in groups: "35 316004 656345 5"
        if (kind, value) not in device.identifiers:
            device.identifiers.append((kind, value))


def _platform(product: str) -> str | None:
    for prefix, platform in _PLATFORMS:
        if product.startswith(prefix):
            return platform
    if product.startswith(_OTHER_PRODUCTS):
        return "other"
    return None


@dataclass
class AppList:
    """The apps one InstalledApplicationList or ManagedApplicationList result lists."""

    apps: list[App]
    scope: str  # full | managed
    observed: Micros | None
    at: str  # where the list was read, for errors


def app_list(result: _Result, user_enrollment: bool) -> AppList:
    if _kind(result.payload, result.at) == "InstalledApplicationList":
        # User Enrollment: Apple answers with managed apps only, whatever was asked.
        scope = "managed" if user_enrollment else "full"
        apps = _installed(result.payload, result.at)
        return AppList(apps, scope, result.observed, _step(result.at, "InstalledApplicationList"))
    apps = _managed(result.payload, result.at)
    return AppList(apps, "managed", result.observed, _step(result.at, "ManagedApplicationList"))


def _checkin(source: str, device: DeviceFacts, result: _Result | None, options: ReadOptions) -> Checkin:
    listed = None if result is None else app_list(result, device.user_enrollment)
    return device_checkin(source, device, listed, options)


def device_checkin(source: str, device: DeviceFacts, listed: AppList | None, options: ReadOptions) -> Checkin:
    """The device's check-in: its facts with ``listed``'s apps, or (None) facts alone,
    a record that lists no apps."""
    if device.platform is None:
        raise BadInput(
            "the device's platform is unknown: no DeviceInformation result with its ProductName in the files",
            field=device.at,
        )
    where = {"device.id": device.at, "device.udid": device.at, "device.enrollment_id": device.at}
    if device.info_at is not None:
        for kind, key in (("serial", "SerialNumber"), ("imei", "IMEI"), ("meid", "MEID"), ("model", "ProductName")):
            where[f"device.{kind}"] = f"{device.info_at}.{key}"
        where["device.os_version"] = f"{device.info_at}.OSVersion"
    apps: list[App] = []
    scope = "none"
    observed = device.observed
    if listed is not None:
        apps, scope, observed = listed.apps, listed.scope, listed.observed
        where["apps"] = listed.at
    ownership = "personal" if device.user_enrollment else "corporate" if device.supervised else "unknown"
    return build(
        source=source,
        device_id=device.key,
        platform=device.platform,
        owner=None,  # MDM results name no one: --owners, or a linked record, does
        observed_at=observed if observed is not None else options.now,
        apps=apps,
        ownership=ownership,
        model=device.model,
        os_version=device.os_version,
        inventory_scope=scope,
        identifiers=device.identifiers,
        where=where,
    )


def _installed(payload: dict[str, Any], at: str) -> list[App]:
    key = _step(at, "InstalledApplicationList")
    apps: list[App] = []
    append = apps.append
    for i, item in enumerate(listed(payload, "InstalledApplicationList", at)):
        # Apple's types (booleans, strings): such an app is read at once; any other is
        # read by _installed_app, which says what is wrong with it.
        if type(item) is dict:
            failed, cancelled = item.get("DownloadFailed"), item.get("DownloadCancelled")
            ident, name, version = item.get("Identifier"), item.get("Name"), item.get("ShortVersion")
            if (
                (failed is None or failed is False)
                and (cancelled is None or cancelled is False)
                and type(version) is str
                and version
                and (ident is None or type(ident) is str)
                and (name is None or type(name) is str)
            ):
                append(App(ident or None, name or None, version))
                continue
        app = _installed_app(item, f"{key}[{i}]")
        if app is not None:
            append(app)
    return apps


def _installed_app(item: Any, at: str) -> App | None:
    """An app, or None for one that never reached the device."""
    item = mapping(item, at)
    if boolean(item, "DownloadFailed", at) or boolean(item, "DownloadCancelled", at):
        return None
    # ShortVersion is the version people see (CFBundleShortVersionString); Version the build.
    version = text(item, "ShortVersion", at) or text(item, "Version", at)
    return App(id=text(item, "Identifier", at), name=text(item, "Name", at), version=version)


def _managed(payload: dict[str, Any], at: str) -> list[App]:
    key = _step(at, "ManagedApplicationList")
    apps = []
    for bundle_id, item in child(payload, "ManagedApplicationList", at).items():
        item_at = _step(key, bundle_id)
        status = text(mapping(item, item_at), "Status", item_at, required=True)
        if status in _INSTALLED:
            apps.append(App(id=bundle_id))
    return apps


def _step(at: str, key: str) -> str:
    """``at`` then ``key``, as an error names it: ``.Key``, or ``['odd key']``."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", key):
        return f"{at}{key}" if not at or at.endswith(":") else f"{at}.{key}"
    return f"{at}[{key[:64]!r}]"


# -- webhook requests (appban serve) ------------------------------------------------------


@dataclass
class Report:
    """One acknowledged result of a webhook event: the device it is about, with the facts
    it gives (DeviceInformation), or the apps it lists (an app list)."""

    index: int  # the event's place in the body
    kind: str  # InstalledApplicationList | ManagedApplicationList | DeviceInformation
    device: DeviceFacts
    apps: AppList | None


def webhook_reports(data: bytes, options: ReadOptions) -> list[Report | BadInput | None]:
    """Each event of a webhook body (one event, or an array of them), read alone: its
    report, None for an event about nothing appban keeps (a check-in message, another
    command, a result not acknowledged, a user channel's), or the BadInput that refuses
    it. Raises BadInput only when the body is not JSON."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise BadInput("not JSON: an MDM webhook event, or an array of them") from None
    events = value if isinstance(value, list) else [value]
    reports: list[Report | BadInput | None] = []
    for index, event in enumerate(events):
        at = f"[{index}]" if isinstance(value, list) else ""
        try:
            reports.append(_report(index, at, event, options))
        except BadInput as exc:
            field = (exc.field or "").lstrip(".") or None
            reports.append(BadInput(exc.detail, field=field))
    return reports


def _report(index: int, at: str, event: Any, options: ReadOptions) -> Report | None:
    event = mapping(event, at)
    ack = child(event, "acknowledge_event", at)
    if not ack:
        if "checkin_event" in event:
            return None  # Authenticate, TokenUpdate, CheckOut: no inventory
        raise BadInput("neither acknowledge_event nor checkin_event: not an MDM webhook event", field=at or None)
    result = next(_acknowledged(_envelope(index, at, event, ack, options)), None)
    if result is None:
        return None
    kind = _kind(result.payload, result.at)
    if kind is None:
        return None
    device = _device(result, {})
    if kind == "DeviceInformation":
        _information(device, child(result.payload, "QueryResponses", result.at), _step(result.at, "QueryResponses"))
        device.observed = result.observed
        return Report(index, kind, device, None)
    return Report(index, kind, device, app_list(result, device.user_enrollment))


# -- property lists ---------------------------------------------------------------------


def _read_bounded(path: str, max_bytes: int) -> bytes:
    f = open_binary(path)
    try:
        data = f.read(max_bytes + 1)
    finally:
        f.close()
    if len(data) > max_bytes:
        raise BadInput(f"a property list larger than {max_bytes} bytes", file=path)
    return data


def _plist(data: bytes, path: str | None, at: str) -> dict[str, Any]:
    """A command result's property list, XML or binary, as a dict; BadInput otherwise."""
    where = at.rstrip(":") or None
    if data.startswith(b"bplist"):
        try:
            value = plistlib.loads(data, fmt=plistlib.FMT_BINARY)
        # plistlib says a binary list is bad in many ways (its own exception, or the
        # struct, index, key, type or recursion error it met): all mean "not readable".
        except (
            plistlib.InvalidFileException,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            OverflowError,
            RecursionError,
            MemoryError,
            struct.error,
        ):
            raise BadInput("not a readable binary property list", file=path, field=where) from None
        _walk(value, at, 0, [len(data) + 16], path)
    else:
        value = _xml(data, path, at)
    if not isinstance(value, dict):
        raise BadInput("expected a dictionary at the top of the property list", file=path, field=where)
    return value


def _walk(value: Any, at: str, depth: int, budget: list[int], path: str | None) -> None:
    """Bounds a decoded binary property list: depth, and a visit per reference."""
    budget[0] -= 1
    if budget[0] < 0:
        raise BadInput("a property list that refers to the same container over and over", file=path, field=at or None)
    if depth > MAX_DEPTH:
        raise BadInput(f"nested deeper than {MAX_DEPTH} levels", file=path, field=at or None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadInput("a dictionary key that is not a string", file=path, field=at or None)
            _walk(item, _step(at, key), depth + 1, budget, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{at}[{i}]", depth + 1, budget, path)


def _xml(data: bytes, path: str | None, at: str) -> Any:
    where = at.rstrip(":") or None
    try:
        root = safe_xml.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise BadInput(
            "an XML property list that declares entities or refers outside itself", file=path, field=where
        ) from None
    except (ParseError, ValueError, LookupError):
        raise BadInput("not a well-formed XML property list", file=path, field=where) from None
    if root.tag != "plist" or len(root) != 1:
        raise BadInput("expected one value inside <plist>", file=path, field=where)
    try:
        return _element(root[0], 0)
    except _Misplaced as exc:
        field = at
        for step in reversed(exc.steps):
            field = _step(field, step) if isinstance(step, str) else f"{field}[{step}]"
        raise BadInput(exc.detail, file=path, field=field or None) from None


class _Misplaced(Exception):
    """A problem in a property list, and the keys and indexes down to it from the value
    being read, innermost first: the path is spelled only when there is an error."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.steps: list[str | int] = []


def _element(el: Element, depth: int) -> Any:
    """One XML property list value, as plistlib would give it (dates and data as text)."""
    if depth > MAX_DEPTH:
        raise _Misplaced(f"nested deeper than {MAX_DEPTH} levels")
    tag = el.tag
    if tag == "dict":
        children = list(el)
        if len(children) % 2:
            raise _Misplaced("a <key> without a value")
        out: dict[str, Any] = {}
        for k, v in zip(children[::2], children[1::2], strict=True):
            if k.tag != "key" or len(k):
                raise _Misplaced(f"expected <key>, found <{str(k.tag)[:32]}>")
            key = k.text or ""
            try:
                out[key] = _element(v, depth + 1)
            except _Misplaced as exc:
                exc.steps.append(key)
                raise
        return out
    if tag == "array":
        items = []
        for i, c in enumerate(el):
            try:
                items.append(_element(c, depth + 1))
            except _Misplaced as exc:
                exc.steps.append(i)
                raise
        return items
    if len(el):
        raise _Misplaced(f"<{str(tag)[:32]}> holding elements")
    body = el.text or ""
    if tag == "string":
        return body
    if tag in ("true", "false"):
        return tag == "true"
    if tag in ("date", "data"):
        return body.strip()  # read by nothing here: kept as text, never decoded
    try:
        if tag == "integer":
            digits = body.strip()
            return int(digits, 16) if digits.lower().startswith(("0x", "-0x")) else int(digits, 10)
        if tag == "real":
            return float(body)
    except ValueError:
        raise _Misplaced(f"not a number in <{tag}>") from None
    raise _Misplaced(f"<{str(tag)[:32]}> is not a property list element")
