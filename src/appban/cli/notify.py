"""``appban notify``: the notice outbox and its sender."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from appban import output
from appban.cli._root import MAX_LIMIT, Env, cli, common, emit
from appban.errors import BadInput
from appban.store.records import NOTICE_KINDS, NOTICE_STATES


@cli.group()
def notify() -> None:
    """The notice outbox: send it, see it, retry failures, preview a notice."""


@notify.command("run")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@common
def notify_run(env: Env, once: bool) -> None:
    """Send the outbox's due notices (mail to APPBAN_NOTIFY_FILE, else APPBAN_SMTP_URL; webhooks
    to each policy's), every APPBAN_NOTIFY_INTERVAL seconds until SIGTERM or SIGINT.

    Runs on the real clock and refuses --now: a notice goes when it is sent, and
    a replayed time would date sends and retries that really happen now."""
    from appban.notify import sender
    from appban.notify.channels import mail_channel

    if env.now_text is not None:
        raise BadInput("notify run sends on the real clock; --now is for commands that replay", field="--now")
    mail_channel().close()  # neither channel set, or a bad SMTP URL: one line before anything
    db = env.db()
    env.workspace(create=False).close()  # no database there: one line, nothing created
    stop = threading.Event()
    # A stop (SIGTERM, SIGINT) lets the messages in flight finish and their batch be recorded.
    main = threading.current_thread() is threading.main_thread()  # where Python delivers signals
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT) if main}
    try:
        doc = sender.run_once(db, stop=stop).to_json() if once else _run_until_stopped(db, stop)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    emit(env, doc, lambda d: output.line(_summary_line(d)))


def _run_until_stopped(db: str, stop: threading.Event) -> dict[str, Any]:
    from appban.notify import sender

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log = logging.getLogger("appban.notify")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        return sender.run(db, stop).to_json()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _summary_line(d: dict[str, Any]) -> str:
    text = f"{d['sent']:,} sent, {d['retried']:,} to retry, {d['failed']:,} failed"
    if d.get("released"):
        text += f", {d['released']:,} put back untried"
    if d.get("left") is not None:
        text += f"; {output.plural(d['left'], 'notice')} left in the outbox"
    return text


@notify.command("status")
@click.option("--policy", "policy_id", metavar="ID", default=None, help="Only this policy's notices.")
@common
def notify_status(env: Env, policy_id: str | None) -> None:
    """Notices per policy, kind and state; when the next pending one may go; failures' errors."""
    from appban.notify.sender import outbox_status

    doc = outbox_status(env.workspace(create=False), policy_id)

    def render(d: dict[str, Any]) -> None:
        if not d["policies"]:
            output.line("no notices" + (f" for {policy_id}" if policy_id else ""))
            return
        states = [s for s in NOTICE_STATES if any(s in p["states"] for p in d["policies"])]
        for p in d["policies"]:
            output.table(
                f"policy {p['policy']}",
                ["kind", *states],
                [(kind, *(by.get(s, 0) for s in states)) for kind, by in sorted(p["kinds"].items())],
                whole=("kind",),
            )
            if p["next_due"]:
                output.line(f"next pending notice may go at {output.human(p['next_due'])}")
            for e in p["errors"][:5]:
                output.line(f"failed ({e['count']:,}): {e['error'] or '(no error recorded)'}")
            if len(p["errors"]) > 5:
                output.line(f"... {len(p['errors']) - 5} other errors (--json)")
        totals = ", ".join(f"{d['totals'][s]:,} {s}" for s in NOTICE_STATES if s in d["totals"])
        output.line(f"all notices: {totals}")

    emit(env, doc, render)


@notify.command("list")
@click.option("--policy", "policy_id", metavar="ID", default=None)
@click.option("--state", type=click.Choice(NOTICE_STATES), default=None)
@click.option("--kind", type=click.Choice(NOTICE_KINDS), default=None)
@click.option("--person", metavar="EMAIL", default=None)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None, help="At most this many notices.")
@common
def notify_list(
    env: Env, policy_id: str | None, state: str | None, kind: str | None, person: str | None, limit: int | None
) -> None:
    """Notices in the outbox, oldest first, with their tries and last error."""
    from appban.notify.sender import notice_doc
    from appban.text import normalise_email

    who = normalise_email(person, "--person") if person is not None else None
    ws = env.workspace(create=False)
    shown = limit if limit else (None if env.as_json else 50)
    rows = ws.store.list_notices(
        policy_id=policy_id, state=state, kind=kind, person=who, limit=None if shown is None else shown + 1
    )
    more = shown is not None and len(rows) > shown
    doc = {"notices": [notice_doc(n) for n in rows[:shown]], "more": more}

    def render(d: dict[str, Any]) -> None:
        if not d["notices"]:
            output.line("no notices")
            return
        output.table(
            None,
            ["id", "policy", "person", "kind", "channel", "due", "state", "tries", "last error"],
            [
                (n["id"], n["policy"], n["person"], n["kind"], n["channel"], n["due_at"], n["state"], n["attempts"])
                + (n["last_error"],)
                for n in d["notices"]
            ],
            whole=("id", "kind", "state"),
        )
        if d["more"]:
            output.line(f"... more notices (--limit, --json); {len(d['notices']):,} shown")

    emit(env, doc, render)


@notify.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--policy", "policy_id", metavar="ID", default=None, help="Only this policy's failed notices.")
@common
def notify_retry(env: Env, ids: tuple[str, ...], policy_id: str | None) -> None:
    """Failed notices (the IDs given, or the policy's, or all) become pending again, tries reset."""
    from appban.notify.sender import retry_failed

    numbers = []
    for text in ids:
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise BadInput(f"expected a notice id (a whole number), got {text[:40]!r}", field="ID")
        numbers.append(int(text))
    doc = retry_failed(env.workspace(create=False), policy_id, numbers)
    emit(env, doc, lambda d: output.line(f"{output.plural(d['retried'], 'failed notice')} pending again"))


@notify.command("preview")
@click.option("--policy", "policy_id", metavar="ID", required=True)
@click.option("--person", metavar="EMAIL", required=True)
@click.option("--kind", type=click.Choice(NOTICE_KINDS), required=True)
@click.option(
    "--part",
    type=click.Choice(("text", "html", "raw")),
    default="text",
    show_default=True,
    help="raw: the whole message (RFC 5322) exactly as it would be sent.",
)
@common
def notify_preview(env: Env, policy_id: str, person: str, kind: str, part: str) -> None:
    """Render one notice for a person as it would be sent now (as of --now); sends nothing."""
    from appban.notify.render import message_bytes, preview

    ws = env.workspace(create=False)
    r = preview(ws, policy_id, person, kind)
    raw = message_bytes(r).decode("utf-8", "replace")
    doc = {
        "policy": r.policy_id,
        "person": r.to,
        "kind": r.kind,
        "from": r.sender,
        "reply_to": r.reply_to or None,
        "subject": r.subject,
        "message_id": r.message_id,
        "link": r.link,
        "text": r.text,
        "html": r.html,
        "raw": raw,
    }

    def render(d: dict[str, Any]) -> None:
        if part == "raw":
            click.echo(d["raw"].replace("\r\n", "\n"), nl=False)
        elif part == "html":
            click.echo(d["html"], nl=not d["html"].endswith("\n"))
        else:
            click.echo(f"Subject: {d['subject']}\n")
            click.echo(d["text"], nl=not d["text"].endswith("\n"))

    emit(env, doc, render)
