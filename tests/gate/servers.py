"""Real servers for the gate's end-to-end tests, each on a free loopback port.

- ``Fleet``: an appban database with people, the example TikTok policy and devices
  imported as check-ins; devices are named by role (``compliant``, ``blocked``...).
- ``start_gate``: ``python -m appban gate serve`` as a subprocess, ready when /healthz is.
- ``start_nginx``: nginx with ``deploy/nginx/activesync.conf`` and/or ``mail.conf``,
  rendered by substituting only addresses and ports, so the files tested are the
  files shipped. Only the top-level wrapper (pid, logs, temp paths) is made here.
- ``start_dovecot``: an IMAP server that trusts the proxy (docs/gate.md says why).
- ``start_smtp``: an aiosmtpd server in a thread that records what it receives.
- ``start_activesync``: an ActiveSync-shaped upstream that answers every request.

Each is a context manager that stops what it started. The test modules turn them
into module-scoped fixtures; ``require`` skips only when a binary is truly absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appban.store import open_store
from helpers_cli import Result, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
POLICY = ROOT / "examples" / "tiktok-mail.yaml"
HOST = "127.0.0.1"
MAIL_MODULE = Path("/usr/lib/nginx/modules/ngx_mail_module.so")
TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
NOTES = {"id": "com.example.notes", "name": "Notes"}

PEOPLE_CSV = """\
email,name,org_unit,groups,timezone
alice@example.com,Alice Ames,Sales,staff,Europe/London
bob@example.com,Bob Berg,Sales,staff,Europe/London
carol@example.com,Carol Chu,Engineering,staff,America/New_York
dave@example.com,Dave Dunn,Engineering,staff,America/New_York
erin@example.com,Erin Eze,Security,staff;security-research,Europe/Paris
frank@example.com,Frank Foy,Finance,staff,Europe/Berlin
"""


def require(*binaries: str) -> None:
    """Skip (with the reason) only when a server binary is not installed at all."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (.ci/run installs them with apt-get)")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def checkin(
    device: str,
    owner: str,
    *,
    platform: str = "ios",
    eas: Sequence[str] = (),
    apps: Sequence[dict[str, str]] = (),
    at: datetime | None = None,
) -> str:
    """One check-in in SPEC's ``appban`` format, as one JSON line."""
    return json.dumps(
        {
            "source": "agent",
            "device": {
                "id": device,
                "platform": platform,
                "owner": owner,
                "eas_device_ids": list(eas),
            },
            "observed_at": iso(at or utcnow()),
            "apps": list(apps),
        }
    )


# -- the store -------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    source_id: str
    owner: str
    eas: str  # the ActiveSync DeviceId, "" for a device that reads mail only over IMAP/SMTP
    platform: str = "ios"
    apps: tuple[dict[str, str], ...] = ()

    @property
    def user(self) -> str:
        return self.owner.partition("@")[0]


# Roles, by what the policy makes of each device (the policy's deadline is in 2020, so a
# device with TikTok today is blocked; Erin's group is excluded from the policy).
DEVICES = {
    "compliant": Device("ALICE-IPHONE", "alice@example.com", "EASALICE01"),
    "blocked": Device("BOB-PIXEL", "bob@example.com", "EASBOB01", "android", (TIKTOK,)),
    "comes_back": Device("CAROL-IPHONE", "carol@example.com", "EASCAROL01", "ios", (TIKTOK,)),
    "mail_only_blocked": Device("DAVE-GALAXY", "dave@example.com", "", "android", (TIKTOK, NOTES)),
    "excluded_group": Device("ERIN-IPHONE", "erin@example.com", "EASERIN01", "ios", (TIKTOK,)),
    "revoked": Device("FRANK-IPHONE", "frank@example.com", "EASFRANK01"),
}


