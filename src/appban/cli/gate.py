"""``appban gate``: one decision as the gate gives it, and the gate itself."""

from __future__ import annotations

import functools
from typing import Any

import click

from appban import output, settings
from appban.cli._root import Env, cli, common, emit
from appban.clock import now_micros
from appban.errors import AppbanError, BadInput

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
    from appban.gate.sightings import Sightings
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
    sightings = Sightings.from_settings()
    follower = Follower(
        db,
        table,
        creds,
        interval=poll_every,
        evaluate_every=evaluate_every,
        # --now pins the clock the gate applies deadlines at (a replay); else real time.
        clock=functools.partial(int, env.now()) if env.now_text else now_micros,
        sightings=sightings,
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
        sightings=sightings,
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
