"""A write happens now or replays the past in order: it never goes back in time, nor ahead.

The probe: after the deadline blocked Jane's phone (``evaluate --now`` the next
morning), an ``evaluate --full`` (or an import) with an earlier ``--now`` recomputed
her state as of the evening before, and the gate let the blocked phone in. And a
write with a ``--now`` next year stored "blocked since next year", after which every
real write would have gone back in time. Reports take any ``--now``.
"""

from __future__ import annotations

from pathlib import Path

from helpers_cli import assert_bad_input, run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EAS = "V2UVOT7J157L7C1FLLSAABSOV4"


def _blocked(db: str) -> None:
    for args in (
        ("init", "--now", "2020-07-10T15:00:00Z"),
        ("import", "appban", str(EXAMPLES / "checkin.json"), "--now", "2020-07-10T15:30:00Z"),
        ("policy", "apply", str(EXAMPLES / "tiktok-mail.yaml"), "--now", "2020-07-10T16:00:00Z"),
        ("evaluate", "--now", "2020-07-11T08:00:00Z"),
    ):
        result = run("--db", db, *args)
        assert result.code == 0, (args, result.err)


def _decision(db: str, now: str) -> str:
    result = run("--db", db, "gate", "decide", "--eas-device-id", EAS, "--user", "jane.doe@example.com", "--now", now)
    assert result.code == 0, result.err
    return result.out.split()[0]


def test_a_write_cannot_go_back_in_time(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    _blocked(db)
    before = (tmp_path / "appban.db").read_bytes()
    for args in (
        ("evaluate", "--full"),
        ("evaluate",),
        ("import", "appban", str(EXAMPLES / "checkin.json")),
        ("attest", "--policy", "tiktok-mail", "--device", "dev-1", "--person", "jane.doe@example.com"),
    ):
        result = run("--db", db, *args, "--now", "2020-07-10T17:00:00Z")
        assert_bad_input(result, "--now", "2020-07-10T17:00:00Z", "2020-07-11T08:00:00Z")
    assert _decision(db, "2020-07-11T08:00:00Z") == "deny"
    # Reports still look back: the recorded history of the evening before.
    assert _decision(db, "2020-07-10T17:00:00Z") == "allow"
    assert run("--db", db, "status", "--now", "2020-07-10T17:00:00Z").code == 0
    assert (tmp_path / "appban.db").read_bytes() == before


def test_a_write_cannot_run_ahead_of_the_real_clock(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    _blocked(db)
    result = run("--db", db, "evaluate", "--now", "2099-07-10T16:30:00Z")
    assert_bad_input(result, "--now", "ahead of the real clock")
    # A report may look ahead.
    assert run("--db", db, "status", "--now", "2099-07-10T16:30:00Z").code == 0
    # Writes on the real clock (no --now) go on as before.
    assert run("--db", db, "evaluate").code == 0


def test_a_replay_in_order_is_accepted(tmp_path: Path) -> None:
    db = str(tmp_path / "appban.db")
    _blocked(db)
    assert run("--db", db, "evaluate", "--now", "2020-07-11T08:00:00Z").code == 0  # the same moment again
    assert run("--db", db, "evaluate", "--now", "2020-07-12T08:00:00Z").code == 0
