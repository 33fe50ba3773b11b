"""SPEC's policy file (YAML), validated field by field with the line of each error.

Lines come from the composed document, where an alias (``*a``) keeps its own
place: an error in a value reached through an alias names the alias's line, not
its anchor's. YAML 1.1 reads some plain words as other things (``no`` is false,
``007`` a number); no policy field takes those, so such a value is refused and
shown as the file wrote it, with the advice to quote it.
"""

from __future__ import annotations

import email.utils
import os
import re
import stat
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import yaml

from appban.catalog import PLATFORMS, Catalog
from appban.catalog.catalog import id_kind
from appban.clock import FIRST_TIME, Micros, format_duration, format_time, parse_duration, parse_time
from appban.errors import BadInput, one_line
from appban.store.records import NOTICE_KINDS
from appban.text import EMAIL, NotUtf8, check_identifier

LIST_PREFIX = "list:"
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
    "name_matches",
    "notices",
}
_SCOPE = {"platforms", "mail_access", "ownership", "include_groups", "exclude_groups"}
_REQUIRED = ("id", "title", "apps", "effective", "deadline")
_NOTICES = {"audience", "sender", "reply_to", "webhook", "templates"}
_TEMPLATE_PARTS = ("subject", "text", "html")
AUDIENCES = ("affected", "in_scope", "all")
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_SUBJECT_TEMPLATE = 300
MAX_WEBHOOK = 2000
TEXT_POLICY = "<policy>"  # parse_policy's file when the policy was given as text


@dataclass(frozen=True)
class Scope:
    platforms: tuple[str, ...] = ()
    mail_access: str = "required"
    ownership: str = "any"
    include_groups: tuple[str, ...] = ()
    exclude_groups: tuple[str, ...] = ()


# Compiles a policy's template (source, part, kind) and tries it on a sample notice;
# BadInput when it fails. Given by whoever applies a policy (rendering lives above this).
TemplateCheck = Callable[[str, str, str], None]


@dataclass(frozen=True)
class NoticeTemplate:
    """A policy's own template for one notice kind: Jinja2 source, "" for the shipped one."""

    subject: str = ""
    text: str = ""
    html: str = ""


@dataclass(frozen=True)
class Notices:
    """A policy's ``notices:`` section: who is told, by whom, where else, in what words."""

    audience: str = "affected"  # affected | in_scope | all
    sender: str = ""  # "" : APPBAN_MAIL_FROM
    reply_to: str = ""
    webhook: str = ""  # a URL each notice is also posted to (signed), "" for none
    templates: tuple[tuple[str, NoticeTemplate], ...] = ()  # (kind, template), by kind

    def template(self, kind: str) -> NoticeTemplate:
        return dict(self.templates).get(kind, NoticeTemplate())


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
    # What a match by display name alone means: the app is present (count), or
    # nothing can be proved either way (unverified).
    name_matches: str = "count"
    # The families of each catalog list the policy names (``list:NAME``), as the
    # catalog had them when the policy was applied or the list last changed.
    list_members: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notices: Notices = field(default_factory=Notices)

    @property
    def families(self) -> frozenset[str]:
        """Families banned by name or through a catalog list."""
        named = {a for a in self.apps if ":" not in a}
        return frozenset(named.union(*(members for _name, members in self.list_members)))

    @property
    def explicit(self) -> frozenset[tuple[str, str]]:
        """Identifiers named directly, as catalog (kind, value) pairs."""
        out = set()
        for ref in self.apps:
            if ":" in ref and not ref.startswith(LIST_PREFIX):
                platform, ident = ref.split(":", 1)
                out.add((id_kind(platform, ident), ident))
        return frozenset(out)

    def to_json(self) -> dict[str, Any]:
        """The policy as stored and as shown: times in UTC, durations as the file wrote them."""
        body = asdict(self)
        del body["max_inventory_age_text"], body["reminders_text"]
        body["apps"] = list(self.apps)
        body["list_members"] = {name: list(members) for name, members in self.list_members}
        body["notices"] = {
            "audience": self.notices.audience,
            "sender": self.notices.sender,
            "reply_to": self.notices.reply_to,
            "webhook": self.notices.webhook,
            "templates": {kind: asdict(t) for kind, t in self.notices.templates},
        }
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
            effective=parse_time(body["effective"], field="effective"),
            deadline=parse_time(body["deadline"], field="deadline"),
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
            max_inventory_age=parse_duration(body["max_inventory_age"], field="max_inventory_age"),
            reminders=tuple(parse_duration(r, field=f"reminders[{i}]") for i, r in enumerate(body["reminders"])),
            status=body.get("status", "active"),
            revision=body.get("revision", 1),
            name_matches=body.get("name_matches", "count"),
            list_members=tuple((n, tuple(m)) for n, m in (body.get("list_members") or {}).items()),
            notices=_notices_from_json(body.get("notices") or {}),
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


