"""osquery result logs: the filesystem logger's JSON Lines, or the TLS logger's bodies.

Each line is one result log entry (or a TLS body, ``{"log_type": "result", "data":
[...]}``, one a line). Four shapes, as osquery's logging documentation gives them:
a snapshot (``"action": "snapshot"``, ``"snapshot": [rows]``), a snapshot one row a
line (``--logger_snapshot_event_type``: ``"action": "snapshot"``, ``"columns": {...}``),
the batch format (``"diffResults": {"added": [...], "removed": [...]}``) and the event
format (one row a line, ``"action": "added"|"removed"``, ``"columns": {...}``).

One record per host and query: ``<hostIdentifier>/<query name>``, so that a host's
``apps`` snapshot never erases its ``chrome_extensions``. Which table a query reads is
told by its name (``apps``, ``pack_inventory_apps``), else by its columns
(``bundle_identifier`` is ``apps``); queries of other tables are skipped.

A snapshot, and a differential run with ``counter`` 0 (osquery's "all records" of an
epoch), replace the record's apps; a later run adds and removes. Rows logged one a
line, of one run (host, query, epoch, counter, time), are gathered into one report,
even when other hosts' lines come between them; a run still open after
``_IDLE_LINES`` lines is closed, and a row of it found later is refused rather than
applied twice.

Over TLS (``tls_results``), osquery sends at most ``--logger_tls_max_lines`` lines a
request, so a run logged one row a line may be cut across requests: such a report is
``partial`` (a ``PartialCheckin``). It adds its rows to the record (and the rest of
its run, in a later request, too), and it is never taken for the host's whole set
(scope ``managed``): only a snapshot, or a batch-format run with counter 0, is one
entry that cannot be cut.

A snapshot's ``epoch`` and ``counter`` are not kept: osquery counts the runs of
differential queries only, and writes a snapshot query's counter as 0 every time
(osquery/dispatcher/scheduler.cpp), so snapshots are ordered by their time alone.

``read`` takes a path, ``read_stream`` an open binary file; ``tls_results`` reads the
``data`` of one TLS logger body for ``appban serve``, where the node key, not the
body, says which host the entries are about, and a bad entry is refused alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec

from appban.clock import Micros, parse_time
from appban.errors import BadInput
from appban.inventory._vendor import child, integer, listed, mapping, open_binary, text
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import App, Checkin, PartialCheckin, build

_TABLES = ("chrome_extensions", "deb_packages", "rpm_packages", "programs", "apps")
_NAMED = re.compile(r"(?<![a-z0-9])(" + "|".join(_TABLES) + r")(?![a-z0-9])")
_TABLE_PLATFORM = {"apps": "macos", "programs": "windows", "deb_packages": "linux", "rpm_packages": "linux"}
# os_version.platform as a decoration names a Chrome extension's host platform.
_OS_PLATFORM = {"darwin": "macos", "windows": "windows", "chrome": "chromeos", "freebsd": None}
_IDLE_LINES = 100_000


class OsqueryFormat:
    name = "osquery"

    def read(self, path: str, options: ReadOptions) -> Iterator[tuple[int | None, Checkin]]:
        f = open_binary(path)
        try:
            yield from self.read_stream(f, options, name=path)
        finally:
            f.close()

    def read_stream(self, f: BinaryIO, options: ReadOptions, *, name: str) -> Iterator[tuple[int | None, Checkin]]:
        """The check-ins of a results log read from ``f``; errors name the file ``name``."""
        path = name
        source = options.source or self.name

        def made(result: _Result, line: int) -> tuple[int, Checkin]:
            try:
                return line, _checkin(source, result, options)
            except BadInput as exc:
                raise _placed(exc, path, line) from None

        runs = _Runs(path)
        for number, at, entry in _entries(f, path, options.max_bytes):
            try:
                result = _result(entry, at, options)
            except BadInput as exc:
                raise _placed(exc, path, number) from None
            if result is None:
                pass
            elif result.rows is not None:  # a snapshot, or a batch of changes
                yield made(result, number)
            else:
                for run in runs.add(result, number):
                    yield made(run.result, run.line)
            for run in runs.idle(number):
                yield made(run.result, run.line)
        for run in runs.close():
            yield made(run.result, run.line)


@dataclass
class _Result:
    """One result log entry of a table we read."""

    host: str
    query: str
    table: str
    platform: str
    epoch: int | None
    counter: int | None
    observed: Micros | None
    decorations: dict[str, Any]
    at: str
    rows: list[App] | None  # a snapshot's or a batch's added rows; None for an event
    removed: list[App] | None = None
    added: list[App] = field(default_factory=list)  # an event's row, when it was added
    snapshot: bool = False
    where: dict[str, str] = field(default_factory=dict)


def _entries(f: BinaryIO, path: str, max_bytes: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line, path within the line, entry) for every result log entry in the file."""
    number = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise BadInput(f"a line longer than {max_bytes} bytes", file=path, line=number)
        if not raw.strip():
            continue
        try:
            value = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise BadInput("not a JSON object on one line", file=path, line=number) from None
        if not isinstance(value, dict):
            raise BadInput("expected a JSON object", file=path, line=number)
        if "log_type" not in value:
            yield number, "", value
            continue
        try:
            if text(value, "log_type", "") != "result":
                raise BadInput("status logs, not query results", field="log_type")
            for i, entry in enumerate(listed(value, "data", "")):
                yield number, f"data[{i}].", mapping(entry, f"data[{i}]")
        except BadInput as exc:
            raise _placed(exc, path, number) from None


