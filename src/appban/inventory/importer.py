"""``appban import`` and ``appban people import``: files checked whole, then applied."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from appban import settings
from appban.catalog import Catalog
from appban.catalog.catalog import normalise_name
from appban.clock import Micros
from appban.errors import BadInput
from appban.inventory._lines import CsvReader, open_text
from appban.inventory.base import InventoryFormat, MultiFileFormat, ReadOptions, format_names, get_format
from appban.inventory.checkin import App, Checkin
from appban.inventory.ingest import Ingestor
from appban.inventory.people import read_people
from appban.output import plural
from appban.progress import Tracker, silent
from appban.store.records import Person
from appban.text import ascii_lower, check_identifier, normalise_email
from appban.workspace import Workspace

# Apply phase: one transaction holds the write lock at most this long (or this many
# check-ins), so the gate, the API and other writers wait milliseconds, not minutes.
BATCH_SECONDS = 0.1
BATCH_CHECKINS = 2000
# Check-ins held in memory between checking a file and applying it; past this many they
# wait in a temporary file, so memory stays bounded whatever the size of the export.
KEEP_PARSED = 50_000
KEEP_PARSED_APPS = 200_000  # ... or holding this many apps (every app is kept: --keep-full-inventory)


def import_inventory(
    ws: Workspace,
    fmt: str,
    paths: list[str],
    *,
    keep_full: bool | None = None,
    progress: Tracker | None = None,
    source: str | None = None,
    owners: str | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """Import ``paths`` in ``fmt``: every file is read and checked whole first (a file
    that fails writes nothing), then applied in short transactions.

    An import cut short while applying (a crash, a kill) leaves an ``import-started``
    entry in the audit log without its ``import``; running the same import again
    finishes it: what was applied is no newer than itself and changes nothing.
    """
    if fmt not in format_names():
        raise BadInput(f"unknown format {fmt!r} (have: {', '.join(format_names())})", field="FORMAT")
    reader = get_format(fmt)
    if source is not None and fmt in ("appban", "csv"):
        raise BadInput(f"the {fmt} format names its source in each check-in", field="--source")
    options = ReadOptions(
        now=ws.now,
        max_bytes=settings.get("max_checkin_bytes"),
        source=source,
        timezone=read_timezone(timezone),
        owners=read_owners(owners, settings.get("max_checkin_bytes")) if owners else {},
    )
    keep = settings.get("keep_full_inventory", keep_full)
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=keep)
    # Each file is parsed once: its check-ins, cut down to the apps the catalog may name
    # (unless every app is kept), wait in memory or, past a bound, in a temporary file.
    catalog = ingestor.catalog
    ingestor.filtered_with = None if keep else catalog.version
    with _Parsed(paths) as parsed:
        counts = dict.fromkeys(paths, 0)
        progress = progress or silent()
        progress.phase("checking " + (os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} files"))
        total = 0
        for path, line, checkin in _checked(reader, paths, options, ingestor, ws.now):
            counts[path] += 1
            total += 1
            if not keep:
                _minimise(checkin, catalog)
            parsed.add(path, line, checkin)
            if total % 256 == 0:
                progress.advance(256)
        # A file with nothing to import is most likely the wrong file, or one cut short:
        # importing it would record an import of nothing. (Files read together may each
        # hold part of a device: then only all of them holding nothing is refused.)
        empty = [p for p in paths if counts[p] == 0]
        if empty and (not isinstance(reader, MultiFileFormat) or total == 0):
            raise BadInput("no check-ins in the file", file=empty[0])
        files = [{"file": p, "checkins": counts[p]} for p in paths]
        subject = fmt if source is None else f"{fmt}:{source}"
        started = False
        batch: list[tuple[str, int | None, Checkin]] = []

        def apply(last: bool) -> None:
            nonlocal started
            with ws.writing():
                if not started and not last:
                    # More than one transaction: say so in the first, so that a crash
                    # before the last leaves a record of an import begun and not finished.
                    ws.audit.append(ws.now, "import-started", subject, {"files": paths})
                started = True
                for path, line, checkin in batch:
                    try:
                        ingestor.ingest(checkin, ws.now)
                    except BadInput as exc:
                        raise exc.at(file=path, line=line) from None
                if last:
                    ingestor.linker.drop_crowded(ws.now)
                    ws.audit.append(
                        ws.now,
                        "import",
                        subject,
                        {"files": paths, **ingestor.counts.as_dict(), "full_inventory": keep},
                    )
            progress.advance(len(batch))
            batch.clear()

        progress.phase("applying", total=total)
        deadline = time.monotonic() + BATCH_SECONDS
        for item in parsed:
            batch.append(item)
            if len(batch) >= BATCH_CHECKINS or time.monotonic() >= deadline:
                apply(last=False)
                deadline = time.monotonic() + BATCH_SECONDS
        apply(last=True)
        return {"format": fmt, "files": files, **ingestor.counts.as_dict()}


class _Parsed:
    """The check-ins of an import between its two phases, in file order: in memory up to
    KEEP_PARSED of them (or KEEP_PARSED_APPS apps), then in a temporary file
    (MessagePack frames)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.held: list[tuple[str, int | None, Checkin]] = []
        self.apps = 0  # apps of the check-ins held
        self.spill: Any = None
        self.encoder = msgspec.msgpack.Encoder()

    def __enter__(self) -> _Parsed:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.spill is not None:
            self.spill.close()

    def add(self, path: str, line: int | None, checkin: Checkin) -> None:
        if self.spill is None:
            self.held.append((path, line, checkin))
            self.apps += len(checkin.apps)
            if len(self.held) > KEEP_PARSED or self.apps > KEEP_PARSED_APPS:
                self.spill = tempfile.TemporaryFile(prefix="appban-import-")  # noqa: SIM115 - closed by __exit__
                for item in self.held:
                    self._write(*item)
                self.held.clear()
        else:
            self._write(path, line, checkin)

    def _write(self, path: str, line: int | None, checkin: Checkin) -> None:
        frame = self.encoder.encode((self.paths.index(path), line, checkin))
        self.spill.write(len(frame).to_bytes(4, "little") + frame)

    def __iter__(self) -> Iterator[tuple[str, int | None, Checkin]]:
        if self.spill is None:
            yield from self.held
            return
        decoder = msgspec.msgpack.Decoder(tuple[int, int | None, Checkin])
        self.spill.seek(0)
        while size := self.spill.read(4):
            index, line, checkin = decoder.decode(self.spill.read(int.from_bytes(size, "little")))
            yield self.paths[index], line, checkin


