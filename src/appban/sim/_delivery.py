"""The demo's notices, delivered through appban's own sender on the simulated clock.

By default to an mbox beside the demo's database (``<name>-notices.mbox``: the file
channel); with ``--smtp HOST:PORT`` to a real mail server. Each delivery is one pass
of ``appban notify run --once`` at a simulated moment, and says how many notices of
each kind it sent: the demo counts what was delivered, not what it meant to send.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

from appban import settings
from appban.clock import Micros
from appban.errors import BadInput
from appban.notify.channels import MailChannel, MboxChannel, SmtpChannel, parse_smtp_url
from appban.notify.sender import Sender, run_once
from appban.store import Store


def mbox_of(db_file: str) -> str:
    """The demo's mbox beside its database file."""
    root, _ext = os.path.splitext(db_file)
    return f"{root}-notices.mbox"


def smtp_target(text: str) -> str:
    """``HOST:PORT`` as --smtp takes it, as an smtp:// URL; bad input names --smtp."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise BadInput(f"expected HOST:PORT, got {text[:80]!r}", field="--smtp")
    if any(c in host for c in "/@?#") or any(ord(c) < 33 for c in host):
        raise BadInput(f"not a host name: {host[:80]!r}", field="--smtp")
    url = f"smtp://{host}:{port}"
    parse_smtp_url(url)
    return url


class Delivery:
    """Sends the outbox at a given moment; remembers where."""

    def __init__(self, db_file: str, smtp: str | None) -> None:
        self.db = db_file
        self.smtp = smtp
        self.where = smtp if smtp else mbox_of(db_file)
        self.sent: Counter[str] = Counter()

    def _channel(self) -> MailChannel:
        if self.smtp:
            return SmtpChannel(
                parse_smtp_url(self.smtp),
                connections=int(settings.get("smtp_connections")),
                timeout=float(settings.get("smtp_timeout")),
                ca_file=str(settings.get("smtp_ca_file")),
            )
        return MboxChannel(self.where)

    def __call__(self, store: Store, at: Micros) -> Counter[str]:
        """Send everything due at ``at``; the notices sent, by kind."""
        before = _sent(store)
        sender = Sender(self.db, now=at, mail=self._channel())
        run_once(self.db, sender=sender)
        sender.close()
        now = _sent(store) - before
        self.sent.update(now)
        return now


def _sent(store: Store) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_policy, kind, state), n in store.notice_counts().items():
        if state == "sent":
            out[kind] += n
    return out


Deliver = Callable[[Store, Micros], Counter[str]]
