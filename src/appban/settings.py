"""Every setting appban reads, declared once: name, environment variable, default, help.

A value comes from a command-line flag, else the environment (``APPBAN_<NAME>``),
else the default here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appban.clock import Micros, parse_duration
from appban.errors import BadInput
from appban.text import ascii_lower


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false (yes or no, 1 or 0), got {text[:40]!r}")


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
    return tuple(dict.fromkeys(ascii_lower(x.strip()) for x in text.split(",") if x.strip()))


DAY = 86_400.0


def _seconds(most: float = DAY, *, zero: bool = True) -> Callable[[str], float]:
    """Seconds from 0 (or from just above 0) to ``most``: finite, so that every timer,
    SQLite's busy timeout included, can hold them."""
    what = f"a number of seconds from {'0' if zero else 'above 0'} to {most:g}"

    def parse(text: str) -> float:
        # Python's own float() is the parser, not its message: a refusal says what appban wants.
        try:
            value = float(text) if text.isascii() else float("nan")
        except ValueError:
            value = float("nan")
        low_ok = value >= 0 if zero else value > 0
        if not (low_ok and value <= most):  # NaN fails every comparison
            raise ValueError(f"expected {what}, got {text[:40]!r}")
        return value

    return parse


def _whole(least: int, most: int) -> Callable[[str], int]:
    """A whole number from ``least`` to ``most``, written in decimal digits."""
    what = f"a whole number from {least} to {most}"

    def parse(text: str) -> int:
        digits = text.strip()
        # Plain ASCII digits, and few enough of them that int() is cheap and cannot refuse.
        value = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None
        if value is None or not least <= value <= most:
            raise ValueError(f"expected {what}, got {text[:40]!r}")
        return value

    return parse


def _path(text: str) -> str:
    """A path or URL: an empty one is an unset variable's mistake, not the current folder."""
    if not text.strip():
        raise ValueError("expected a SQLite path or database URL, got nothing")
    return text


def _hours(text: str) -> str:
    """``HH:MM-HH:MM``, the start before the end (a day's window, in a person's own zone)."""
    value = text.strip()
    parts = value.split("-")
    ok = len(value) <= 11 and len(parts) == 2 and all(len(p) == 5 and p[2] == ":" for p in parts)
    if ok:
        try:
            start, end = (dt.time.fromisoformat(p) for p in parts)
        except ValueError:
            ok = False
        else:
            ok = start < end
    if not ok:
        raise ValueError(f"expected HH:MM-HH:MM with the start first, such as 08:00-20:00, got {text[:40]!r}")
    return value


def _public_url(text: str) -> str:
    """The base of links sent to people: http(s), a host, nothing after the path."""
    value = text.strip().rstrip("/")
    parts = urllib.parse.urlsplit(value) if value.isascii() and value.isprintable() and " " not in value else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"expected an http:// or https:// URL such as https://appban.example.com, got {text[:80]!r}")
    if parts.username or parts.password:
        raise ValueError("a URL sent to every employee carries no user or password")
    return value


