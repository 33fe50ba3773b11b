"""``--mail-upstream`` takes what its help says: comma-separated, like APPBAN_MAIL_UPSTREAM,
and repeatable; two upstreams for one protocol (or two defaults) are a mistake to report,
not a choice to make silently (the last one)."""

from __future__ import annotations

import pytest
from helpers_gate import GateProcess

from appban.gate.server import Upstreams
from helpers_cli import assert_bad_input, run_process
from helpers_semantics import Appban

BOTH = "imap=127.0.0.1:143,smtp=127.0.0.1:25"


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--mail-upstream", BOTH), {}), ((), {"APPBAN_MAIL_UPSTREAM": BOTH})],
    ids=["flag", "environment"],
)
def test_comma_separated_upstreams_start_the_gate(ab: Appban, args: tuple[str, ...], env: dict[str, str]) -> None:
    with GateProcess(ab.db, "--no-evaluate", *args, env=env) as gate:
        assert gate.port  # listening: the value was accepted


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--mail-upstream", "imap=127.0.0.1:143", "--mail-upstream", "imap=127.0.0.1:1143"), {}, "--mail-upstream"),
        (("--mail-upstream", "imap=127.0.0.1:143,IMAP=127.0.0.2:143"), {}, "--mail-upstream"),
        (("--mail-upstream", "127.0.0.1:143,127.0.0.1:993"), {}, "--mail-upstream"),
        ((), {"APPBAN_MAIL_UPSTREAM": "smtp=127.0.0.1:25,smtp=127.0.0.1:587"}, "APPBAN_MAIL_UPSTREAM"),
    ],
    ids=["repeated-flag", "one-flag", "two-defaults", "environment"],
)
def test_two_upstreams_for_one_protocol_are_refused(
    ab: Appban, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    result = run_process("--db", ab.db, "gate", "serve", "--port", "0", *args, env=env, timeout=30)
    assert_bad_input(result, named, "a second upstream")


def test_each_protocol_gets_its_own() -> None:
    upstreams = Upstreams.parse(["imap=127.0.0.1:143", "smtp=127.0.0.1:25", "[::1]:110"])
    assert upstreams.get("imap") == ("127.0.0.1", 143)
    assert upstreams.get("smtp") == ("127.0.0.1", 25)
    assert upstreams.get("pop3") == ("::1", 110)
    with pytest.raises(ValueError, match="a second upstream for imap="):
        Upstreams.parse(["imap=127.0.0.1:143", "Imap=127.0.0.1:1143"])