def _minimise(checkin: Checkin, catalog: Catalog) -> None:
    """Drop the apps no catalog entry can match (by id, certificate, or by name when the
    app has no id), as the ingest would: what waits between the phases is what is kept."""
    ids, names, certs = catalog.index_for(checkin.device.platform)

    def kept(apps: list[App]) -> list[App]:
        return [
            a
            for a in apps
            if (a.id in ids if a.id is not None else bool(a.name) and normalise_name(a.name or "") in names)
            or (certs and a.signing_sha256)
        ]

    checkin.apps = kept(checkin.apps)
    checkin.app_ids = [a.id for a in checkin.apps]
    if checkin.removed is not None:
        checkin.removed = kept(checkin.removed)


def _checked(
    reader: InventoryFormat, paths: list[str], options: ReadOptions, ingestor: Ingestor, now: Micros
) -> Iterator[tuple[str, int | None, Checkin]]:
    """The files' check-ins, each checked as far as it can be without the store, with
    the ``--owners`` mapping applied."""
    max_apps = settings.get("max_apps")
    if isinstance(reader, MultiFileFormat):
        items: Iterator[tuple[str, int | None, Checkin]] = reader.read_files(paths, options)
    else:
        items = ((path, line, checkin) for path in paths for line, checkin in reader.read(path, options))
    for path, line, checkin in items:
        if len(checkin.apps) > max_apps:
            raise BadInput(
                f"{plural(len(checkin.apps), 'app')}, more than {max_apps:,} ({settings.SETTINGS['max_apps'].env})",
                file=path,
                line=line,
                field="apps",
            )
        try:
            ingestor.check_time(checkin, now)
            if checkin.device.owner is None and options.owners:
                checkin.device.owner = owner_for(checkin, options.owners)
        except BadInput as exc:
            raise exc.at(file=path, line=line) from None
        yield path, line, checkin


def owner_for(checkin: Checkin, owners: Mapping[str, str]) -> str | None:
    """The ``--owners`` mapping's e-mail for a record, by its source id or any of its
    identifiers (serial number, IMEI, mailbox alias ...), compared without case. Keys
    of one record that map to two people are an error: which one is meant is unknown."""
    d = checkin.device
    found = {
        email
        for key in (d.id, *(value for _kind, value in d.identifiers))
        if (email := owners.get(ascii_lower(key))) is not None
    }
    if len(found) > 1:
        raise BadInput(
            f"--owners maps this device's ids to {len(found)} people ({', '.join(sorted(found))})",
            field="--owners",
        )
    return found.pop() if found else None