def tls_results(
    data: list[Any],
    options: ReadOptions,
    *,
    host: str,
    decorations: Mapping[str, str],
    skip: set[int] | None = None,
) -> Iterator[tuple[int, Checkin | BadInput]]:
    """The check-ins of a TLS logger body's result entries (its ``data``), each with the
    index of its entry (of a run's first entry, for rows gathered into one), in no set
    order. An entry that cannot be read, or a run that cannot be made a check-in, gives
    its BadInput (fields named from ``data[i]``) and the others are read. Entries of
    tables appban does not read give nothing.

    Every entry is ``host``'s, whatever its ``hostIdentifier`` says, and ``decorations``
    replace its own: the caller knows the host from its credentials, not from the body.
    Entries at the indexes in ``skip`` are not read (the caller answered them).
    """
    source = options.source or OsqueryFormat.name
    runs = _Runs("")

    def made(result: _Result, index: int) -> tuple[int, Checkin | BadInput]:
        try:
            return index, _checkin(source, result, options)
        except BadInput as exc:
            return index, BadInput(exc.detail, field=exc.field)

    def made_partial(result: _Result, index: int) -> tuple[int, Checkin | BadInput]:
        # Rows logged one a line: the request may hold only part of their run.
        index, item = made(result, index)
        return index, PartialCheckin.of(item) if isinstance(item, Checkin) else item

    for i, raw in enumerate(data):
        if skip and i in skip:
            continue
        try:
            entry = {**mapping(raw, f"data[{i}]"), "hostIdentifier": host, "decorations": dict(decorations)}
            result = _result(entry, f"data[{i}].", options)
        except BadInput as exc:
            yield i, BadInput(exc.detail, field=exc.field or f"data[{i}]")
            continue
        if result is None:
            continue
        if result.rows is not None:
            yield made(result, i)
            continue
        try:
            closed = list(runs.add(result, i))
        except BadInput:
            yield i, BadInput("a row of a run whose other rows came before another run's", field=f"data[{i}]")
            continue
        for run in closed:
            yield made_partial(run.result, run.line)
    for run in runs.close():
        yield made_partial(run.result, run.line)


def _placed(exc: BadInput, path: str, line: int) -> BadInput:
    """The error on its line; a field of the line's own object is named without a dot."""
    field = exc.field[1:] if exc.field and exc.field.startswith(".") else exc.field
    return BadInput(exc.detail, file=exc.file or path, line=exc.line or line, field=field)