def _notices_from_json(body: dict[str, Any]) -> Notices:
    return Notices(
        audience=body.get("audience", "affected"),
        sender=body.get("sender", ""),
        reply_to=body.get("reply_to", ""),
        webhook=body.get("webhook", ""),
        templates=tuple((k, NoticeTemplate(**t)) for k, t in sorted((body.get("templates") or {}).items())),
    )


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_KINDS = {"int": "a number", "float": "a number", "timestamp": "a time", "binary": "binary data"}


class _Loader(yaml.SafeLoader):
    """SafeLoader whose bad scalars (a 10,000-digit number) say their line in appban's words."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError):
            kind = _KINDS.get(str(node.tag).rsplit(":", 1)[-1], "a value")
            shown = one_line(str(node.value), 40)
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown!r} as {kind}", node.start_mark
            ) from None

    def construct_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A time YAML recognises but cannot build (30 February, offset +25:00) stays
        text, so that parse_time says what is wrong with it, naming the field."""
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_timestamp)


class _Alias(yaml.Node):
    """Where an alias (``*a``) is written, with the node it stands for."""

    def __init__(self, target: yaml.Node, start: yaml.Mark, end: yaml.Mark) -> None:
        super().__init__(target.tag, target.value, start, end)
        self.target = target


class _AliasKeepingLoader(_Loader):
    """Composes a document with each alias at its own place (an _Alias), not replaced
    by the node it names: the lines of fields, not values, are what is wanted."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            target = self.anchors.get(event.anchor)
            if target is None:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return _Alias(target, event.start_mark, event.end_mark)
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


def _compose(text: str) -> yaml.Node | None:
    loader = _AliasKeepingLoader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


class _Lines:
    """Line numbers of the fields of a composed YAML document, and how plain words
    that YAML read as something else than text (``no``, ``~``, ``007``) were written."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[str, int] = {}
        self.first = 1
        self.plain: dict[str, str] = {}  # field -> the plain scalar YAML read as non-text
        self.keys: dict[tuple[str, str], str] = {}  # (mapping, key as read) -> key as written
        # Aliases are not followed (each is an _Alias), so a few hundred bytes of
        # nested aliases ("billion laughs") cost nothing; shared nodes are walked once.
        self._walked: set[int] = set()
        if node is not None:
            self.first = node.start_mark.line + 1
            self._walk(node, "")

    def _walk(self, node: yaml.Node, path: str) -> None:
        if isinstance(node, _Alias):
            if isinstance(node.target, yaml.ScalarNode):
                self._scalar(node.target, path)
            return  # fields below an alias are at the alias's line (see of())
        if id(node) in self._walked:
            return
        self._walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                full = f"{path}.{name}" if path else name
                if key.tag == _MERGE:
                    _check_merge(value, full)
                elif name in seen:
                    raise BadInput("duplicate field", line=key.start_mark.line + 1, field=full)
                seen.add(name)
                self._key(key, path)
                self.lines[full] = key.start_mark.line + 1
                self._walk(value, full)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                full = f"{path}[{i}]"
                self.lines[full] = item.start_mark.line + 1
                self._walk(item, full)
        elif isinstance(node, yaml.ScalarNode):
            self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: str) -> None:
        if node.style is None and node.tag != _STR and node.value:
            self.plain[path] = node.value

    def _key(self, key: yaml.Node, path: str) -> None:
        if isinstance(key, yaml.ScalarNode) and key.style is None and key.tag != _STR:
            try:
                read = yaml.constructor.SafeConstructor().construct_object(key)
            except (yaml.YAMLError, ValueError, OverflowError):
                return  # construction names it
            self.keys[(path, str(read))] = key.value

    def field_at(self, line: int) -> str | None:
        """The outermost field on a line, if any: never a wrong item of a flow list."""
        return min((p for p, n in self.lines.items() if n == line), key=len, default=None)

    def of(self, path: str) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[: max(path.rfind("."), path.rfind("["), 0)]  # the field that holds it
        return self.first

    def key(self, path: str, key: object) -> str:
        """A mapping's key as the file wrote it."""
        return self.keys.get((path, str(key)), str(key))

    def written(self, field: str, value: object) -> str:
        """A value as the file wrote it, quoted: ``'no'`` where YAML read false."""
        text = None if isinstance(value, str) else self.plain.get(field)
        return repr(one_line(text if text is not None else str(value), 60))

    def hint(self, field: str, value: object, *, before: str = "") -> str:
        """`` (YAML reads no unquoted as false: write 'no' in quotes to mean the text)``
        for a plain word YAML did not read as text, after ``before`` in the parentheses;
        `` (before)``, or nothing, for anything else."""
        text = None if isinstance(value, str) else self.plain.get(field)
        if text is None:
            return f" ({before})" if before else ""
        if isinstance(value, bool):
            reading = "true" if value else "false"
        elif value is None:
            reading = "empty (null)"
        else:
            reading = _KINDS.get(type(value).__name__, "a " + type(value).__name__)
        shown = one_line(text, 60)
        why = f"YAML reads {shown} unquoted as {reading}: write '{shown}' in quotes to mean the text"
        return f" ({before}; {why})" if before else f" ({why})"

    def got(self, field: str, value: object) -> str:
        """What a field holds, for an error: its text as written, or what kind of thing it is."""
        if isinstance(value, str) or field in self.plain:
            return self.written(field, value)
        if isinstance(value, list):
            return "a list"
        if isinstance(value, dict):
            return "a mapping"
        return "nothing" if value is None else type(value).__name__

    def misread(self, field: str, value: object, expected: str) -> BadInput:
        """``expected X, got 'no' (YAML reads no unquoted as false: ...)``."""
        return BadInput(f"expected {expected}, got {self.got(field, value)}{self.hint(field, value)}", field=field)


