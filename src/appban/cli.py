"""The ``appban`` command line (SPEC: Command line). Thin: parse, call, print."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from appban import __version__, output, settings
from appban.clock import format_time, now_micros, parse_time
from appban.errors import AppbanError, BadInput, one_line
from appban.policy.states import STATES


class Env:
    def __init__(self, db: str | None, now: str | None, as_json: bool) -> None:
        self.db_flag = db
        self.now_text = now
        self.as_json = as_json

    def now(self) -> int:
        # An empty --now is a mistake (an unset variable), not a request for the wall clock.
        return parse_time(self.now_text, field="--now") if self.now_text is not None else now_micros()

    def db(self) -> str:
        """--db, else APPBAN_DB, else ./appban.db. An empty one is a mistake (an unset
        variable), not a request for a throwaway database."""
        if self.db_flag is not None and not self.db_flag.strip():
            raise BadInput("empty: give a SQLite path or database URL", field="--db")
        return str(settings.get("db", self.db_flag))

    def workspace(self, *, create: bool) -> Any:
        """The workspace at --db. Only ``init`` passes ``create``: a typo in --db or
        APPBAN_DB must not start a second, empty database beside the real one."""
        from appban.workspace import Workspace

        db = self.db()
        now = self.now()
        if create and db != ":memory:" and not os.path.exists(db):
            _CREATED.append(db)  # removed again if this command fails: bad input writes nothing
        return Workspace(db, now, create=create, live=self.now_text is None)


_CREATED: list[str] = []
# The most rows a listing's --limit may ask for: beyond it, --json prints them all.
MAX_LIMIT = 10_000_000


def _forget_created() -> None:
    for db in _CREATED:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.remove(db + suffix)
    _CREATED.clear()


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every command takes --json and --now (SPEC), also after the command name."""

    @click.option("--json", "as_json", is_flag=True, default=None, help="Print one JSON document.")
    @click.option("--now", "now", metavar="ISO-8601", default=None, help="The clock for this command.")
    @click.pass_obj
    @functools.wraps(fn)
    def wrapper(env: Env, as_json: bool | None, now: str | None, **kwargs: Any) -> Any:
        if as_json:
            env.as_json = True
        if now is not None:
            env.now_text = now
        return fn(env, **kwargs)

    return wrapper


def emit(env: Env, doc: Any, render: Callable[[Any], None]) -> None:
    if env.as_json:
        output.print_json(doc)
    else:
        render(doc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="appban")
