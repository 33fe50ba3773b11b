"""Every setting appban reads, declared once: name, environment variable, default, help.

A value comes from a command-line flag, else the environment (``APPBAN_<NAME>``),
else the default here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appban.errors import BadInput


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "APPBAN_" + self.name.upper()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text[:40]!r}")
        return value

    return parse


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list, ASCII lower-cased, blanks dropped."""
    return tuple(dict.fromkeys(_ascii_lower(x.strip()) for x in text.split(",") if x.strip()))


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"expected a number of seconds, got {text[:40]!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not 0 < value < float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {text[:40]!r}")
    return value


def _count(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {text[:40]!r}")
    return value


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        # -- the store ---------------------------------------------------------------
        Setting("db", "appban.db", "SQLite path or database URL of the store."),
        Setting(
            "busy_timeout",
            60.0,
            "Seconds a command waits for another writer to finish before saying the database is busy.",
            _seconds,
        ),
        Setting(
            "sqlite_synchronous",
            "full",
            "SQLite durability: full (every commit survives a power cut) or normal "
            "(a power cut may lose the last commits; never corrupts).",
            _choice("full", "normal"),
        ),
        # -- inventory ---------------------------------------------------------------
        Setting(
            "keep_full_inventory",
            False,
            "Keep every reported app, not only apps in the catalog or named by a policy "
            "(data minimisation is on by default).",
            _bool,
        ),
        Setting(
            "max_checkin_bytes",
            4 * 1024 * 1024,
            "Largest single check-in accepted, in bytes.",
            int,
        ),
        Setting(
            "max_apps",
            10_000,
            "Most apps accepted in one check-in.",
            int,
        ),
        Setting(
            "clock_skew",
            "5m",
            "How far ahead of the command's clock a check-in's observed_at may be (a duration: 5m, 30s).",
        ),
        # -- who is asking: user names at the gate --------------------------------------
        Setting(
            "mail_domains",
            (),
            "Mail domains that complete a bare user name (jdoe -> jdoe@DOMAIN), comma-separated; "
            "when empty, a bare name matches an owner only if exactly one person has that local part.",
            _names,
        ),
        Setting(
            "netbios_domains",
            (),
            "NetBIOS domains accepted in DOMAIN\\user names, comma-separated; the user is then "
            "completed like a bare name. When empty, a DOMAIN\\ prefix is refused.",
            _names,
        ),
        Setting(
            "query_user",
            "allow",
            "Trust the ActiveSync query's User= when nothing else (Basic, a Bearer token's "
            "claims, NTLM) names the user: allow or deny (reason user_unverified).",
            _choice("allow", "deny"),
        ),
        Setting(
            "gate_user_header",
            "",
            "Request header the proxy sets to the user it authenticated (e.g. X-Remote-User); "
            "the proxy must clear it on client requests. When empty the gate reads Authorization.",
        ),
        # -- the gate ----------------------------------------------------------------
        Setting("gate_host", "127.0.0.1", "Address appban gate serve listens on."),
        Setting("gate_port", 8089, "Port appban gate serve listens on.", int),
        Setting(
            "unknown_device",
            "deny",
            "What the gate answers for a DeviceId no device has: deny or allow.",
            _choice("deny", "allow"),
        ),
        Setting(
            "mail_upstream",
            "",
            "Where the gate sends allowed IMAP/POP3/SMTP logins: [imap|pop3|smtp=]IP:PORT, comma-separated.",
        ),
        Setting(
            "gate_poll_interval",
            0.1,
            "Seconds between the gate's polls of the store for changed decisions.",
            _seconds,
        ),
        Setting(
            "gate_evaluate_interval",
            1.0,
            "Seconds between the gate's checks for time-driven changes (deadlines, expiries) to apply.",
            _seconds,
        ),
        Setting(
            "gate_header_timeout",
            10.0,
            "Seconds a client of the gate has to send a whole request (request line, headers, any "
            "body) once it starts one, and a new connection to send its first; then it is closed.",
            _positive_seconds,
        ),
        Setting(
            "gate_idle_timeout",
            75.0,
            "Seconds the gate keeps an idle keep-alive connection open. Longer than nginx's upstream "
            "keepalive_timeout (60 s), so nginx closes first and never reuses a connection being closed.",
            _positive_seconds,
        ),
        Setting(
            "gate_max_connections",
            4096,
            "Most client connections the gate holds open; beyond it a stalled or idle one is closed "
            "to make room, else the new one is refused (503).",
            _count,
        ),
        Setting(
            "gate_max_pipeline",
            64,
            "Most requests the gate queues on one connection behind a mail login being verified; "
            "beyond it the gate stops reading that connection until the queue drains.",
            _count,
        ),
        Setting(
            "auth_wait",
            3,
            "Seconds nginx mail waits before a client may try another login after a refusal (Auth-Wait).",
            int,
        ),
        Setting(
            "mail_user_failures",
            10,
            "Failed mail logins of one user (by local part) after which its logins are refused as "
            "throttled until failures drain (that many per mail_failure_window); 0: no limit.",
            int,
        ),
        Setting(
            "mail_client_failures",
            30,
            "Failed mail logins from one client address (an IPv6 /64) after which its logins are "
            "refused as throttled until failures drain; 0: no limit.",
            int,
        ),
        Setting(
            "mail_failure_window",
            600.0,
            "Seconds over which the mail failure limits drain completely.",
            _seconds,
        ),
        # -- operations ----------------------------------------------------------------
        Setting(
            "debug",
            False,
            "Show an internal error's traceback instead of one line (for reporting a bug).",
            _bool,
        ),
    )
}


def get(name: str, flag: Any = None) -> Any:
    """The value of setting ``name``: the flag if given, else the environment, else default."""
    setting = SETTINGS[name]
    if flag is not None:
        return flag
    raw = os.environ.get(setting.env)
    if raw is None:
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise BadInput(f"{exc}", field=setting.env) from None