def read_owners(path: str, max_bytes: int) -> dict[str, str]:
    """``--owners``: a CSV with the header ``key,email``; keys compared without case."""
    f = open_text(path)
    reader = CsvReader(path, f, max_bytes)
    rows = iter(reader)
    owners: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        header = reader.header(rows)
        if header is None or [h.strip().lower() for h in header] != ["key", "email"]:
            raise BadInput("header must be key,email", file=path, line=reader.header_line)
        reader.columns = ["key", "email"]
        for row in rows:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != 2:
                raise BadInput(f"{len(row)} columns, expected 2", file=path, line=line)
            key, email = row[0].strip(), row[1].strip()
            try:
                if not key:
                    raise BadInput("empty", field="key")
                check_identifier(key, "key")
                email = normalise_email(email, "email")
            except BadInput as exc:
                raise exc.at(file=path, line=line) from None
            folded = ascii_lower(key)
            if folded in owners and owners[folded] != email:
                raise BadInput(
                    f"key {key!r} maps to {owners[folded]} on line {lines[folded]} and to {email} here",
                    file=path,
                    line=line,
                    field="email",
                )
            owners[folded] = email
            lines[folded] = line
    finally:
        f.close()
    if not owners:
        raise BadInput("no mappings in the file", file=path)
    return owners


def read_timezone(name: str | None) -> tzinfo:
    if name is None or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name[:64]!r}", field="--timezone") from None


PEOPLE_FORMATS = ("csv", "graph", "google", "graph-members", "google-members")


def import_people(ws: Workspace, path: str, fmt: str = "csv", group: str | None = None) -> dict[str, Any]:
    """People from SPEC's CSV, or from a directory's user pages (Microsoft Graph,
    Google's Directory API), or one group's members from its member pages.

    A directory's user pages name no groups (and Google's no time zone): people already
    known keep theirs. Member pages are the whole group: listed people join it (people
    not yet known are added by e-mail alone), and everyone else in it leaves.
    """
    if fmt not in PEOPLE_FORMATS:
        raise BadInput(f"unknown people format {fmt!r} (have: {', '.join(PEOPLE_FORMATS)})", field="--format")
    members = fmt.endswith("-members")
    if members != (group is not None):
        raise BadInput(
            "--group names the group of member pages" if members else "--group goes with a -members format",
            field="--group",
        )
    max_bytes = settings.get("max_checkin_bytes")
    if members:
        assert group is not None
        return _import_members(ws, path, fmt, group, max_bytes)
    if fmt == "csv":
        people = [p for _line, p in read_people(path, max_bytes=max_bytes)]
    else:
        from appban.inventory.people_google import read_google_users
        from appban.inventory.people_graph import read_graph_users

        reader = read_graph_users if fmt == "graph" else read_google_users
        people = []
        for _line, p in reader(path, max_bytes):
            old = ws.store.get_person(p.email)
            if old is not None:
                p.groups = old.groups
                if fmt == "google" or p.timezone == "UTC":
                    p.timezone = old.timezone
            people.append(p)
    if not people:
        raise BadInput("no people in the file", file=path)
    return _put_people(ws, path, people)


def _import_members(ws: Workspace, path: str, fmt: str, group: str, max_bytes: int) -> dict[str, Any]:
    from appban.inventory.people_google import read_google_members
    from appban.inventory.people_graph import read_graph_members

    check_identifier(group, "--group")
    if not group.strip() or len(group) > 200:
        raise BadInput("a group name is 1 to 200 characters", field="--group")
    reader = read_graph_members if fmt == "graph-members" else read_google_members
    emails = list(dict.fromkeys(email for _line, email in reader(path, max_bytes)))
    if not emails:
        raise BadInput("no members in the file", file=path)
    listed = set(emails)
    people: list[Person] = []
    with ws.writing():
        for email in emails:
            old = ws.store.get_person(email)
            person = Person(email) if old is None else replace(old)
            person.groups = tuple(sorted({*person.groups, group}))
            people.append(person)
        for old in ws.store.list_people(group=group):
            if old.email not in listed:
                people.append(replace(old, groups=tuple(g for g in old.groups if g != group)))
        doc = _put_people(ws, path, people)
    return {**doc, "group": group, "members": len(emails)}


def _put_people(ws: Workspace, path: str, people: list[Person]) -> dict[str, Any]:
    created = updated = unchanged = 0
    regroup: list[str] = []
    with ws.writing():
        changed = []
        known: set[str] = set()
        for person in people:
            old = ws.store.get_person(person.email)
            if old is not None:
                known.add(person.email)
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
        ws.evaluator.notices.people_joined([p.email for p in changed if p.email not in known], ws.now)
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
