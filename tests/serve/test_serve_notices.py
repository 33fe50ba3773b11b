"""The notice sender inside ``appban serve``: a check-in that brings a person under a
policy gets them the memo through the server's own sender, and /metrics counts it."""

from __future__ import annotations

import json
import mailbox
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from helpers_serve import CHECKINS, Database, ServeProcess, bearer, checkin

from helpers_cli import run

TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_check_in_with_a_banned_app_gets_its_owner_the_memo_from_the_server(
    database: Database, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    people = tmp_path / "people.csv"
    people.write_text("email,name,org_unit,groups,timezone\nann@example.com,Ann Example,Sales,,Asia/Kolkata\n")
    assert run("--db", database.path, "people", "import", str(people)).code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "id: tiktok-mail\ntitle: No TikTok on phones that read company mail\napps: [tiktok]\n"
        f"effective: {iso(now - timedelta(hours=1))}\ndeadline: {iso(now + timedelta(days=7))}\n"
    )
    applied = run("--db", database.path, "policy", "apply", str(policy))
    assert applied.code == 0, applied.err
    mbox = tmp_path / "notices.mbox"
    env = {
        "APPBAN_NOTIFY_FILE": str(mbox),
        "APPBAN_NOTIFY_INTERVAL": "0.2",
        "APPBAN_PUBLIC_URL": "https://appban.example.com",
    }
    with ServeProcess(database.path, "--port", "0", env=env) as proc:
        with httpx.Client(base_url=proc.url) as c:
            body = json.dumps(
                checkin("ANN-PHONE", owner="ann@example.com", apps=[TIKTOK], at=iso(now), eas=["EASANN1"])
            )
            r = c.post(CHECKINS, content=body, headers={**bearer(database.token), "Content-Type": "application/json"})
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 20
            messages: list[mailbox.mboxMessage] = []
            while time.monotonic() < deadline and not messages:
                time.sleep(0.2)
                if mbox.exists():
                    box = mailbox.mbox(str(mbox))
                    try:
                        messages = list(box)
                    finally:
                        box.close()
            assert len(messages) == 1, proc.log
            metrics = c.get("/metrics").text
        assert proc.stop() == 0
    message = messages[0]
    assert message["To"].endswith("<ann@example.com>") or message["To"] == "ann@example.com"
    assert message["X-Appban-Kind"] == "memo"
    text = message.get_payload()[0].get_payload(decode=True).decode()
    assert "TikTok" in text and "https://appban.example.com/me/" in text
    assert 'appban_notices_total{result="sent"} 1' in metrics
    listed = json.loads(run("--db", database.path, "notify", "list", "--json").out)
    rows = listed["notices"] if isinstance(listed, dict) else listed
    assert [(n["kind"], n["state"]) for n in rows] == [("memo", "sent")]