def _check_merge(value: yaml.Node, field: str) -> None:
    """YAML's merge key (``<<: *defaults``) takes a mapping or a list of them; said
    here, at the line of the alias, since the constructor would name the anchor's."""
    items = value.target if isinstance(value, _Alias) else value
    merged = items.value if isinstance(items, yaml.SequenceNode) else [value]
    for item in merged:
        node = item.target if isinstance(item, _Alias) else item
        if not isinstance(node, yaml.MappingNode):
            raise BadInput("'<<' merges a mapping or a list of mappings", line=item.start_mark.line + 1, field=field)


def parse_policy(
    text: str | bytes, catalog: Catalog, *, file: str = "<policy>", check: TemplateCheck | None = None
) -> Policy:
    """A policy from its YAML text. Raises BadInput naming file, line and field."""
    if len(text) > MAX_POLICY_BYTES:
        raise BadInput(f"policy file larger than {MAX_POLICY_BYTES} bytes", file=file)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotUtf8(exc.start, file=file, line=exc.object.count(b"\n", 0, exc.start) + 1) from None
    lines: _Lines | None = None
    try:
        lines = _Lines(_compose(text))
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
        return _build(data, catalog, lines, file, check)
    except BadInput as exc:
        raise exc.at(file=file, line=lines.of(exc.field or "")) from None


def _build(
    data: Any, catalog: Catalog, src: _Lines, file: str = TEXT_POLICY, check: TemplateCheck | None = None
) -> Policy:
    if not isinstance(data, dict):
        raise BadInput("a policy is a YAML mapping of fields")
    for key in data:
        if key not in _TOP:
            raise BadInput(f"unknown field (known: {', '.join(sorted(_TOP))})", field=one_line(src.key("", key), 60))
    for key in _REQUIRED:
        if data.get(key) is None:
            raise BadInput("missing required field", field=key)
    pid = data["id"]
    if not isinstance(pid, str):
        raise src.misread("id", pid, "an id")
    if not POLICY_ID.match(pid):
        raise BadInput("bad id: use 1-64 of a-z, 0-9 and '-', not starting or ending with '-'", field="id")
    effective = _time(data["effective"], "effective", src)
    deadline = _time(data["deadline"], "deadline", src)
    if deadline < effective:
        raise BadInput("deadline is before effective", field="deadline")
    max_age = _duration_text(data.get("max_inventory_age", "7d"), "max_inventory_age", src)
    reminders = [_duration_text(r, f"reminders[{i}]", src) for i, r in enumerate(_list(data, "reminders", src))]
    scope = data.get("scope")
    apps = _apps(data["apps"], catalog, src)
    return Policy(
        id=pid,
        title=_text(data["title"], "title", src, required=True),
        reason=_text(data.get("reason", ""), "reason", src),
        apps=apps,
        name_matches=_choice(data.get("name_matches", "count"), "name_matches", ("count", "unverified"), src),
        list_members=tuple(
            (a[len(LIST_PREFIX) :], catalog.lists[a[len(LIST_PREFIX) :]].families)
            for a in apps
            if a.startswith(LIST_PREFIX)
        ),
        scope=_scope({} if scope is None else scope, src),
        effective=effective,
        deadline=deadline,
        mode=_choice(data.get("mode", "enforce"), "mode", ("enforce", "monitor"), src),
        on_unverified=_choice(data.get("on_unverified", "allow"), "on_unverified", ("allow", "block"), src),
        max_inventory_age=parse_duration(max_age, field="max_inventory_age"),
        reminders=_reminders(reminders, deadline),
        max_inventory_age_text=max_age.strip(),
        reminders_text=tuple(r.strip() for r in reminders),
        notices=_notices(data.get("notices"), src, file, check),
    )


