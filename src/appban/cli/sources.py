"""``appban source``: who may post check-ins to ``appban serve``, and their tokens."""

from __future__ import annotations

from typing import Any

import click

from appban import output
from appban.cli._root import Env, cli, common, emit


@cli.group()
def source() -> None:
    """Sources that post check-ins, and their tokens (printed once, stored as a digest)."""


@source.command("add")
@click.argument("name")
@common
def source_add(env: Env, name: str) -> None:
    """Add a source: check-ins posted with its tokens are filed under NAME."""
    from appban.sources import add_source

    doc = add_source(env.workspace(create=False), name)
    emit(env, doc, lambda d: output.line(f"source {d['source']} " + ("added" if d["added"] else "already there")))


@source.command("list")
@common
def source_list(env: Env) -> None:
    """Sources, with how many live tokens and osquery enroll secrets each has."""
    from appban.sources import list_sources

    doc = list_sources(env.workspace(create=False))

    def render(d: dict[str, Any]) -> None:
        if d["sources"]:
            output.table(
                None,
                ["source", "created", "tokens", "osquery secrets"],
                [(s["name"], s["created_at"], s["tokens"], s["osquery_secrets"]) for s in d["sources"]],
            )
        output.line(output.plural(len(d["sources"]), "source"))

    emit(env, doc, render)


@source.group("token")
def source_token() -> None:
    """A source's bearer tokens."""


def _show_secret(d: dict[str, Any], what: str) -> None:
    output.line(d["token"])
    click.echo(f"{what} {d['id']} of source {d['source']}: shown this once; appban keeps only its digest", err=True)


@source_token.command("create")
@click.argument("name")
@common
def source_token_create(env: Env, name: str) -> None:
    """Make a bearer token for NAME and print it (once)."""
    from appban.sources import create_token

    doc = create_token(env.workspace(create=False), name)
    emit(env, doc, lambda d: _show_secret(d, "token"))


@source_token.command("revoke")
@click.argument("name")
@common
def source_token_revoke(env: Env, name: str) -> None:
    """Revoke every token of NAME: requests with them are refused (401) at once."""
    from appban.sources import revoke_tokens

    doc = revoke_tokens(env.workspace(create=False), name)
    emit(env, doc, lambda d: output.line(f"{output.plural(len(d['revoked']), 'token')} of {d['source']} revoked"))


@source.group("osquery-secret")
def source_osquery_secret() -> None:
    """Enroll secrets for osquery agents (their --enroll_secret_path file)."""


@source_osquery_secret.command("create")
@click.option("--source", "name", default="osquery", show_default=True, help="The source enrolled hosts report as.")
@common
def source_osquery_secret_create(env: Env, name: str) -> None:
    """Make an enroll secret and print it (once); the source is added if new."""
    from appban.sources import OSQUERY_SECRET, create_token

    doc = create_token(env.workspace(create=False), name, OSQUERY_SECRET)
    emit(env, doc, lambda d: _show_secret(d, "enroll secret"))


@source_osquery_secret.command("revoke")
@click.option("--source", "name", default="osquery", show_default=True)
@common
def source_osquery_secret_revoke(env: Env, name: str) -> None:
    """Revoke every enroll secret of the source (enrolled hosts keep their node keys)."""
    from appban.sources import OSQUERY_SECRET, revoke_tokens

    doc = revoke_tokens(env.workspace(create=False), name, OSQUERY_SECRET)
    emit(
        env, doc, lambda d: output.line(f"{output.plural(len(d['revoked']), 'enroll secret')} of {d['source']} revoked")
    )


@source.group("osquery-node")
def source_osquery_node() -> None:
    """osquery agents enrolled with appban serve, and their node keys."""


@source_osquery_node.command("list")
@click.option("--source", "name", default=None, help="Only the agents of this source.")
@click.option("--revoked", is_flag=True, help="Also node keys that were revoked (or replaced).")
@common
def source_osquery_node_list(env: Env, name: str | None, revoked: bool) -> None:
    """Enrolled osquery agents: host, hardware serial, platform, when they enrolled."""
    from appban.serve.osquery_nodes import list_nodes

    doc = list_nodes(env.workspace(create=False), name, revoked=revoked)

    def render(d: dict[str, Any]) -> None:
        if d["nodes"]:
            output.table(
                None,
                ["node", "source", "host", "serial", "platform", "enrolled", "revoked"],
                [
                    (n["id"], n["source"], n["host"], n["serial"], n["platform"], n["enrolled_at"], n["revoked_at"])
                    for n in d["nodes"]
                ],
                whole=("host",),
            )
        output.line(output.plural(len(d["nodes"]), "node"))

    emit(env, doc, render)


@source_osquery_node.command("revoke")
@click.argument("host")
@click.option("--source", "name", default="osquery", show_default=True)
@common
def source_osquery_node_revoke(env: Env, host: str, name: str) -> None:
    """Revoke HOST's node key: its agent is told node_invalid and must enroll again."""
    from appban.serve.osquery_nodes import revoke_nodes

    doc = revoke_nodes(env.workspace(create=False), name, host)
    emit(env, doc, lambda d: output.line(f"{output.plural(len(d['revoked']), 'node key')} of {d['host']} revoked"))
