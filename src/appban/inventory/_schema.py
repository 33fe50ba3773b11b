"""What is wrong with a value that a msgspec type refused, in appban's words.

The fast decoder says only that a value does not fit; this walks the value (parsed
JSON, or the dicts a CSV row becomes) against the type's own description
(``msgspec.inspect.type_info``: fields, required or not, string bounds and
patterns, literal choices) and names the first field that does not fit, in
document order, with a message of its own.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec.inspect as mi

from appban.errors import BadInput, one_line
from appban.inventory._json_text import Path, format_field


class _Misfit(Exception):
    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def first_problem(value: Any, cls: type) -> BadInput | None:
    """The first way ``value`` does not fit ``cls``, naming its field; None if it fits."""
    try:
        _check(value, _type_info(cls), ())
    except _Misfit as misfit:
        return BadInput(misfit.message, field=format_field(misfit.path))
    return None


@functools.cache
def _type_info(cls: type) -> mi.Type:
    return mi.type_info(cls)


def _check(value: Any, t: mi.Type, path: Path) -> None:
    description = None
    if isinstance(t, mi.Metadata):
        description = (t.extra_json_schema or {}).get("description")
        t = t.type
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if _fits_kind(value, member):
                _check(value, member, path)
                return
        raise _Misfit(f"expected {_expected(t)}, got {_kind(value)}", path)
    if not _fits_kind(value, t):
        raise _Misfit(f"expected {_expected(t)}, got {_kind(value)}", path)
    if isinstance(t, mi.StructType):
        _check_struct(value, t, path)
    elif isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        _check_length(len(value), t, "items", path)
        for i, item in enumerate(value):
            _check(item, t.item_type, (*path, i))
    elif isinstance(t, mi.DictType):
        for key, item in value.items():
            _check(key, t.key_type, (*path, key))
            _check(item, t.value_type, (*path, key))
    elif isinstance(t, mi.StrType):
        _check_str(value, t, description, path)
    elif isinstance(t, mi.LiteralType):
        if value not in t.values:
            choices = ", ".join(str(v) for v in t.values)
            raise _Misfit(f"{_show(value)} is not one of {choices}", path)
    elif isinstance(t, (mi.IntType, mi.FloatType)):
        _check_number(value, t, path)


def _check_struct(value: dict[str, Any], t: mi.StructType, path: Path) -> None:
    fields = {f.encode_name: f for f in t.fields}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            if t.forbid_unknown_fields:
                raise _Misfit(f"unknown field (known: {', '.join(fields)})", (*path, key))
            continue
        _check(item, field.type, (*path, key))
    for name, field in fields.items():
        if field.required and name not in value:
            raise _Misfit(f"missing required field {name!r}", path)


def _check_str(value: str, t: mi.StrType, description: str | None, path: Path) -> None:
    if t.min_length is not None and len(value) < t.min_length:
        if t.min_length == 1:
            raise _Misfit("must not be empty", path)
        raise _Misfit(f"text of length {len(value)}: at least {t.min_length} characters", path)
    if t.max_length is not None and len(value) > t.max_length:
        raise _Misfit(f"text of length {len(value)}: at most {t.max_length} characters", path)
    if t.pattern is not None and not re.search(t.pattern, value):
        rule = description or f"text matching {t.pattern}"
        raise _Misfit(f"{_show(value)} is not {rule}", path)


def _check_length(length: int, t: Any, what: str, path: Path) -> None:
    if t.min_length is not None and length < t.min_length:
        raise _Misfit(f"{length} {what}: at least {t.min_length}", path)
    if t.max_length is not None and length > t.max_length:
        raise _Misfit(f"{length} {what}: at most {t.max_length}", path)


def _check_number(value: float, t: mi.IntType | mi.FloatType, path: Path) -> None:
    bounds = (
        (t.ge, lambda v, b: v >= b, "at least"),
        (t.gt, lambda v, b: v > b, "more than"),
        (t.le, lambda v, b: v <= b, "at most"),
        (t.lt, lambda v, b: v < b, "less than"),
    )
    for bound, ok, words in bounds:
        if bound is not None and not ok(value, bound):
            raise _Misfit(f"{value} is not {words} {bound}", path)
    if t.multiple_of is not None and value % t.multiple_of:
        raise _Misfit(f"{value} is not a multiple of {t.multiple_of}", path)


def _fits_kind(value: Any, t: mi.Type) -> bool:
    """Whether ``value`` is the kind of JSON value ``t`` takes (a string, a list...)."""
    if isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.AnyType):
        return True
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.LiteralType):
        return any(type(value) is type(v) for v in t.values)
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return isinstance(value, list)
    if isinstance(t, (mi.StructType, mi.DictType)):
        return isinstance(value, dict)
    return True  # a type appban's inputs do not use: nothing to say about it


def _expected(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.UnionType):
        return " or ".join(_expected(m) for m in t.types)
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(str(v) for v in t.values)
    names = {
        mi.NoneType: "null",
        mi.BoolType: "true or false",
        mi.IntType: "a whole number",
        mi.FloatType: "a number",
        mi.StrType: "text",
        mi.ListType: "a list",
        mi.VarTupleType: "a list",
        mi.SetType: "a list",
        mi.FrozenSetType: "a list",
        mi.StructType: "an object",
        mi.DictType: "an object",
    }
    return names.get(type(t), "a value")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    return repr(one_line(value, 60)) if isinstance(value, str) else _kind(value)