@click.option(
    "--db",
    metavar="PATH|URL",
    default=None,
    help=f"{settings.SETTINGS['db'].help} [env APPBAN_DB; default ./appban.db]",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--now", metavar="ISO-8601", default=None, help="The clock for this command.")
@click.pass_context
def cli(ctx: click.Context, db: str | None, as_json: bool, now: str | None) -> None:
    """appban: find devices that read company mail and carry a banned app, tell their
    owners, cut their mail access after the deadline, restore it when clean."""
    ctx.obj = Env(db, now, as_json)


# -- init, demo ------------------------------------------------------------------------


@cli.command()
@common
def init(env: Env) -> None:
    """Create or upgrade the database (idempotent).

    A missing file, or an empty (zero-byte) one, becomes a new database; any other
    file must already be an appban database.
    """
    ws = env.workspace(create=True)
    doc = {
        "db": ws.db,
        "schema_version": ws.store.schema_version(),
        "catalog_version": ws.catalog.version,
        "families": sorted(ws.catalog.families),
    }
    emit(
        env,
        doc,
        lambda d: output.line(f"{d['db']}: schema v{d['schema_version']}, catalog v{d['catalog_version']}"),
    )


@cli.command()
@click.option(
    "--employees",
    type=click.IntRange(10, 2_000_000),
    default=5000,
    show_default=True,
    help="Size of the synthetic company.",
)
@click.option("--seed", type=int, default=2020, show_default=True, help="Random seed: same seed, same story.")
@common
def demo(env: Env, employees: int, seed: int) -> None:
    """The whole scenario on a synthetic fleet, day by day, with a summary."""
    from appban.sim.demo import run_demo

    db = env.db()
    result = run_demo(db, employees=employees, seed=seed, quiet=env.as_json)
    if env.as_json:
        output.print_json(result)


# -- people, import ----------------------------------------------------------------------


@cli.group()
def people() -> None:
    """People: the employees who own devices."""


@people.command("import")
@click.argument("file")
@common
def people_import(env: Env, file: str) -> None:
    """Load or update people from a CSV (email,name,org_unit,groups,timezone)."""
    from appban.inventory.importer import import_people

    ws = env.workspace(create=False)
    doc = import_people(ws, file)
    emit(
        env,
        doc,
        lambda d: output.line(
            f"{d['file']}: {output.plural(d['people'], 'person', 'people')} "
            f"({d['created']:,} new, {d['updated']:,} updated, {d['unchanged']:,} unchanged)"
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


@cli.command("import")
@click.argument("format", metavar="FORMAT")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--keep-full-inventory",
    is_flag=True,
    default=None,
    help=settings.SETTINGS["keep_full_inventory"].help,
)
@common
def import_(env: Env, format: str, files: tuple[str, ...], keep_full_inventory: bool | None) -> None:
    """Load inventory from FILEs (formats: appban, csv)."""
    from appban.inventory.importer import import_inventory

    ws = env.workspace(create=False)
    if sys.stderr.isatty() and not env.as_json:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed} check-ins"),
            TimeElapsedColumn(),
            console=output.console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("importing")
            doc = import_inventory(
                ws,
                format,
                list(files),
                keep_full=keep_full_inventory,
                progress=lambda n: bar.advance(task, n),
            )
    else:
        doc = import_inventory(ws, format, list(files), keep_full=keep_full_inventory)
    emit(
        env,
        doc,
        lambda d: output.line(
            f"{output.plural(d['checkins'], 'check-in')}: {output.plural(d['new'], 'new device')}, "
            f"{d['updated']:,} updated, {d['unchanged']:,} no newer than stored"
        ),
    )


# -- catalog -----------------------------------------------------------------------------


@cli.group()
def catalog() -> None:
    """The app catalog."""


@catalog.command("list")
@common
def catalog_list(env: Env) -> None:
    """App families and how many identifiers each has."""
    ws = env.workspace(create=False)
    cat = ws.catalog
    doc = {
        "version": cat.version,
        "families": [
            {"family": f, **meta, "identifiers": len(cat.identifiers_of(f))} for f, meta in sorted(cat.families.items())
        ],
    }
    emit(
        env,
        doc,
        lambda d: output.table(
            f"catalog v{d['version']}",
            ["family", "title", "publisher", "identifiers"],
            [(f["family"], f["title"], f["publisher"], f["identifiers"]) for f in d["families"]],
            whole=("family",),
        ),
    )


@catalog.command("show")
@click.argument("family")
@common
def catalog_show(env: Env, family: str) -> None:
    """One family's identifiers, each with its provenance."""
    from appban.errors import NotFound

    ws = env.workspace(create=False)
    cat = ws.catalog
    if family not in cat.families:
        raise NotFound(f"no app family {family[:60]!r}", field="FAMILY")
    doc = {
        "family": family,
        **cat.families[family],
        "catalog_version": cat.version,
        "identifiers": [
            {
                "kind": i.kind,
                "value": i.value,
                "provenance": i.provenance,
                "added_in": i.added_version,
            }
            for i in cat.identifiers_of(family)
        ],
    }
    emit(
        env,
        doc,
        lambda d: output.table(
            f"{d['family']}: {d['title']} ({d['publisher']})",
            ["kind", "value", "since", "provenance"],
            [(i["kind"], i["value"], f"v{i['added_in']}", i["provenance"]) for i in d["identifiers"]],
            whole=("kind", "value", "since"),
        ),
    )


# -- policy ------------------------------------------------------------------------------


@cli.group()
def policy() -> None:
    """Policies: create, preview, list, show, withdraw."""


@policy.command("apply")
@click.argument("file")
@click.option("--dry-run", is_flag=True, help="Report the impact and change nothing.")
@click.option("--draft", is_flag=True, help="Store as a draft: no states, no enforcement.")
@common
def policy_apply(env: Env, file: str, dry_run: bool, draft: bool) -> None:
    """Create or update a policy from a YAML FILE."""
    from appban.policy.lifecycle import apply

    if not dry_run:
        ws = env.workspace(create=False)  # only `appban init` creates a database
    elif _db_exists(env):
        ws = env.workspace(create=False)  # a preview neither creates nor upgrades anything
    else:
        from appban.workspace import Workspace

        ws = Workspace(":memory:", env.now(), create=True)  # no fleet yet: an empty preview
    doc = apply(ws, file, dry_run=dry_run, draft=draft)
    emit(env, doc, _render_apply)


def _db_exists(env: Env) -> bool:
    return os.path.exists(env.db())


def _render_apply(d: dict[str, Any]) -> None:
    if d.get("dry_run"):
        output.line(f"dry run: policy {d['policy']} would be {d['action']}; nothing was changed")
        output.line(
            f"in scope: {output.plural(d['in_scope']['devices'], 'device')} of "
            f"{output.plural(d['in_scope']['people'], 'person', 'people')}"
        )
        output.table(
            "states now and at the deadline",
            ["state", "now", "at deadline"],
            [(s, d["states"][s], d["states_at_deadline"][s]) for s in STATES],
            whole=("state",),
        )
        output.line(
            f"violating now: {d['violating_now']}; unverified: {d['unverified']}; "
            f"denied at the deadline ({d['deadline']}): {d['would_be_denied_at_deadline']}"
        )
        output.line(f"people with a banned app: {d['people_affected']}")
        return
    output.line(f"policy {d['policy']}: {d['action']} (revision {d['revision']}, {d['status']})")


@policy.command("list")
@common
def policy_list(env: Env) -> None:
    """Every policy and its lifecycle state."""
    from appban.report.status import policy_summary

    ws = env.workspace(create=False)
    doc = {"policies": policy_summary(ws)}

    def render(d: dict[str, Any]) -> None:
        if not d["policies"]:
            output.line("no policies")
            return
        output.table(
            None,
            ["id", "status", "rev", "mode", "apps", "effective", "deadline"],
            [
                (p["id"], p["status"], p["revision"], p["mode"], ",".join(p["apps"]), p["effective"], p["deadline"])
                for p in d["policies"]
            ],
            whole=("id", "status", "mode"),
        )

    emit(env, doc, render)


@policy.command("show")
@click.argument("policy_id", metavar="ID")
@common
def policy_show(env: Env, policy_id: str) -> None:
    """One policy as stored."""
    from appban.policy.lifecycle import get_policy

    ws = env.workspace(create=False)
    pol, row = get_policy(ws, policy_id)
    doc = {
        **pol.to_json(),
        "status": row.status,
        "revision": row.revision,
        "created_at": format_time(row.created_at),
        "updated_at": format_time(row.updated_at),
        "withdrawn_at": format_time(row.withdrawn_at),
        "withdraw_reason": row.withdraw_reason,
    }
    emit(env, doc, lambda d: output.pairs((k, v) for k, v in d.items()))


@policy.command("withdraw")
@click.argument("policy_id", metavar="ID")
@click.option("--reason", required=True, help="Why; recorded and shown in corrections.")
@common
def policy_withdraw(env: Env, policy_id: str, reason: str) -> None:
    """Withdraw a policy: every block it caused is lifted at once."""
    from appban.policy.lifecycle import withdraw
    from appban.text import check_text

    # The reason goes into the correction sent to every notified person: plain text only.
    if len(reason) > 500:
        raise BadInput("reason longer than 500 characters", field="--reason")
    check_text(reason, "--reason")
    ws = env.workspace(create=False)
    doc = withdraw(ws, policy_id, reason)
    emit(
        env,
        doc,
        lambda d: output.line(
            f"policy {d['policy']}: {d['action']}"
            + (f"; {output.plural(d['decisions_changed'], 'device')} allowed again" if "decisions_changed" in d else "")
        ),
    )


# -- evaluate, status, devices -------------------------------------------------------------


@cli.command()
@click.option("--full", is_flag=True, help="Recompute every state, not only those time has changed.")
@common
def evaluate(env: Env, full: bool) -> None:
    """Bring every state up to date as of --now: deadlines, expiries, inventory ageing."""
    ws = env.workspace(create=False)
    with ws.writing():
        if full:
            changes = sum(ws.evaluator.evaluate_policy(p, ws.now, "evaluate") for p in ws.evaluator.policies)
        else:
            changes = ws.evaluator.evaluate_due(ws.now)
    doc = {"now": format_time(ws.now), "state_changes": changes, "full": full}
    emit(
        env,
        doc,
        lambda d: output.line(f"{output.plural(d['state_changes'], 'state change')} as of {output.human(d['now'])}"),
    )


@cli.command()
@click.option(
    "--policy",
    "policy_id",
    metavar="ID",
    default=None,
    help="One policy (default: the active ones).",
)
@click.option("--by", type=click.Choice(["org_unit", "platform"]), default=None, help="Break the counts down.")
@common
def status(env: Env, policy_id: str | None, by: str | None) -> None:
    """Counts of devices per state."""
    from appban.report.status import status as build

    ws = env.workspace(create=False)
    doc = build(ws, policy_id, by)
    emit(env, doc, functools.partial(_render_status, by=by))


def _render_status(d: dict[str, Any], by: str | None = None) -> None:
    for one in d.get("policies", [d]) if "policies" in d else [d]:
        if "states" not in one:
            continue
        output.line(
            f"{one['policy']} ({one['status']}, {one['mode']}) as of {output.human(one['now'])}; "
            f"deadline {output.human(one['deadline'])}"
        )
        if "by" in one:
            keys = list(one["by"])
            output.table(
                None,
                [by or "", *STATES, "people"],
                [
                    (
                        k,
                        *(one["by"][k]["states"][s] for s in STATES),
                        one["by"][k]["people_affected"],
                    )
                    for k in keys
                ]
                + [("total", *(one["states"][s] for s in STATES), one["people_affected"])],
            )
        else:
            output.table(None, ["state", "devices"], [(s, one["states"][s]) for s in STATES], whole=("state",))
            output.line(f"people affected: {one['people_affected']}")
    if "policies" in d and not d["policies"]:
        output.line("no policies")


@cli.group()
def device() -> None:
    """Devices, with evidence; per-device mail credentials."""


@device.command("list")
@click.option("--policy", "policy_id", metavar="ID", default=None)
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None, help="At most this many devices.")
@common
def device_list(env: Env, policy_id: str | None, state: str | None, limit: int | None) -> None:
    """Devices, optionally those in one state under one policy."""
    from appban.report.devices import list_devices

    ws = env.workspace(create=False)
    shown = limit if (limit or env.as_json) else 50
    doc = list_devices(ws, policy_id, state, shown)

    def render(d: dict[str, Any]) -> None:
        if not d["devices"]:
            state = f" in state {d['state']}" if d.get("state") else ""
            output.line(f"no devices{state}" + (f" under {d['policy']}" if d.get("policy") else ""))
            return
        if d.get("policy"):
            output.table(
                None,
                ["id", "owner", "platform", "state", "since", "detail"],
                [(x["id"], x["owner"], x["platform"], x["state"], x["since"], x["detail"]) for x in d["devices"]],
                whole=("id", "platform", "state"),
            )
        else:
            output.table(
                None,
                ["id", "source", "source id", "platform", "owner", "observed"],
                [
                    (
                        x["id"],
                        x["source"],
                        x["source_id"],
                        x["platform"],
                        x["owner"],
                        x["observed_at"],
                    )
                    for x in d["devices"]
                ],
                whole=("id", "source id"),
            )
        if d["count"] > len(d["devices"]):
            output.line(f"... {d['count'] - len(d['devices']):,} more (--limit, --json)")

    emit(env, doc, render)


