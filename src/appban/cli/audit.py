"""``appban audit``: the hash-chained log, listed, exported, anchored and verified."""

from __future__ import annotations

from typing import Any

import click

from appban import output
from appban.cli._root import MAX_LIMIT, Env, cli, common, emit
from appban.clock import parse_time
from appban.errors import BadInput


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
