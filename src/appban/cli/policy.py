"""``appban policy``, ``evaluate`` and ``status``: the rule, time applied to it, where it stands."""

from __future__ import annotations

import functools
import os
from typing import Any

import click

from appban import output
from appban.cli._root import Env, cli, common, emit
from appban.clock import format_time
from appban.errors import BadInput
from appban.policy.states import STATES

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
    from appban.notify.render import check_template
    from appban.policy.lifecycle import apply

    if not dry_run:
        ws = env.workspace(create=False)  # only `appban init` creates a database
    elif _db_exists(env):
        ws = env.workspace(create=False)  # a preview neither creates nor upgrades anything
    else:
        from appban.workspace import Workspace

        ws = Workspace(":memory:", env.now(), create=True)  # no fleet yet: an empty preview
    doc = apply(ws, file, dry_run=dry_run, draft=draft, check=check_template)
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
        n = d["notices"]
        rows = [("memo", n["memo"]["people"], n["memo"]["at"])]
        rows += [("reminder", r["people"], r["at"]) for r in n["reminder"]]
        if "policy_changed" in n:
            rows.append(("policy_changed", n["policy_changed"]["people"], n["policy_changed"]["at"]))
        rows.append(("blocked", n["blocked"]["people"], n["blocked"]["at"]))
        output.table(
            "notices that would go (people, by " + " and ".join(n["channels"]) + ")",
            ["notice", "people", "at"],
            rows,
            whole=("notice",),
        )
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