def _result(entry: dict[str, Any], at: str, options: ReadOptions) -> _Result | None:
    here = at.rstrip(".")
    action = text(entry, "action", here)
    diff = child(entry, "diffResults", here)
    if action is None and not diff:
        raise BadInput("not a query result (no action, no diffResults): a status log?", field=here or None)
    query = text(entry, "name", here, required=True) or ""
    # Older logs, and osquery's own examples of the event format, say hostname.
    host = text(entry, "hostIdentifier", here) or text(entry, "hostname", here)
    if host is None:
        raise BadInput("missing", field=f"{at}hostIdentifier")
    removed_rows = None
    one_row = action in ("added", "removed") or (action == "snapshot" and "columns" in entry)
    if action == "snapshot" and not one_row:
        if "snapshot" not in entry:  # never read as a host without apps
            raise BadInput("a snapshot with neither snapshot rows nor columns", field=f"{at}snapshot")
        rows, rows_at = listed(entry, "snapshot", here), f"{at}snapshot"
    elif one_row:
        rows, rows_at = [mapping(entry.get("columns"), f"{at}columns")], f"{at}columns"
    elif action is None:
        rows, rows_at = listed(diff, "added", f"{at}diffResults"), f"{at}diffResults.added"
        removed_rows = listed(diff, "removed", f"{at}diffResults")
    else:
        raise BadInput(f"unknown action {action[:40]!r}", field=f"{at}action")
    table = _table(query, rows or removed_rows or [])
    if table is None:
        return None
    decorations = child(entry, "decorations", here)
    platform = _TABLE_PLATFORM.get(table) or _extension_platform(decorations, rows, at)
    if platform is None:
        return None  # a Chrome extension list from a host whose platform cannot be told
    counter = integer(entry, "counter", here)
    epoch = integer(entry, "epoch", here)
    if action == "snapshot":  # osquery does not count snapshot runs: ordered by time
        epoch = counter = None
    result = _Result(
        host=host,
        query=query,
        table=table,
        platform=platform,
        epoch=epoch,
        counter=counter,
        observed=_observed(entry, here, options),
        decorations=decorations,
        at=at,
        rows=None,
    )
    apps = _apps(table, rows, rows_at, listed_rows=not one_row)
    if action == "snapshot" and not one_row:
        result.rows, result.snapshot = apps, True
        result.where["apps"] = rows_at
    elif action is None:
        result.rows = apps
        result.where["apps"] = rows_at
        # counter 0: the first run of an epoch, all its rows (osquery's "Schedule counter").
        result.snapshot = counter == 0
        if not result.snapshot:
            result.removed = _apps(table, removed_rows or [], f"{at}diffResults.removed")
            result.where["removed"] = f"{at}diffResults.removed"
    else:  # one row: gathered with the other rows of its run by _Runs
        result.snapshot = action == "snapshot" or counter == 0
        result.added = apps if action in ("added", "snapshot") else []
        result.removed = apps if action == "removed" else []
        result.where["apps"] = result.where["removed"] = "columns (rows of the run, in order)"
    return result


def query_table(query: str) -> str | None:
    """The table a query reads, as its name tells it (``pack_inventory_apps``: apps), or None."""
    found = _NAMED.search(query.lower())
    return found.group(1) if found else None


def _table(query: str, rows: list[Any]) -> str | None:
    named = query_table(query)
    if named is not None:
        return named
    columns = rows[0] if rows and isinstance(rows[0], dict) else {}
    if "bundle_identifier" in columns:
        return "apps"
    if "identifying_number" in columns:
        return "programs"
    if "identifier" in columns and ("browser_type" in columns or "profile" in columns):
        return "chrome_extensions"
    if "package_group" in columns:
        return "rpm_packages"
    if "maintainer" in columns:
        return "deb_packages"
    return None


def _extension_platform(decorations: dict[str, Any], rows: list[Any], at: str) -> str | None:
    """A Chrome extension's host: a ``platform`` decoration (os_version.platform), else
    the shape of the extension's ``path`` (a drive letter, /Users/, /home/)."""
    named = text(decorations, "platform", f"{at}decorations")
    if named is not None:
        return _OS_PLATFORM.get(named.lower(), "linux")
    for row in rows:
        where = row.get("path") if isinstance(row, dict) else None
        if not isinstance(where, str):
            continue
        if re.match(r"[A-Za-z]:\\", where):
            return "windows"
        if where.startswith(("/Users/", "/Library/")):
            return "macos"
        if where.startswith(("/home/", "/root/")):
            return "linux"
    return None


def _apps(table: str, rows: list[Any], at: str, *, listed_rows: bool = True) -> list[App]:
    """Each row's app. osquery writes every column as a string: a row whose name and
    version are non-empty strings (and id a string or absent) is read here at once;
    any other row is read by ``_app``, which says what is wrong with it."""
    id_key, name_key, version_key = _COLUMNS[table]
    apps: list[App] = []
    append = apps.append
    for i, row in enumerate(rows):
        if type(row) is dict:
            ident, name, version = row.get(id_key), row.get(name_key), row.get(version_key)
            if (
                type(name) is str
                and name
                and type(version) is str
                and version
                and (ident is None or type(ident) is str)
            ):
                append(App(ident or None, name, version))
                continue
        append(_app(table, row, f"{at}[{i}]" if listed_rows else at))
    return apps


# The columns _app reads first, by table: (id, name, version). A program has no id.
_COLUMNS: dict[str, tuple[str | None, str, str]] = {
    "apps": ("bundle_identifier", "display_name", "bundle_short_version"),
    "programs": (None, "name", "version"),
    "chrome_extensions": ("identifier", "name", "version"),
    "deb_packages": ("name", "name", "version"),
    "rpm_packages": ("name", "name", "version"),
}


def _app(table: str, row: Any, at: str) -> App:
    row = mapping(row, at)
    if table == "apps":
        name = text(row, "display_name", at) or text(row, "bundle_name", at) or text(row, "name", at)
        version = text(row, "bundle_short_version", at) or text(row, "bundle_version", at)
        return App(id=text(row, "bundle_identifier", at), name=name, version=version)
    if table == "programs":
        # identifying_number is an installer's product code, new with each version: not an app's id.
        return App(name=text(row, "name", at, required=True), version=text(row, "version", at))
    if table == "chrome_extensions":
        return App(id=text(row, "identifier", at), name=text(row, "name", at), version=text(row, "version", at))
    package = text(row, "name", at, required=True)  # deb_packages, rpm_packages: the package is the id
    return App(id=package, name=package, version=text(row, "version", at))