@device.group("credential")
def device_credential() -> None:
    """Per-device mail passwords for IMAP, POP3 and SMTP."""


@device_credential.command("issue")
@click.argument("device_id", metavar="ID")
@common
def credential_issue(env: Env, device_id: str) -> None:
    """Issue a mail password for a device (printed once; any earlier one is revoked)."""
    from appban.gate.credentials import issue

    ws = env.workspace(create=False)
    doc = issue(ws, device_id)
    emit(
        env,
        doc,
        lambda d: output.line(f"{d['device']} ({d['user']}): mail password {d['password']}  (shown once)"),
    )


@device_credential.command("revoke")
@click.argument("device_id", metavar="ID")
@common
def credential_revoke(env: Env, device_id: str) -> None:
    """Revoke a device's mail password; the gate refuses it within a second."""
    from appban.gate.credentials import revoke

    ws = env.workspace(create=False)
    doc = revoke(ws, device_id)
    emit(env, doc, lambda d: output.line(f"{d['device']}: {d['revoked']} mail password revoked"))


@device.command("show")
@click.argument("device_id", metavar="ID")
@common
def device_show(env: Env, device_id: str) -> None:
    """One device: states, decision and the evidence behind them."""
    from appban.report.devices import show_device

    ws = env.workspace(create=False)
    doc = show_device(ws, device_id)

    def render(d: dict[str, Any]) -> None:
        output.pairs(
            [
                (k, d[k])
                for k in (
                    "id",
                    "source",
                    "source_id",
                    "platform",
                    "ownership",
                    "owner",
                    "model",
                    "eas_device_ids",
                    "mail_access",
                    "inventory_scope",
                    "observed_at",
                )
            ]
        )
        output.line(f"decision: {d['decision']} ({d['reason']}) as of {output.human(d['now'])}")
        for pid, p in d["policies"].items():
            detail = f" - {p['detail']}" if p["detail"] else ""
            output.line(f"{pid}: {p['state']} since {output.human(p['since'])}{detail}")
            for e in p["evidence"]:
                output.line("  " + _evidence(e))

    emit(env, doc, render)


