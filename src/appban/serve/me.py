"""``/me/<token>``: an employee's own page, and its two actions.

The link is the credential (``notify.links``: signed, expiring, nothing stored per
link). The page shows the person, their devices, each policy that concerns them with
each device's state and why, what to do and by when (in their own time zone, and in
ISO form), their exemptions and requests, and what appban stores about them.

Two forms post back to the same address: **I removed it** (an attestation, exactly as
``appban attest`` records it; the next inventory still overrides it) and **Request an
exemption** (a row for admins to grant or refuse). A post must come from the page
itself: its hidden ``form`` field is an HMAC of the link under the link key, and a
browser's ``Sec-Fetch-Site`` and ``Origin`` must not name another site. A post that
succeeds is answered with a redirect to the page (Post/Redirect/Get) carrying a
status code, never text, in its query.

Server-rendered HTML, no script; every answer of this module carries a strict
Content-Security-Policy, ``Referrer-Policy: no-referrer`` (the token is in the
address) and ``Cache-Control: no-store``. The access log shows the route's template
(``/me/{token}``), never the token (``serve.metrics``).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from appban import settings
from appban.clock import Micros, now_micros
from appban.errors import BadInput, Busy
from appban.notify import links
from appban.notify.render import PLATFORM_NAMES, moment
from appban.policy.evaluator import load_policy
from appban.policy.exemptions import concerns, device_now
from appban.policy.model import Policy
from appban.policy.states import (
    DETAIL_BY_NAME,
    DETAIL_CATALOG,
    DETAIL_FULL,
    DETAIL_MANAGED,
    DETAIL_NONE,
    DETAIL_STALE,
)
from appban.report.exemptions import status_of
from appban.serve.service import Service
from appban.store import Store
from appban.store.records import DeviceRow, Exemption, ExemptionRequest, Observation, PolicyRow, StateRow
from appban.workspace import Workspace

log = logging.getLogger("appban.serve")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# A form of this page is a few hundred bytes (a reason is at most 500 characters,
# each at most 9 bytes percent-encoded); anything much larger is not from the page.
MAX_FORM_BYTES = 8 * 1024
_MAX_NAME = 200  # characters of a stored name shown (a device may be called anything, 10 KB of it)
# What a redirect after a post may say: a code in the query, the words here.
DONE = {
    "removed": "Thank you: your word that the app is gone is recorded. The next inventory of the device still counts.",
    "requested": "Your request is sent. An administrator will grant or refuse it; the answer will show here.",
}
_ACTIVE = ("violating", "blocked", "unverified")
_NOTHING_KEPT = {"action": "", "policy": "", "device": "", "reason": ""}  # what a refused post sent, shown again
# A refusal's words as an employee reads them, where appban's own are terse.
_PLAIN = {
    "markup in text": "a reason can't contain “<” followed by a letter, “/”, “!” or “?”",
    "control character in text": "a reason can't contain line breaks, tabs or invisible formatting characters",
}
_STATE_WORDS = {
    "violating": "Banned app found",
    "blocked": "Mail blocked",
    "unverified": "Not verified",
    "compliant": "Compliant",
    "exempt": "Exempt",
    "out_of_scope": "Not covered",
}


def routes() -> list[BaseRoute]:
    # Every method reaches these endpoints (an ASGI app, not a function: Starlette
    # gives a function GET alone), so that every answer under /me (a method they do not
    # take, an address that is no link, a failure) is this module's, with its headers:
    # not the API's JSON, nor a redirect from /me to /me/.
    return [
        Route("/me.css", _Own(stylesheet, "GET")),
        Route("/me/{token}", _Own(page, "GET", "POST")),
        # Any other address under /me/ is a link that is not valid, logged by this template too.
        Route("/me/{rest:path}", _Own(invalid, "GET", "POST")),
        Route("/me", _Own(invalid, "GET", "POST")),
    ]


class _Own:
    """``endpoint``, answering only ``methods`` (and HEAD with GET): any other is a 405
    page; a busy database a 503 page, and a failure a 500 page, all with HEADERS."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]], *methods: str) -> None:
        self.endpoint = endpoint
        self.allowed = {*methods, "HEAD"} if "GET" in methods else set(methods)
        self.allow = ", ".join(sorted(self.allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(Request(scope, receive))
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        if request.method not in self.allowed:
            return _refused(405, f"This address takes only {self.allow}.", headers={"Allow": self.allow})
        try:
            return await self.endpoint(request)
        except Busy:
            return _refused(503, "appban is busy just now. Go back and try again in a minute.")
        except Exception:  # logged with its traceback; the person learns only that it failed
            log.exception("the employee's page failed")
            return _refused(500, "appban could not answer just now. Go back and try again later.")


_templates = Environment(
    loader=PackageLoader("appban.serve", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _cut(text: object, limit: int = _MAX_NAME) -> str:
    """Stored text as shown: at most ``limit`` characters, and a note of how long it was."""
    value = "" if text is None else str(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value):,} characters)"


_templates.filters["cut"] = _cut


def _html(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = _templates.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status, headers=HEADERS)


_CSS: bytes | None = None


async def stylesheet(request: Request) -> Response:
    """The page's one stylesheet, shipped with the package (no third party is asked for anything)."""
    global _CSS
    if _CSS is None:
        _CSS = importlib.resources.files("appban.serve").joinpath("templates/me.css").read_bytes()
    headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(_CSS, media_type="text/css; charset=utf-8", headers=headers)


async def invalid(request: Request) -> Response:
    return _not_found()


def _not_found() -> HTMLResponse:
    # One answer for a forged, expired, cut or unknown link: nothing tells them apart.
    return _html("invalid.html", 404)


def _refused(status: int, why: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    response = _html("refused.html", status, why=why)
    response.headers.update(headers or {})
    return response


# -- the page --------------------------------------------------------------------------


async def page(request: Request) -> Response:
    service: Service = request.app.state.service
    token = request.path_params["token"]
    now = now_micros()
    if request.method == "POST":
        return await _post(request, service, token, now)
    found = await service.read(lambda store: _read_page(store, token, now))
    if found is None:
        return _not_found()
    form, view = found
    message = DONE.get(request.query_params.get("done", ""))
    return _html("page.html", view=view, form=form, message=message, error=None, kept=_NOTHING_KEPT)


def _read_page(store: Store, token: str, now: Micros) -> tuple[str, dict[str, Any]] | None:
    opened = _open(store, token, now)
    if opened is None:
        return None
    email, form = opened
    return form, page_data(store, email, now)


def _open(store: Store, token: str, now: Micros) -> tuple[str, str] | None:
    """The person a link opens the page of, and the page's form token; None for a bad link."""
    email = links.read(store, token, now)
    if email is None:
        return None
    return email, links.form_token(store, token)


# -- the actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Form:
    action: str
    policy: str
    device: int | None
    reason: str


async def _post(request: Request, service: Service, token: str, now: Micros) -> Response:
    # Checks that cost nothing come first; nothing is written until every one passed.
    if not _same_origin(request):
        return _refused(403, "This form came from another site. Open your page from your link and use it there.")
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return _refused(415, "This form was not sent the way the page sends it.")
    found = await service.read(lambda store: _open(store, token, now))
    if found is None:
        return _not_found()
    email, expected = found
    try:
        fields = await _read_form(request)
    except _Refusal as exc:
        return _refused(exc.status, exc.why)
    if not hmac.compare_digest(fields.get("form", "").encode(), expected.encode()):
        return _refused(403, "This form is out of date or did not come from your page. Reload the page and try again.")
    try:
        form = _parse(fields)
        if form.action == "removed":
            assert form.device is not None
            await service.call(_attest(form.policy, form.device, email))
        else:
            await service.call(_request(form.policy, email, form.device, form.reason))
    except BadInput as exc:
        view = await service.read(lambda store: page_data(store, email, now))
        kept = {name: fields.get(name, "") for name in ("action", "policy", "device", "reason")}
        error = _error(view, kept, exc)
        return _html("page.html", 400, view=view, form=expected, message=None, error=error, kept=kept)
    except Busy:
        return _refused(503, "appban is busy just now. Go back and try again in a minute.")
    return RedirectResponse(f"/me/{token}?done={form.action}", status_code=303, headers=HEADERS)


def _error(view: dict[str, Any], kept: dict[str, str], exc: BadInput) -> dict[str, str]:
    """A refused post's error: in plain words, the form it belongs to named, and the
    field to mark, describe and focus (its id), when the page shows that form."""
    words = _PLAIN.get(exc.detail, exc.detail)
    shown = next((p for p in view["policies"] if p["id"] == kept["policy"]), None)
    if shown is None:
        return {"summary": f"{words}.", "words": words, "target": "", "field": ""}
    title = _cut(shown["title"], 120)
    if kept["action"] == "removed":
        # Refused only where the page shows no button (any more): nothing to point at.
        return {"summary": f"your word under “{title}”: {words}.", "words": words, "target": "", "field": ""}
    field = "device" if exc.field == "device" else "reason"
    summary = f"your request for an exemption from “{title}”: {words}."
    return {"summary": summary, "words": words, "target": f"{field}-{shown['id']}", "field": field}


def _same_origin(request: Request) -> bool:
    """A browser says where a post comes from; another site's is refused (the form token
    would refuse it too: this is the second lock).

    ``Origin: null`` is what a browser sends for the page's own forms: under
    ``Referrer-Policy: no-referrer`` the Fetch standard serialises a post's origin as
    null. ``Sec-Fetch-Site`` still tells same-origin from cross-site then.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    public = urlsplit(str(settings.get("public_url")))
    if public.scheme and public.netloc:
        own.add(f"{public.scheme}://{public.netloc}".lower())
    return origin.lower() in own


class _Refusal(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


async def _read_form(request: Request) -> dict[str, str]:
    """The posted fields, each once; the body bounded in size and time."""
    if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise _Refusal(415, "This form was not sent the way the page sends it.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _Refusal(413, "This form is larger than the page ever sends.")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.get("serve_body_timeout")):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_FORM_BYTES:
                    raise _Refusal(413, "This form is larger than the page ever sends.")
                parts.append(chunk)
    except TimeoutError:
        raise _Refusal(408, "This form took too long to arrive.") from None
    except ClientDisconnect:
        raise _Refusal(400, "This form did not arrive whole.") from None
    try:
        text = b"".join(parts).decode("ascii")
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=8, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _Refusal(400, "This form was not sent the way the page sends it.") from None
    if any(len(values) != 1 for values in pairs.values()):
        raise _Refusal(400, "This form was not sent the way the page sends it.")
    return {name: values[0] for name, values in pairs.items()}


def _parse(fields: dict[str, str]) -> _Form:
    action = fields.get("action", "")
    if action not in ("removed", "requested"):
        raise BadInput("the form names no action the page offers", field="action")
    policy = fields.get("policy", "")
    if not policy or len(policy) > 64:
        raise BadInput("choose a policy", field="policy")
    device_text = fields.get("device", "")
    device: int | None = None
    if device_text:
        if not (device_text.isascii() and device_text.isdigit() and len(device_text) <= 18):
            raise BadInput("choose one of your devices", field="device")
        device = int(device_text)
    if action == "removed" and device is None:
        raise BadInput("choose one of your devices", field="device")
    return _Form(action, policy, device, fields.get("reason", ""))


def _attest(policy_id: str, device_id: int, email: str) -> Callable[[Workspace], Any]:
    def run(ws: Workspace) -> Any:
        from appban.policy.lifecycle import attest

        device = ws.store.get_device(device_id)
        if device is None or device.owner != email:
            raise BadInput("that device is not one of yours", field="device")
        row = ws.store.get_policy(policy_id)
        if row is None or row.status != "active" or not concerns(ws.store, policy_id, email):
            raise BadInput("that policy is not in force for you", field="policy")
        assert device.id is not None
        said = ws.store.attested_at(policy_id, device.id)  # theirs: only the owner's word counts
        if said is not None and said >= (device.observed_at or 0):
            return None  # said already, and no inventory since: recorded once (a second click, a replay)
        state = ws.store.device_states(device.id).get(policy_id)
        if state is None or state.state not in _ACTIVE:
            raise BadInput("this device needs nothing from you under this policy now", field="device")
        return attest(ws, policy_id, device.ref, email)

    return run


def _request(policy_id: str, email: str, device_id: int | None, reason: str) -> Callable[[Workspace], Any]:
    def run(ws: Workspace) -> Any:
        from appban.policy.exemptions import request

        return request(ws, policy_id, email, device_id, reason)

    return run


# -- what the page shows -----------------------------------------------------------------


class _Clock:
    """Times as the person reads them, as their notices write them (``render.moment``):
    in their zone, in words, with the ISO form beside."""

    def __init__(self, zone_name: str) -> None:
        try:
            self.zone: tzinfo = ZoneInfo(zone_name)
            self.name = zone_name
        except (ZoneInfoNotFoundError, ValueError):  # a zone this system does not know
            self.zone, self.name = UTC, "UTC"

    def when(self, at: Micros | None) -> dict[str, str] | None:
        return None if at is None else moment(at, self.zone)


def _label(device: DeviceRow) -> str:
    platform = PLATFORM_NAMES.get(device.platform, device.platform)
    return _cut(device.model) if device.model else f"{platform} device"


def _apps_seen(store: Store, device: DeviceRow) -> list[tuple[str, Observation]]:
    """(source, observation) of the apps present now, as each source reported them."""
    assert device.id is not None
    records = store.records_of(device.id) if device.linked else []
    if records:
        return [
            (r.facts.source, o) for r in records for o in store.record_observations(r.facts.id or 0, present_only=True)
        ]
    return [(device.source, o) for o in store.observations(device.id, present_only=True)]


def _banned(policy: Policy, seen: list[tuple[str, Observation]]) -> list[tuple[str, Observation]]:
    families, explicit = policy.families, policy.explicit
    return [
        (source, o) for source, o in seen if (o.family and o.family in families) or (o.match_kind, o.app_id) in explicit
    ]


@dataclass
class _Seen:
    """What one page is built from, read once."""

    store: Store
    email: str
    now: Micros
    clock: _Clock
    devices: list[DeviceRow]
    policies: dict[str, tuple[PolicyRow, Policy]]
    notified: set[str]  # policies the person was sent a notice under
    held: list[Exemption]  # their exemptions, in force or to come
    others: list[Exemption]  # exemptions of a device of theirs that another person asked for
    states: dict[int | None, dict[str, StateRow]]
    apps: dict[int | None, list[tuple[str, Observation]]]


def page_data(store: Store, email: str, now: Micros) -> dict[str, Any]:
    """Everything the page shows, as plain data (the template renders; it does not query)."""
    person = store.get_person(email)
    devices = store.devices_of_owner(email)
    notices = store.list_notices(person=email)
    held, others = _exemptions(store, email, {d.id for d in devices}, now)
    seen = _Seen(
        store=store,
        email=email,
        now=now,
        clock=_Clock(person.timezone if person else "UTC"),
        devices=devices,
        policies={row.id: (row, load_policy(row)) for row in store.list_policies() if row.status != "draft"},
        notified={n.policy_id for n in notices if n.state in ("sent", "sending")},
        held=held,
        others=others,
        states={d.id: store.device_states(d.id or 0) for d in devices},
        apps={d.id: _apps_seen(store, d) for d in devices},
    )
    clock = seen.clock
    shown, withdrawn = _policy_views(seen)
    return {
        "person": {
            "email": email,
            "name": person.name if person else "",
            "timezone": clock.name,
            "org_unit": person.org_unit if person else "",
            "groups": list(person.groups) if person else [],
            "known": person is not None,
        },
        "now": clock.when(now),
        "todo": len({d["id"] for p in shown for d in p["devices"] if d["state"] in _ACTIVE}),
        "policies": shown,
        "withdrawn": withdrawn,
        "devices": [_device_facts(clock, d, store.observations(d.id or 0)) for d in devices],
        "exemptions": [
            {
                "title": _title(seen, e.policy_id),
                "who": "all your devices" if e.device_id is None else _device_name(devices, e.device_id),
                "from": clock.when(e.starts),
                "until": clock.when(e.until),
                "reason": e.reason,
            }
            for e in seen.held
        ],
        "requests": [_request_view(seen, r) for r in store.exemption_requests(person=email)],
        "notices": [
            {
                "kind": n.kind.replace("_", " "),
                "policy": n.policy_id,
                "state": n.state,
                "created": clock.when(n.created_at),
                "sent": clock.when(n.sent_at),
            }
            for n in notices
        ],
        "attestations": [
            {"policy": policy_id, "device": _label(d), "at": clock.when(at)}
            for policy_id in sorted(seen.policies)
            for d in devices
            if (at := store.attested_at(policy_id, d.id or 0)) is not None
        ],
    }


def _exemptions(
    store: Store, email: str, mine: set[int | None], now: Micros
) -> tuple[list[Exemption], list[Exemption]]:
    """The exemptions in force or to come that cover the person: their own (made for
    them, or for a device of theirs), and those of a device of theirs that another
    person asked for before the device was handed over: those count (an exemption
    covers its device), but their reasons are that other person's and are not shown."""
    asked_by = {r.exemption_id: r.person for r in store.exemption_requests(state="granted") if r.exemption_id}
    held: list[Exemption] = []
    others: list[Exemption] = []
    for e in store.all_exemptions():
        if status_of(e, now) not in ("active", "not_yet"):
            continue
        if e.person == email:
            held.append(e)
        elif e.device_id is not None and e.device_id in mine:
            (held if asked_by.get(e.id, email) == email else others).append(e)
    return held, others


def _policy_views(seen: _Seen) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The policies in force that concern the person (those that need something of them
    first), and the withdrawn ones they were told of."""
    clock = seen.clock
    shown: list[dict[str, Any]] = []
    withdrawn: list[dict[str, Any]] = []
    for policy_id, (row, policy) in sorted(seen.policies.items()):
        covered = [
            (d, st)
            for d in seen.devices
            if (st := seen.states[d.id].get(policy_id)) is not None and st.state != "out_of_scope"
        ]
        if row.status == "withdrawn":
            if policy_id in seen.notified:
                at, why = clock.when(row.withdrawn_at), row.withdraw_reason
                withdrawn.append({"id": policy_id, "title": policy.title, "at": at, "reason": why})
            continue
        if not covered and policy_id not in seen.notified:
            continue
        exempt = [e for e in seen.held if e.policy_id == policy_id]
        theirs = [e for e in seen.others if e.policy_id == policy_id]
        shown.append(
            {
                "id": policy_id,
                "title": policy.title,
                "reason": policy.reason,
                "mode": policy.mode,
                "deadline": clock.when(policy.deadline),
                "passed": seen.now >= policy.deadline,
                "devices": [_device_state(clock, policy, d, st, seen.apps[d.id], exempt, theirs) for d, st in covered],
                "choices": [{"id": d.id, "label": _label(d)} for d, _st in covered],
            }
        )
    shown.sort(key=lambda p: not any(d["state"] in _ACTIVE for d in p["devices"]))
    return shown, withdrawn


def _title(seen: _Seen, policy_id: str) -> str:
    found = seen.policies.get(policy_id)
    return found[1].title if found else policy_id


def _device_name(devices: list[DeviceRow], device_id: int) -> str:
    return next((_label(d) for d in devices if d.id == device_id), f"device dev-{device_id}")


def _device_state(
    clock: _Clock,
    policy: Policy,
    device: DeviceRow,
    state: StateRow,
    seen: list[tuple[str, Observation]],
    exempt: list[Exemption],
    theirs: list[Exemption],
) -> dict[str, Any]:
    """One device under one policy: its state, why, and what to do."""
    label = _label(device)
    banned = _banned(policy, seen)
    apps = ", ".join(dict.fromkeys(_cut(o.name or o.app_id, 80) for _s, o in banned)) or "the banned app"
    why: list[str] = []
    if state.state in ("violating", "blocked") and banned:
        why = [
            f"{_cut(o.name or o.app_id)} seen by {source} on your {label} on {_words(clock.when(o.last_seen))}"
            for source, o in banned
        ]
    elif state.state == "exempt":
        mine = [e for e in exempt if e.device_id in (None, device.id)]
        why = [f"Exempt until {_words(clock.when(e.until))}: {_cut(e.reason, 500)}" for e in mine]
        why += [
            f"Exempt until {_words(clock.when(e.until))}, by an exemption someone else asked for "
            "while this device was theirs."
            for e in theirs
            if e.device_id == device.id
        ]
        # Never the stored detail: it holds the exemption's reason, which may not be theirs.
        why = why or ["An administrator exempted this device from this policy."]
    else:
        why = [_detail_words(clock, policy, device, state.detail)]
    return {
        "id": device.id,
        "label": label,
        "platform": PLATFORM_NAMES.get(device.platform, device.platform),
        "state": state.state,
        "state_words": _STATE_WORDS.get(state.state, state.state),
        "since": clock.when(state.since),
        "why": why,
        "todo": _todo(clock, policy, state.state, apps),
        "can_attest": state.state in _ACTIVE,
    }


def _words(when: dict[str, str] | None) -> str:
    return "" if when is None else when["local"]


def _detail_words(clock: _Clock, policy: Policy, device: DeviceRow, detail: str) -> str:
    """A stored state's detail in an employee's words."""
    scope = {"full": "all", "managed": "only the managed"}.get(device.inventory_scope, device.inventory_scope)
    seen = f"{device.source}, {_words(clock.when(device.observed_at))}"
    if detail == DETAIL_FULL:
        return f"The latest list of {scope} apps on this device ({seen}) shows no banned app."
    if detail.startswith("owner attested removal"):
        return "You said you removed the app, and no later inventory of this device shows it."
    if detail == DETAIL_NONE:
        return "appban has no list of the apps on this device, so it cannot tell whether a banned app is there."
    if detail == DETAIL_MANAGED:
        return (
            f"The list of apps {device.source} reports for this device shows only apps your company manages, "
            "so appban cannot see whether a banned app is there."
        )
    if detail == DETAIL_STALE:
        days = policy.max_inventory_age // (86_400 * 1_000_000)
        return f"The latest list of apps on this device ({seen}) is older than the {days} days this policy accepts."
    if detail == DETAIL_CATALOG:
        return "The latest list of apps on this device was checked before appban knew these apps' names."
    if detail.startswith(DETAIL_BY_NAME):
        return "An app with the name of a banned app was seen; a name alone proves neither that it is there nor not."
    return _cut(detail, 500)


def _todo(clock: _Clock, policy: Policy, state: str, apps: str) -> str:
    deadline = _words(clock.when(policy.deadline))
    if state == "violating":
        if policy.mode != "enforce":
            return f"Remove {apps} from this device. (This policy only watches for now: mail is not cut.)"
        return (
            f"Remove {apps} from this device before {deadline}, or mail on it will be blocked. "
            "Its next check-in shows the app gone; once you removed it, you may also press “I removed it”."
        )
    if state == "blocked":
        return (
            f"Remove {apps} from this device. Mail comes back within seconds of the device reporting "
            "that it is gone, or when you press “I removed it”."
        )
    if state == "unverified":
        cut = policy.mode == "enforce" and policy.on_unverified == "block"
        after = f" A device that cannot be verified loses mail access after {deadline}." if cut else ""
        return f"If no banned app is on this device, press “I removed it” to say so.{after}"
    return "Nothing to do."


def _device_facts(clock: _Clock, device: DeviceRow, kept: list[Observation]) -> dict[str, Any]:
    return {
        "label": _label(device),
        "ref": device.ref,
        "platform": PLATFORM_NAMES.get(device.platform, device.platform),
        "model": device.model,
        "os_version": device.os_version,
        "ownership": device.ownership,
        "source": device.source,
        "source_id": device.source_id,
        "inventory_scope": device.inventory_scope,
        "eas_ids": list(device.eas_ids),
        "mail_access": device.mail_access,
        "last_seen": clock.when(device.observed_at),
        "kept_whole": device.catalog_version is None,
        "apps": [
            {
                "name": o.name,
                "id": o.app_id,
                "version": o.version,
                "first_seen": clock.when(o.first_seen),
                "last_seen": clock.when(o.last_seen),
                "gone": clock.when(o.gone_at),
            }
            for o in kept
        ],
    }


def _request_view(seen: _Seen, r: ExemptionRequest) -> dict[str, Any]:
    clock = seen.clock
    granted = seen.store.get_exemption(r.exemption_id) if r.exemption_id is not None else None
    policy = seen.policies.get(r.policy_id)
    return {
        "id": r.id,
        "title": _title(seen, r.policy_id),
        "who": _requested_for(seen, r),
        "reason": r.reason,
        "created": clock.when(r.created_at),
        "state": r.state,
        "withdrawn": policy is None or policy[0].status != "active",
        "decided": clock.when(r.decided_at),
        "answer": r.answer,
        "until": clock.when(granted.until) if granted else None,
    }


def _requested_for(seen: _Seen, r: ExemptionRequest) -> str:
    """The device a request is for, as the person knows it now (never an internal ref)."""
    if r.device_id is None:
        return "all your devices"
    device = next((d for d in seen.devices if d.id == r.device_id), None)
    if device is None:
        device = device_now(seen.store, r)  # linked into another since, or gone
    if device is None:
        return "a device appban no longer knows"
    if device.owner != seen.email:
        return "a device that is no longer yours"
    return _label(device)
