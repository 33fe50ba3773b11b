"""``appban exempt`` and ``appban attest``: exceptions to a policy, and owners' word."""

from __future__ import annotations

from typing import Any

import click

from appban import output
from appban.cli._root import Env, cli, common, emit
from appban.clock import parse_time

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


# -- employees' requests for an exemption (made on their page) ------------------------------


@exempt.command("requests")
@click.option(
    "--state",
    type=click.Choice(["pending", "granted", "refused", "all"]),
    default="pending",
    show_default=True,
    help="Only requests in this state.",
)
@click.option("--long", "long_form", is_flag=True, help="Each request as lines of its own, its reason whole.")
@common
def exempt_requests(env: Env, state: str, long_form: bool) -> None:
    """Employees' requests for an exemption, made on their own page, oldest first."""
    from appban.policy.exemptions import list_requests

    ws = env.workspace(create=False)
    doc = list_requests(ws, state)

    def render(d: dict[str, Any]) -> None:
        if long_form:
            # The reason is what an admin decides on: whole, wrapped at the terminal's width.
            for n, r in enumerate(d["requests"]):
                if n:
                    output.line()
                output.pairs(_request_lines(r))
        elif d["requests"]:
            output.table(
                None,
                ["id", "policy", "person", "device", "reason", "created", "state"],
                [
                    (r["id"], r["policy"], r["person"], r["device"] or "all", r["reason"], r["created_at"], _state(r))
                    for r in d["requests"]
                ],
                whole=("policy", "person", "device", "state"),
            )
        what = "request" if d["state"] == "all" else f"{d['state']} request"
        # On a terminal the table cuts reasons to fit: say how to read them whole.
        hint = d["requests"] and not long_form and output.console().is_terminal
        output.line(output.plural(len(d["requests"]), what) + (" (--long shows each reason whole)" if hint else ""))

    emit(env, doc, render)


def _request_lines(r: dict[str, Any]) -> list[tuple[str, Any]]:
    lines: list[tuple[str, Any]] = [
        ("request", r["id"]),
        ("policy", r["policy"]),
        ("person", r["person"]),
        ("device", r["device"] or "all their devices"),
        ("created", r["created_at"]),
        ("state", _state(r)),
        ("reason", r["reason"]),
    ]
    if r["state"] != "pending":
        lines += [("decided", r["decided_at"]), ("answer", r["answer"]), ("exemption", r["exemption"])]
    return lines


def _state(r: dict[str, Any]) -> str:
    """A request's state; a pending one under a policy no longer in force waits for no grant."""
    return "pending, policy withdrawn" if r["state"] == "pending" and not r["policy_active"] else str(r["state"])


@exempt.command("grant")
@click.argument("request_id", metavar="ID")
@click.option("--until", required=True, metavar="TIME", help="When the exemption ends.")
@click.option("--reason", default=None, help="The exemption's reason (default: the request's).")
@common
def exempt_grant(env: Env, request_id: str, until: str, reason: str | None) -> None:
    """Grant a request: the exemption `exempt add` would make, for its device or person."""
    from appban.policy.exemptions import grant, parse_id

    number = parse_id(request_id, "a request id")
    ws = env.workspace(create=False)
    doc = grant(ws, number, parse_time(until, field="--until"), reason)

    def render(d: dict[str, Any]) -> None:
        asked = d["asked_for"]
        became = f" ({asked} as asked, linked into it since)" if asked and asked != d["device"] else ""
        output.line(
            f"request {d['request']} granted: exemption {d['exemption']} from {d['policy']} for "
            f"{d['person'] or d['device']}{became} until {output.human(d['until'])}"
        )

    emit(env, doc, render)


@exempt.command("refuse")
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True, help="Why; the employee's page shows it.")
@common
def exempt_refuse(env: Env, request_id: str, reason: str) -> None:
    """Refuse a request, saying why."""
    from appban.policy.exemptions import parse_id, refuse

    number = parse_id(request_id, "a request id")
    ws = env.workspace(create=False)
    doc = refuse(ws, number, reason)
    emit(env, doc, lambda d: output.line(f"request {d['request']} from {d['person']} under {d['policy']} refused"))