def _evidence(e: dict[str, Any]) -> str:
    """One piece of evidence as a sentence; a kind this does not know as key=value pairs."""
    h = output.human
    kind = e.get("kind")
    if kind == "app":
        what = " ".join(h(e[k]) for k in ("name", "version") if e.get(k))
        seen = f"seen {h(e['first_seen'])} to {h(e['last_seen'])}"
        now = "present" if e.get("present") else f"gone at {h(e.get('gone_at'))}"
        if e.get("app"):
            app = f"app {h(e['app'])}" + (f" ({what})" if what else "")
        else:  # a source that reported a name only
            version = f", version {h(e['version'])}" if e.get("version") else ""
            app = f"app with no identifier (name: {h(e.get('name')) or '-'}{version})"
        return f"{app} from {h(e['source'])}, matched by {h(e['match'])}; {seen}; {now}"
    if kind == "inventory":
        return (
            f"inventory from {h(e['source'])} at {h(e['observed_at'])}: {h(e['inventory_scope'])} scope, "
            f"catalog v{h(e['catalog_version'])}"
        )
    if kind == "attestation":
        return f"removal attested by {h(e['person'])} at {h(e['attested_at'])}"
    if kind == "exemption":
        return f"exempt from {h(e['starts'])} until {h(e['until'])}: {h(e['reason'])}"
    return ", ".join(f"{k}={h(v)}" for k, v in e.items() if v is not None)


