"""A notice's words: rendered when it is sent, from the store as it is then.

The outbox row says what a notice is about (policy, person, kind, occasion,
devices); everything it shows is read here, at send time, so that queuing 500,000
is cheap and a notice never shows a state that has since changed. The templates
are Jinja2: the shipped ones (``notify/templates/``) or a policy's own, stored as
text in the policy when it was applied and run in a sandbox.

Names a device or a source reported (models, app names) are data, never
templates: they are passed to a template as values, cut to 200 characters, with
control characters made spaces, and escaped in HTML by autoescaping.
"""

from __future__ import annotations

import binascii
import email.header
import email.policy
import email.utils
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from appban import settings
from appban.clock import Micros, format_time, now_micros
from appban.errors import BadInput, NotFound, one_line
from appban.notify import links
from appban.policy.evaluator import load_policy, matching_keys
from appban.policy.lifecycle import get_policy
from appban.policy.model import Policy, split_address
from appban.policy.states import (
    DETAIL_BY_NAME,
    DETAIL_CATALOG,
    DETAIL_MANAGED,
    DETAIL_NONE,
    DETAIL_STALE,
)
from appban.store import Store
from appban.store.records import (
    NOTICE_KINDS,
    DeviceRow,
    Exemption,
    Notice,
    Observation,
    Person,
    PolicyRow,
    StateRow,
)
from appban.text import normalise_email
from appban.workspace import Workspace

MAX_NAME = 200  # a reported name (model, app) shown in a notice
MAX_SUBJECT = 200
MAX_PART = 1024 * 1024  # what one template may produce
MAX_DEVICES = 50  # devices listed in one notice; the rest are counted
_CUT = "\u2026"

# The subject of each kind when the policy names none (inline templates, like a policy's).
SUBJECTS = {
    "memo": "Action needed: remove {{ apps }} by {{ deadline_local }}",
    "reminder": "Reminder: remove {{ apps }} by {{ deadline_local }}",
    "policy_changed": "Update: {{ policy.title }}",
    "blocked": "Company email is blocked on your device: remove {{ apps }}",
    "restored": "Company email works again on your device",
    "correction": "Correction: \u201c{{ policy.title }}\u201d has been withdrawn",
    "exemption": "Your exemption: {{ policy.title }}",
    "exemption_expiring": "Your exemption ends soon: {{ policy.title }}",
}

# States a notice shows devices in when its row names none: the person's devices
# that still need something done.
_NEEDING = ("violating", "unverified", "blocked")
_SHOWN = {"exemption": (*_NEEDING, "exempt"), "exemption_expiring": (*_NEEDING, "exempt")}

# Platforms as people call them, in notices and on their page.
PLATFORM_NAMES = {
    "ios": "iOS",
    "ipados": "iPadOS",
    "android": "Android",
    "macos": "macOS",
    "windows": "Windows",
    "linux": "Linux",
    "chromeos": "ChromeOS",
}
_UNVERIFIED = {
    DETAIL_NONE: "we have no list of its apps",
    DETAIL_MANAGED: "we can see only the apps your organisation manages on it",
    DETAIL_STALE: "its last list of apps is too old",
    DETAIL_CATALOG: "its last list of apps was checked against an older catalog",
    DETAIL_BY_NAME: "an app with a banned app's name was seen on it",
}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a reported name may not carry into a notice: controls (CR and LF above all),
# line and paragraph separators, bidi controls and the byte-order mark.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a header line may not hold: the above and lone surrogates, which together are every
# character of Unicode's categories Cc, Zl, Zp and Cs (fixed by its stability policy), the
# bidi controls and the byte-order mark.
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_SPECIALS = re.compile(r'[][\\()<>@,:;."]')  # RFC 5322's specials: a name with one is quoted


@dataclass(frozen=True)
class Rendered:
    notice_id: int
    kind: str
    policy_id: str
    to: str  # the person's email
    to_name: str  # the person's name ('' if unknown)
    sender: str  # "Name <addr>" or addr
    reply_to: str  # '' for none
    subject: str  # one line, no controls, at most MAX_SUBJECT characters
    text: str
    html: str
    message_id: str  # the same for every rendering of one notice
    link: str  # the personal page link in it
    context: dict[str, Any]  # what the templates saw (JSON-able)
    rendered_at: Micros = 0  # the Date header; 0: the time email_message runs


# -- templates ---------------------------------------------------------------------------


