"""``appban device``: devices with their evidence, and their mail passwords."""

from __future__ import annotations

from typing import Any

import click

from appban import output
from appban.cli._root import MAX_LIMIT, Env, cli, common, emit
from appban.clock import format_time as output_time
from appban.policy.states import STATES


@cli.group()
def device() -> None:
    """Devices, with evidence; per-device mail credentials."""


@device.command("list")
@click.option("--policy", "policy_id", metavar="ID", default=None)
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None, help="At most this many devices.")
@click.option("--ownerless", is_flag=True, help="Only devices no source or mapping names an owner for.")
@click.option(
    "--unseen",
    is_flag=True,
    help="Instead: DeviceIds the gate saw that no inventory knows, with user, DeviceType, protocol and counts.",
)
@common
def device_list(
    env: Env, policy_id: str | None, state: str | None, limit: int | None, ownerless: bool, unseen: bool
) -> None:
    """Devices, optionally those in one state under one policy."""
    from appban.report.devices import list_devices

    if unseen:
        _list_unseen(env, limit, policy_id is not None or state is not None or ownerless)
        return
    ws = env.workspace(create=False)
    shown = limit if (limit or env.as_json) else 50
    doc = list_devices(ws, policy_id, state, shown, ownerless=ownerless)

    def render(d: dict[str, Any]) -> None:
        if not d["devices"]:
            state = f" in state {d['state']}" if d.get("state") else ""
            output.line(f"no devices{state}" + (f" under {d['policy']}" if d.get("policy") else ""))
            return
        if d.get("policy"):
            output.table(
                None,
                ["id", "owner", "platform", "state", "since", "detail"],
                [
                    (x["id"], x["owner"] or "(unknown)", x["platform"], x["state"], x["since"], x["detail"])
                    for x in d["devices"]
                ],
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
                        x["owner"] or "(unknown)",
                        x["observed_at"],
                    )
                    for x in d["devices"]
                ],
                whole=("id", "source id"),
            )
        if d["count"] > len(d["devices"]):
            output.line(f"... {d['count'] - len(d['devices']):,} more (--limit, --json)")

    emit(env, doc, render)


def _list_unseen(env: Env, limit: int | None, filtered: bool) -> None:
    """``device list --unseen``: the shadow fleet, from what the gate saw."""
    from appban.errors import BadInput
    from appban.report.unseen import unseen_devices

    if filtered:
        raise BadInput("cannot be combined with --policy, --state or --ownerless", field="--unseen")
    ws = env.workspace(create=False)
    doc = unseen_devices(ws, limit if (limit or env.as_json) else 50)

    def render(d: dict[str, Any]) -> None:
        if not d["devices"]:
            output.line(f"no unseen DeviceIds (sightings of the last {d['max_age']})")
        else:
            output.table(
                None,
                ["DeviceId", "user", "DeviceType", "protocol", "first seen", "last seen", "count"],
                [
                    (
                        x["eas_device_id"],
                        x["user"] or "-",
                        x["device_type"] or "-",
                        x["protocol"],
                        x["first_seen"],
                        x["last_seen"],
                        x["count"],
                    )
                    for x in d["devices"]
                ],
                whole=("DeviceId", "protocol"),
            )
            if d["count"] > len(d["devices"]):
                output.line(f"... {d['count'] - len(d['devices']):,} more (--limit, --json)")
        if d["sightings_refused"]:
            output.line(f"{d['sightings_refused']:,} new sightings refused at the cap (APPBAN_SIGHTINGS_MAX_ROWS)")

    emit(env, doc, render)


@device.command("conflicts")
@common
def device_conflicts(env: Env) -> None:
    """Records that share an identifier but name different owners: never linked."""
    from appban.inventory.linking import Linker

    ws = env.workspace(create=False)
    conflicts = Linker(ws.store, ws.evaluator).conflicts()
    doc = {"now": output_time(ws.now), "count": len(conflicts), "conflicts": conflicts}

    def render(d: dict[str, Any]) -> None:
        if not d["conflicts"]:
            output.line("no conflicts")
            return
        output.table(
            None,
            ["identifier", "source", "source id", "owner", "device"],
            [
                (c["identifier"], r["source"], r["id"], r["owner"] or "(unknown)", r["device"])
                for c in d["conflicts"]
                for r in c["records"]
            ],
            whole=("identifier", "source id", "device"),
        )
        output.line(output.plural(d["count"], "conflict"))

    emit(env, doc, render)


@device.command("unlink")
@click.argument("record_id", metavar="ID")
@common
def device_unlink(env: Env, record_id: str) -> None:
    """Undo a link: the source record ID (rec-N, or source:id) becomes a device of its
    own again, and no import links the pair again."""
    from appban.inventory.linking import Linker, find_record

    ws = env.workspace(create=False)
    with ws.writing():
        record = find_record(ws.store, record_id)
        doc = Linker(ws.store, ws.evaluator).unlink(record, ws.now)
    emit(env, doc, lambda d: output.line(f"{d['record']} is {d['device']} again (no longer part of {d['from']})"))


@device.command("refresh")
@click.argument("device_id", metavar="ID")
@common
def device_refresh(env: Env, device_id: str) -> None:
    """Ask the device's osquery agent for its apps now: the request waits for the agent's
    next distributed read (appban serve), and its answer is applied as a snapshot."""
    from appban.serve.osquery_nodes import request_refresh

    doc = request_refresh(env.workspace(create=False), device_id)

    def render(d: dict[str, Any]) -> None:
        for r in d["requests"]:
            output.line(f"{d['device']}: asked {r['source']} host {r['host']} for its apps (request {r['id']})")

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