# -- exemptions, attestations ------------------------------------------------------------


@cli.group()
def exempt() -> None:
    """Exemptions from a policy, with reasons and expiry."""


@exempt.command("add")
@click.option("--policy", "policy_id", required=True, metavar="ID")
@click.option("--person", default=None, metavar="EMAIL")
@click.option("--device", "device_ref", default=None, metavar="ID")
@click.option("--until", required=True, metavar="TIME")
@click.option("--reason", required=True)
@common
def exempt_add(env: Env, policy_id: str, person: str | None, device_ref: str | None, until: str, reason: str) -> None:
    """Exempt a person or a device until a time."""
    from appban.policy.lifecycle import add_exemption

    ws = env.workspace(create=False)
    doc = add_exemption(
        ws,
        policy_id,
        person=person,
        device_ref=device_ref,
        until=parse_time(until, field="--until"),
        reason=reason,
    )
    emit(
        env,
        doc,
        lambda d: output.line(
            f"exemption {d['exemption']} from {d['policy']} for {d['person'] or d['device']} until "
            f"{output.human(d['until'])}"
        ),
    )


@exempt.command("list")
@click.option("--policy", "policy_id", default=None, metavar="ID", help="Only exemptions from this policy.")
@click.option("--all", "everything", is_flag=True, help="Also those revoked, expired or not yet made.")
@common
def exempt_list(env: Env, policy_id: str | None, everything: bool) -> None:
    """Exemptions in force as of --now (with --all: every one, with its status)."""
    from appban.report.exemptions import list_exemptions

    ws = env.workspace(create=False)
    doc = list_exemptions(ws, policy_id=policy_id, everything=everything)

    def render(d: dict[str, Any]) -> None:
        if d["exemptions"]:
            output.table(
                None,
                ["id", "policy", "who", "from", "until", "status", "reason"],
                [
                    (x["id"], x["policy"], x["person"] or x["device"], x["from"], x["until"], x["status"], x["reason"])
                    for x in d["exemptions"]
                ],
                whole=("policy", "status"),
            )
        what = "exemption" if d["all"] else "active exemption"
        output.line(f"{output.plural(len(d['exemptions']), what)} as of {output.human(d['now'])}")

    emit(env, doc, render)


@exempt.command("revoke")
@click.argument("exemption_id", metavar="ID")
@click.option("--reason", default=None, help="Why; recorded in the audit log.")
@common
def exempt_revoke(env: Env, exemption_id: str, reason: str | None) -> None:
    """End an exemption now; the devices it covered are re-evaluated at once."""
    from appban.policy.exemptions import parse_id, revoke

    number = parse_id(exemption_id)
    ws = env.workspace(create=False)
    doc = revoke(ws, number, reason)

    def render(d: dict[str, Any]) -> None:
        states = ", ".join(f"{ref} {state}" for ref, state in d["states"].items() if state)
        output.line(
            f"exemption {d['exemption']} from {d['policy']} for {d['person'] or d['device']} revoked; "
            f"{output.plural(d['devices'], 'device')} re-evaluated" + (f": {states}" if states else "")
        )

    emit(env, doc, render)


@cli.command()
@click.option("--policy", "policy_id", required=True, metavar="ID")
@click.option("--device", "device_ref", required=True, metavar="ID")
@click.option("--person", required=True, metavar="EMAIL")
@common
def attest(env: Env, policy_id: str, device_ref: str, person: str) -> None:
    """The owner attests that the banned app is gone from the device."""
    from appban.policy.lifecycle import attest as record

    ws = env.workspace(create=False)
    doc = record(ws, policy_id, device_ref, person)
    emit(
        env,
        doc,
        lambda d: output.line(f"{d['device']}: {d['person']} attested removal under {d['policy']}; state {d['state']}"),
    )


# -- gate, audit -------------------------------------------------------------------------