def _time(value: Any, field: str, src: _Lines) -> Micros:
    if not isinstance(value, str | date):  # a datetime is a date; parse_time reads both
        raise src.misread(field, value, "an ISO-8601 time with an offset, e.g. 2020-07-10T16:00:00Z")
    return parse_time(value, field=field)


def _duration_text(value: Any, field: str, src: _Lines) -> str:
    if not isinstance(value, str):
        raise src.misread(field, value, "a duration such as 7d, 24h or 90m")
    return value


def _reminders(written: list[str], deadline: Micros) -> tuple[Micros, ...]:
    """Each reminder once: two that name the same time before the deadline (``1w``
    and ``168h``) would send the same notice twice. Each falls in a year a time can
    be written in (0001 or later)."""
    out: list[Micros] = []
    for i, text in enumerate(written):
        value = parse_duration(text, field=f"reminders[{i}]")
        if deadline - value < FIRST_TIME:
            raise BadInput(f"{text.strip()!r} before the deadline is before the year 0001", field=f"reminders[{i}]")
        if value in out:
            first = out.index(value)
            raise BadInput(
                f"{text.strip()!r} is the same time as reminders[{first}] ({written[first].strip()!r})",
                field=f"reminders[{i}]",
            )
        out.append(value)
    return tuple(out)


def _text(value: Any, field: str, src: _Lines, *, required: bool = False, limit: int = 500) -> str:
    if not isinstance(value, str):
        raise src.misread(field, value, "text")
    if required and not value.strip():
        raise BadInput("must not be empty", field=field)
    if len(value) > limit:
        raise BadInput(f"longer than {limit} characters", field=field)
    if any(not ch.isprintable() for ch in value):
        raise BadInput("control character in text", field=field)
    if re.search(r"<[A-Za-z/!?]", value):
        raise BadInput("markup in text", field=field)
    return value


def _list(data: dict[Any, Any], field: str, src: _Lines, *, within: str = "") -> list[Any]:
    value = data.get(field)
    path = f"{within}.{field}" if within else field
    if value is None:
        return []
    if not isinstance(value, list):
        raise src.misread(path, value, "a list")
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...], src: _Lines) -> str:
    if not isinstance(value, str) or value not in choices:
        got, hint = src.got(field, value), src.hint(field, value)
        raise BadInput(f"{got} is not one of {', '.join(choices)}{hint}", field=field)
    return value


def _apps(value: Any, catalog: Catalog, src: _Lines) -> tuple[str, ...]:
    refs = _list({"apps": value}, "apps", src)
    if not refs:
        raise BadInput("name at least one app family, list:NAME or platform:identifier", field="apps")
    out: list[str] = []
    for i, ref in enumerate(refs):
        field = f"apps[{i}]"
        if not isinstance(ref, str):
            raise src.misread(field, ref, "a family, list:NAME or platform:identifier")
        if not ref or len(ref) > 256:
            raise BadInput("expected a family, list:NAME or platform:identifier", field=field)
        if ref.startswith(LIST_PREFIX):
            name = ref[len(LIST_PREFIX) :]
            if name not in catalog.lists:
                known = ", ".join(sorted(catalog.lists)) or "none"
                raise BadInput(f"unknown catalog list {name[:60]!r} (catalog has: {known})", field=field)
        elif ":" in ref:
            platform, ident = ref.split(":", 1)
            if platform not in PLATFORMS:
                raise BadInput(f"unknown platform {platform[:40]!r}", field=field)
            if not re.fullmatch(r"[A-Za-z0-9._-]+", ident):
                raise BadInput(f"bad identifier {ident[:80]!r}", field=field)
        elif ref not in catalog.families:
            known = ", ".join(sorted(catalog.families)) or "none"
            raise BadInput(f"unknown app family {ref[:60]!r} (catalog has: {known})", field=field)
        if ref in out:
            raise BadInput(f"{ref!r} listed twice", field=field)
        out.append(ref)
    return tuple(out)


