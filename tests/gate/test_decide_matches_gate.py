"""``appban gate decide`` answers exactly as a running ``appban gate serve`` does: one
corpus of (DeviceId, user) cases, asked of both, under several settings (unknown
DeviceIds allowed, mail and NetBIOS domains configured)."""

from __future__ import annotations

import base64
import itertools
from urllib.parse import quote

import pytest
from helpers_gate import NOTES, GateProcess, device, live_fleet, wall

from helpers_semantics import Appban

DEVICE_IDS = ["EASJANE1", "EASBOB1", "EASOTHER", "EASSHARED", "EASNOBODY", "EASBOB1\u200b", ""]
USERS = [
    "jane.doe",
    "jane.doe@example.com",
    "Jane.Doe@Example.COM",
    "jane.doe@other.example",
    "CORP\\jane.doe",
    "OTHER\\bob.roe",
    "bob.roe",
    "BOB.ROE@EXAMPLE.COM",
    "ann.lee",
    "\u212aann.lee",
    "ann",
    "",
]
SETTINGS = {
    "defaults": {},
    "unknown allowed": {"APPBAN_UNKNOWN_DEVICE": "allow"},
    "domains": {"APPBAN_MAIL_DOMAINS": "example.com", "APPBAN_NETBIOS_DOMAINS": "CORP"},
    "two domains": {"APPBAN_MAIL_DOMAINS": "example.com,other.example"},
    "query user refused": {"APPBAN_QUERY_USER": "deny"},
}
QUERY_USERS = ["bob.roe", "jane.doe", "jane.doe@other.example"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Appban:
    """Jane's phone is blocked, Bob's clean; another jane.doe in another domain; a
    DeviceId that Ann's and Bob's devices both report."""
    ab = live_fleet(tmp_path_factory.mktemp("decide-corpus"))
    ab.ingest(
        device("OTHER-JANE", "jane.doe@other.example", ["EASOTHER"], [NOTES], at=wall(-60)),
        device("ANN-IPHONE", "ann.lee@example.com", ["EASSHARED"], [NOTES], at=wall(-60)),
        device("BOB-TABLET", "bob.roe@example.com", ["EASSHARED"], [NOTES], at=wall(-60)),
        now=wall(),
    )
    return ab


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:secret".encode()).decode()


@pytest.mark.parametrize("name", SETTINGS)
def test_decide_answers_as_the_gate(fleet: Appban, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = SETTINGS[name]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    mismatches = []
    seen: list[str] = []
    with GateProcess(fleet.db, env=env) as gate:
        for eas, user in itertools.product(DEVICE_IDS, USERS):
            uri = f"/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId={quote(eas)}&DeviceType=iPhone"
            served = gate.nginx(uri, Authorization=basic(user)) if user else gate.nginx(uri)
            decided = fleet("gate", "decide", "--eas-device-id", eas, "--user", user, now=wall())
            allowed = served.status == 204
            seen.append(served.reason)
            if (served.reason, allowed) != (decided["reason"], decided["decision"] == "allow"):
                mismatches.append((eas, user, served.reason, decided))
        # No credentials at all: only the query's User= names someone, if the setting allows.
        for eas, query_user in itertools.product(DEVICE_IDS, QUERY_USERS):
            uri = f"/Microsoft-Server-ActiveSync?Cmd=Sync&User={quote(query_user)}&DeviceId={quote(eas)}"
            served = gate.nginx(uri)
            seen.append(served.reason)
            decided = fleet("gate", "decide", "--eas-device-id", eas, "--query-user", query_user, now=wall())
            if (served.reason, served.status == 204) != (decided["reason"], decided["decision"] == "allow"):
                mismatches.append((eas, f"query {query_user}", served.reason, decided))
    assert mismatches == []
    # The corpus reaches every answer the gate gives for ActiveSync.
    assert {"ok", "blocked:tiktok-mail", "user_mismatch", "unknown_device", "no_device_id", "user_unverified"} <= set(
        seen
    )