@cli.group()
def gate() -> None:
    """Gateway decisions for mail proxies."""


@gate.command("decide")
@click.option("--eas-device-id", default="", metavar="ID", help="The ActiveSync DeviceId.")
@click.option(
    "--user",
    default="",
    metavar="USER",
    help="The user the mail server authenticates (user@domain, user or DOMAIN\\user, completed as "
    "APPBAN_MAIL_DOMAINS and APPBAN_NETBIOS_DOMAINS say); empty: no user the gate may trust.",
)
@click.option(
    "--query-user",
    default="",
    metavar="USER",
    help="The ActiveSync query's User=, for a request without credentials (no --user): "
    "taken only as APPBAN_QUERY_USER allows.",
)
@click.option(
    "--unknown-device",
    type=click.Choice(["deny", "allow"]),
    default=None,
    help=settings.SETTINGS["unknown_device"].help,
)
@common
def gate_decide(env: Env, eas_device_id: str, user: str, query_user: str, unknown_device: str | None) -> None:
    """One gateway decision, as the gate would give it."""
    from appban.gate.decide import decide

    ws = env.workspace(create=False)
    doc = decide(ws, eas_device_id, user, unknown_device=unknown_device, query_user=query_user)
    emit(env, doc, lambda d: output.line(f"{d['decision']} {d['reason']}"))


@gate.command("serve")
@click.option("--host", default=None, metavar="ADDRESS", help=settings.SETTINGS["gate_host"].help)
@click.option("--port", type=click.IntRange(0, 65535), default=None, help=settings.SETTINGS["gate_port"].help)
@click.option(
    "--mail-upstream",
    "mail_upstream",
    multiple=True,
    metavar="[PROTO=]HOST:PORT",
    help=settings.SETTINGS["mail_upstream"].help,
)
@click.option(
    "--unknown-device",
    type=click.Choice(["deny", "allow"]),
    default=None,
    help=settings.SETTINGS["unknown_device"].help,
)
@click.option("--user-header", default=None, metavar="NAME", help=settings.SETTINGS["gate_user_header"].help)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 60),
    default=None,
    help=settings.SETTINGS["gate_poll_interval"].help,
)
@click.option(
    "--evaluate-interval",
    type=click.FloatRange(0.01, 3600),
    default=None,
    help=settings.SETTINGS["gate_evaluate_interval"].help,
)
@click.option("--no-evaluate", is_flag=True, help="Do not apply time-driven changes (another process does).")
@click.option("--auth-wait", type=click.IntRange(0, 3600), default=None, help=settings.SETTINGS["auth_wait"].help)
@common
def gate_serve(
    env: Env,
    host: str | None,
    port: int | None,
    mail_upstream: tuple[str, ...],
    unknown_device: str | None,
    user_header: str | None,
    poll_interval: float | None,
    evaluate_interval: float | None,
    no_evaluate: bool,
    auth_wait: int | None,
) -> None:
    """The decision service for mail proxies (nginx, Envoy, Traefik, nginx mail)."""
    import logging

    from appban.gate.credentials import CredentialCache, Rehasher
    from appban.gate.follower import Follower
    from appban.gate.http import serve
    from appban.gate.server import Gate, Upstreams
    from appban.gate.table import DecisionTable
    from appban.gate.users import UserNames

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Comma-separated in a flag as in APPBAN_MAIL_UPSTREAM; the flag may also be repeated.
    given = ",".join(mail_upstream) if mail_upstream else settings.get("mail_upstream")
    specs = [x.strip() for x in given.split(",") if x.strip()]
    try:
        upstreams = Upstreams.parse(specs)
    except ValueError as exc:
        # Named as the user gave it: the flag, or the variable it came from.
        where = "--mail-upstream" if mail_upstream else settings.SETTINGS["mail_upstream"].env
        raise BadInput(str(exc), field=where) from None
    host, port = _gate_listen(host, port)
    limits = _gate_limits()
    auth_wait = settings.get("auth_wait", auth_wait)
    poll_every = _interval("gate_poll_interval", poll_interval, "--poll-interval")
    evaluate_every = None
    if not no_evaluate:
        evaluate_every = _interval("gate_evaluate_interval", evaluate_interval, "--evaluate-interval")
    db = env.db()
    names = UserNames.from_settings()
    table = DecisionTable(unknown_device=settings.get("unknown_device", unknown_device), names=names)
    creds = CredentialCache(rehasher=Rehasher(db))
    follower = Follower(
        db,
        table,
        creds,
        interval=poll_every,
        evaluate_every=evaluate_every,
        # --now pins the clock the gate applies deadlines at (a replay); else real time.
        clock=functools.partial(int, env.now()) if env.now_text else now_micros,
    )
    follower.load()
    follower.start()
    gate_app = Gate(
        table,
        creds,
        follower,
        upstreams=upstreams,
        user_header=settings.get("gate_user_header", user_header),
        auth_wait=auth_wait,
    )

    def ready(h: str, p: int) -> None:
        # Logged once listening: a start that fails (no store, port taken) prints one line.
        logging.getLogger("appban.gate").info(
            "%s; the query's User= is %s when nothing else names the user",
            names.describe(),
            "trusted" if settings.get("query_user") == "allow" else "refused (user_unverified)",
        )
        logging.getLogger("appban.gate").info(
            "listening on %s:%d with %d DeviceIds (seq %d)", h, p, len(table), table.seq
        )

    try:
        serve(gate_app, host, port, ready, limits)
    except OSError as exc:
        raise AppbanError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        follower.stop(timeout=0.5)
    logging.getLogger("appban.gate").info("stopped")


