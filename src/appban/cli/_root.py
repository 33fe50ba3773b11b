"""The root of the ``appban`` command line: options every command shares, and the entry point.

Thin: parse, call, print. Each group of commands is a module of this package."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from appban import __version__, output, settings
from appban.clock import now_micros, parse_time
from appban.errors import AppbanError, BadInput, one_line


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
