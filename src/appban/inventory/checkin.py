"""SPEC's check-in: one device's snapshot of installed apps, from one source.

Decoded and validated by msgspec in one pass; the few rules a type cannot say
(markup and control characters in text, e-mail shape) are checked after, only
where the raw bytes show they could apply.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from appban.clock import Micros, parse_time
from appban.errors import BadInput

Platform = Literal["ios", "ipados", "android", "macos", "windows", "linux", "chromeos"]
Ownership = Literal["corporate", "personal", "unknown"]
Scope = Literal["full", "managed"]

# Identifiers: printable, no spaces needed, no markup. Text: bounded, checked below.
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{64}$")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]

# No control, bidi or invisible characters: two addresses that look alike must be equal.
EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"\\\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
# Markup opens with "<" and a letter, "/", "!" or "?": "<3" is fine, "<script>" is not.
_MARKUP = re.compile(r"<[A-Za-z/!?]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


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


class CheckinBody(msgspec.Struct, forbid_unknown_fields=True):
    device: Device
    observed_at: str
    apps: list[App]
    source: Source = "agent"


class Checkin(msgspec.Struct):
    """A validated check-in, with its time parsed and owner normalised."""

    source: str
    device: Device
    observed_at: Micros
    apps: list[App]
    app_ids: list[str | None] = []  # the apps' ids, in order: the importer's fast path


_decoder = msgspec.json.Decoder(CheckinBody)
_converter_type = CheckinBody
_FIELD = re.compile(r" - at `\$\.?([^`]*)`$")


def decode_json(raw: bytes | str) -> Checkin:
    """One check-in from its JSON text. Raises BadInput naming the field."""
    try:
        body = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"malformed JSON: {_decode_reason(exc)}") from None
    except UnicodeDecodeError:
        raise BadInput(f"not UTF-8 (byte {_bad_utf8_at(raw)})") from None
    except RecursionError:
        raise BadInput("malformed JSON: nested too deeply") from None
    data = raw.encode() if isinstance(raw, str) else raw
    return finish(body, suspect=_suspect(data))


def _suspect(data: bytes) -> bool:
    """False when the raw bytes prove no string can hold markup or a control character.

    JSON must escape control characters, so plain ASCII with no backslash, no "<" and
    no DEL is clean; anything else takes the exact per-field check.
    """
    return not data.isascii() or b"<" in data or b"\\" in data or b"\x7f" in data


def from_object(obj: object) -> Checkin:
    """One check-in from already-parsed data (a dict), validated the same way."""
    try:
        body = msgspec.convert(obj, CheckinBody)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    return finish(body, suspect=True)


def finish(body: CheckinBody, *, suspect: bool) -> Checkin:
    device = body.device
    owner = device.owner.strip().lower()
    if not EMAIL.match(owner):
        raise BadInput(f"not an e-mail address: {owner[:80]!r}", field="device.owner")
    device.owner = owner
    if suspect:
        _check_all_text(body)
    app_ids = [a.id for a in body.apps]
    if None in app_ids or len(set(app_ids)) != len(app_ids):
        _locate_app_problem(body.apps)
    if len(set(device.eas_device_ids)) != len(device.eas_device_ids):
        raise BadInput("duplicate ActiveSync device id", field="device.eas_device_ids")
    observed = parse_time(body.observed_at, field="observed_at")
    return Checkin(body.source, device, observed, body.apps, app_ids)


def _locate_app_problem(apps: list[App]) -> None:
    seen: dict[str, int] = {}
    for i, app in enumerate(apps):
        if app.id is None and not app.name:
            raise BadInput("an app needs an id or a name", field=f"apps[{i}]")
        key = app.id if app.id is not None else "name:" + (app.name or "")
        first = seen.setdefault(key, i)
        if first != i:
            raise BadInput(
                f"duplicate app (also apps[{first}])",
                field=f"apps[{i}].{'id' if app.id is not None else 'name'}",
            )


def _check_all_text(body: CheckinBody) -> None:
    device = body.device
    values = [device.id, device.owner, device.model or "", device.os_version or ""]
    values += device.eas_device_ids
    for app in body.apps:
        values += (app.id or "", app.name or "", app.version or "")
    joined = " ".join(values)
    if not (_CONTROL.search(joined) or _MARKUP.search(joined)):
        return
    check_text(device.id, "device.id")
    check_text(device.owner, "device.owner")
    check_text(device.model, "device.model")
    check_text(device.os_version, "device.os_version")
    for i, eas in enumerate(device.eas_device_ids):
        check_text(eas, f"device.eas_device_ids[{i}]")
    for i, app in enumerate(body.apps):
        check_text(app.id, f"apps[{i}].id")
        check_text(app.name, f"apps[{i}].name")
        check_text(app.version, f"apps[{i}].version")


def check_text(value: str | None, field: str) -> None:
    if value is None:
        return
    if _CONTROL.search(value):
        raise BadInput("control character in text", field=field)
    if _MARKUP.search(value):
        raise BadInput("markup in text", field=field)


def _validation_error(exc: msgspec.ValidationError) -> BadInput:
    message = str(exc)
    found = _FIELD.search(message)
    field = found.group(1) if found else None
    text = _FIELD.sub("", message)
    text = text.replace("Object missing required field", "missing required field")
    text = text.replace("Object contains unknown field", "unknown field")
    if field is None and text.startswith("Expected `object`"):
        text = "expected a JSON object"
    return BadInput(text, field=field or None)


def _decode_reason(exc: msgspec.DecodeError) -> str:
    return str(exc).replace("JSON is malformed: ", "")


def _bad_utf8_at(raw: bytes | str) -> int:
    """The offset of the first byte that is not UTF-8 (msgspec's offset is within a string)."""
    try:
        (raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0