def _gate_listen(host: str | None, port: int | None) -> tuple[str, int]:
    """Where ``gate serve`` listens: flags, else APPBAN_GATE_HOST and APPBAN_GATE_PORT."""
    address: str = settings.get("gate_host", host).strip()
    number: int = settings.get("gate_port", port)
    if not address:
        raise BadInput("an address to listen on is needed", field="--host")
    if not 0 <= number <= 65535:
        raise BadInput(f"{number} is not a port (0-65535)", field="--port" if port is not None else "APPBAN_GATE_PORT")
    return address, number


def _gate_limits() -> Any:
    from appban.gate.http import Limits

    return Limits(
        header_timeout=settings.get("gate_header_timeout"),
        idle_timeout=settings.get("gate_idle_timeout"),
        max_connections=settings.get("gate_max_connections"),
        max_pipeline=settings.get("gate_max_pipeline"),
        max_pipeline_bytes=settings.get("gate_max_pipeline_bytes"),
        max_header_bytes=settings.get("gate_max_header_bytes"),
    )


def _interval(name: str, flag: float | None, option: str) -> float:
    """A polling interval from its flag or setting: more than zero, or a busy loop."""
    value: float = settings.get(name, flag)
    if not 0 < value < float("inf"):
        field = option if flag is not None else settings.SETTINGS[name].env
        raise BadInput(f"{value} is not a number of seconds above 0", field=field)
    return value


