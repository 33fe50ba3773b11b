"""SPEC's check-in: one device's snapshot of installed apps, from one source.

Decoded and validated by msgspec in one pass; the few rules a type cannot say
(markup, control and invisible characters, e-mail shape, a field given twice) are
checked after, only where the raw bytes show they could apply. When the fast
decoder refuses a check-in, the check-in is read again exactly (``_json_text``,
``_schema``) to say, in appban's own words, which field on which line is wrong.
"""

from __future__ import annotations

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
    text_clean,
)

__all__ = [
    "EMAIL",
    "App",
    "Checkin",
    "Device",
    "DuplicateApp",
    "check_text",
    "decode_json",
    "finish",
    "from_object",
]

Platform = Literal["ios", "ipados", "android", "macos", "windows", "linux", "chromeos"]
Ownership = Literal["corporate", "personal", "unknown"]
Scope = Literal["full", "managed"]

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
    id: Ident
    platform: Platform
    owner: Email
    ownership: Ownership = "unknown"
    model: Text | None = None
    os_version: Text | None = None
    eas_device_ids: list[Ident] = []
    inventory_scope: Scope = "full"
    mail_access: bool | None = None


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


def decode_json(raw: bytes) -> Checkin:
    """One check-in from its JSON text. Raises BadInput naming the field, and the line
    within ``raw`` where it can be known."""
    try:
        body = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
        raise _explain(raw) from None
    if _may_repeat_a_field(raw, body):
        from appban.inventory import _json_text  # the slow path: loaded when first needed

        _json_text.parse(raw)  # raises, naming the field given twice, if one is
    return finish(body, suspect=_suspect(raw))


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


def finish(body: CheckinBody, *, suspect: bool) -> Checkin:
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
    if suspect:
        _check_strings(device, apps, app_ids)
    for i, e in enumerate(eas):
        check_eas_device_id(e, f"device.eas_device_ids[{i}]")
    if None in app_ids or len(set(app_ids)) != len(app_ids):
        _locate_app_problem(apps)
    if len(set(eas)) != len(eas):
        raise BadInput("duplicate ActiveSync device id", field="device.eas_device_ids")
    observed = parse_time(body.observed_at, field="observed_at")
    source = "agent" if isinstance(body.source, UnsetType) else body.source
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


def _check_strings(device: Device, apps: list[App], app_ids: list[str | None]) -> None:
    """Identifiers must be visible, text free of controls and markup: checked on the
    whole at once, and field by field, in document order, only to name the first."""
    ids = [device.id, device.owner, *device.eas_device_ids, *(i for i in app_ids if i is not None)]
    texts = [device.model or "", device.os_version or ""]
    for app in apps:
        texts += (app.name or "", app.version or "")
    if identifiers_clean(" ".join(ids)) and text_clean(" ".join(texts)):
        return
    check_identifier(device.id, "device.id")
    check_identifier(device.owner, "device.owner")
    check_text(device.model, "device.model")
    check_text(device.os_version, "device.os_version")
    for i, eas in enumerate(device.eas_device_ids):
        check_eas_device_id(eas, f"device.eas_device_ids[{i}]")
    for i, app in enumerate(apps):
        check_identifier(app.id, f"apps[{i}].id")
        check_text(app.name, f"apps[{i}].name")
        check_text(app.version, f"apps[{i}].version")
