"""Where notices go: a mail server (SMTP), an mbox file, or a policy's webhook.

A channel takes a batch of outgoing items and answers each notice id with a result:

- ``Sent``: the server accepted it (a 2xx reply to the message's data, a 2xx
  answer to the POST, or the mbox synced to disk);
- ``Temporary(error)``: try again later, with backoff;
- ``Permanent(error)``: never again (a policy's admin must look).

Results are classified by reply codes, status codes and exception types, never by
a library's or a server's wording. For SMTP, the codes of the replies to MAIL FROM,
RCPT TO and DATA classify the message (4xx temporary, 5xx permanent, RFC 5321
section 4.2.1). A server appban cannot reach, talk TLS with (a handshake or a
certificate that fails verification), greet or log in to is ``Temporary`` even when
its reply is 5xx (535 authentication failed): the notice is not at fault, the
connection is, and an admin who fixes the setting within the retry window
(APPBAN_NOTIFY_MAX_ATTEMPTS tries, the wait doubling from APPBAN_NOTIFY_RETRY) loses
nothing. Once a connection fails that way, the rest of the batch is answered with
the same error untried, instead of waiting out the timeout for each message.

An error kept for a notice is one line of at most 300 characters and never holds the
SMTP password (it never names the URL) nor a webhook's URL (chat webhooks carry their
secret in the path).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import http.client
import mailbox
import re
import select
import smtplib
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from appban import settings
from appban.errors import BadInput, one_line

# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """Accepted by the server (or written and synced, for the mbox)."""


@dataclass(frozen=True, slots=True)
class Temporary:
    """Not delivered this time; try again later."""

    error: str


@dataclass(frozen=True, slots=True)
class Permanent:
    """Refused for good: retrying would get the same answer."""

    error: str


Result = Sent | Temporary | Permanent
SENT = Sent()
MAX_ERROR = 300


def error_text(text: str) -> str:
    """One printable line of at most MAX_ERROR characters."""
    line = one_line(" ".join(text.split()), MAX_ERROR)
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 3] + "..."


# -- what goes out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    """A rendered notice for a mail channel."""

    notice_id: int
    sender: str  # the envelope sender (MAIL FROM): the From address
    to: str  # the envelope recipient (RCPT TO): the person's email
    data: bytes  # the message as sent (RFC 5322, CRLF line ends)


@dataclass(frozen=True, slots=True)
class Post:
    """A rendered notice for a policy's webhook."""

    notice_id: int
    url: str
    body: bytes


class MailChannel(Protocol):
    name: str

    def deliver(self, items: Iterable[Mail]) -> dict[int, Result]:
        """Each item's result by notice id. ``items`` may be lazy (rendered as they are
        taken); an item never taken is not in the answer."""
        ...

    def close(self) -> None: ...


# -- the mbox file -------------------------------------------------------------------------


class MboxChannel:
    """Appends to an mbox (APPBAN_NOTIFY_FILE), for dry runs and for sites that hand mail
    to another system. A batch is written under the mailbox's locks (fcntl and a dot
    file, as mail readers take them), then flushed and fsynced: only then is it sent."""

    name = "file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._box: mailbox.mbox | None = None

    def deliver(self, items: Iterable[Mail]) -> dict[int, Result]:
        batch = list(items)
        if not batch:
            return {}
        try:
            # Kept open between batches: the mailbox reads the file's table of contents once,
            # then only appends (at the end of the file, wherever other writers left it).
            box = self._box = self._box or mailbox.mbox(self.path, create=True)
            box.lock()
            try:
                for item in batch:
                    box.add(_mbox_entry(item))
                box.flush()  # writes and fsyncs (mailbox's _sync_flush)
            finally:
                box.unlock()
        except (OSError, mailbox.Error) as exc:
            # Some of the batch may be in the file, unsynced: sent again, with the same Message-ID.
            self.close()
            error: Result = Temporary(error_text(f"cannot write the mbox: {type(exc).__name__}: {_os_error(exc)}"))
            return {item.notice_id: error for item in batch}
        return {item.notice_id: SENT for item in batch}

    def close(self) -> None:
        if self._box is not None:
            with contextlib.suppress(OSError):
                self._box.close()
            self._box = None