class Fleet:
    """A database in ``folder``: people, the example policy, one device per role."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "appban.db"
        self.devices = DEVICES
        # Observed a few minutes ago, so a later check-in is newer; the clock of every
        # setup command is now, long after the policy's 2020 deadline.
        observed = utcnow() - timedelta(minutes=5)
        people = folder / "people.csv"
        people.write_text(PEOPLE_CSV, encoding="utf-8")
        checkins = folder / "checkins.jsonl"
        checkins.write_text(
            "".join(
                checkin(
                    d.source_id,
                    d.owner,
                    platform=d.platform,
                    eas=[d.eas] if d.eas else [],
                    apps=d.apps,
                    at=observed,
                )
                + "\n"
                for d in DEVICES.values()
            ),
            encoding="utf-8",
        )
        for args in (
            ("init",),
            ("people", "import", str(people)),
            ("policy", "apply", str(POLICY)),
            ("import", "appban", str(checkins)),
        ):
            self.run(*args)

    def run(self, *args: str) -> Result:
        """``appban --db DB --now NOW ARGS`` in this process; fails the test unless it succeeds."""
        result = run("--db", str(self.db), "--now", iso(utcnow()), *args)
        assert result.code == 0, (args, result)
        return result

    def issue_password(self, role: str) -> str:
        doc = json.loads(self.run("device", "credential", "issue", self.devices[role].source_id, "--json").out)
        return str(doc["password"])

    def clean_checkin(self, role: str) -> Path:
        """The owner removed the app: a new check-in of the device with no app."""
        d = self.devices[role]
        path = self.folder / f"{role}-clean.json"
        path.write_text(
            checkin(d.source_id, d.owner, platform=d.platform, eas=[d.eas] if d.eas else []),
            encoding="utf-8",
        )
        return path

    @contextlib.contextmanager
    def change(self, *args: str) -> Iterator[Change]:
        """``python -m appban --db DB ARGS`` started in another process (the store is all
        it touches); ``stored_at`` is when its commit became visible in the store."""
        store = open_store(str(self.db), create=False)
        before = store.gate_seq()
        argv = [sys.executable, "-m", "appban", "--db", str(self.db), *args]
        change = Change()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        try:
            while change.stored_at is None:
                exited = proc.poll() is not None
                if store.gate_seq() > before:
                    change.stored_at = time.monotonic()
                elif exited:
                    break
                else:
                    time.sleep(0.002)
        finally:
            store.close()
        try:
            if change.stored_at is not None:
                yield change
        finally:
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (args, out, err)
        assert change.stored_at is not None, f"{args} changed nothing the gate follows: {out!r}"


@dataclass
class Change:
    stored_at: float | None = None  # time.monotonic()


# -- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    """Until ``proc`` itself listens on ``port`` (not merely someone: the port may have
    been taken between free_port() and the server's start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        if _listens(proc.pid, port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args[0]} is not listening on {port} after {timeout}s:\n{_tail(log)}")


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port`` (Linux /proc), or,
    without /proc, whether anything accepts connections there."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return True
        return False
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
        if local_port == port and state == "0A" and inode in inodes:  # 0A: LISTEN
            return True
    return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}