def _scope(value: Any, src: _Lines) -> Scope:
    if not isinstance(value, dict):
        raise src.misread("scope", value, "a mapping")
    for key in value:
        if key not in _SCOPE:
            raise BadInput(
                f"unknown field (known: {', '.join(sorted(_SCOPE))})",
                field=f"scope.{one_line(src.key('scope', key), 60)}",
            )
    platforms = _list(value, "platforms", src, within="scope")
    for i, p in enumerate(platforms):
        if p not in PLATFORMS:
            field = f"scope.platforms[{i}]"
            hint = src.hint(field, p, before=f"known: {', '.join(PLATFORMS)}")
            raise BadInput(f"unknown platform {src.written(field, p)}{hint}", field=field)
    groups = {}
    for key in ("include_groups", "exclude_groups"):
        items = _list(value, key, src, within="scope")
        for i, g in enumerate(items):
            field = f"scope.{key}[{i}]"
            if not isinstance(g, str):
                raise src.misread(field, g, "a group name")
            if not g or len(g) > 200:
                raise BadInput("expected a group name of 1-200 characters", field=field)
            check_identifier(g, field)  # matched exactly against people's groups
        groups[key] = tuple(items)
    return Scope(
        platforms=tuple(dict.fromkeys(platforms)),
        mail_access=_choice(value.get("mail_access", "required"), "scope.mail_access", ("required", "any"), src),
        ownership=_choice(value.get("ownership", "any"), "scope.ownership", ("corporate", "personal", "any"), src),
        include_groups=groups["include_groups"],
        exclude_groups=groups["exclude_groups"],
    )


# -- notices: ---------------------------------------------------------------------------


def split_address(text: str) -> tuple[str, str]:
    """``("IT Security", "security@example.com")`` from ``IT Security <security@example.com>``
    or a bare address. ValueError, saying why, for anything but one address."""
    if len(text) > 500:
        raise ValueError("longer than 500 characters")
    if any(not ch.isprintable() for ch in text):
        raise ValueError("control character in an address")
    found = email.utils.getaddresses([text])
    if len(found) != 1 or not found[0][1]:
        raise ValueError("expected one address, e.g. IT Security <security@example.com>")
    name, addr = found[0]
    if not EMAIL.match(addr) or len(addr) > 254:
        raise ValueError(f"not an e-mail address: {addr[:80]!r}")
    return name, addr


def _notices(value: Any, src: _Lines, file: str, check: TemplateCheck | None) -> Notices:
    if value is None:
        return Notices()
    if not isinstance(value, dict):
        raise src.misread("notices", value, "a mapping")
    for key in value:
        if key not in _NOTICES:
            raise BadInput(
                f"unknown field (known: {', '.join(sorted(_NOTICES))})",
                field=f"notices.{one_line(src.key('notices', key), 60)}",
            )
    return Notices(
        audience=_choice(value.get("audience", "affected"), "notices.audience", AUDIENCES, src),
        sender=_address(value.get("sender"), "notices.sender", src),
        reply_to=_address(value.get("reply_to"), "notices.reply_to", src),
        webhook=_webhook(value.get("webhook"), "notices.webhook", src),
        templates=_templates(value.get("templates"), src, file, check),
    )


def _address(value: Any, field: str, src: _Lines) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise src.misread(field, value, "an e-mail address")
    try:
        split_address(value.strip())
    except ValueError as exc:
        raise BadInput(str(exc), field=field) from None
    return value.strip()