def _mbox_entry(item: Mail) -> bytes:
    """The message with mbox's own "From " line (the envelope sender and the time) and
    the file's line ends; mailbox quotes a body line that starts with "From "."""
    sender = "".join(item.sender.split()) or "MAILER-DAEMON"
    return f"From {sender} {time.asctime(time.gmtime())}\n".encode() + item.data.replace(b"\r\n", b"\n")


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# -- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpServer:
    tls: bool  # smtps://: TLS from the first byte
    host: str
    port: int
    user: str
    password: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_smtp_url(text: str) -> SmtpServer:
    """``smtp://[user:password@]host[:port]`` or ``smtps://...``; user and password are
    percent-decoded. A refusal never repeats the URL (it may hold the password)."""
    field = settings.SETTINGS["smtp_url"].env
    shape = "expected smtp://[user:password@]host:port or smtps://[user:password@]host:port"
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise BadInput(f"{shape}: not a URL with a valid port", field=field) from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise BadInput(f"{shape}, got scheme {one_line(scheme, 20)!r}", field=field)
    if not parts.hostname:
        raise BadInput(f"{shape}: no host", field=field)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadInput(f"{shape}: nothing may follow the port", field=field)
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    if password and not user:
        raise BadInput(f"{shape}: a password without a user", field=field)
    tls = scheme == "smtps"
    return SmtpServer(tls, parts.hostname, port or (465 if tls else 25), user, password)


class _Unreachable(Exception):
    """The connection failed before any message was given to it (connect, TLS, EHLO, AUTH)."""


class _Connection:
    def __init__(self, smtp: smtplib.SMTP, secure: bool) -> None:
        self.smtp = smtp
        self.secure = secure
        self.used = False  # has carried a message: the server may have closed it since


class _Slot:
    """One connection of the pool and the message it carries. ``state`` is the reply it
    waits for: ``mail``, ``rcpt``, ``data`` (354), ``dot`` (the message's own answer),
    ``rset`` (after a refusal), or ``idle``."""

    def __init__(self) -> None:
        self.conn: _Connection | None = None
        self.item: Mail | None = None
        self.state = "idle"
        self.deadline = 0.0
        self.fresh = False  # the message was moved to a new connection already


# An address smtplib.quoteaddr would give back as it is, in angle brackets: a dot-atom at
# a host name (RFC 5322 3.2.3). Every notice's recipient is one; only others are parsed.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*", re.ASCII)


