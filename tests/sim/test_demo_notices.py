"""``appban demo`` delivers its notices through appban's own sender: to an mbox beside
its database, or with ``--smtp`` to a real mail server; its summary counts what was
delivered."""

from __future__ import annotations

import json
import mailbox
import socket
from collections import Counter
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from helpers_cli import assert_bad_input, run


def demo(db: Path, *args: str) -> dict[str, Any]:
    result = run("--db", str(db), "--json", "demo", "--employees", "120", "--seed", "3", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def read_mbox(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(str(path))
    try:
        return list(box)
    finally:
        box.close()


def outbox(db: Path, kind: str) -> list[dict[str, Any]]:
    result = run("--db", str(db), "--json", "notify", "list", "--kind", kind)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    return doc["notices"] if isinstance(doc, dict) else doc


def test_the_mbox_holds_exactly_what_the_summary_counts(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    s = demo(db)
    mbox = tmp_path / "demo-notices.mbox"
    assert s["notices"]["delivered_to"] == str(mbox)
    messages = read_mbox(mbox)
    kinds = Counter(m["X-Appban-Kind"] for m in messages)
    assert dict(kinds) == s["notices"]["sent"]
    assert kinds["memo"] > 0 and kinds["reminder"] > 0 and kinds["blocked"] > 0 and kinds["restored"] > 0
    # One memo per person, every message its own Message-ID.
    memo_to = [m["To"] for m in messages if m["X-Appban-Kind"] == "memo"]
    assert len(memo_to) == len(set(memo_to))
    ids = [m["Message-ID"] for m in messages]
    assert len(ids) == len(set(ids))
    assert {n["person"] for n in outbox(db, "memo")} >= {a.split("<")[-1].rstrip(">") for a in memo_to}
    # Running the demo again replaces its mbox, as it replaces its database.
    demo(db)
    assert len(read_mbox(mbox)) == len(messages)


class _Sink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


def test_smtp_sends_them_to_a_real_mail_server(tmp_path: Path) -> None:
    sink = _Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        s = demo(tmp_path / "demo.db", "--smtp", f"127.0.0.1:{port}")
    finally:
        controller.stop()
    assert s["notices"]["delivered_to"] == f"smtp://127.0.0.1:{port}"
    kinds = Counter(BytesParser(policy=default_policy).parsebytes(m)["X-Appban-Kind"] for m in sink.messages)
    assert dict(kinds) == s["notices"]["sent"]
    assert not (tmp_path / "demo-notices.mbox").exists()


@pytest.mark.parametrize("value", ["localhost", "localhost:0", "localhost:99999", ":25", "user@host:25", "a b:25"])
def test_a_bad_smtp_target_is_refused_before_anything_is_written(tmp_path: Path, value: str) -> None:
    db = tmp_path / "demo.db"
    result = run("--db", str(db), "demo", "--employees", "10", "--smtp", value)
    assert_bad_input(result, "--smtp")
    assert not db.exists()