def _address(text: str) -> str:
    """One e-mail address, optionally with a name: ``IT Security <security@example.com>``."""
    found = email.utils.getaddresses([text]) if text.isprintable() and len(text) <= 500 else []
    if len(found) != 1 or "@" not in found[0][1] or any(c in found[0][1] for c in " <>,;"):
        raise ValueError(f"expected one address such as IT Security <security@example.com>, got {text[:80]!r}")
    return text.strip()


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        # -- the store ---------------------------------------------------------------
        Setting("db", "appban.db", "SQLite path or database URL of the store.", _path),
        Setting(
            "busy_timeout",
            60.0,
            "Seconds a command waits for another writer to finish before saying the database is busy (0 to 86400).",
            _seconds(),
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
            "Largest single check-in accepted, in bytes (1 to 1073741824).",
            _whole(1, 1 << 30),
        ),
        Setting(
            "max_apps",
            10_000,
            "Most apps accepted in one check-in (1 to 1000000).",
            _whole(1, 1_000_000),
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
        Setting("gate_port", 8089, "Port appban gate serve listens on (0: any free port).", _whole(0, 65535)),
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
            _seconds(60, zero=False),
        ),
        Setting(
            "gate_evaluate_interval",
            1.0,
            "Seconds between the gate's checks for time-driven changes (deadlines, expiries) to apply.",
            _seconds(3600, zero=False),
        ),
        Setting(
            "gate_header_timeout",
            10.0,
            "Seconds a client of the gate has to send a whole request (request line, headers, any "
            "body) once it starts one, and a new connection to send its first; then it is closed.",
            _seconds(zero=False),
        ),
        Setting(
            "gate_idle_timeout",
            75.0,
            "Seconds the gate keeps an idle keep-alive connection open. Longer than nginx's upstream "
            "keepalive_timeout (60 s), so nginx closes first and never reuses a connection being closed.",
            _seconds(zero=False),
        ),
        Setting(
            "gate_max_connections",
            4096,
            "Most client connections the gate holds open; beyond it a stalled or idle one is closed "
            "to make room, else the new one is refused (503).",
            _whole(1, 1_000_000),
        ),
        Setting(
            "gate_max_pipeline",
            64,
            "Most requests the gate queues on one connection behind a mail login being verified; "
            "beyond it the gate stops reading that connection until the queue drains.",
            _whole(1, 100_000),
        ),
        Setting(
            "gate_max_pipeline_bytes",
            64 * 1024,
            "Most bytes of requests the gate queues on one connection (the queue gate_max_pipeline "
            "counts); beyond it the gate stops reading that connection until the queue drains.",
            _whole(4096, 16 * 1024 * 1024),
        ),
        Setting(
            "gate_max_header_bytes",
            64 * 1024,
            "Largest request line and headers the gate reads, in bytes; a longer one is refused "
            "(400). nginx sends at most 32 KB by default (large_client_header_buffers 4 8k).",
            _whole(4096, 1024 * 1024),
        ),
        Setting(
            "auth_wait",
            3,
            "Seconds nginx mail waits before a client may try another login after a refusal (Auth-Wait).",
            _whole(0, 3600),
        ),
        Setting(
            "mail_user_failures",
            10,
            "Failed mail logins of one user (by local part) after which its logins are refused as "
            "throttled until failures drain (that many per mail_failure_window); 0: no limit.",
            _whole(0, 1_000_000),
        ),
        Setting(
            "mail_client_failures",
            30,
            "Failed mail logins from one client address (an IPv6 /64) after which its logins are "
            "refused as throttled until failures drain; 0: no limit.",
            _whole(0, 1_000_000),
        ),
        Setting(
            "mail_failure_window",
            600.0,
            "Seconds over which the mail failure limits drain completely (at most a day).",
            _seconds(zero=False),
        ),
        # -- the gate: what it saw (sightings) ----------------------------------------------
        Setting(
            "gate_sightings_buffer",
            20_000,
            "Most distinct (DeviceId, user, DeviceType, protocol) the gate holds between flushes; "
            "beyond it new ones are dropped and counted (repeats still count); 0: record nothing.",
            _whole(0, 10_000_000),
        ),
        Setting(
            "gate_sightings_interval",
            1.0,
            "Seconds between the gate's writes of what it saw to the store (one short transaction each).",
            _seconds(60, zero=False),
        ),
        Setting(
            "sightings_max_rows",
            1_000_000,
            "Most sightings the store keeps; past it new ones are refused and counted (old ones expire).",
            _whole(1, 100_000_000),
        ),
        Setting(
            "sightings_max_age",
            "30d",
            "How long a sighting is kept after it was last seen (a duration: 30d, 12h).",
        ),
        # -- appban serve: the check-in API ------------------------------------------------
        Setting("serve_host", "127.0.0.1", "Address appban serve listens on."),
        Setting("serve_port", 8080, "Port appban serve listens on (0: any free port).", _whole(0, 65535)),
        Setting(
            "serve_workers",
            1,
            "Worker processes of appban serve (each has its own rate limits: see APPBAN_SERVE_CHECKIN_RATE).",
            _whole(1, 256),
        ),
        Setting("serve_tls_cert", "", "PEM certificate file appban serve presents (HTTPS); with APPBAN_SERVE_TLS_KEY."),
        Setting("serve_tls_key", "", "PEM private key file of APPBAN_SERVE_TLS_CERT."),
        Setting(
            "serve_max_body_bytes",
            32 * 1024 * 1024,
            "Largest request body appban serve accepts, in bytes after gzip decompression (1 to 1073741824).",
            _whole(1, 1 << 30),
        ),
        Setting(
            "serve_max_items",
            10_000,
            "Most check-ins in one request to POST /api/v1/checkins (1 to 1000000).",
            _whole(1, 1_000_000),
        ),
        Setting(
            "serve_body_timeout",
            30.0,
            "Seconds a client has to send a whole request body to appban serve (a slow client gets 408).",
            _seconds(3600, zero=False),
        ),
        Setting(
            "serve_checkin_rate",
            5000,
            "Check-ins per second each source may post to appban serve, per worker process "
            "(beyond it: 429 with Retry-After); 0: no limit.",
            _whole(0, 1_000_000),
        ),
        Setting(
            "serve_checkin_burst",
            50_000,
            "Check-ins a source may post at once above APPBAN_SERVE_CHECKIN_RATE before it is slowed.",
            _whole(1, 10_000_000),
        ),
        # -- appban serve: bounds on connections and requests, before any handler ----------
        Setting(
            "serve_small_body_bytes",
            64 * 1024,
            "Largest body of osquery's enroll, config and distributed/read requests to appban serve, in "
            "bytes after gzip decompression; checked before the request reaches its handler (1 to 1073741824).",
            _whole(1, 1 << 30),
        ),
        Setting(
            "serve_max_connections",
            1000,
            "Most connections each appban serve process holds at once; beyond it a new one is answered 503 and closed.",
            _whole(1, 1_000_000),
        ),
        Setting(
            "serve_header_timeout",
            10.0,
            "Seconds a client of appban serve has to send a request's line and headers, from its connection "
            "or the request's first byte; then the connection is closed.",
            _seconds(3600, zero=False),
        ),
        Setting(
            "serve_max_header_bytes",
            64 * 1024,
            "Largest request line and headers appban serve reads, in bytes; a longer one is refused (431) "
            "and its connection closed.",
            _whole(4096, 1024 * 1024),
        ),
        Setting(
            "serve_decode_bytes",
            64 * 1024 * 1024,
            "Decompressed request bytes each appban serve process decodes and applies at once, all "
            "requests together; others wait their turn (1 to 1073741824).",
            _whole(1, 1 << 30),
        ),
        Setting(
            "serve_max_request_apps",
            500_000,
            "Most apps in all the check-ins of one request to POST /api/v1/checkins (beyond it: 413) (1 to 100000000).",
            _whole(1, 100_000_000),
        ),
        # -- appban serve: osquery agents and MDM webhooks ---------------------------------
        Setting(
            "osquery_interval",
            900,
            "Seconds between runs of the installed-apps queries appban gives enrolled osquery agents (60 to 86400).",
            _whole(60, 86_400),
        ),
        Setting(
            "mdm_hold_max_age",
            "7d",
            "How long an Apple MDM app list posted to the webhook waits for a DeviceInformation result "
            "that tells its device's platform, then is dropped (a duration: 7d, 12h).",
        ),
        Setting(
            "osquery_max_log_bytes",
            64 * 1024 * 1024,
            "Largest osquery log body appban serve reads, in bytes after gzip decompression (an agent cut off "
            "for days sends its whole buffer); a larger one is dropped, answered so the agent moves on.",
            _whole(1, 1 << 31),
        ),
        Setting(
            "osquery_log_timeout",
            120.0,
            "Seconds an osquery agent has to send a whole log body (a slower one is dropped, answered so "
            "the agent moves on).",
            _seconds(3600, zero=False),
        ),
        Setting(
            "osquery_log_rate",
            5000,
            "osquery result log entries per second each source's agents may post, per worker process "
            "(beyond it: 429, and osquery sends the batch again later); 0: no limit.",
            _whole(0, 1_000_000),
        ),
        Setting(
            "osquery_log_burst",
            50_000,
            "osquery result log entries a source's agents may post at once above APPBAN_OSQUERY_LOG_RATE.",
            _whole(1, 10_000_000),
        ),
        Setting(
            "osquery_enroll_rate",
            20,
            "osquery enrollments per second each enroll secret's source may make, per worker process "
            "(beyond it: 429, and the agent enrolls again later); 0: no limit.",
            _whole(0, 100_000),
        ),
        Setting(
            "osquery_enroll_burst",
            2000,
            "osquery enrollments a source may make at once above APPBAN_OSQUERY_ENROLL_RATE (a fleet's rollout).",
            _whole(1, 1_000_000),
        ),
        Setting(
            "osquery_max_queries",
            4,
            "Queries of their own (not appban's) whose app results appban keeps per osquery host, each one "
            "record of the host; results of more are refused (0 to 64).",
            _whole(0, 64),
        ),
        Setting(
            "osquery_revoked_max_age",
            "30d",
            "How long a revoked osquery node key's row is kept (a duration: 30d, 12h); older ones are "
            "deleted when an agent enrolls.",
        ),
        Setting(
            "mdm_hold_max_lists",
            10_000,
            "Most Apple MDM app lists held per source, waiting for their device's DeviceInformation; "
            "past it, an app list of another unknown device is refused (1 to 10000000).",
            _whole(1, 10_000_000),
        ),
        # -- notices -------------------------------------------------------------------
        Setting(
            "smtp_url",
            "",
            "Where notices are sent: smtp://[user:password@]host:port (STARTTLS when the server offers it) "
            "or smtps://... (TLS from the start); empty: no mail server (see APPBAN_NOTIFY_FILE).",
        ),
        Setting(
            "smtp_ca_file",
            "",
            "A PEM file of the certificate authorities that may sign the mail server's certificate "
            "(a private CA); empty: the system's.",
        ),
        Setting(
            "mail_from", "appban@localhost", "The sender of notices, unless a policy's notices: names one.", _address
        ),
        Setting(
            "public_url",
            "http://localhost:8080",
            "The base of the personal links in notices: where employees reach appban serve.",
            _public_url,
        ),
        Setting(
            "notify_file",
            "",
            "An mbox file notices are appended to instead of being sent (dry runs, or a site that "
            "hands mail to another system); wins over APPBAN_SMTP_URL.",
        ),
        Setting(
            "smtp_connections",
            4,
            "Connections to the mail server the notice sender uses at once (1 to 64).",
            _whole(1, 64),
        ),
        Setting(
            "smtp_timeout",
            30.0,
            "Seconds the notice sender waits for the mail server or a webhook before counting a try as failed.",
            _seconds(3600.0, zero=False),
        ),
        Setting(
            "notify_max_attempts",
            8,
            "Tries of a notice that fails temporarily before it is marked failed (1 to 100).",
            _whole(1, 100),
        ),
        Setting(
            "notify_retry",
            "1m",
            "The wait before a notice's second try after a temporary failure; it doubles with each "
            "further try, up to six hours (a duration: 30s, 1m).",
        ),
        Setting(
            "notify_lease",
            "5m",
            "How long a sender holds the notices it is sending; after it (a sender that died), another "
            "sends them again with the same Message-ID (a duration).",
        ),
        Setting(
            "notify_interval",
            5.0,
            "Seconds between looks at the outbox by the sender inside appban serve and notify run (0.1 to 3600).",
            _seconds(3600.0, zero=False),
        ),
        Setting(
            "waking_hours",
            "08:00-20:00",
            "When reminders are delivered, in each person's own time zone (HH:MM-HH:MM); a reminder "
            "due outside it waits for the next window unless the deadline comes first.",
            _hours,
        ),
        Setting(
            "exemption_warning",
            "3d",
            "How long before an exemption ends its holder is sent exemption_expiring (a duration).",
        ),
        Setting(
            "link_ttl",
            "30d",
            "How long a personal page link in a notice or from people link stays valid (a duration).",
        ),
        Setting(
            "webhook_secret",
            "",
            "The key that signs notices posted to a policy's webhook (HMAC-SHA256 in X-Appban-Signature); "
            "a policy with a webhook needs it.",
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


def duration(name: str, *, allow_zero: bool = False) -> Micros:
    """The value of duration setting ``name`` (text such as ``30d``), in microseconds."""
    return parse_duration(get(name), field=SETTINGS[name].env, allow_zero=allow_zero)


def export(name: str, value: Any) -> None:
    """Set ``name`` in this process's environment, for the processes it starts (workers)."""
    os.environ[SETTINGS[name].env] = str(value)
