"""SPEC's policy file (YAML), validated field by field with the line of each error."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from appban.catalog import PLATFORMS, Catalog
from appban.catalog.catalog import id_kind
from appban.clock import Micros, format_duration, format_time, parse_duration, parse_time
from appban.errors import BadInput, one_line

POLICY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_POLICY_BYTES = 1024 * 1024
_DAY = 86400 * 1_000_000

_TOP = {
    "id",
    "title",
    "reason",
    "apps",
    "scope",
    "effective",
    "deadline",
    "mode",
    "on_unverified",
    "max_inventory_age",
    "reminders",
}
_SCOPE = {"platforms", "mail_access", "ownership", "include_groups", "exclude_groups"}
_REQUIRED = ("id", "title", "apps", "effective", "deadline")


@dataclass(frozen=True)
class Scope:
    platforms: tuple[str, ...] = ()
    mail_access: str = "required"
    ownership: str = "any"
    include_groups: tuple[str, ...] = ()
    exclude_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    apps: tuple[str, ...]
    effective: Micros
    deadline: Micros
    reason: str = ""
    scope: Scope = field(default_factory=Scope)
    mode: str = "enforce"
    on_unverified: str = "allow"
    max_inventory_age: Micros = 7 * _DAY
    reminders: tuple[Micros, ...] = ()
    status: str = "active"
    revision: int = 1
    # Durations as the file wrote them (``24h`` stays ``24h``, not ``1d``); empty for
    # a policy built in code, which is then shown in appban's own notation.
    max_inventory_age_text: str = ""
    reminders_text: tuple[str, ...] = ()

    @property
    def families(self) -> frozenset[str]:
        return frozenset(a for a in self.apps if ":" not in a)

    @property
    def explicit(self) -> frozenset[tuple[str, str]]:
        """Identifiers named directly, as catalog (kind, value) pairs."""
        out = set()
        for ref in self.apps:
            if ":" in ref:
                platform, ident = ref.split(":", 1)
                out.add((id_kind(platform, ident), ident))
        return frozenset(out)

    def to_json(self) -> dict[str, Any]:
        """The policy as stored and as shown: times in UTC, durations as the file wrote them."""
        body = asdict(self)
        del body["max_inventory_age_text"], body["reminders_text"]
        body["apps"] = list(self.apps)
        body["scope"] = {k: list(v) if isinstance(v, tuple) else v for k, v in body["scope"].items()}
        body["effective"] = format_time(self.effective)
        body["deadline"] = format_time(self.deadline)
        body["max_inventory_age"] = self.max_inventory_age_text or format_duration(self.max_inventory_age)
        if len(self.reminders_text) == len(self.reminders):
            body["reminders"] = list(self.reminders_text)
        else:
            body["reminders"] = [format_duration(r) for r in self.reminders]
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Policy:
        scope = body["scope"]
        return cls(
            id=body["id"],
            title=body["title"],
            apps=tuple(body["apps"]),
            effective=parse_time(body["effective"]),
            deadline=parse_time(body["deadline"]),
            reason=body.get("reason", ""),
            scope=Scope(
                platforms=tuple(scope["platforms"]),
                mail_access=scope["mail_access"],
                ownership=scope["ownership"],
                include_groups=tuple(scope["include_groups"]),
                exclude_groups=tuple(scope["exclude_groups"]),
            ),
            mode=body["mode"],
            on_unverified=body["on_unverified"],
            max_inventory_age=parse_duration(body["max_inventory_age"]),
            reminders=tuple(parse_duration(r) for r in body["reminders"]),
            status=body.get("status", "active"),
            revision=body.get("revision", 1),
            # Stored as written since durations kept their text; before, in appban's
            # notation, which reads back the same way.
            max_inventory_age_text=body["max_inventory_age"],
            reminders_text=tuple(body["reminders"]),
        )

    def same_rule(self, other: Policy) -> bool:
        """True when nothing but status and revision differ."""
        a, b = self.to_json(), other.to_json()
        for key in ("status", "revision"):
            a.pop(key), b.pop(key)
        return a == b


class _Loader(yaml.SafeLoader):
    """SafeLoader whose bad scalars (a 30 February, a 10,000-digit number) say their line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, one_line(str(exc), 80), node.start_mark) from None