def _started(argv: list[str], log: Path, port: int, attempts_left: int) -> subprocess.Popen[bytes] | None:
    """Start a server that binds ``port``; None if the port was taken meanwhile (retry)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
    try:
        wait_for_port(port, proc, log)
    except RuntimeError:
        stop(proc)
        if attempts_left and "in use" in _tail(log):
            return None
        raise
    return proc


# -- the gate --------------------------------------------------------------------------


@dataclass
class Gate:
    port: int
    log: Path

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.port, method, path, headers)


@contextlib.contextmanager
def start_gate(db: Path, folder: Path, mail_upstreams: Sequence[str] = (), args: Sequence[str] = ()) -> Iterator[Gate]:
    """``appban gate serve --port 0 ARGS``; the port is read from its "listening on" line
    in ``folder``/gate.log (one gate per folder)."""
    log = folder / "gate.log"
    argv = [
        sys.executable,
        "-m",
        "appban",
        "--db",
        str(db),
        "gate",
        "serve",
        "--host",
        HOST,
        "--port",
        "0",
    ]
    for spec in mail_upstreams:
        argv += ["--mail-upstream", spec]
    argv += list(args)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
    try:
        port = _gate_port(proc, log)
        gate = Gate(port, log)
        status, _, body = gate.get("/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        yield gate
    finally:
        stop(proc)
    text = log.read_text("utf-8", "replace")
    assert "Traceback" not in text, text


def _gate_port(proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on [\d.]+:(\d+)", log.read_text("utf-8", "replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the gate exited with {proc.returncode}:\n{_tail(log)}")
        time.sleep(0.02)
    raise RuntimeError(f"the gate did not start in {timeout}s:\n{_tail(log)}")


# -- HTTP helpers ----------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the target sent exactly as given; header names lower-cased."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- the ActiveSync-shaped upstream ----------------------------------------------------


@dataclass
class Upstream:
    port: int
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"


@contextlib.contextmanager
def start_activesync() -> Iterator[Upstream]:
    """Answers any request with 200 "activesync ok", as Exchange would a good Sync."""
    upstream = Upstream(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # nginx keeps upstream connections alive
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            upstream.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = f"activesync ok {self.command}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_OPTIONS = answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    upstream.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="activesync-upstream", daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- nginx -----------------------------------------------------------------------------


def render(template: Path, values: dict[str, str]) -> str:
    """A deploy/ template with its ``{{NAME}}`` placeholders filled; every one must be."""
    text = template.read_text("utf-8")
    for name, value in values.items():
        assert "{{" + name + "}}" in text, f"{template} has no {{{{{name}}}}}"
        text = text.replace("{{" + name + "}}", value)
    left = re.findall(r"\{\{\w+\}\}", text)
    assert not left, f"{template}: placeholders not filled: {left}"
    return text


@dataclass
class Nginx:
    folder: Path
    ports: dict[str, int]

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"


@contextlib.contextmanager
def start_nginx(folder: Path, *, gate: str, activesync: str | None = None, mail: bool = False) -> Iterator[Nginx]:
    """nginx with the shipped http config (``activesync``: the upstream's address) and/or
    the shipped mail config, under a top-level nginx.conf written here."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(3, -1, -1):
        ports: dict[str, int] = {}
        main: list[str] = []
        if mail:
            ports["imap"], ports["smtp"] = free_port(), free_port()
            (folder / "mail.conf").write_text(
                render(
                    DEPLOY / "nginx" / "mail.conf",
                    {
                        "GATE_ADDR": gate,
                        "IMAP_PORT": f"{HOST}:{ports['imap']}",
                        "SMTP_PORT": f"{HOST}:{ports['smtp']}",
                    },
                ),
                encoding="utf-8",
            )
            main.append(f"include {folder / 'mail.conf'};")
        if activesync is not None:
            ports["http"] = free_port()
            (folder / "activesync.conf").write_text(
                render(
                    DEPLOY / "nginx" / "activesync.conf",
                    {
                        "GATE_ADDR": gate,
                        "ACTIVESYNC_ADDR": activesync,
                        "LISTEN_PORT": f"{HOST}:{ports['http']}",
                    },
                ),
                encoding="utf-8",
            )
            temp = [
                f"    {kind}_temp_path {folder / ('tmp-' + kind)};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ]
            main += [
                "http {",
                f"    access_log {folder / 'access.log'};",
                *temp,
                f"    include {folder / 'activesync.conf'};",
                "}",
            ]
        # Debian builds the mail module as a dynamic module (package libnginx-mod-mail).
        load = [f"load_module {MAIL_MODULE};"] if mail and MAIL_MODULE.exists() else []
        conf = folder / "nginx.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by tests/gate/servers.py around the shipped deploy/nginx/*.conf.",
                    *load,
                    "worker_processes 1;",
                    f"pid {folder / 'nginx.pid'};",
                    f"error_log {folder / 'error.log'} info;",
                    "events { worker_connections 512; }",
                    *main,
                    "",
                ]
            ),
            encoding="utf-8",
        )
        argv = [
            "nginx",
            "-p",
            str(folder),
            "-e",
            str(folder / "error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ]
        proc = _started(argv, folder / "error.log", next(iter(ports.values())), attempt)
        if proc is None:
            continue
        try:
            for port in ports.values():
                wait_for_port(port, proc, folder / "error.log")
        except RuntimeError:
            stop(proc)
            if attempt and "in use" in _tail(folder / "error.log"):
                continue
            raise
        try:
            yield Nginx(folder, ports)
        finally:
            stop(proc)  # SIGTERM: fast shutdown
        return
    raise RuntimeError("nginx: no free ports after 4 attempts")


# -- dovecot ---------------------------------------------------------------------------

DOVECOT_CONF = """\
# Written by tests/gate/servers.py: an IMAP server that trusts the proxy in front of it.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = appban-test-{port}
log_path = {dir}/dovecot.log
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{dir}/mail/%n

# The gate is the authority: nginx only opens a session to this server after the gate
# has accepted the device's mail password, and this server takes logins from the proxy
# alone (allow_nets). See docs/gate.md.
passdb {{
  driver = static
  args = nopassword=y allow_nets={host}/32
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%n
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class Dovecot:
    port: int
    log: Path

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"


@contextlib.contextmanager
def start_dovecot() -> Iterator[Dovecot]:
    # Dovecot's helper processes run as unprivileged users and must reach these files,
    # so they live in a world-traversable folder, not pytest's private tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="appban-dovecot-"))
    folder.chmod(0o755)
    try:
        if os.geteuid() == 0:
            # Dovecot refuses mail access as root (uid 0); `nobody` owns the mailboxes.
            internal, login, owner = "dovecot", "dovenull", pwd.getpwnam("nobody")
        else:
            me = pwd.getpwuid(os.geteuid())
            internal = login = me.pw_name
            owner = me
        (folder / "mail").mkdir()
        if os.geteuid() == 0:
            os.chown(folder / "mail", owner.pw_uid, owner.pw_gid)
        for attempt in range(3, -1, -1):
            port = free_port()
            conf = folder / "dovecot.conf"
            conf.write_text(
                DOVECOT_CONF.format(
                    dir=folder,
                    host=HOST,
                    port=port,
                    internal=internal,
                    login=login,
                    uid=owner.pw_uid,
                    gid=owner.pw_gid,
                ),
                encoding="utf-8",
            )
            proc = _started(["dovecot", "-F", "-c", str(conf)], folder / "dovecot.log", port, attempt)
            if proc is None:
                continue
            try:
                yield Dovecot(port, folder / "dovecot.log")
            finally:
                stop(proc)
            return
        raise RuntimeError("dovecot: no free port after 4 attempts")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- SMTP ------------------------------------------------------------------------------


@dataclass
class Smtp:
    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"


@contextlib.contextmanager
def start_smtp() -> Iterator[Smtp]:
    """aiosmtpd in a thread of its own. nginx's SMTP proxy has already authenticated the
    client (through the gate), so this server takes mail without AUTH, as a relay
    that trusts its proxy would."""
    from aiosmtpd.smtp import SMTP as SMTPProtocol

    smtp = Smtp(0)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            smtp.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
            return "250 2.0.0 OK"

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def open_server() -> None:
            server = await loop.create_server(lambda: SMTPProtocol(Handler(), hostname="upstream.test"), HOST, 0)
            holder["server"] = server
            smtp.port = int(server.sockets[0].getsockname()[1])
            ready.set()

        loop.run_until_complete(open_server())
        loop.run_forever()

    thread = threading.Thread(target=serve, name="smtp-upstream", daemon=True)
    thread.start()
    assert ready.wait(10), "the SMTP upstream did not start"
    try:
        yield smtp
    finally:

        async def close() -> None:
            holder["server"].close()
            await holder["server"].wait_closed()
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        thread.join(10)
        loop.close()
