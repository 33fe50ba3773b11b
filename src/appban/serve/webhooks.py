"""``POST /api/v1/webhooks/apple-mdm``: the events open-source MDM servers post.

MicroMDM (workflow/webhook) and NanoMDM (service/webhook) post one JSON event a request:
``acknowledge_event`` for a command's result, whose ``raw_payload`` is the device's
answer, a base64 property list; ``checkin_event`` for Authenticate, TokenUpdate and
the like. The results appban reads are ``InstalledApplicationList``,
``ManagedApplicationList`` and ``DeviceInformation``, with the apple-mdm importer's
parser; every other event is answered 200 and ignored. A request may also hold an
array of events. The source is the token's, as a Bearer token or as the password of
HTTP Basic credentials (an MDM server is configured with a webhook URL, which can
carry them: ``https://mdm:TOKEN@appban.example.com/api/v1/webhooks/apple-mdm``).

An app list does not say which kind of device it came from; DeviceInformation does
(ProductName). An app list of a device appban already knows (from an earlier
DeviceInformation, by webhook or by import) is applied with the device's stored facts.
One of a device not yet known is held (``mdm_held_apps``: only the apps the catalog
may name, the newest list per device) and applied when the device's DeviceInformation
arrives; a list held longer than ``mdm_hold_max_age`` is dropped, and no more than
``mdm_hold_max_lists`` lists of one source are held (past it, a list of another
unknown device is rejected). All of this runs on
the service's writer thread, one request at a time, so an app list and the
DeviceInformation that tells its platform never miss each other.

Answers are 200 (NanoMDM counts any other status as a failure) with a result per
event: ``applied``, ``ignored`` (nothing to keep, or no newer than what is stored),
``held``, or ``rejected`` (naming the field; nothing of it is written).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appban import settings
from appban.catalog import Catalog
from appban.catalog.catalog import normalise_name
from appban.clock import now_micros
from appban.errors import BadInput
from appban.inventory.apple_mdm import AppList, DeviceFacts, Report, device_checkin, webhook_reports
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin
from appban.inventory.ingest import Ingestor
from appban.serve._operations import operation
from appban.serve.auth import source_of
from appban.serve.bodies import read_body
from appban.serve.responses import ApiError, json_response
from appban.serve.schemas import Error
from appban.serve.service import Service
from appban.store.osquery_records import HeldApps
from appban.workspace import Workspace

PATH = "/api/v1/webhooks/apple-mdm"
_APPLE = ("ios", "ipados", "macos")
_INLINE_BYTES = 64 * 1024


def routes() -> list[BaseRoute]:
    return [Route(PATH, apple_mdm, methods=["POST"])]


class AcknowledgeEvent(msgspec.Struct):
    status: str
    raw_payload: str  # base64 of the device's answer, a property list
    udid: str | None = None
    enrollment_id: str | None = None
    command_uuid: str | None = None
    url_params: dict[str, str] | None = None
    ids: dict[str, str | None] | None = None  # NanoMDM: id, parent_id, type


class CheckinEvent(msgspec.Struct):
    raw_payload: str
    udid: str | None = None
    enrollment_id: str | None = None
    url_params: dict[str, str] | None = None


class Event(msgspec.Struct):
    """One MicroMDM or NanoMDM webhook event (a request may also hold an array of them)."""

    topic: str
    created_at: str | None = None  # absent (or Go's zero time): the time it is received
    event_id: str | None = None
    acknowledge_event: AcknowledgeEvent | None = None
    checkin_event: CheckinEvent | None = None


class EventError(msgspec.Struct):
    field: str | None
    message: str


class EventResult(msgspec.Struct, omit_defaults=True):
    index: int
    device: str | None  # the EnrollmentID or UDID the result names
    status: Literal["applied", "ignored", "held", "rejected"]
    error: EventError | None = None


class EventResults(msgspec.Struct):
    results: list[EventResult]


@operation(
    "Post Apple MDM command results",
    "The webhook events of MicroMDM and NanoMDM. InstalledApplicationList, "
    "ManagedApplicationList and DeviceInformation results are applied as check-ins of the "
    "token's source; an app list of a device whose platform is not yet known is held until "
    "its DeviceInformation arrives; other events are ignored.",
    body=Event,
    answers={
        200: ("What became of each event.", EventResults),
        400: ("The body is not JSON.", Error),
        401: ("No live source token (Bearer, or the password of Basic credentials).", Error),
        413: ("The body is larger than serve_max_body_bytes, or holds more than serve_max_items events.", Error),
    },
    security=[{"sourceToken": []}, {"sourceTokenBasic": []}],
)
async def apple_mdm(request: Request) -> Response:
    service: Service = request.app.state.service
    source = await source_of(request, service, basic=True)
    body = await read_body(request, limit=settings.get("serve_max_body_bytes"))
    options = ReadOptions(now=now_micros(), max_bytes=settings.get("max_checkin_bytes"), source=source)
    try:
        if len(body) > _INLINE_BYTES:
            reports = await asyncio.to_thread(webhook_reports, body, options)
        else:
            reports = webhook_reports(body, options)
    except BadInput as exc:
        raise ApiError(400, exc.detail, field=exc.field) from None
    most = settings.get("serve_max_items")
    if len(reports) > most:
        field = settings.SETTINGS["serve_max_items"].env
        raise ApiError(413, f"{len(reports):,} events in one request, more than {most:,}", field=field)
    results = await service.call(lambda ws: _Apply(ws, source, options).all(reports))
    return json_response({"results": results})


class _Apply:
    """One request's events, applied in one transaction on the writer thread."""

    def __init__(self, ws: Workspace, source: str, options: ReadOptions) -> None:
        self.ws = ws
        self.source = source
        self.options = options
        self.keep_full: bool = settings.get("keep_full_inventory")
        self.ingestor = Ingestor(ws.store, ws.evaluator, keep_full=self.keep_full)
        self.hold_for = settings.duration("mdm_hold_max_age")

    def all(self, reports: list[Report | BadInput | None]) -> list[dict[str, Any]]:
        ws = self.ws
        results: list[dict[str, Any]] = []
        with ws.writing():
            ws.store.expire_mdm_apps(ws.now - self.hold_for)
            for index, report in enumerate(reports):
                if isinstance(report, BadInput):
                    results.append(_rejected(index, None, report))
                elif report is None:
                    results.append({"index": index, "device": None, "status": "ignored"})
                else:
                    try:
                        status = self.one(report)
                    except BadInput as exc:  # refused before anything of it was written
                        results.append(_rejected(index, report.device.key, exc))
                        continue
                    results.append({"index": index, "device": report.device.key, "status": status})
            self.ingestor.linker.drop_crowded(ws.now)
            tally = {s: sum(r["status"] == s for r in results) for s in ("applied", "ignored", "held", "rejected")}
            ws.audit.append(ws.now, "checkins", f"webhook:{self.source}", tally)
        return results

    def one(self, report: Report) -> str:
        store, key = self.ws.store, report.device.key
        if report.apps is None:  # DeviceInformation
            if report.device.platform in (None, "other"):
                return "ignored"  # no ProductName asked, or an Apple TV, a Watch...
            held = store.held_mdm_apps(self.source, key)
            listed = _held_list(held) if held is not None else None
            status = self._ingest(device_checkin(self.source, report.device, listed, self.options), held)
            if held is not None:
                store.drop_mdm_apps(self.source, key)
            return status
        known = self._known(report.device)
        if known is None:
            self._hold(report.device, report.apps)
            return "held"
        status = self._ingest(device_checkin(self.source, known, report.apps, self.options), None)
        held = store.held_mdm_apps(self.source, key)
        if held is not None and held.observed_at <= (report.apps.observed or self.options.now):
            store.drop_mdm_apps(self.source, key)
        return status

    def _ingest(self, checkin: Checkin, held: HeldApps | None) -> str:
        counts = self.ingestor.counts
        unchanged = counts.unchanged
        # A held list was cut down to the catalog of its day: a larger catalog since did not see it.
        self.ingestor.filtered_with = held.catalog_version if held is not None else None
        try:
            self.ingestor.ingest(checkin, self.ws.now)
        finally:
            self.ingestor.filtered_with = None
        return "ignored" if counts.unchanged > unchanged else "applied"

    def _known(self, device: DeviceFacts) -> DeviceFacts | None:
        """The device's facts as stored (from an earlier DeviceInformation), or None."""
        store = self.ws.store
        row = store.get_device_by_key(self.source, device.key)
        record = store.get_record(self.source, device.key) if row is None or row.linked else None
        facts = record.facts if record is not None else row
        if facts is None:
            return None
        return DeviceFacts(
            key=device.key,
            at=device.at,
            user_enrollment=device.user_enrollment,
            platform=facts.platform,
            model=facts.model,
            os_version=facts.os_version,
            supervised=facts.ownership == "corporate",
            identifiers=list(dict.fromkeys([*facts.identifiers, *device.identifiers])),
        )

    def _hold(self, device: DeviceFacts, listed: AppList) -> None:
        # Checked now as it will be applied (any Apple platform checks alike): a list
        # refused then would make its device's DeviceInformation refused with it.
        device_checkin(self.source, replace(device, platform="ios"), listed, self.options)
        store = self.ws.store
        most = settings.get("mdm_hold_max_lists")
        if store.held_mdm_apps(self.source, device.key) is None and store.count_mdm_apps(self.source) >= most:
            # A bound on what one token can make appban keep for devices it may never see.
            env = settings.SETTINGS["mdm_hold_max_lists"].env
            raise BadInput(f"{most:,} app lists already wait for their devices' DeviceInformation ({env})")
        catalog = self.ws.catalog
        apps = listed.apps if self.keep_full else _may_name(listed.apps, catalog)
        self.ws.store.hold_mdm_apps(
            HeldApps(
                source=self.source,
                device_key=device.key,
                observed_at=listed.observed if listed.observed is not None else self.options.now,
                scope=listed.scope,
                user_enrollment=device.user_enrollment,
                apps=msgspec.json.encode([{"id": a.id, "name": a.name, "version": a.version} for a in apps]),
                catalog_version=None if self.keep_full else catalog.version,
                received_at=self.ws.now,
            )
        )


def _held_list(held: HeldApps) -> AppList:
    apps = msgspec.json.decode(held.apps, type=list[App])
    return AppList(apps, held.scope, held.observed_at, "apps (held until DeviceInformation)")


def _may_name(apps: list[App], catalog: Catalog) -> list[App]:
    """The apps a catalog entry of any Apple platform can match (by id, or by name when
    the app has no id), as the ingest would keep them once the platform is known."""
    indexes = [catalog.index_for(p) for p in _APPLE]
    kept = []
    for app in apps:
        name = normalise_name(app.name) if app.id is None and app.name else None
        for ids, names, certs in indexes:
            found = app.id in ids if app.id is not None else name is not None and name in names
            if found or (certs and app.signing_sha256):
                kept.append(app)
                break
    return kept


def _rejected(index: int, device: str | None, exc: BadInput) -> dict[str, Any]:
    return {
        "index": index,
        "device": device,
        "status": "rejected",
        "error": {"field": exc.field, "message": exc.detail},
    }