def _observed(entry: dict[str, Any], at: str, options: ReadOptions) -> Micros | None:
    seconds = integer(entry, "unixTime", at)
    if seconds is not None:
        if not 0 <= seconds < 253402300800:  # before year 10000
            raise BadInput(f"{seconds} is not a time", field=f"{at}.unixTime".lstrip("."))
        return seconds * 1_000_000
    calendar = text(entry, "calendarTime", at)
    if calendar is None:
        return None
    # "Tue Sep 30 17:37:30 2014", and since 2016 "Mon May  2 22:27:32 2016 UTC".
    words = calendar.split()
    zone = UTC if words[-1:] == ["UTC"] else options.timezone
    try:
        parsed = datetime.strptime(" ".join(w for w in words if w != "UTC"), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        raise BadInput(f"not a calendarTime: {calendar[:40]!r}", field=f"{at}.calendarTime".lstrip(".")) from None
    return parse_time(parsed.replace(tzinfo=zone), field="calendarTime")


def _checkin(source: str, result: _Result, options: ReadOptions) -> Checkin:
    at = result.at
    deco = result.decorations
    identifiers = [("host", result.host)]
    serial = text(deco, "hardware_serial", f"{at}decorations")
    if serial is not None:
        identifiers.append(("serial", serial))
    uuid = text(deco, "host_uuid", f"{at}decorations") or text(deco, "uuid", f"{at}decorations")
    if uuid is not None and result.platform == "macos":
        # system_info.uuid of a Mac is its hardware UUID, the UDID its MDM knows it by.
        identifiers.append(("udid", uuid))
    where = {
        "device.id": f"{at}hostIdentifier",
        "device.host": f"{at}hostIdentifier",
        "device.serial": f"{at}decorations.hardware_serial",
        "device.udid": f"{at}decorations.host_uuid",
        "device.owner": f"{at}decorations.email",
        **result.where,
    }
    apps = result.rows or []
    removed = None if result.snapshot else result.removed or []
    if removed:  # an app whose version changed is removed and added: it stays
        kept = {_key(a) for a in apps}
        removed = [a for a in removed if _key(a) not in kept]
    return build(
        source=source,
        device_id=f"{result.host}/{result.query}",
        platform=result.platform,
        owner=text(deco, "email", f"{at}decorations"),
        observed_at=result.observed if result.observed is not None else options.now,
        apps=apps,
        inventory_scope="full",
        identifiers=identifiers,
        removed=removed,
        epoch=result.epoch,
        counter=result.counter,
        where=where,
    )


def _key(app: App) -> str:
    return app.id if app.id is not None else "name:" + (app.name or "")


@dataclass
class _Run:
    line: int
    last: int
    ident: tuple[int | None, int | None, Micros | None]
    result: _Result


class _Runs:
    """Event-format rows gathered into one differential per run of a query on a host."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.open: dict[tuple[str, str], _Run] = {}
        self.closed: dict[tuple[str, str], tuple[int | None, int | None, Micros | None]] = {}

    def add(self, result: _Result, line: int) -> Iterator[_Run]:
        key = (result.host, result.query)
        # A run is one execution: epoch and counter, or its time when osquery gives no counter.
        ident = (result.epoch, result.counter, result.observed if result.counter is None else None)
        run = self.open.get(key)
        if run is not None and run.ident != ident:
            yield self._close(key)
            run = None
        if run is None:
            if self.closed.get(key) == ident:
                raise BadInput(
                    f"a row of a run of query {result.query[:64]!r} on {result.host[:64]!r} more than "
                    f"{_IDLE_LINES:,} lines after its other rows: the run cannot be told apart from a new one",
                    file=self.path,
                    line=line,
                )
            result.rows = list(result.added)
            self.open[key] = _Run(line, line, ident, result)
            return
        run.last = line
        gathered = run.result
        if gathered.rows is not None and gathered.removed is not None:
            gathered.rows.extend(result.added)
            gathered.removed.extend(result.removed or [])

    def idle(self, line: int) -> Iterator[_Run]:
        if line % 1024 == 0:
            for key in [k for k, r in self.open.items() if line - r.last > _IDLE_LINES]:
                yield self._close(key)

    def close(self) -> Iterator[_Run]:
        for key in list(self.open):
            yield self._close(key)

    def _close(self, key: tuple[str, str]) -> _Run:
        run = self.open.pop(key)
        self.closed[key] = run.ident
        return run