def _webhook(value: Any, field: str, src: _Lines) -> str:
    """An http(s) URL with a host and no credentials: the secret is APPBAN_WEBHOOK_SECRET,
    never in the policy, which anyone who may read policies sees."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise src.misread(field, value, "an http:// or https:// URL")
    url = value.strip()
    if len(url) > MAX_WEBHOOK:
        raise BadInput(f"a URL of at most {MAX_WEBHOOK} characters", field=field)
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise BadInput("a URL is printable ASCII without spaces (percent-encode the rest)", field=field)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput("expected an http:// or https:// URL with a host", field=field)
    if "@" in parts.netloc:
        raise BadInput("no credentials in a webhook URL: appban signs each post (APPBAN_WEBHOOK_SECRET)", field=field)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise BadInput("bad port in the URL", field=field) from None
    return url


def _templates(
    value: Any, src: _Lines, file: str, check: TemplateCheck | None
) -> tuple[tuple[str, NoticeTemplate], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise src.misread("notices.templates", value, "a mapping of notice kinds")
    out: list[tuple[str, NoticeTemplate]] = []
    for kind, parts in value.items():
        where = f"notices.templates.{one_line(src.key('notices.templates', kind), 60)}"
        if kind not in NOTICE_KINDS:
            raise BadInput(f"unknown notice kind (known: {', '.join(NOTICE_KINDS)})", field=where)
        if not isinstance(parts, dict):
            raise src.misread(where, parts, "a mapping of subject, text and html")
        for key in parts:
            if key not in _TEMPLATE_PARTS:
                raise BadInput(
                    f"unknown field (known: {', '.join(_TEMPLATE_PARTS)})",
                    field=f"{where}.{one_line(src.key(where, key), 60)}",
                )
        made = NoticeTemplate(
            subject=_subject(parts.get("subject"), kind, f"{where}.subject", src, check),
            text=_template_file(parts.get("text"), kind, "text", f"{where}.text", src, file, check),
            html=_template_file(parts.get("html"), kind, "html", f"{where}.html", src, file, check),
        )
        if made != NoticeTemplate():
            out.append((kind, made))
    return tuple(sorted(out))


def _subject(value: Any, kind: str, field: str, src: _Lines, check: TemplateCheck | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise src.misread(field, value, "a one-line template")
    if len(value) > MAX_SUBJECT_TEMPLATE:
        raise BadInput(f"a subject template is at most {MAX_SUBJECT_TEMPLATE} characters", field=field)
    if any(not ch.isprintable() for ch in value):
        raise BadInput("a subject template is one line, without control characters", field=field)
    if not value.strip():
        raise BadInput("must not be empty (leave it out for the shipped subject)", field=field)
    try:
        _checked(check, field)(value, "subject", kind)
    except BadInput as exc:
        raise BadInput(exc.detail, field=field) from None  # its line is the policy's
    return value


def _template_file(
    value: Any, kind: str, part: str, field: str, src: _Lines, file: str, check: TemplateCheck | None
) -> str:
    """A template file's text, read now and kept in the policy: the server never reads
    files when it sends, and a revision keeps its words."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise src.misread(field, value, "a template file's path")
    if not value or len(value) > 4096 or "\0" in value:
        raise BadInput("expected a path of 1-4096 characters", field=field)
    if not os.path.isabs(value) and file == TEXT_POLICY:
        raise BadInput("a relative template path needs the policy's own file (it was given as text)", field=field)
    path = os.path.join(os.path.dirname(file), value) if file != TEXT_POLICY else value
    raw = _read_template(path, field)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(exc.start, file=path, line=raw.count(b"\n", 0, exc.start) + 1, field=field) from None
    if not text.strip():
        raise BadInput(f"template {one_line(path, 200)!r} is empty", field=field)
    try:
        _checked(check, field)(text, part, kind)
    except BadInput as exc:
        if exc.line is not None:  # a syntax error: at its line in the template
            raise BadInput(exc.detail, file=path, line=exc.line, field=field) from None
        raise BadInput(f"template {one_line(path, 200)!r}: {exc.detail}", field=field) from None
    return text


def _checked(check: TemplateCheck | None, field: str) -> TemplateCheck:
    """The caller's template check (rendering's: ``appban.notify.render.check_template``,
    which renders a sample notice, so this module cannot call it itself)."""
    if check is None:
        raise BadInput("a policy's own templates are checked, and so read, only by appban policy apply", field=field)
    return check


def _read_template(path: str, field: str) -> bytes:
    try:
        # A FIFO or a device would block or never end: only a regular file is read.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadInput(f"cannot read template {one_line(path, 200)!r}: not a regular file", field=field)
        with open(path, "rb") as f:
            raw = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read template {one_line(path, 200)!r}: {exc.strerror}", field=field) from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise BadInput(f"template {one_line(path, 200)!r} is larger than {MAX_TEMPLATE_BYTES} bytes", field=field)
    return raw
