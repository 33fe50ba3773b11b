"""Real servers for the notice channels: an SMTP server (aiosmtpd) that records what it
accepts and answers as a test scripts it, TLS files made by openssl, and an HTTP server
that receives webhooks."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message_id: str | None
    raw: bytes
    peer: Any  # (address, port): one per connection
    tls: bool
    login: bytes | None


@dataclass
class Recorder:
    """An aiosmtpd handler: records each message it accepts.

    ``data_answers`` are the next answers to a message's data, in order ("451 ...",
    "554 ...", or "drop": the connection is cut before any answer), then "250 OK";
    ``rcpt_answers`` answer RCPT TO for some addresses."""

    received: list[Received] = field(default_factory=list)
    data_answers: list[str] = field(default_factory=list)
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    auth_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.rcpt_answers:
            return self.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            answer = self.data_answers.pop(0) if self.data_answers else "250 OK"
        if answer == "drop":
            server.transport.abort()
            return "250 never read"
        if answer.startswith("250"):
            raw = bytes(envelope.original_content or envelope.content)
            parsed = message_from_bytes(raw)
            with self.lock:
                self.received.append(
                    Received(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        parsed["Message-ID"],
                        raw,
                        session.peer,
                        server.transport.get_extra_info("ssl_object") is not None,
                        getattr(session.auth_data, "login", None),
                    )
                )
        return answer

    def peers(self) -> set[Any]:
        return {r.peer for r in self.received}


@dataclass
class SmtpServer:
    controller: Controller
    handler: Recorder
    port: int
    scheme: str = "smtp"

    def url(self, userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert, key)


def accept_login(user: bytes, password: bytes) -> Callable[..., AuthResult]:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (user, password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticator


@pytest.fixture
def smtp_server(tls_files_lazy: Callable[[], TlsFiles]) -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_server(starttls=False, smtps=False, auth=None, **aiosmtpd_options)``: a started server."""
    started: list[Controller] = []

    def start(
        *, starttls: bool = False, smtps: bool = False, auth: tuple[bytes, bytes] | None = None, **options: Any
    ) -> SmtpServer:
        handler = Recorder()
        port = free_port()
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": port, **options}
        if starttls:
            kwargs["tls_context"] = tls_files_lazy().server_context()
        if smtps:
            kwargs["ssl_context"] = tls_files_lazy().server_context()
        if auth is not None:
            kwargs["authenticator"] = accept_login(*auth)
            kwargs["auth_required"] = True
        controller = Controller(handler, **kwargs)
        controller.start()
        started.append(controller)
        return SmtpServer(controller, handler, port, "smtps" if smtps else "smtp")

    yield start
    for controller in started:
        with contextlib.suppress(Exception):
            controller.stop()


@pytest.fixture
def tls_files_lazy(request: pytest.FixtureRequest) -> Callable[[], TlsFiles]:
    """The TLS files, made (or skipped) only by a test that asks for a TLS server."""
    return lambda: request.getfixturevalue("tls_files")


# -- webhooks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    port: int
    received: list[Hook]
    statuses: list[int]  # the next answers, then 200

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    state = WebhookServer(0, [], [])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Hook(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"http://127.0.0.1:{state.port}/moved")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _no_appban_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the APPBAN_* settings it means; none leaks in from the environment."""
    import os

    for name in [n for n in os.environ if n.startswith("APPBAN_")]:
        monkeypatch.delenv(name)
