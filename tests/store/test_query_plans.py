"""The per-check-in and per-gate-poll queries use an index: none scans a table.

A scan costs nothing on a test database and tens of milliseconds per check-in on a
fleet of a million devices, so it is checked by the plan, not by a timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appban.store import open_store

HOT = {
    "device by source key": "SELECT id FROM devices WHERE source = ? AND source_id = ?",
    "devices by source id": "SELECT id FROM devices WHERE source_id = ?",
    "devices of an owner": "SELECT id FROM devices WHERE owner = ?",
    "devices by DeviceId": "SELECT device_id FROM device_eas WHERE eas_id = ?",
    "a device's DeviceIds, dropped": "DELETE FROM device_eas WHERE device_id = ?",
    "a device's observations": "SELECT app_key FROM observations WHERE device_id = ?",
    "a device's states": "SELECT policy_id FROM states WHERE device_id = ?",
    "a state": "SELECT state FROM states WHERE policy_id = ? AND device_id = ?",
    "an attestation": "SELECT max(attested_at) FROM attestations WHERE policy_id = ? AND device_id = ?",
    "gate changes": "SELECT id FROM devices WHERE gate_seq > ?",
    "gate tombstones": "SELECT eas_id FROM gate_tombstones WHERE seq > ?",
    "credential changes": "SELECT id FROM credentials WHERE seq > ?",
    "due states": "SELECT DISTINCT policy_id FROM states WHERE next_check IS NOT NULL AND next_check <= ?",
}


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_query_uses_an_index(tmp_path: Path, name: str) -> None:
    store = open_store(str(tmp_path / "plans.db"), create=True)
    sql = HOT[name]
    plan = store.db.execute("EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?")).fetchall()
    details = [row[-1] for row in plan]
    assert details, sql
    scans = [d for d in details if d.startswith("SCAN") and "USING" not in d]
    assert not scans, f"{name}: {details}"
    store.close()