class _Lines:
    """Line numbers of the fields of a composed YAML document."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[str, int] = {}
        self.first = 1
        # Aliases share nodes: walk each once, or a few hundred bytes of nested
        # aliases ("billion laughs") take hours.
        self._walked: set[int] = set()
        if node is not None:
            self.first = node.start_mark.line + 1
            self._walk(node, "")

    def _walk(self, node: yaml.Node, path: str) -> None:
        if id(node) in self._walked:
            return
        self._walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                full = f"{path}.{name}" if path else name
                if name in seen:
                    raise BadInput("duplicate field", line=key.start_mark.line + 1, field=full)
                seen.add(name)
                self.lines[full] = key.start_mark.line + 1
                self._walk(value, full)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                full = f"{path}[{i}]"
                self.lines[full] = item.start_mark.line + 1
                self._walk(item, full)

    def field_at(self, line: int) -> str | None:
        """The outermost field on a line, if any: never a wrong item of a flow list."""
        return min((p for p, n in self.lines.items() if n == line), key=len, default=None)

    def of(self, path: str) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return self.first


def parse_policy(text: str | bytes, catalog: Catalog, *, file: str = "<policy>") -> Policy:
    """A policy from its YAML text. Raises BadInput naming file, line and field."""
    if len(text) > MAX_POLICY_BYTES:
        raise BadInput(f"policy file larger than {MAX_POLICY_BYTES} bytes", file=file)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = exc.object
            raise BadInput(
                f"not UTF-8 (byte {exc.start})", file=file, line=raw.count(b"\n", 0, exc.start) + 1
            ) from None
    lines: _Lines | None = None
    try:
        node = yaml.compose(text, Loader=_Loader)
        lines = _Lines(node)
        data = yaml.load(text, Loader=_Loader)
    except BadInput as exc:
        raise exc.at(file=file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        field = lines.field_at(line) if lines and line else None
        raise BadInput(f"malformed YAML: {exc.problem or exc.context}", file=file, line=line, field=field) from None
    except yaml.YAMLError as exc:
        raise BadInput(f"malformed YAML: {one_line(str(exc))}", file=file) from None
    except RecursionError:
        raise BadInput("malformed YAML: nested too deeply", file=file) from None
    try:
        return _build(data, catalog)
    except BadInput as exc:
        raise exc.at(file=file, line=lines.of(exc.field or "")) from None


def _build(data: Any, catalog: Catalog) -> Policy:
    if not isinstance(data, dict):
        raise BadInput("a policy is a YAML mapping of fields")
    for key in data:
        if key not in _TOP:
            raise BadInput(f"unknown field (known: {', '.join(sorted(_TOP))})", field=one_line(str(key), 60))
    for key in _REQUIRED:
        if data.get(key) is None:
            raise BadInput("missing required field", field=key)
    pid = data["id"]
    if not isinstance(pid, str) or not POLICY_ID.match(pid):
        raise BadInput("bad id: use 1-64 of a-z, 0-9 and '-', not starting or ending with '-'", field="id")
    effective = parse_time(data["effective"], field="effective")
    deadline = parse_time(data["deadline"], field="deadline")
    if deadline < effective:
        raise BadInput("deadline is before effective", field="deadline")
    max_age = data.get("max_inventory_age", "7d")
    reminders = _list(data.get("reminders", []), "reminders")
    return Policy(
        id=pid,
        title=_text(data["title"], "title", required=True),
        reason=_text(data.get("reason", ""), "reason"),
        apps=_apps(data["apps"], catalog),
        scope=_scope(data.get("scope") or {}),
        effective=effective,
        deadline=deadline,
        mode=_choice(data.get("mode", "enforce"), "mode", ("enforce", "monitor")),
        on_unverified=_choice(data.get("on_unverified", "allow"), "on_unverified", ("allow", "block")),
        max_inventory_age=parse_duration(max_age, field="max_inventory_age"),
        reminders=tuple(parse_duration(r, field=f"reminders[{i}]") for i, r in enumerate(reminders)),
        max_inventory_age_text=max_age.strip(),
        reminders_text=tuple(r.strip() for r in reminders),
    )


def _text(value: Any, field: str, *, required: bool = False, limit: int = 500) -> str:
    if not isinstance(value, str):
        raise BadInput(f"expected text, got {type(value).__name__}", field=field)
    if required and not value.strip():
        raise BadInput("must not be empty", field=field)
    if len(value) > limit:
        raise BadInput(f"longer than {limit} characters", field=field)
    if any(not ch.isprintable() for ch in value):
        raise BadInput("control character in text", field=field)
    if re.search(r"<[A-Za-z/!?]", value):
        raise BadInput("markup in text", field=field)
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"expected a list, got {type(value).__name__}", field=field)
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        shown = one_line(str(value), 40)
        raise BadInput(f"{shown!r} is not one of {', '.join(choices)}", field=field)
    return str(value)


def _apps(value: Any, catalog: Catalog) -> tuple[str, ...]:
    refs = _list(value, "apps")
    if not refs:
        raise BadInput("name at least one app family or platform:identifier", field="apps")
    out: list[str] = []
    for i, ref in enumerate(refs):
        field = f"apps[{i}]"
        if not isinstance(ref, str) or not ref or len(ref) > 256:
            raise BadInput("expected a family or platform:identifier", field=field)
        if ":" in ref:
            platform, ident = ref.split(":", 1)
            if platform not in PLATFORMS:
                raise BadInput(f"unknown platform {one_line(platform, 40)!r}", field=field)
            if not re.fullmatch(r"[A-Za-z0-9._-]+", ident):
                raise BadInput(f"bad identifier {one_line(ident, 80)!r}", field=field)
        elif ref not in catalog.families:
            known = ", ".join(sorted(catalog.families)) or "none"
            raise BadInput(f"unknown app family {one_line(ref, 60)!r} (catalog has: {known})", field=field)
        if ref in out:
            raise BadInput(f"{ref!r} listed twice", field=field)
        out.append(ref)
    return tuple(out)


def _scope(value: Any) -> Scope:
    if not isinstance(value, dict):
        raise BadInput("expected a mapping", field="scope")
    for key in value:
        if key not in _SCOPE:
            raise BadInput(
                f"unknown field (known: {', '.join(sorted(_SCOPE))})",
                field=f"scope.{one_line(str(key), 60)}",
            )
    platforms = _list(value.get("platforms", []), "scope.platforms")
    for i, p in enumerate(platforms):
        if p not in PLATFORMS:
            raise BadInput(
                f"unknown platform {one_line(str(p), 40)!r} (known: {', '.join(PLATFORMS)})",
                field=f"scope.platforms[{i}]",
            )
    groups = {}
    for key in ("include_groups", "exclude_groups"):
        items = _list(value.get(key, []), f"scope.{key}")
        for i, g in enumerate(items):
            if not isinstance(g, str) or not g or len(g) > 200:
                raise BadInput("expected a group name", field=f"scope.{key}[{i}]")
        groups[key] = tuple(items)
    return Scope(
        platforms=tuple(dict.fromkeys(platforms)),
        mail_access=_choice(value.get("mail_access", "required"), "scope.mail_access", ("required", "any")),
        ownership=_choice(value.get("ownership", "any"), "scope.ownership", ("corporate", "personal", "any")),
        include_groups=groups["include_groups"],
        exclude_groups=groups["exclude_groups"],
    )