@cli.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("list")
@click.option("--since", default=None, metavar="TIME", help="Entries at or after this time.")
@click.option("--until", default=None, metavar="TIME", help="Entries before this time.")
@click.option("--kind", "kinds", multiple=True, metavar="ACTION", help="Only this action (repeatable), e.g. state.")
@click.option("--policy", "policy_id", default=None, metavar="ID", help="Only entries about this policy.")
@click.option("--device", "device_ref", default=None, metavar="ID", help="Only entries about this device.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None, help="Only the latest this many entries.")
@common
def audit_list(
    env: Env,
    since: str | None,
    until: str | None,
    kinds: tuple[str, ...],
    policy_id: str | None,
    device_ref: str | None,
    limit: int | None,
) -> None:
    """The audit log's entries, oldest first; --json prints a list of entries."""
    from appban.report.audit import list_entries

    ws = env.workspace(create=False)
    doc = list_entries(
        ws,
        since=None if since is None else parse_time(since, field="--since"),
        until=None if until is None else parse_time(until, field="--until"),
        kinds=kinds,
        policy_id=policy_id,
        device_ref=device_ref,
        limit=limit if (limit or env.as_json) else 50,
    )
    if env.as_json:
        output.print_json(doc["entries"])
        return
    if doc["entries"]:
        output.table(
            None,
            ["seq", "at", "action", "subject", "data"],
            [(e["seq"], e["at"], e["action"], e["subject"], _summary(e["data"])) for e in doc["entries"]],
            whole=("action",),
        )
    if doc["count"] > len(doc["entries"]):
        output.line(f"the latest {len(doc['entries']):,} of {doc['count']:,} entries (--limit, --json)")
    else:
        output.line(output.plural(doc["count"], "entry", "entries"))


def _summary(data: Any) -> str:
    """An entry's data on one line: ``key=value`` pairs; nested data only counted (--json has it)."""
    if not isinstance(data, dict):
        return output.human(data)
    return " ".join(f"{k}={_brief(v)}" for k, v in data.items() if v not in (None, "", [], {}))


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return output.plural(len(value), "field")
    if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        return output.plural(len(value), "item")
    return output.human(value)


@audit.command("export")
@click.argument("file")
@common
def audit_export(env: Env, file: str) -> None:
    """Write the hash chain to FILE as JSON Lines, to verify it without appban.

    FILE is replaced whole, or not at all; a symbolic link is followed, and a path
    that is not a regular file (a folder, a named pipe, a device) is refused. With
    "-" as FILE the chain goes to standard output, and nothing else is printed.
    """
    from appban.audit.export import export

    if file == "-" and env.as_json:
        raise BadInput("with FILE -, standard output carries the chain itself (JSON Lines)", field="--json")
    ws = env.workspace(create=False)
    doc = export(ws.store.iter_audit(), file, ws.now)
    if file == "-":
        return

    def render(d: dict[str, Any]) -> None:
        head = d["head"]
        output.line(
            f"{d['file']}: {output.plural(d['entries'], 'entry', 'entries')}"
            + (f"; head {head['seq']} {head['digest']}" if head else "")
        )

    emit(env, doc, render)


@audit.command("head")
@common
def audit_head(env: Env) -> None:
    """The last entry's sequence number and hash: keep them outside the database."""
    from appban.audit.log import GENESIS

    ws = env.workspace(create=False)
    last = ws.store.last_audit()
    doc = {"seq": last.seq, "digest": last.hash} if last else {"seq": 0, "digest": GENESIS}
    emit(env, doc, lambda d: output.line(f"{d['seq']} {d['digest']}"))


@audit.command("verify")
@click.option(
    "--anchor",
    default=None,
    metavar="[SEQ ]DIGEST",
    help="What `audit head` printed earlier (SEQ DIGEST, SEQ:DIGEST, or the DIGEST alone): "
    "that entry must still be in the chain, unchanged.",
)
@common
def audit_verify(env: Env, anchor: str | None) -> None:
    """Check the audit log's hash chain; exit 1 naming what is wrong."""
    from appban.audit import verify

    digest, seq = _anchor(anchor) if anchor is not None else (None, None)
    ws = env.workspace(create=False)
    count, problems = verify(ws.store.iter_audit(), ws.store.get_meta("audit_head"), digest, seq)
    doc: dict[str, Any] = {
        "ok": not problems,
        "entries": count,
        "problems": [{"seq": p.seq, "problem": p.what} for p in problems],
    }
    if digest is not None:
        doc["anchor"] = digest
        if seq is not None:
            doc["anchor_seq"] = seq

    def render(d: dict[str, Any]) -> None:
        if d["ok"]:
            since = " from the anchor" if digest else ""
            output.line(f"audit log: {output.plural(d['entries'], 'entry', 'entries')}, intact{since}")
        for p in d["problems"]:
            output.line(p["problem"] if p["seq"] is None else f"entry {p['seq']}: {p['problem']}")

    emit(env, doc, render)
    if problems:
        raise SystemExit(1)


def _anchor(text: str) -> tuple[str, int | None]:
    """``--anchor`` as `audit head` prints it (``SEQ DIGEST``), or ``SEQ:DIGEST``, or the
    digest alone: the digest in lower case, and the sequence number if given."""
    digest = text.strip()
    seq_text = None
    for separator in (":", " "):
        if separator in digest:
            seq_text, _, digest = (part.strip() for part in digest.partition(separator))
            break
    digest = digest.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadInput("not a SHA-256 digest (64 hexadecimal digits), nor SEQ DIGEST", field="--anchor")
    if seq_text is None:
        return digest, None
    if not (seq_text.isascii() and seq_text.isdigit() and len(seq_text) <= 18):
        raise BadInput(f"{seq_text[:20]!r} is not an entry's sequence number", field="--anchor")
    return digest, int(seq_text)


# -- entry point ---------------------------------------------------------------------------


# click >= 8.2 raises NoArgsIsHelpError for a bare group (older versions print help
# themselves); naming a class click does not have would crash every error path.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> None:
    _CREATED.clear()
    try:
        cli.main(args=argv, prog_name="appban", standalone_mode=False)
    except _NO_ARGS_IS_HELP as exc:  # pragma: no cover - click version dependent
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        where = f" ({exc.ctx.command_path})" if exc.ctx else ""
        _fail(f"{exc.format_message()}{where}", 2)
    except click.exceptions.Abort:
        _fail("aborted", 1)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except AppbanError as exc:
        _fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was committed by the interrupted command", 130)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: never a traceback
        if _debug():
            raise
        _fail(f"internal error: {type(exc).__name__}: {one_line(str(exc))}", 1)
    sys.exit(0)


def _debug() -> bool:
    """APPBAN_DEBUG, read where an internal error is being reported: never raise here."""
    try:
        return bool(settings.get("debug"))
    except BadInput:
        return True  # set, but not to a boolean: the admin wants to see


def _fail(message: str, code: int) -> None:
    _forget_created()
    sys.stderr.write(f"appban: error: {one_line(message, 400)}\n")
    sys.exit(code)