def _quoted(address: str) -> str:
    """``<address>`` for MAIL FROM and RCPT TO, as smtplib.quoteaddr writes it."""
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _dot_stuffed(data: bytes) -> bytes:
    """Each line that starts with a dot, one more (RFC 5321 4.5.2)."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data.startswith(b".") else data


_STAGES = {"mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "DATA", "dot": "end of data"}


class SmtpChannel:
    """Sends over up to APPBAN_SMTP_CONNECTIONS connections at once, each kept for the
    next messages, from the caller's thread: while the servers answer, the next message
    is taken from the caller's lazy items (rendered then) and replies are read as they
    come. (A thread per connection did the same work slower: the threads and the
    rendering took turns on Python's lock, and each reply waited for its turn.)

    A connection the server closed while it was idle (a disconnect, or 421, in reply to
    MAIL FROM, before anything was accepted) is replaced and the message sent on the new
    one; any other failure closes it and classifies the message, and the next message
    opens a new connection."""

    name = "smtp"

    def __init__(
        self,
        server: SmtpServer,
        *,
        connections: int,
        timeout: float,
        ca_file: str = "",
    ) -> None:
        self.server = server
        self.timeout = timeout
        self.connections = connections
        self.ca_file = ca_file
        self._context: ssl.SSLContext | None = None
        self._kept: list[_Connection] = []  # open, idle, for the next batch
        self._down: str | None = None  # this batch's connection failure, once one happened
        self._helo: str | None = None

    @classmethod
    def from_settings(cls) -> SmtpChannel:
        return cls(
            parse_smtp_url(str(settings.get("smtp_url"))),
            connections=int(settings.get("smtp_connections")),
            timeout=float(settings.get("smtp_timeout")),
            ca_file=str(settings.get("smtp_ca_file")),
        )

    # -- a batch -------------------------------------------------------------------

    def deliver(self, items: Iterable[Mail]) -> dict[int, Result]:
        self._down = None
        results: dict[int, Result] = {}
        source = iter(items)
        exhausted = False
        slots = [_Slot() for _ in range(self.connections)]
        ready: collections.deque[Mail] = collections.deque()  # taken, waiting for a connection
        try:
            while True:
                for slot in slots:
                    if slot.state == "idle" and ready:
                        self._start(slot, ready.popleft(), results)
                busy = [slot for slot in slots if slot.state != "idle"]
                if not exhausted and (
                    len(busy) + len(ready) < self.connections
                    or (len(ready) < self.connections and any(slot.state == "dot" for slot in busy))
                ):
                    # Take (render) one more when a connection has nothing to send, or while
                    # a server takes in a message (its longest work: a reply that comes
                    # meanwhile waits for the rendering); then look for the replies that
                    # came meanwhile, without waiting.
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                    elif self._down is not None:
                        results[item.notice_id] = Temporary(self._down)
                    else:
                        ready.append(item)
                    wait = 0.0
                elif busy:
                    wait = max(0.0, min(slot.deadline for slot in busy) - time.monotonic())
                elif ready:
                    continue
                else:
                    return results  # nothing left to take, waiting or in flight
                if busy:
                    self._poll(busy, wait, results)
        finally:
            for slot in slots:
                if slot.state == "idle" and slot.conn is not None:
                    self._kept.append(slot.conn)
                elif slot.conn is not None:  # only when the caller's items raised
                    self._discard(slot.conn)

    def _poll(self, busy: list[_Slot], wait: float, results: dict[int, Result]) -> None:
        by_socket = {slot.conn.smtp.sock: slot for slot in busy if slot.conn is not None and slot.conn.smtp.sock}
        readable, _, _ = select.select(list(by_socket), [], [], wait)
        for sock in readable:
            self._reply(by_socket[sock], results)
        now = time.monotonic()
        for slot in busy:
            if slot.state != "idle" and slot.deadline <= now:
                error = f"no reply to {_STAGES.get(slot.state, slot.state)} within {self.timeout:g} s"
                self._lost(slot, results, error_text(f"SMTP server {self.server.address}: {error}"))

    def _start(self, slot: _Slot, item: Mail, results: dict[int, Result], *, fresh: bool = False) -> None:
        """MAIL FROM for ``item``, on the slot's connection, a kept one or a new one."""
        if self._down is not None:
            results[item.notice_id] = Temporary(self._down)
            return
        if slot.conn is None:
            try:
                slot.conn = self._take(fresh)
            except _Unreachable as exc:
                self._down = str(exc)
                results[item.notice_id] = Temporary(self._down)
                return
        smtp = slot.conn.smtp
        utf8 = not (item.sender.isascii() and item.to.isascii())
        if utf8 and not smtp.has_extn("smtputf8"):
            results[item.notice_id] = Permanent("the mail server does not take non-ASCII addresses (no SMTPUTF8)")
            return
        options = " SMTPUTF8" if utf8 else ""
        if not item.data.isascii() and smtp.has_extn("8bitmime"):
            options += " BODY=8BITMIME"
        slot.item, slot.fresh = item, fresh
        self._put(slot, "mail", results, f"FROM:{_quoted(item.sender)}{options}")

    def _put(self, slot: _Slot, state: str, results: dict[int, Result], args: str = "") -> None:
        """Send the command whose reply ``state`` waits for (for ``dot``, the message)."""
        conn = slot.conn
        assert conn is not None
        try:
            if state == "dot":
                assert slot.item is not None
                data = _dot_stuffed(slot.item.data)
                conn.smtp.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            else:
                conn.smtp.putcmd(state, args)  # the states are named for their commands
        except (smtplib.SMTPException, OSError) as exc:
            self._lost(slot, results, self._connection_error(exc), stale=state == "mail")
            return
        slot.state = state
        slot.deadline = time.monotonic() + self.timeout

    def _reply(self, slot: _Slot, results: dict[int, Result]) -> None:
        assert slot.conn is not None
        state = slot.state
        try:
            code, reply = slot.conn.smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._lost(slot, results, self._connection_error(exc), stale=state == "mail")
            return
        if state == "rset":
            if code == 421:
                self._close_slot(slot)
            slot.state = "idle"
            return
        item = slot.item
        assert item is not None
        if state == "mail" and code == 421 and slot.conn.used and not slot.fresh:
            self._retry_fresh(slot, results)  # RFC 5321 4.2: closing; nothing accepted yet
        elif (state, code) in (("mail", 250), ("rcpt", 250), ("rcpt", 251), ("data", 354)):
            following = {"mail": "rcpt", "rcpt": "data", "data": "dot"}[state]
            self._put(slot, following, results, f"TO:{_quoted(item.to)}" if following == "rcpt" else "")
        elif state == "dot" and code == 250:
            results[item.notice_id] = SENT
            slot.conn.used = True
            slot.item, slot.state = None, "idle"
        else:
            text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            error = error_text(f"{_STAGES[state]}: {code} {text}")
            results[item.notice_id] = Permanent(error) if 500 <= code <= 599 else Temporary(error)
            slot.item = None
            if code == 421:  # the server is closing this connection
                self._close_slot(slot)
                slot.state = "idle"
            elif state == "dot":
                slot.conn.used = True
                slot.state = "idle"
            else:
                self._put(slot, "rset", results)  # the transaction is abandoned; the connection stays

    def _lost(self, slot: _Slot, results: dict[int, Result], error: str, *, stale: bool = False) -> None:
        """The connection failed while it carried ``slot.item``: a kept one the server had
        closed while idle (at MAIL FROM) takes the message to a new connection, once;
        otherwise the message may or may not have arrived (the next try carries the same
        Message-ID)."""
        conn = slot.conn
        self._close_slot(slot)
        item, slot.item, slot.state = slot.item, None, "idle"
        if item is None:
            return
        if stale and conn is not None and conn.used and not slot.fresh:
            self._start(slot, item, results, fresh=True)
            return
        results[item.notice_id] = Temporary(error)

    def _retry_fresh(self, slot: _Slot, results: dict[int, Result]) -> None:
        item = slot.item
        self._close_slot(slot)
        slot.item, slot.state = None, "idle"
        assert item is not None
        self._start(slot, item, results, fresh=True)

    def _connection_error(self, exc: BaseException) -> str:
        return error_text(f"SMTP connection to {self.server.address} failed: {_describe(exc)}")

    # -- connections -----------------------------------------------------------------

    def _take(self, fresh: bool) -> _Connection:
        if self._kept and not fresh:
            return self._kept.pop()
        return self._connect()

    def _close_slot(self, slot: _Slot) -> None:
        if slot.conn is not None:
            self._discard(slot.conn)
            slot.conn = None

    @staticmethod
    def _discard(conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            conn.smtp.close()

    def _connect(self) -> _Connection:
        server = self.server
        if self._helo is None:
            self._helo = socket.getfqdn()  # once: it may ask the resolver
        smtp: smtplib.SMTP | None = None
        try:
            if server.tls:
                smtp = smtplib.SMTP_SSL(
                    server.host, server.port, local_hostname=self._helo, timeout=self.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(server.host, server.port, local_hostname=self._helo, timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            secure = server.tls
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=self._tls())
                smtp.ehlo()
                secure = True
            if server.user:
                if not secure:
                    raise _Unreachable(
                        f"SMTP server {server.address} offers no STARTTLS: appban does not send the "
                        "password of APPBAN_SMTP_URL in clear (use smtps://, or a server that offers STARTTLS)"
                    )
                smtp.login(server.user, server.password)
            return _Connection(smtp, secure)
        except _Unreachable:
            self._close_quietly(smtp)
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self._close_quietly(smtp)
            raise _Unreachable(error_text(f"cannot use SMTP server {server.address}: {_describe(exc)}")) from None

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.ca_file or None)
        return self._context

    @staticmethod
    def _close_quietly(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        kept, self._kept = self._kept, []
        for conn in kept:
            with contextlib.suppress(Exception):
                conn.smtp.quit()
            self._discard(conn)


def _describe(exc: BaseException) -> str:
    """An exception in one line, without secrets: its type, and its code or errno."""
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return f"{name}: {exc.smtp_code} {text}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{name}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"{name}: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"
    return f"{name}: {exc}" if str(exc) else name


# -- webhooks ------------------------------------------------------------------------------

# Posts made at once; a chat tool's webhook is one endpoint, and its rate limits are per
# sender: a few in parallel hide the round trips without tripping them.
WEBHOOK_PARALLEL = 4
_WEBHOOK_ANSWER = 64 * 1024  # read of an answer (the connection is closed after it)


class WebhookChannel:
    """POSTs each notice's JSON to its policy's webhook, signed with APPBAN_WEBHOOK_SECRET:
    ``X-Appban-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." and the body>``, with
    the notice's id (``X-Appban-Notice``: a receiver drops a repeat it has seen) and the
    time sent (``X-Appban-Timestamp``, seconds since 1970, signed with the body: a
    receiver refuses an old one, so a captured post cannot be replayed later). 2xx is sent; 408, 429, 5xx, timeouts
    and connection failures are temporary; a redirect (never followed: it would move a
    signed body elsewhere) and any other 4xx are permanent."""

    name = "webhook"

    def __init__(self, secret: str, *, timeout: float) -> None:
        self.secret = secret.encode("utf-8")
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(WEBHOOK_PARALLEL, thread_name_prefix="appban-webhook")
        self._context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls) -> WebhookChannel:
        return cls(str(settings.get("webhook_secret")), timeout=float(settings.get("smtp_timeout")))

    def deliver(self, items: Iterable[Post]) -> dict[int, Result]:
        room = threading.BoundedSemaphore(2 * WEBHOOK_PARALLEL)
        futures: list[tuple[int, Future[Result]]] = []
        for item in items:
            room.acquire()
            future = self._pool.submit(self.post, item)
            future.add_done_callback(lambda _: room.release())
            futures.append((item.notice_id, future))
        return {notice_id: future.result() for notice_id, future in futures}

    def signature(self, body: bytes, timestamp: str) -> str:
        signed = timestamp.encode("ascii") + b"." + body
        return "sha256=" + hmac.new(self.secret, signed, hashlib.sha256).hexdigest()

    def post(self, item: Post) -> Result:
        if not self.secret:
            return Permanent(
                "APPBAN_WEBHOOK_SECRET is not set: appban posts no unsigned notice to a webhook "
                "(set it, then notify retry)"
            )
        try:
            target = _webhook_target(item.url)
        except ValueError as exc:
            return Permanent(error_text(f"webhook URL: {exc}"))
        scheme, host, port, path = target
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Appban-Signature": self.signature(item.body, timestamp),
            "X-Appban-Notice": str(item.notice_id),
            "X-Appban-Timestamp": timestamp,
            "User-Agent": "appban",
            "Connection": "close",
        }
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request("POST", path, body=item.body, headers=headers)
            answer = conn.getresponse()
            answer.read(_WEBHOOK_ANSWER)
            status, reason = answer.status, answer.reason
        except (OSError, http.client.HTTPException) as exc:
            return Temporary(error_text(f"webhook POST failed: {_describe(exc)}"))
        finally:
            conn.close()
        if 200 <= status <= 299:
            return SENT
        error = error_text(f"webhook answered {status} {reason}")
        if status in (408, 429) or 500 <= status <= 599:
            return Temporary(error)
        if 300 <= status <= 399:
            return Permanent(error_text(f"{error} (a redirect: not followed; give the webhook's final URL)"))
        return Permanent(error)

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _webhook_target(url: str) -> tuple[str, str, int, str]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"expected http:// or https://, got scheme {one_line(scheme, 20)!r}")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path  # an IPv6 host bare: http.client brackets it in Host


# -- choosing ------------------------------------------------------------------------------


def mail_channel() -> MailChannel:
    """The mail channel the settings name: APPBAN_NOTIFY_FILE wins over APPBAN_SMTP_URL;
    neither set is bad input (nothing would be delivered)."""
    path = str(settings.get("notify_file"))
    if path.strip():
        return MboxChannel(path)
    url = str(settings.get("smtp_url"))
    if url.strip():
        return SmtpChannel.from_settings()
    raise BadInput(
        "no mail channel: set APPBAN_SMTP_URL (a mail server) or APPBAN_NOTIFY_FILE (an mbox file)",
        field="APPBAN_SMTP_URL",
    )
