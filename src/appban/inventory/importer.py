"""``appban import`` and ``appban people import``: whole files, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appban import settings
from appban.errors import BadInput
from appban.inventory.base import PLANNED, formats
from appban.inventory.ingest import Ingestor
from appban.inventory.people import read_people
from appban.output import plural
from appban.workspace import Workspace

Progress = Callable[[int], None]


def import_inventory(
    ws: Workspace,
    fmt: str,
    paths: list[str],
    *,
    keep_full: bool | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    known = formats()
    if fmt not in known:
        soon = f"; {fmt} arrives with the MDM import formats" if fmt in PLANNED else ""
        raise BadInput(f"unknown format {fmt!r} (have: {', '.join(known)}){soon}", field="FORMAT")
    reader = known[fmt]
    max_bytes = settings.get("max_checkin_bytes")
    max_apps = settings.get("max_apps")
    keep = settings.get("keep_full_inventory", keep_full)
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=keep)
    files = []
    with ws.writing():
        for path in paths:
            before = ingestor.counts.total
            for line, checkin in reader.read(path, max_bytes=max_bytes):
                if len(checkin.apps) > max_apps:
                    raise BadInput(
                        f"{plural(len(checkin.apps), 'app')}, more than {max_apps:,} "
                        f"({settings.SETTINGS['max_apps'].env})",
                        file=path,
                        line=line,
                        field="apps",
                    )
                try:
                    ingestor.ingest(checkin, ws.now)
                except BadInput as exc:
                    raise exc.at(file=path, line=line) from None
                if progress is not None:
                    progress(1)
            count = ingestor.counts.total - before
            if count == 0:
                # Most likely the wrong file, or one cut short: importing it would
                # record an import of nothing.
                raise BadInput("no check-ins in the file", file=path)
            files.append({"file": path, "checkins": count})
        ws.audit.append(
            ws.now,
            "import",
            fmt,
            {
                "files": [f["file"] for f in files],
                **ingestor.counts.as_dict(),
                "full_inventory": keep,
            },
        )
    return {"format": fmt, "files": files, **ingestor.counts.as_dict()}


def import_people(ws: Workspace, path: str) -> dict[str, Any]:
    max_bytes = settings.get("max_checkin_bytes")
    people = [p for _line, p in read_people(path, max_bytes=max_bytes)]
    if not people:
        raise BadInput("no people in the file", file=path)
    created = updated = unchanged = 0
    regroup: list[str] = []
    with ws.writing():
        changed = []
        for person in people:
            old = ws.store.get_person(person.email)
            if old is None:
                created += 1
            elif old == person:
                unchanged += 1
                continue
            else:
                updated += 1
                if old.groups != person.groups:
                    regroup.append(person.email)
            changed.append(person)
        ws.store.put_people(changed, ws.now)
        ws.evaluator.forget_groups(p.email for p in changed)
        # Groups decide scope: re-evaluate the devices of people whose groups changed,
        # and of new people who already own devices.
        for email in regroup + [p.email for p in changed if p.email not in regroup]:
            for device in ws.store.devices_of_owner(email):
                ws.evaluator.evaluate_device(device, ws.now, "people")
        ws.audit.append(
            ws.now,
            "people",
            path,
            {"created": created, "updated": updated, "unchanged": unchanged},
        )
    return {
        "file": path,
        "people": len(people),
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
    }
