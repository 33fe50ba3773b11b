"""``appban people`` and ``appban import``: who works here, and what their devices carry."""

from __future__ import annotations

import sys
from typing import Any

import click

from appban import output, settings
from appban.cli._root import MAX_LIMIT, Env, cli, common, emit

# -- people, import ----------------------------------------------------------------------


@cli.group()
def people() -> None:
    """People: the employees who own devices."""


@people.command("import")
@click.argument("file")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "graph", "google", "graph-members", "google-members"]),
    default="csv",
    show_default=True,
    help="csv: email,name,org_unit,groups,timezone; graph/google: the directory's user pages; "
    "graph-members/google-members: one group's member pages (with --group).",
)
@click.option("--group", default=None, metavar="NAME", help="The group whose member pages FILE holds.")
@common
def people_import(env: Env, file: str, fmt: str, group: str | None) -> None:
    """Load or update people, or one group's members."""
    from appban.inventory.importer import import_people

    ws = env.workspace(create=False)
    doc = import_people(ws, file, fmt, group)
    emit(
        env,
        doc,
        lambda d: output.line(
            f"{d['file']}: {output.plural(d['people'], 'person', 'people')} "
            f"({d['created']:,} new, {d['updated']:,} updated, {d['unchanged']:,} unchanged)"
            + (f"; {d['members']:,} in {d['group']}" if "group" in d else "")
        ),
    )


@people.command("list")
@click.option("--org-unit", default=None, metavar="NAME", help="Only people in this org unit.")
@click.option("--group", default=None, metavar="NAME", help="Only members of this group.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None, help="At most this many people.")
@common
def people_list(env: Env, org_unit: str | None, group: str | None, limit: int | None) -> None:
    """People, with their org unit, groups and how many devices each owns."""
    from appban.report.people import list_people

    ws = env.workspace(create=False)
    shown = limit if (limit or env.as_json) else 50
    doc = list_people(ws, org_unit=org_unit, group=group, limit=shown)

    def render(d: dict[str, Any]) -> None:
        if not d["people"]:
            output.line("no people" + (" match" if org_unit or group else ""))
            return
        output.table(
            None,
            ["email", "name", "org unit", "groups", "timezone", "devices"],
            [(p["email"], p["name"], p["org_unit"], p["groups"], p["timezone"], p["devices"]) for p in d["people"]],
            whole=("email",),
        )
        if d["count"] > len(d["people"]):
            output.line(f"... {d['count'] - len(d['people']):,} more (--limit, --json)")
        else:
            output.line(output.plural(d["count"], "person", "people"))

    emit(env, doc, render)


@people.command("link")
@click.argument("email", metavar="EMAIL")
@common
def people_link(env: Env, email: str) -> None:
    """Print a fresh link to EMAIL's own page (valid for APPBAN_LINK_TTL)."""
    from appban.clock import format_time
    from appban.errors import BadInput
    from appban.notify import links
    from appban.text import normalise_email

    address = normalise_email(email, "EMAIL")
    ws = env.workspace(create=False)
    if ws.store.get_person(address) is None and not ws.store.devices_of_owner(address):
        raise BadInput(f"{address[:80]!r} is neither a person nor a device owner", field="EMAIL")
    ttl = settings.duration("link_ttl")
    expires = (ws.now + ttl) // 1_000_000 * 1_000_000  # the token says whole seconds
    doc = {"email": address, "link": links.url(ws.store, address, ws.now, ttl), "expires": format_time(expires)}
    emit(env, doc, lambda d: output.line(d["link"]))


@cli.command("import")
@click.argument("format", metavar="FORMAT")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--keep-full-inventory",
    is_flag=True,
    default=None,
    help=settings.SETTINGS["keep_full_inventory"].help,
)
@click.option("--source", default=None, metavar="NAME", help="The source's name (default: the format's).")
@click.option(
    "--owners",
    default=None,
    metavar="CSV",
    help="Owners of records that name none: a CSV key,email (key: device id, serial, IMEI or mailbox alias).",
)
@click.option(
    "--timezone", default=None, metavar="TZ", help="The zone of times written without an offset (default UTC)."
)
@common
def import_(
    env: Env,
    format: str,
    files: tuple[str, ...],
    keep_full_inventory: bool | None,
    source: str | None,
    owners: str | None,
    timezone: str | None,
) -> None:
    """Load inventory from FILEs in FORMAT: appban, csv, intune, jamf, workspace-one,
    google-directory, android-management, apple-mdm, osquery, exchange."""
    from functools import partial

    from appban.inventory.importer import import_inventory
    from appban.progress import tracker

    import_inventory = partial(import_inventory, source=source, owners=owners, timezone=timezone)
    ws = env.workspace(create=False)
    with tracker(enabled=sys.stderr.isatty() and not env.as_json) as progress:
        doc = import_inventory(ws, format, list(files), keep_full=keep_full_inventory, progress=progress)
    emit(
        env,
        doc,
        lambda d: output.line(
            f"{output.plural(d['checkins'], 'check-in')}: {output.plural(d['new'], 'new device')}, "
            f"{d['updated']:,} updated, {d['unchanged']:,} no newer than stored"
        ),
    )
