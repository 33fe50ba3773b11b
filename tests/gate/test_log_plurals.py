"""The gate's log agrees with its numbers: "1 state change", "1 connection open"."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers_gate import PEOPLE, TIKTOK, GateProcess, device, live_fleet, request, wait_for, wall

from helpers_semantics import Appban


def test_one_time_driven_change_is_singular(tmp_path: Path) -> None:
    # One phone with TikTok; the deadline has passed and nobody evaluated: the gate blocks
    # it, one change.
    ab = Appban(tmp_path)
    ab.init(now=wall(-7200))
    ab.people(PEOPLE, now=wall(-7200))
    ab.ingest(device("JANE-IPHONE", "jane.doe@example.com", ["EASJANE1"], [TIKTOK], at=wall(-3600)), now=wall(-3500))
    ab.apply(now=wall(-3000), effective=wall(-3000), deadline=wall(-60), reminders=[])
    with GateProcess(ab.db, "--evaluate-interval", "0.1") as gate:
        line, _took = wait_for(
            lambda: next((x for x in gate.log if "time-driven evaluation:" in x), None),
            timeout=30,
        )
    assert "time-driven evaluation: 1 state change\n" in line, line


def test_one_open_connection_is_singular(tmp_path: Path) -> None:
    ab = live_fleet(tmp_path)
    gate = GateProcess(ab.db, "--no-evaluate")
    try:
        conn = gate.connection()  # one keep-alive connection, open when the gate stops
        assert request(conn, "/healthz").status == 200
        gate.proc.send_signal(signal.SIGTERM)
        assert gate.proc.wait(10) == 0
        conn.close()
    finally:
        gate.stop()
    log = "".join(gate.log)
    assert "stopping: 1 connection open\n" in log, log