class _Sandbox(SandboxedEnvironment):
    """A policy's own templates: no attribute a template could escape through (Jinja2's
    sandbox), and no arithmetic that takes the sender's memory or time (``9**9**9``,
    ``'x' * 10**9``)."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise jinja2.sandbox.SecurityError("an exponent above 64")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_PART:
                    raise jinja2.sandbox.SecurityError("a repetition longer than a notice")
        return super().call_binop(context, operator, left, right)


def _options() -> dict[str, Any]:
    return {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True, "trim_blocks": True}


class _Shipped(jinja2.Environment):
    """The shipped templates' environment. What they show is the context: dicts of
    strings, looked up by key before Jinja tries an attribute of the same name (a
    failed attribute lookup, an exception, on each of a notice's fifty ``a.b``)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


_SHIPPED = _Shipped(
    loader=jinja2.PackageLoader("appban.notify", "templates"),
    autoescape=jinja2.select_autoescape(("html",), default_for_string=False, default=False),
    auto_reload=False,  # shipped files do not change under a running sender: no stat per notice
    **_options(),
)
# The shipped templates call none of Jinja's global functions (range, dict, ...): without
# them, a template's context is not built by merging them in, for each of its parts.
_SHIPPED.globals.clear()
_OWN = {"subject": _Sandbox(autoescape=False, **_options()), "text": _Sandbox(autoescape=False, **_options())}
_OWN["html"] = _Sandbox(autoescape=True, **_options())
PARTS = ("subject", "text", "html")


@functools.lru_cache(maxsize=256)
def _compiled(part: str, source: str) -> jinja2.Template:
    return _OWN[part].from_string(source)


@functools.lru_cache(maxsize=len(SUBJECTS) + 1)
def _shipped_subject(kind: str) -> jinja2.Template:
    return _SHIPPED.from_string(SUBJECTS[kind])


def check_template(source: str, part: str, kind: str) -> None:
    """A policy's template for ``part`` of ``kind``, compiled and tried on a sample
    notice as rendering would run it. BadInput (with the template's line for a
    syntax error) says what is wrong."""
    try:
        template = _compiled(part, source)
    except jinja2.TemplateSyntaxError as exc:
        raise BadInput(
            f"template syntax error: {one_line(exc.message or 'unreadable', 160)}", line=exc.lineno
        ) from None
    context = sample_context(kind)
    if part != "subject":
        context["subject"] = "Sample subject"
    try:
        _run(template, context)
    except BadInput as exc:
        raise BadInput(f"fails on a sample notice: {exc.detail}") from None


def _run(template: jinja2.Template, context: dict[str, Any]) -> str:
    """The template's output, at most MAX_PART characters; any failure a BadInput."""
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_PART:
                raise BadInput(f"renders more than {MAX_PART} characters")
            out.append(chunk)
    except BadInput:
        raise
    except jinja2.UndefinedError as exc:
        raise BadInput(f"undefined: {one_line(str(exc), 160)}") from None
    except jinja2.sandbox.SecurityError as exc:
        raise BadInput(f"refused by the sandbox: {one_line(str(exc), 160)}") from None
    except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{type(exc).__name__}: {one_line(str(exc), 160)}") from None
    except RecursionError:
        raise BadInput("recursion too deep") from None
    return "".join(out)


def _render_part(policy: Policy, kind: str, part: str, context: dict[str, Any]) -> str:
    own = getattr(policy.notices.template(kind), part)
    if own:
        try:
            return _run(_compiled(part, own), context)
        except jinja2.TemplateSyntaxError as exc:  # stored before the check existed
            raise BadInput(
                f"{part}: syntax error: {one_line(exc.message or '', 160)}", field=f"template {kind}"
            ) from None
        except BadInput as exc:
            raise BadInput(f"{part}: {exc.detail}", field=f"template {kind}") from None
    if part == "subject":
        return _shipped_subject(kind).render(context)
    return _SHIPPED.get_template(f"{kind}.{'txt' if part == 'text' else 'html'}").render(context)


# -- rendering ---------------------------------------------------------------------------


def render(store: Store, notice: Notice, now: Micros) -> Rendered:
    """``notice`` as it is sent at ``now``. BadInput when it cannot be: its policy is
    gone (field ``policy``), or a policy's own template fails (``template <kind>``)."""
    return Renderer(store, now).render(notice)


class Renderer:
    """Renders notices as they are sent at ``now``, like ``render``, reading what they
    share once: each policy (its row, decoded) and the sender setting. A sender makes
    one a batch, so a batch's notices show their policy as the batch first read it (a
    fraction of a second before the last is rendered) and the rest as it is."""

    def __init__(self, store: Store, now: Micros) -> None:
        self.store = store
        self.now = now
        self._policies: dict[str, tuple[PolicyRow, Policy] | None] = {}
        self._mail_from: str | None = None

    def policy(self, policy_id: str) -> tuple[PolicyRow, Policy] | None:
        if policy_id not in self._policies:
            row = self.store.get_policy(policy_id)
            self._policies[policy_id] = (row, _load(row.id, row.status, row.revision, row.body)) if row else None
        return self._policies[policy_id]

    def render(self, notice: Notice) -> Rendered:
        if notice.kind not in NOTICE_KINDS:
            raise BadInput(f"unknown notice kind {notice.kind[:40]!r}", field="kind")
        found = self.policy(notice.policy_id)
        if found is None:
            raise NotFound(f"no policy {notice.policy_id!r}", field="policy")
        row, policy = found
        store, now = self.store, self.now
        person = store.get_person(notice.person) or Person(email=notice.person)
        zone = _zone(person.timezone)
        exemption = _exemption(store, notice)
        devices = _devices(store, policy, notice, exemption)
        more = max(0, len(devices) - MAX_DEVICES)
        views = [_device_view(policy, d, state, _sightings(store, d), zone) for d, state in devices[:MAX_DEVICES]]
        context = build_context(
            policy,
            kind=notice.kind,
            person=person,
            devices=views,
            more_devices=more,
            exemption=exemption,
            withdraw_reason=row.withdraw_reason or "",
            banned=lambda: _banned_names(store, policy),
            link=links.url(store, person.email, now),
            now=now,
        )
        if not policy.notices.sender and self._mail_from is None:
            self._mail_from = str(settings.get("mail_from"))
        return _rendered(policy, notice, person, context, now, policy.notices.sender or str(self._mail_from))


def _rendered(
    policy: Policy, notice: Notice, person: Person, context: dict[str, Any], now: Micros, sender: str
) -> Rendered:
    subject = clean_subject(_render_part(policy, notice.kind, "subject", context)) or clean_subject(policy.title)
    context["subject"] = subject
    text = _render_part(policy, notice.kind, "text", context)
    html = _render_part(policy, notice.kind, "html", context)
    try:
        name, addr = _split(sender)
    except ValueError as exc:
        raise BadInput(f"not one e-mail address: {exc}", field="APPBAN_MAIL_FROM") from None
    domain = addr.rpartition("@")[2] or "localhost"
    key = "|".join((notice.policy_id, notice.person, notice.kind, notice.occasion, notice.channel))
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return Rendered(
        notice_id=notice.id,
        kind=notice.kind,
        policy_id=notice.policy_id,
        to=person.email,
        to_name=_data(person.name),
        sender=_mailbox(_data(name), addr),
        reply_to=policy.notices.reply_to,
        subject=subject,
        text=text,
        html=html,
        message_id=f"<appban.{notice.id}.{digest}@{domain}>",
        link=str(context["link"]),
        context=context,
        rendered_at=now,
    )


@functools.lru_cache(maxsize=256)
def _split(text: str) -> tuple[str, str]:
    """split_address, once for each address: every notice of a policy has its sender."""
    return split_address(text)


def _mailbox(name: str, addr: str) -> str:
    """``Name <addr>``, the name quoted when it holds a character that ends a name."""
    if not name:
        return addr
    if _SPECIALS.search(name):
        name = f'"{email.utils.quote(name)}"'
    return f"{name} <{addr}>"


@functools.lru_cache(maxsize=32)
def _load(policy_id: str, status: str, revision: int, body: str) -> Policy:
    # Keyed by the stored body too: 500,000 notices of one policy decode it once.
    return load_policy(PolicyRow(policy_id, status, revision, body, "", 0, 0))


def _exemption(store: Store, notice: Notice) -> Exemption | None:
    """The exemption an ``ex-<id>`` occasion names, if it is this person's under this policy."""
    if not notice.occasion.startswith("ex-") or not notice.occasion[3:].isdigit():
        return None
    found = store.get_exemption(int(notice.occasion[3:]))
    if found is None or found.policy_id != notice.policy_id:
        return None
    return found


def _devices(
    store: Store, policy: Policy, notice: Notice, exemption: Exemption | None
) -> list[tuple[DeviceRow, StateRow | None]]:
    """The devices a notice is about, with their state under the policy: those its row
    names, else the exemption's device, else the person's devices that need something
    done; none for a correction. Only devices the person owns now: a device that changed hands since the
    notice was planned is no longer theirs to be told about."""
    if notice.kind == "correction":
        return []  # the policy is withdrawn: its states no longer mean anything
    wanted: Iterable[int] = notice.devices
    if not notice.devices and exemption is not None and exemption.device_id is not None:
        wanted = (exemption.device_id,)
    out: list[tuple[DeviceRow, StateRow | None]] = []
    if wanted:
        for device_id in wanted:
            device = store.get_device(device_id)
            if device is not None and device.id is not None and device.owner == notice.person:
                out.append((device, store.device_states(device.id).get(policy.id)))
        return out
    shown = _SHOWN.get(notice.kind, _NEEDING)
    for device in store.devices_of_owner(notice.person):
        state = store.device_states(device.id or 0).get(policy.id)
        if state is not None and state.state in shown:
            out.append((device, state))
    return out


def _sightings(store: Store, device: DeviceRow) -> list[tuple[str, Observation]]:
    """Which source reports which present app: each record's own for a linked device."""
    records = store.records_of(device.id or 0) if device.linked else []
    if records:
        return [
            (r.facts.source, o) for r in records for o in store.record_observations(r.facts.id or 0, present_only=True)
        ]
    return [(device.source, o) for o in store.observations(device.id or 0, present_only=True)]


def _banned_names(store: Store, policy: Policy) -> list[str]:
    """What the policy bans, named for people: catalog titles, identifiers as written."""
    titles = {f: str(b.get("title") or f) for f, b in store.catalog().families.items()}
    return _policy_apps(policy, titles)


def _policy_apps(policy: Policy, titles: dict[str, str]) -> list[str]:
    names = [titles.get(f, f) for f in sorted(policy.families)]
    names += [ident for _kind, ident in sorted(policy.explicit)]
    return names


# -- the context -------------------------------------------------------------------------


def build_context(
    policy: Policy,
    *,
    kind: str,
    person: Person,
    devices: list[dict[str, Any]],
    more_devices: int,
    exemption: Exemption | None,
    withdraw_reason: str,
    banned: Callable[[], list[str]],
    link: str,
    now: Micros,
) -> dict[str, Any]:
    """What every template of ``kind`` sees: the same keys for every kind (a key that
    does not apply is empty or None), JSON-able. ``banned`` is called for the policy's
    app names only when no device shows one."""
    zone = _zone(person.timezone)
    found = list(dict.fromkeys(a["name"] for d in devices for a in d["apps"]))
    names = found or [_data(n) for n in banned()]
    apps = _joined(names)
    deadline = moment(policy.deadline, zone)
    context: dict[str, Any] = {
        "kind": kind,
        "person": {"email": person.email, "name": _data(person.name), "timezone": _zone_name(zone)},
        "policy": {
            "id": policy.id,
            "title": policy.title,
            "reason": policy.reason,
            "mode": policy.mode,
            "status": policy.status,
            "effective": moment(policy.effective, zone),
            "deadline": deadline,
            "withdraw_reason": withdraw_reason,
        },
        "enforced": policy.mode == "enforce",
        "deadline_passed": now >= policy.deadline,
        "deadline_local": deadline["local"],
        "deadline_iso": deadline["iso"],
        "deadline_local_iso": deadline["local_iso"],
        "apps": apps,
        "app_names": names,
        "apps_found": bool(found),
        "devices": devices,
        "more_devices": more_devices,
        "exemption": _exemption_view(exemption, zone),
        "link": link,
        "now": moment(now, zone),
    }
    context["what_to_do"] = _what_to_do(kind, context)
    return context


def _device_view(
    policy: Policy, device: DeviceRow, state: StateRow | None, seen: list[tuple[str, Observation]], zone: tzinfo
) -> dict[str, Any]:
    apps: dict[str, dict[str, Any]] = {}
    banned = set(matching_keys(policy, (o for _s, o in seen)))
    for source, o in seen:
        if o.app_key not in banned:
            continue
        app = apps.setdefault(
            o.app_key,
            {
                "name": _data(o.name or o.app_id or o.family),
                "id": _data(o.app_id or ""),
                "version": _data(o.version or ""),
                "family": o.family,
                "seen": [],
            },
        )
        at = moment(o.last_seen, zone)
        app["seen"].append({"source": _data(source), "at": at})
    for app in apps.values():
        where = " and ".join(f"by {s['source']} on {s['at']['date']} at {s['at']['time']}" for s in app["seen"])
        app["text"] = f"{app['name']}, seen {where}"
    platform = PLATFORM_NAMES.get(device.platform, device.platform)
    names = ", ".join(a["name"] for a in apps.values())
    model = _data(device.model)
    return {
        "id": device.ref,
        "name": f"{model} ({platform})" if model else f"{platform} device",
        "model": model,
        "platform": platform,
        "last_seen": moment(device.observed_at, zone),
        "state": state.state if state else "out_of_scope",
        "state_text": _state_text(state, names),
        "apps": list(apps.values()),
    }


def _state_text(row: StateRow | None, apps: str) -> str:
    """The device's state under the policy, in words."""
    state = row.state if row else "out_of_scope"
    if state == "violating":
        return f"{apps or 'a banned app'} is on it"
    if state == "blocked":
        why = f"{apps} is still on it" if apps else "we could not check its apps"
        return f"blocked from company email: {why}"
    if state == "unverified":
        detail = row.detail if row else ""
        why = next((words for d, words in _UNVERIFIED.items() if detail.startswith(d)), "")
        return f"not checked: {why or 'we could not see whether a banned app is on it'}"
    if state == "exempt":
        return "exempt from this rule for now"
    if state == "compliant":
        return "fine: no banned app on it"
    return "not concerned"


def _exemption_view(exemption: Exemption | None, zone: tzinfo) -> dict[str, Any] | None:
    if exemption is None:
        return None
    return {
        "id": exemption.id,
        "starts": moment(exemption.starts, zone),
        "until": moment(exemption.until, zone),
        "reason": _data(exemption.reason, 500),
        "device": f"dev-{exemption.device_id}" if exemption.device_id is not None else None,
        "revoked": exemption.revoked_at is not None,
    }


_CHECK_IN = (
    "Once it is gone, the device shows it the next time it checks in with your organisation's device "
    "management; you can also tell us with \u201cI removed it\u201d on your page."
)


def _what_to_do(kind: str, c: dict[str, Any]) -> str:
    """What the person should do now, in plain words, for each kind."""
    apps, deadline, devices = c["apps"], c["deadline_local"], c["devices"]
    unchecked = any(d["state"] == "unverified" for d in devices)
    if kind in ("memo", "reminder", "policy_changed"):
        if not devices:
            return (
                f"Nothing to do now: as far as we know, none of your devices needs anything done about {apps}. "
                "Please do not install it."
            )
        listed = "the device listed below" if len(devices) == 1 else "the devices listed below"
        if c["deadline_passed"]:
            out = f"Remove {apps} from {listed} now: the deadline was {deadline}."
            if c["enforced"]:
                out += " A device that still has it cannot reach company email."
        else:
            out = f"Remove {apps} from {listed} before {deadline}."
            if c["enforced"]:
                out += " After the deadline, a device that still has it can no longer reach company email."
        out += " " + _CHECK_IN
        if unchecked:
            out += " For a device we could not check, open its device-management app so that it checks in."
        return out + " If you need the app for your work, ask for an exemption on your page."
    if kind == "blocked":
        why = f"{apps} is still on it" if c["apps_found"] else "we could not check its apps"
        if c["apps_found"] and unchecked:
            why += " (or we could not check its apps)"
        return (
            f"Company email stopped on the device listed below because {why}. Remove the app and make sure the "
            f"device checks in with your organisation's device management: email works again once it shows the "
            f"app is gone, or once you tell us with \u201cI removed it\u201d on your page."
        )
    if kind == "restored":
        return "Nothing to do: company email works again on the device listed below. Thank you."
    if kind == "correction":
        why = c["policy"]["withdraw_reason"]
        return (
            "Please disregard what we sent you about this: it has been withdrawn"
            + (f" ({why})" if why else "")
            + ". You do not need to do anything: a device that lost company email because of it has it back."
        )
    until = c["exemption"]["until"]["local"] if c["exemption"] else "the end of your exemption"
    if kind == "exemption":
        return (
            f"Nothing to do until {until}. Before then, remove {apps}, or ask on your page for the exemption "
            f"to be extended."
        )
    if kind == "exemption_expiring":
        then = " or company email stops working on it" if c["enforced"] else ""
        return f"Your exemption ends on {until}. Remove {apps} before then{then}; tell us on your page once it is gone."
    return ""


# -- sample ------------------------------------------------------------------------------


def sample_context(kind: str) -> dict[str, Any]:
    """A context of ``kind`` with every key, from made-up data: a policy's templates are
    tried on it when the policy is applied."""
    start = 1594396800_000_000  # 2020-07-10T16:00:00Z
    policy = Policy(
        id="sample", title="A sample policy", apps=("sample",), effective=start, deadline=start + 86400_000_000
    )
    device = DeviceRow(
        id=1,
        source="agent",
        source_id="SAMPLE",
        platform="ios",
        ownership="personal",
        owner="ann@example.com",
        inventory_scope="full",
        observed_at=start - 3600_000_000,
        model="iPhone12,1",
    )
    app = Observation(
        app_key="id:sample",
        app_id="com.example.sample",
        name="Sample",
        version="1.0",
        signing_sha256=None,
        family="sample",
        match_kind="bundle",
        confidence="identifier",
        first_seen=start - 7200_000_000,
        last_seen=start - 3600_000_000,
    )
    exemption = Exemption(1, "sample", "ann@example.com", None, start, start + 30 * 86400_000_000, "Sample", start)
    state = StateRow("sample", 1, "violating", start)
    return build_context(
        policy,
        kind=kind,
        person=Person(email="ann@example.com", name="Ann Example", timezone="Europe/London"),
        devices=[_device_view(policy, device, state, [("agent", app)], _zone("Europe/London"))],
        more_devices=0,
        exemption=exemption if kind.startswith("exemption") else None,
        withdraw_reason="sent in error" if kind == "correction" else "",
        banned=lambda: ["Sample"],
        link="https://appban.example.com/me/sample",
        now=start,
    )


# -- text --------------------------------------------------------------------------------


def _data(value: str | None, limit: int = MAX_NAME) -> str:
    """A reported name made safe to show: controls become spaces, cut to ``limit``."""
    text = _SURROGATE.sub("\ufffd", _UNSAFE.sub(" ", value or ""))
    return text if len(text) <= limit else text[: limit - 1] + _CUT


def _joined(names: list[str]) -> str:
    if len(names) > 5:
        return f"{', '.join(names[:3])} and {len(names) - 3} more apps"
    if len(names) > 1:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return names[0] if names else "the banned app"


def clean_subject(text: str) -> str:
    """One line: every control character (CR, LF, tab and the others), line separator
    and bidi control becomes a space, runs of spaces one; at most MAX_SUBJECT characters."""
    # Runs of spaces as one: mail readers fold and unfold them away anyway.
    made = " ".join(_UNSAFE_IN_LINE.sub(" ", text).split())
    return made if len(made) <= MAX_SUBJECT else made[: MAX_SUBJECT - 1] + _CUT


# -- times -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> tzinfo:
    """The person's zone; a name that is not one (or unknown here) is UTC."""
    try:
        return ZoneInfo(name) if name and name != "UTC" else UTC
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return UTC


def _zone_name(zone: tzinfo) -> str:
    return zone.key if isinstance(zone, ZoneInfo) else "UTC"


def moment(value: Micros, zone: tzinfo) -> dict[str, str]:
    """A time for people: ``Saturday 11 July 2020, 14:59 (Asia/Kolkata)``, with the
    language-neutral forms beside it (ISO in UTC, and with the zone's offset)."""
    return dict(_moment(value, zone))


@functools.lru_cache(maxsize=1024)
def _moment(value: Micros, zone: tzinfo) -> dict[str, str]:
    # Kept: every notice of a batch shows the same deadline, start and now in few zones.
    utc = _EPOCH + timedelta(microseconds=value)
    try:
        local = utc.astimezone(zone)
    except (OverflowError, ValueError):  # the year 1 or 9999 moved out of range
        local, zone = utc, UTC
    name = _zone_name(zone)
    date = f"{local.day} {_MONTHS[local.month - 1]} {local.year:04d}"
    clock = f"{local.hour:02d}:{local.minute:02d}"
    return {
        "iso": format_time(value) or "",
        "local": f"{_DAYS[local.weekday()]} {date}, {clock} ({name})",
        "local_iso": local.isoformat(timespec="seconds"),
        "date": date,
        "time": clock,
        "zone": name,
    }


# -- what is sent ------------------------------------------------------------------------


def email_message(r: Rendered) -> email.message.EmailMessage:
    """The notice as one multipart/alternative message (text, then HTML): the bytes
    ``message_bytes`` makes, read back, so that the two never differ."""
    sender, to = _split(r.sender)[1], r.to
    reply = _split(r.reply_to)[1] if r.reply_to else ""
    if not all(a.isascii() for a in (sender, to, reply)):
        return _built_message(r)
    # Read back as written: the email package would fold some lines again on output.
    msg = email.message_from_bytes(message_bytes(r), policy=email.policy.SMTP.clone(refold_source="none"))
    assert isinstance(msg, EmailMessage)
    return msg


def _built_message(r: Rendered) -> email.message.EmailMessage:
    """The message built by the email package: for SMTPUTF8, which message_bytes leaves to it."""
    sender_name, sender = _split(r.sender)
    addresses = [sender, r.to]
    reply = _split(r.reply_to) if r.reply_to else None
    if reply:
        addresses.append(reply[1])
    # An address with a non-ASCII local part can only travel as SMTPUTF8 (RFC 6531).
    msg = EmailMessage(policy=email.policy.SMTP if all(a.isascii() for a in addresses) else email.policy.SMTPUTF8)
    msg["From"] = _address(sender_name, sender)
    msg["To"] = _address(r.to_name, r.to)
    if reply:
        msg["Reply-To"] = _address(*reply)
    msg["Subject"] = clean_subject(r.subject)
    msg["Date"] = _date(r.rendered_at or now_micros())
    msg["Message-ID"] = r.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    msg["X-Auto-Response-Suppress"] = "All"  # the same, for Exchange
    msg["X-Appban-Notice"] = str(r.notice_id)
    msg["X-Appban-Kind"] = r.kind
    msg.set_content(r.text)
    msg.add_alternative(r.html, subtype="html")
    return msg


def _address(name: str, addr: str) -> Address:
    user, _at, domain = addr.rpartition("@")
    return Address(display_name=clean_subject(name), username=user, domain=domain)


def message_bytes(r: Rendered) -> bytes:
    """The notice as the bytes a mail server is sent (CRLF line ends), built directly:
    the email package's header objects and generator take about 2.5 ms a message, more
    than sending it to a local server. Both parts quoted-printable; text a reader would
    take for an encoded word (``=?utf-8?q?...?=`` in an app's name) is encoded, so that
    it shows as written. A message to or from a non-ASCII address (SMTPUTF8) is left to
    the email package."""
    sender_name, sender = _split(r.sender)
    reply = _split(r.reply_to) if r.reply_to else None
    if not all(a.isascii() for a in (sender, r.to, reply[1] if reply else "")):
        return _built_message(r).as_bytes(policy=email.policy.SMTPUTF8)
    boundary = "=_appban_" + hashlib.sha256(f"{r.message_id}{r.rendered_at}".encode()).hexdigest()[:24]
    headers = [
        ("From", _address_text(sender_name, sender)),
        ("To", _address_text(r.to_name, r.to)),
        *([("Reply-To", _address_text(*reply))] if reply else []),
        ("Subject", _header_text("Subject", clean_subject(r.subject))),
        ("Date", _date(r.rendered_at or now_micros())),
        ("Message-ID", clean_subject(r.message_id)),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
        ("X-Appban-Notice", str(int(r.notice_id))),
        ("X-Appban-Kind", clean_subject(r.kind)),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
    ]
    out = [f"{name}: {value}\r\n".encode("ascii") for name, value in headers]
    for subtype, body in (("plain", r.text), ("html", r.html)):
        out.append(f"\r\n--{boundary}\r\n".encode("ascii"))
        out.append(f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode("ascii"))
        out.append(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        out.append(_quoted_printable(body))
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


@functools.lru_cache(maxsize=16)
def _date(at: Micros) -> str:
    """The Date header (RFC 5322 3.3): a batch's notices are rendered at one time."""
    return format_datetime(_EPOCH + timedelta(microseconds=at))


def _address_text(name: str, addr: str) -> str:
    # formataddr quotes a name with specials and encodes a non-ASCII one (RFC 2047).
    return email.utils.formataddr((clean_subject(name), addr), charset="utf-8")


def _header_text(name: str, value: str) -> str:
    """ASCII text as it is, folded at 78 characters; anything else, or text a reader
    would take for an encoded word (``=?``), as RFC 2047 encoded words, folded too."""
    if value.isascii() and "=?" not in value and all(len(w) < 70 for w in value.split(" ")):
        return _folded(name, value)
    return email.header.Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=78)


def _folded(name: str, value: str) -> str:
    """Single-spaced text folded before a space so that no line passes 78 characters."""
    lines = [f"{name}:"]
    for word in value.split(" "):
        if len(lines[-1]) + 1 + len(word) > 78:
            lines.append("")
        lines[-1] += " " + word
    return "\r\n".join(lines)[len(name) + 2 :]


def _quoted_printable(text: str) -> bytes:
    """A part's text, quoted-printable (RFC 2045): lines of at most 76 characters, CRLF."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    # Line by line: b2a_qp starts each line afresh, so the lines encoded one by one are the
    # text encoded whole; and most lines of a notice are its template's, the same in each
    # (those kept are short: a long line is more likely a person's, and takes more room).
    encoded = b"".join(
        [
            _quoted_line(line) if len(line) <= _KEPT_LINE else binascii.b2a_qp(line, istext=True)
            for line in lines.encode("utf-8", "surrogatepass").splitlines(keepends=True)
        ]
    )
    return encoded.replace(b"\n", b"\r\n")


_KEPT_LINE = 256


@functools.lru_cache(maxsize=2048)
def _quoted_line(line: bytes) -> bytes:
    return binascii.b2a_qp(line, istext=True)


def webhook_body(r: Rendered) -> bytes:
    """The JSON posted to a policy's webhook: the person's email, for the chat tool to route."""
    devices = [
        {
            "id": d["id"],
            "model": d["model"],
            "platform": d["platform"],
            "state": d["state"],
            "last_seen": d["last_seen"]["iso"],
            "apps": [a["name"] for a in d["apps"]],
        }
        for d in r.context.get("devices", [])
    ]
    body = {
        "notice": r.notice_id,
        "kind": r.kind,
        "policy": r.policy_id,
        "email": r.to,
        "name": r.to_name,
        "subject": r.subject,
        "text": r.text,
        "link": r.link,
        "deadline": r.context.get("deadline_iso"),
        "devices": devices,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


# -- preview -----------------------------------------------------------------------------


def preview(ws: Workspace, policy_id: str, email_address: str, kind: str) -> Rendered:
    """A notice of ``kind`` to this person, rendered exactly as it would be sent now
    (id 0, by mail). Its occasion is the one the kind would have now: the first
    reminder, the current revision, the person's newest exemption in force. A blocked
    notice names the person's blocked devices, a restored one those in scope and not
    blocked; when there are none, it shows those that need something done."""
    policy, row = get_policy(ws, policy_id)
    if kind not in NOTICE_KINDS:
        raise BadInput(f"unknown notice kind {kind[:40]!r} (known: {', '.join(NOTICE_KINDS)})", field="--kind")
    person = normalise_email(email_address, "--person")
    owned = ws.store.devices_of_owner(person)
    if ws.store.get_person(person) is None and not owned:
        raise NotFound(f"no person {person!r}", field="--person")
    devices: tuple[int, ...] = ()
    occasion = ""
    if kind in ("blocked", "restored"):
        occasion = str(ws.now)
        states = {d.id: ws.store.device_states(d.id or 0).get(policy.id) for d in owned}
        want = ("blocked",) if kind == "blocked" else ("compliant", "exempt", "violating", "unverified")
        devices = tuple(i for i, s in states.items() if i is not None and s is not None and s.state in want)
    elif kind == "reminder" and policy.reminders:
        occasion = str(policy.deadline - policy.reminders[0])
    elif kind == "policy_changed":
        occasion = f"rev-{row.revision}"
    elif kind.startswith("exemption"):
        ids = {d.id for d in owned}
        held = [
            e
            for e in ws.store.all_exemptions()
            if e.policy_id == policy.id and (e.person == person or e.device_id in ids)
        ]
        held.sort(key=lambda e: (e.revoked_at is None, e.id))  # the newest in force, if any
        occasion = f"ex-{held[-1].id}" if held else ""
    notice = Notice(
        id=0,
        policy_id=policy.id,
        person=person,
        kind=kind,
        occasion=occasion,
        channel="mail",
        devices=devices,
        created_at=ws.now,
        due_at=ws.now,
        state="pending",
        attempts=0,
        next_try=None,
        claimed_until=None,
        sent_at=None,
        last_error="",
    )
    return render(ws.store, notice, ws.now)
