"""``appban serve``: the web process (check-in API, osquery's remote API, webhooks)."""

from __future__ import annotations

import os
import signal
from typing import Any

import click

from appban import settings
from appban.cli._root import Env, cli, common
from appban.errors import AppbanError, BadInput

# Our access log is one JSON line a request (appban.serve.metrics); uvicorn's own is off.
_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(message)s"},
        "default": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "appban.serve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "appban": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
    },
}
# Seconds a stop (SIGTERM) waits for requests in flight before closing their connections.
_GRACE = 30


@cli.command("serve")
@click.option("--host", default=None, metavar="ADDRESS", help=settings.SETTINGS["serve_host"].help)
@click.option("--port", type=click.IntRange(0, 65535), default=None, help=settings.SETTINGS["serve_port"].help)
@click.option("--workers", type=click.IntRange(1, 256), default=None, help=settings.SETTINGS["serve_workers"].help)
@click.option("--tls-cert", metavar="FILE", default=None, help=settings.SETTINGS["serve_tls_cert"].help)
@click.option("--tls-key", metavar="FILE", default=None, help=settings.SETTINGS["serve_tls_key"].help)
@common
def serve(
    env: Env, host: str | None, port: int | None, workers: int | None, tls_cert: str | None, tls_key: str | None
) -> None:
    """The web process: check-in API, osquery's remote API and webhooks (stop with SIGTERM)."""
    import uvicorn

    from appban.serve import protocol

    if env.now_text is not None:
        raise BadInput("appban serve runs on the real clock; --now is for commands that replay", field="--now")
    address = settings.get("serve_host", host).strip()
    if not address:
        raise BadInput("an address to listen on is needed", field="--host")
    number = settings.get("serve_port", port)
    count = settings.get("serve_workers", workers)
    cert, key = _tls(tls_cert, tls_key)
    db = env.db()
    # Read now, so that a bad value is one line at start, not a refusal in every request.
    for name in (*(n for n in settings.SETTINGS if n.startswith("serve_")), "max_apps", "max_checkin_bytes"):
        settings.get(name)
    _check_database(env)
    # Each worker process makes its own app and reads the database from the settings.
    settings.export("db", db)
    config = uvicorn.Config(
        "appban.serve.app:create_app",
        factory=True,
        host=address,
        port=number,
        workers=count,
        log_config=_LOGGING,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=_GRACE,
        ssl_certfile=cert,
        ssl_keyfile=key,
        **protocol.options(),  # header deadline and size, connection limit, keep-alive
    )
    if count > 1:
        from uvicorn.supervisors import Multiprocess

        try:
            sock = config.bind_socket()
        except (OSError, SystemExit) as exc:
            raise AppbanError(f"cannot listen on {address}:{number}: {exc}") from None
        Multiprocess(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again for the
    # handler it found: a quiet one here, so that a requested stop exits 0.
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
    if not server.started:
        raise AppbanError(f"appban serve did not start on {address}:{number} (see the lines above)")


def _tls(cert: str | None, key: str | None) -> tuple[str | None, str | None]:
    cert = settings.get("serve_tls_cert", cert)
    key = settings.get("serve_tls_key", key)
    if not cert and not key:
        return None, None
    if not cert or not key:
        raise BadInput("HTTPS needs both a certificate and its key", field="--tls-key" if cert else "--tls-cert")
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not os.path.isfile(path):
            raise BadInput(f"{path}: no such file", field=flag)
    import ssl

    try:  # read here, so that a bad file is one line at start, not a worker's traceback
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"cannot use {cert} with {key}: {exc.strerror or exc}", field="--tls-cert") from None
    return cert, key


def _check_database(env: Env) -> None:
    """A missing or uninitialised database fails here, at start, with appban's one line."""
    env.workspace(create=False).close()
