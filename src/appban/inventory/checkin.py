"""SPEC's check-in: one device's snapshot of installed apps, from one source.

Decoded and validated by msgspec in one pass; the few rules a type cannot say
(markup, control and invisible characters, e-mail shape, a field given twice) are
checked after, only where the raw bytes show they could apply. When the fast
decoder refuses a check-in, the check-in is read again exactly (``_json_text``,
``_schema``) to say, in appban's own words, which field on which line is wrong.

What the admin's systems name (the device's id, owner, identifiers, model) is held
strictly: a value with markup or an invisible character refuses the check-in. An app's
id, name and version are chosen by its maker or the device's user: one hostile app
name must not cost the device its inventory, so such a value is made safe instead
(``appban.text.safe_text``, ``safe_identifier``) and the app is kept. Vendor records
(``build``) also have an app's over-long values cut to the limits.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from appban.clock import Micros, parse_time
from appban.errors import BadInput
from appban.text import (
    EMAIL,
    check_eas_device_id,
    check_identifier,
    check_text,
    identifiers_clean,
    normalise_email,
    safe_identifier,
    safe_text,
    text_clean,
)

__all__ = [
    "EMAIL",
    "App",
    "Checkin",
    "Device",
    "DuplicateApp",
    "build",
    "check_text",
    "decode_json",
    "finish",
    "from_object",
]

Platform = Literal["ios", "ipados", "android", "macos", "windows", "linux", "chromeos"]
Ownership = Literal["corporate", "personal", "unknown"]
Scope = Literal["full", "managed"]
# What a source can see, as appban keeps it: "none" is a source that lists no apps at all
# (a mail server's device list, a directory of synced phones). Only vendor formats give it.
KnownScope = Literal["full", "managed", "none"]
# Identifiers that name one physical device whichever system reports it (IDENTIFIER_KINDS).
IDENTIFIER_KINDS = ("serial", "imei", "meid", "udid", "enrollment_id", "android_id", "eas", "host", "alias")

# Identifiers: bounded, and (checked below) nothing invisible. Text: bounded, no markup.
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Source = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    ),
]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{64}$", description="64 hexadecimal digits")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]


class App(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: Ident | None = None
    name: Text | None = None
    version: Text | None = None
    signing_sha256: Sha256 | None = None


class Device(msgspec.Struct, forbid_unknown_fields=True):
    """A device as one source reports it.

    ``owner`` is None when the source names no one (and no ``--owners`` mapping does).
    ``identifiers`` are (kind, value) pairs, kinds from IDENTIFIER_KINDS: what links
    this record to the same phone reported by another source. ``eas`` is an ActiveSync
    DeviceId the device has without saying it reads mail (every iPhone has one); ``host`` is a host
    identifier that means one machine only within its own source; ``alias`` (a mailbox
    alias) is only ever a key of an ``--owners`` mapping, never a link.
    """

    id: Ident
    platform: Platform
    owner: Email | None
    ownership: Ownership = "unknown"
    model: Text | None = None
    os_version: Text | None = None
    eas_device_ids: list[Ident] = []
    inventory_scope: KnownScope = "full"
    mail_access: bool | None = None
    identifiers: list[tuple[str, str]] = []


class _DeviceBody(msgspec.Struct, forbid_unknown_fields=True):
    """The device as sent: UNSET says a field was absent, so its keys can be counted."""

    id: Ident
    platform: Platform
    owner: Email
    ownership: Ownership | UnsetType = UNSET
    model: Text | None | UnsetType = UNSET
    os_version: Text | None | UnsetType = UNSET
    eas_device_ids: list[Ident] | UnsetType = UNSET
    inventory_scope: Scope | UnsetType = UNSET
    mail_access: bool | None | UnsetType = UNSET


class CheckinBody(msgspec.Struct, forbid_unknown_fields=True):
    device: _DeviceBody
    observed_at: str
    apps: list[App]
    source: Source | UnsetType = UNSET


class Checkin(msgspec.Struct):
    """A validated check-in, with its time parsed and owner normalised."""

    source: str
    device: Device
    observed_at: Micros
    apps: list[App]
    app_ids: list[str | None] = []  # the apps' ids, in order: the importer's fast path
    # A differential report (osquery): ``apps`` were added and ``removed`` went since the
    # report before; None for a snapshot, which replaces the app set. ``epoch`` and
    # ``counter`` order a source's stream: a report from an older epoch, or not after
    # the stored counter in the same epoch, changes nothing.
    removed: list[App] | None = None
    epoch: int | None = None
    counter: int | None = None

    @property
    def partial(self) -> bool:
        """Whether this may be part of its run only (``PartialCheckin``)."""
        return False


class PartialCheckin(Checkin):
    """Rows of one run that may have come in parts (osquery's rows logged one a line, cut
    across TLS requests): never taken as a whole set (scope managed), so it adds its
    apps to what is stored (and removes those ``removed`` names), never replaces it; a
    later part of the same run (epoch, counter and time) is applied too."""

    @property
    def partial(self) -> bool:
        return True

    @classmethod
    def of(cls, checkin: Checkin) -> PartialCheckin:
        return cls(*(getattr(checkin, name) for name in Checkin.__struct_fields__))


_decoder = msgspec.json.Decoder(CheckinBody)


class DuplicateApp(BadInput):
    """Two apps of one check-in with the same id (or, without ids, the same name).

    ``index`` and ``first`` are their places in ``apps``, so that a format that
    spreads apps over lines (CSV) can name the line of each.
    """

    def __init__(self, index: int, first: int, key: str) -> None:
        self.index = index
        self.first = first
        super().__init__(f"duplicate app (also apps[{first}])", field=f"apps[{index}].{key}")


def decode_json(raw: bytes, *, source: str = "agent") -> Checkin:
    """One check-in from its JSON text (``source`` when it names none). Raises BadInput
    naming the field, and the line within ``raw`` where it can be known."""
    try:
        body = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
        raise _explain(raw) from None
    if _may_repeat_a_field(raw, body) and _repeats_a_key(raw):
        from appban.inventory import _json_text  # the slow path: loaded when first needed

        _json_text.parse(raw)  # raises, naming the field given twice, if one is
    return finish(body, suspect=_suspect(raw), source=source)


def _repeats_a_key(raw: bytes) -> bool:
    """Whether any object in ``raw`` (JSON that msgspec read) has a key twice, found by
    the standard library's C scanner: many times quicker than the exact reader, which
    then runs only to name the field (a check-in whose strings hold escapes would
    otherwise cost a second of CPU a few megabytes)."""
    found = False

    def pairs(items: list[tuple[str, object]]) -> None:
        nonlocal found
        if not found and len(items) > 1 and len(items) != len({key for key, _value in items}):
            found = True

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # the readers disagree: let the exact one decide
        return True
    return found


def _explain(raw: bytes) -> BadInput:
    """What the fast decoder refused, found again exactly: line, field, and why."""
    from appban.inventory import _json_text, _schema  # the slow path: loaded when first needed

    doc = _json_text.parse(raw)  # raises for bytes that are not UTF-8, JSON or a field twice
    problem = _schema.first_problem(doc.value, CheckinBody)
    if problem is None:  # the two readers disagree: say so rather than guess
        return BadInput("not a check-in this version of appban can read", line=doc.line(None))
    return BadInput(problem.detail, line=doc.line(problem.field), field=problem.field)


def _may_repeat_a_field(raw: bytes, body: CheckinBody) -> bool:
    """False when the raw bytes prove that no object has a field twice.

    A JSON decoder keeps the last of two equal keys, so the body holds each field
    once; the text, when a field is repeated, has more. Every key is followed by a
    colon, and any other colon is inside a string: so the colons in the text are the
    keys plus the colons inside strings, and the count is exact when no string holds
    an escape (a backslash). Colons inside app names and versions are counted only
    when the quick count disagrees; the exact parse runs only when both disagree
    (an explicit ``null`` in an app is a key the body cannot tell from an absent one).
    """
    if b"\\" in raw:
        return True
    d = body.device
    keys = 6 + len(body.apps) * 4
    for value in (body.source, d.ownership, d.model, d.os_version, d.eas_device_ids, d.inventory_scope, d.mail_access):
        keys += value is not UNSET
    colons = raw.count(b":")
    known = body.observed_at.count(":") + d.id.count(":") + d.owner.count(":")
    if isinstance(body.source, str):
        known += body.source.count(":")
    for text in (d.model, d.os_version):
        if isinstance(text, str):
            known += text.count(":")
    if isinstance(d.eas_device_ids, list):
        known += sum(e.count(":") for e in d.eas_device_ids)
    apps = body.apps
    absent = 0
    for a in apps:  # a plain loop: three times faster than list.count(None)
        if a.id is None:
            absent += 1
        if a.name is None:
            absent += 1
        if a.version is None:
            absent += 1
        if a.signing_sha256 is None:
            absent += 1
    expected = keys - absent + known
    if colons == expected:
        return False
    if colons < expected:  # never, by the count above; were it to happen, the exact reader decides
        return True
    in_apps = sum(s.count(":") for a in apps for s in (a.id, a.name, a.version) if s)
    return colons != expected + in_apps


def _suspect(data: bytes) -> bool:
    """False when the raw bytes prove no string can hold markup, a control or an invisible character.

    JSON must escape control characters, so plain ASCII with no backslash, no "<" and
    no DEL is clean; anything else takes the exact per-field check.
    """
    return not data.isascii() or b"<" in data or b"\\" in data or b"\x7f" in data


def from_object(obj: object) -> Checkin:
    """One check-in from already-parsed data (a dict), validated the same way."""
    try:
        body = msgspec.convert(obj, CheckinBody)
    except msgspec.ValidationError:
        from appban.inventory import _schema  # the slow path: loaded when first needed

        problem = _schema.first_problem(obj, CheckinBody)
        raise problem or BadInput("not a check-in this version of appban can read") from None
    return finish(body, suspect=True)


def finish(body: CheckinBody, *, suspect: bool, source: str = "agent") -> Checkin:
    """The rules a type cannot say, then the check-in as the importer takes it."""
    d = body.device
    owner = normalise_email(d.owner, "device.owner")
    eas = [] if isinstance(d.eas_device_ids, UnsetType) else d.eas_device_ids
    device = Device(
        id=d.id,
        platform=d.platform,
        owner=owner,
        ownership="unknown" if isinstance(d.ownership, UnsetType) else d.ownership,
        model=None if isinstance(d.model, UnsetType) else d.model,
        os_version=None if isinstance(d.os_version, UnsetType) else d.os_version,
        eas_device_ids=eas,
        inventory_scope="full" if isinstance(d.inventory_scope, UnsetType) else d.inventory_scope,
        mail_access=None if isinstance(d.mail_access, UnsetType) else d.mail_access,
    )
    apps = body.apps
    app_ids = [a.id for a in apps]
    if suspect and not _check_strings(device, apps, app_ids):
        app_ids = [a.id for a in apps]  # an id was made safe
    for i, e in enumerate(eas):
        check_eas_device_id(e, f"device.eas_device_ids[{i}]")
    if None in app_ids or len(set(app_ids)) != len(app_ids):
        _locate_app_problem(apps)
    if len(set(eas)) != len(eas):
        raise BadInput("duplicate ActiveSync device id", field="device.eas_device_ids")
    observed = parse_time(body.observed_at, field="observed_at")
    if not isinstance(body.source, UnsetType):
        source = body.source
    return Checkin(source, device, observed, apps, app_ids)


def _locate_app_problem(apps: list[App]) -> None:
    seen: dict[str, int] = {}
    for i, app in enumerate(apps):
        if app.id is None and not app.name:
            raise BadInput("an app needs an id or a name", field=f"apps[{i}]")
        key = app.id if app.id is not None else "name:" + (app.name or "")
        first = seen.setdefault(key, i)
        if first != i:
            raise DuplicateApp(i, first, "id" if app.id is not None else "name")


def _check_strings(device: Device, apps: list[App], app_ids: list[str | None]) -> bool:
    """The device's identifiers must be visible and its text free of controls and
    markup (checked field by field, in document order, only to name the first that is
    not); the apps' ids, names and versions that are not are made safe. True when
    every string was clean as sent (checked on the whole at once)."""
    ids = [device.id, device.owner or "", *device.eas_device_ids, *(i for i in app_ids if i is not None)]
    texts = [device.model or "", device.os_version or ""]
    for app in apps:
        texts += (app.name or "", app.version or "")
    if identifiers_clean(" ".join(ids)) and text_clean(" ".join(texts)):
        return True
    check_identifier(device.id, "device.id")
    check_identifier(device.owner, "device.owner")
    check_text(device.model, "device.model")
    check_text(device.os_version, "device.os_version")
    for i, eas in enumerate(device.eas_device_ids):
        check_eas_device_id(eas, f"device.eas_device_ids[{i}]")
    for app in apps:
        _make_safe(app)
    return False


def _make_safe(app: App) -> None:
    """The app's id, name and version as appban keeps them: what the text checks refuse
    made visible and harmless (``appban.text.safe_identifier``, ``safe_text``)."""
    if app.id is not None:
        app.id = safe_identifier(app.id)
    if app.name is not None:
        app.name = safe_text(app.name)
    if app.version is not None:
        app.version = safe_text(app.version)


_PLATFORMS = frozenset(Platform.__args__)  # type: ignore[attr-defined]
_SOURCE = __import__("re").compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_IDENT = 256
MAX_TEXT = 1024
MAX_IDS = 64  # identifiers and DeviceIds of one device: a phone has a handful


def build(
    *,
    source: str,
    device_id: str,
    platform: str,
    owner: str | None,
    observed_at: Micros,
    apps: list[App],
    ownership: str = "unknown",
    model: str | None = None,
    os_version: str | None = None,
    eas_device_ids: list[str] | tuple[str, ...] = (),
    inventory_scope: str = "full",
    mail_access: bool | None = None,
    identifiers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    removed: list[App] | None = None,
    epoch: int | None = None,
    counter: int | None = None,
    where: dict[str, str] | None = None,
) -> Checkin:
    """A check-in from a vendor's record, checked as strictly as SPEC's own format.

    ``where`` maps appban's field names (``device.id``, ``device.owner``,
    ``device.model``, ``device.os_version``, ``device.eas_device_ids``, ``apps``,
    ``removed``) to the vendor's path of that value (``value[3].serialNumber``), so
    an error names the field as the file spells it. An app with neither id nor name
    is refused as ``<apps path>[i]``; an app's id, name or version that fails the text
    checks is made safe, and one past the limits (MAX_IDENT, MAX_TEXT) cut, never refused.

    Two apps with the same id (or, without ids, the same name) in one record are
    kept once, the first: vendors list one app once per version or per user.
    Identifiers that are placeholders (``is_placeholder``) are dropped.
    """
    names = where or {}

    def at(field: str) -> str:
        return names.get(field, field)

    if not _SOURCE.fullmatch(source):
        raise BadInput(
            f"bad source name {source[:64]!r}: lower-case letters, digits, '.', '_' and '-'",
            field="--source",
        )
    _ident(device_id, at("device.id"))
    if platform not in _PLATFORMS:
        raise BadInput(f"unknown platform {str(platform)[:40]!r}", field=at("device.platform"))
    if owner is not None:
        owner = normalise_email(owner, at("device.owner"))
    for field, value in (("device.model", model), ("device.os_version", os_version)):
        _text(value, at(field))
    field = at("device.eas_device_ids")
    if len(eas_device_ids) > MAX_IDS or len(identifiers) > MAX_IDS:
        raise BadInput(f"more than {MAX_IDS} device identifiers", field=field)
    eas: dict[str, None] = {}
    for e in eas_device_ids:
        if is_placeholder(e):
            continue  # "Unknown" is no DeviceId: neither the gate's key nor a link
        check_eas_device_id(e, field)
        if len(e) > MAX_IDENT:
            raise BadInput(f"longer than {MAX_IDENT} characters", field=field)
        eas[e] = None
    kept_ids: list[tuple[str, str]] = []
    for kind, value in identifiers:
        if kind not in IDENTIFIER_KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")  # a programming error
        value = value.strip()
        if is_placeholder(value):
            continue
        _ident(value, at(f"device.{kind}"))
        if (kind, value) not in kept_ids:
            kept_ids.append((kind, value))
    if inventory_scope == "none" and (apps or removed):
        raise ValueError("a record of scope 'none' lists no apps")  # a programming error
    apps = _unique_apps(apps, at("apps"))
    if removed is not None:
        removed = _unique_apps(removed, at("removed"))
    device = Device(
        id=device_id,
        platform=platform,  # type: ignore[arg-type]
        owner=owner,
        ownership=ownership,  # type: ignore[arg-type]
        model=model,
        os_version=os_version,
        eas_device_ids=list(eas),
        inventory_scope=inventory_scope,  # type: ignore[arg-type]
        mail_access=mail_access,
        identifiers=kept_ids,
    )
    return Checkin(source, device, observed_at, apps, [a.id for a in apps], removed, epoch, counter)


def _unique_apps(apps: list[App], path: str) -> list[App]:
    out = _first_of_each(apps)
    if out is not None:
        return out
    # Something is wrong (checked on the whole at once): an app with neither id nor name
    # is refused, naming it; ids, names and versions the checks refuse are made safe.
    for i, app in enumerate(apps):
        if app.id is None and not (app.name and app.name.strip()):
            raise BadInput("an app needs an id or a name", field=f"{path}[{i}]")
        _make_safe(app)
        app.id = _cut(app.id, MAX_IDENT)
        app.name = _cut(app.name, MAX_TEXT)
        app.version = _cut(app.version, MAX_TEXT)
    out = _first_of_each(apps)
    assert out is not None  # every value now passes
    return out


def _first_of_each(apps: list[App]) -> list[App] | None:
    """The apps, the first of each id (or name, without an id); None when an app has
    neither, or an id, name or version fails the checks or the limits."""
    seen: set[str] = set()
    out: list[App] = []
    ids: list[str] = []
    texts: list[str] = []
    for app in apps:
        if app.id is not None:
            app.id = app.id.strip() or None
        if app.id is not None:
            ids.append(app.id)
            key = app.id
        elif app.name and app.name.strip():
            key = "name:" + app.name
        else:
            key = ""
        texts += (app.name or "", app.version or "")
        if key not in seen:
            seen.add(key)
            out.append(app)
    longest_id = max(map(len, ids), default=0)
    longest_text = max(map(len, texts), default=0)
    if (
        "" in seen
        or longest_id > MAX_IDENT
        or longest_text > MAX_TEXT
        or not identifiers_clean(" ".join(ids))
        or not text_clean(" ".join(texts))
    ):
        return None
    return out


def _cut(value: str | None, most: int) -> str | None:
    """A value longer than ``most`` characters cut to them, its last an ellipsis."""
    return value if value is None or len(value) <= most else value[: most - 1] + "\u2026"


def _ident(value: str | None, field: str) -> None:
    if value is None:
        return
    if not value:
        raise BadInput("empty", field=field)
    if len(value) > MAX_IDENT:
        raise BadInput(f"longer than {MAX_IDENT} characters", field=field)
    check_identifier(value, field)


def _text(value: str | None, field: str) -> None:
    if value is None:
        return
    if len(value) > MAX_TEXT:
        raise BadInput(f"longer than {MAX_TEXT} characters", field=field)
    check_text(value, field)


_PLACEHOLDERS = frozenset(
    {
        "",
        "unknown",
        "n/a",
        "na",
        "none",
        "null",
        "not available",
        "-",
        "0",
        "default",
        "default string",
        "to be filled by o.e.m.",
        "system serial number",
        "chassis serial number",
        "0123456789",
        "123456789",
        "1234567890",
    }
)


def is_placeholder(value: str) -> bool:
    """A value sources put where they know nothing: empty, ``Unknown``, ``N/A``, or a
    run of one character (``000000000000000``, ``FFFFFFFF``). Never a link."""
    v = value.strip().lower()
    return v in _PLACEHOLDERS or len(set(v.replace("-", "").replace(":", ""))) <= 1
