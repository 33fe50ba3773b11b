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


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("db", "appban.db", "SQLite path or database URL of the store."),
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
            "mail_domain",
            "",
            "Domain appended to bare user names (``jdoe`` -> ``jdoe@DOMAIN``) when matching "
            "a mail user to a device owner; empty matches the owner's local part.",
        ),
        Setting(
            "gate_user_header",
            "",
            "Request header a proxy sets to the authenticated user (e.g. X-Remote-User); "
            "when empty the gate reads Authorization: Basic, then the ActiveSync User.",
        ),
        Setting(
            "unknown_device",
            "deny",
            "What the gate answers for a DeviceId no device has: deny or allow.",
        ),
        Setting(
            "mail_upstream",
            "",
            "Where the gate sends allowed IMAP/POP3/SMTP logins: [imap|pop3|smtp=]HOST:PORT, comma-separated.",
        ),
        Setting(
            "gate_poll_interval",
            0.1,
            "Seconds between the gate's polls of the store for changed decisions.",
            float,
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
