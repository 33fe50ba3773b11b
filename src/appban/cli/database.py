"""``appban init`` and ``appban demo``: a database, and the story played on one."""

from __future__ import annotations

import click

from appban import output
from appban.cli._root import Env, cli, common, emit

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
@click.option(
    "--smtp",
    metavar="HOST:PORT",
    default=None,
    help="Send the demo's notices to this mail server (plain SMTP, STARTTLS when offered) "
    "instead of the mbox beside the database.",
)
@common
def demo(env: Env, employees: int, seed: int, smtp: str | None) -> None:
    """The whole scenario on a synthetic fleet, day by day, with a summary; its notices
    go through appban's own sender, to DB-notices.mbox beside the database or --smtp."""
    from appban.sim.demo import run_demo

    db = env.db()
    result = run_demo(db, employees=employees, seed=seed, quiet=env.as_json, smtp=smtp)
    if env.as_json:
        output.print_json(result)
