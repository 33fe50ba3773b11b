"""A clean check-in accepted by the API changes the gate's answer: ``gate decide`` at once,
and a running gate within its follow interval."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from helpers_gate import NOTES, TIKTOK, GateProcess, device, live_fleet, wait_for, wall
from helpers_serve import CHECKINS, ThreadServer, bearer

from helpers_cli import run


def test_a_clean_checkin_reaches_the_gate(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)  # Jane's phone has TikTok, past the deadline: blocked
    assert run("--db", ab.db, "source", "add", "agent").code == 0
    token = json.loads(run("--db", ab.db, "source", "token", "create", "agent", "--json").out)["token"]
    decide = ("--db", ab.db, "gate", "decide", "--eas-device-id", "EASJANE1", "--user", "jane.doe@example.com")
    assert json.loads(run(*decide, "--json").out)["decision"] == "deny"
    with GateProcess(ab.db, "--poll-interval", "0.1") as gate, ThreadServer(ab.db) as server:
        assert gate.sync("EASJANE1", "jane.doe@example.com").status == 403
        # Still there: ignored, the gate keeps denying.
        stale = device("JANE-IPHONE", "jane.doe@example.com", ["EASJANE1"], [TIKTOK, NOTES], at=wall(-1800))
        clean = device("JANE-IPHONE", "jane.doe@example.com", ["EASJANE1"], [NOTES], at=wall(-1))
        with httpx.Client(base_url=server.url, headers=bearer(token)) as c:
            r = c.post(CHECKINS, json=[stale])
            assert r.json()["results"][0]["status"] == "applied"
            assert gate.sync("EASJANE1", "jane.doe@example.com").status == 403
            r = c.post(CHECKINS, json=clean)
        assert r.status_code == 202 and r.json()["results"][0]["status"] == "applied"
        assert json.loads(run(*decide, "--json").out) == {"decision": "allow", "reason": "ok"}
        _, took = wait_for(lambda: gate.sync("EASJANE1", "jane.doe@example.com").status == 204, timeout=2)
        assert took < 1.0
