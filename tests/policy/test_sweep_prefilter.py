"""The SQL pre-filter of a policy-wide sweep must never skip a row whose state would change.

A random fleet is evaluated, then its facts are changed behind the evaluator's back
(groups, ownership, inventory scope, catalog version, time), and ``evaluate_policy``
must leave every stored state equal to what the pure state function says.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from appban.clock import parse_time
from appban.inventory.checkin import App, Checkin, Device
from appban.inventory.ingest import Ingestor
from appban.policy.lifecycle import apply
from appban.report.views import _computed
from appban.store.records import Person
from appban.workspace import Workspace

T0 = parse_time("2020-07-10T12:00:00Z")
HOUR = 3600 * 1_000_000
PLATFORMS = ["ios", "ipados", "android", "macos", "windows", "chromeos"]
GROUPS = ["eng", "sales", "security-research", "exec"]


def _policy_yaml(rng: random.Random) -> str:
    platforms = rng.choice([[], ["ios", "android"], ["android", "chromeos"], ["ios", "ipados", "android"]])
    include = rng.choice([[], ["eng"], ["eng", "sales"]])
    exclude = rng.choice([[], ["security-research"], ["exec", "sales"]])
    return "\n".join(
        [
            "id: sweep-test",
            "title: sweep test",
            "apps: [tiktok]",
            "scope:",
            f"  platforms: [{', '.join(platforms)}]",
            f"  mail_access: {rng.choice(['required', 'any'])}",
            f"  ownership: {rng.choice(['any', 'corporate', 'personal'])}",
            f"  include_groups: [{', '.join(include)}]",
            f"  exclude_groups: [{', '.join(exclude)}]",
            "effective: 2020-07-10T16:00:00Z",
            "deadline: 2020-07-12T16:00:00Z",
            f"mode: {rng.choice(['enforce', 'monitor'])}",
            f"on_unverified: {rng.choice(['allow', 'block'])}",
            f"max_inventory_age: {rng.choice(['6h', '1d', '7d'])}",
            "",
        ]
    )


def _checkin(rng: random.Random, i: int) -> Checkin:
    apps = [App(id=f"com.example.app{k}", name=f"App {k}") for k in range(rng.randrange(1, 4))]
    if rng.random() < 0.25:
        apps.append(
            App(
                id=rng.choice(["com.zhiliaoapp.musically", "com.ss.android.ugc.trill"]),
                name="TikTok",
            )
        )
    device = Device(
        id=f"dev{i}",
        platform=rng.choice(PLATFORMS),
        owner=None if i % 17 == 0 else f"user{i % 40}@example.com",
        ownership=rng.choice(["corporate", "personal", "unknown"]),
        eas_device_ids=[f"EAS{i}"] if rng.random() < 0.7 else [],
        inventory_scope=rng.choice(["full", "full", "managed", "none"]),
        mail_access=rng.choice([None, None, True, False]),
    )
    observed = T0 - rng.randrange(0, 10 * 24) * HOUR
    return Checkin("agent", device, observed, apps, [a.id for a in apps])


@pytest.mark.parametrize("seed", range(12))
def test_sweep_matches_the_state_function(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ws = Workspace(str(tmp_path / "sweep.db"), T0, create=True)
    with ws.writing():
        ws.store.put_people(
            [Person(f"user{k}@example.com", groups=tuple(rng.sample(GROUPS, rng.randrange(0, 3)))) for k in range(35)],
            T0,
        )
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
    with ws.writing():
        for i in range(250):
            ingestor.ingest(_checkin(rng, i), ws.now)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(_policy_yaml(rng))
    apply(ws, str(policy_file), dry_run=False)

    # Change facts through the store without evaluating, as another writer or a bug might.
    with ws.writing():
        regrouped = [k for k in range(35) if str(k).startswith("1")]
        ws.store.put_people([Person(f"user{k}@example.com", groups=("eng", "exec")) for k in regrouped], T0)
        for device in list(ws.store.iter_devices()):
            assert device.id is not None
            changed = replace(
                device,
                ownership="corporate" if device.id % 7 == 0 else device.ownership,
                inventory_scope="full" if device.id % 5 == 0 else device.inventory_scope,
                catalog_version=0 if device.id % 11 == 0 else device.catalog_version,
                eas_ids=() if device.id % 13 == 0 else device.eas_ids,
            )
            if changed != device:
                ws.store.update_device(changed, device.eas_ids)

    for step in (0, 6, 30, 60):
        now = T0 + step * HOUR
        policy = ws.evaluator.policies[0]
        with ws.writing():
            ws.evaluator.evaluate_policy(policy, now, "evaluate")
        expected = _computed(ws, policy, now, "all")
        stored = {r.device_id: r for r in ws.store.state_rows(policy.id)}
        assert stored.keys() == expected.keys()
        for device_id, (out, _boundary) in expected.items():
            row = stored[device_id]
            got = (row.state, row.detail, row.deny, row.next_check)
            want = (out.state, out.detail, out.deny, out.next_check)
            assert got == want, (seed, step, device_id, got, want)
    ws.close()


def test_policy_wide_moments_are_swept_and_recorded_when_they_happened(tmp_path: Path) -> None:
    """Enough devices wake at effective and at the deadline to take the sweep path; the
    result must equal the state function, with each change recorded at its moment."""
    from appban.store.records import Exemption

    rng = random.Random(99)
    ws = Workspace(str(tmp_path / "wide.db"), T0, create=True)
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
    with ws.writing():
        for i in range(1_300):
            ingestor.ingest(_checkin(rng, i), ws.now)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(
        "\n".join(
            [
                "id: sweep-test",
                "title: sweep test",
                "apps: [tiktok]",
                "scope: {platforms: [ios, ipados, android], mail_access: required}",
                "effective: 2020-07-11T00:00:00Z",
                "deadline: 2020-07-12T16:00:00Z",
                "on_unverified: block",
                "max_inventory_age: 10d",
                "",
            ]
        )
    )
    apply(ws, str(policy_file), dry_run=False)  # at T0: before effective, so everyone waits
    policy = ws.evaluator.policies[0]
    assert ws.store.due_count(policy.id, policy.effective) == ws.store.count_devices()
    with ws.writing():  # an exemption ends between effective and the deadline
        ws.store.add_exemption(Exemption(0, policy.id, "user3@example.com", None, T0, policy.effective + HOUR, "x", T0))
    ws.evaluator.reload()

    now = policy.deadline + 10 * HOUR
    with ws.writing():
        ws.evaluator.evaluate_due(now)
    expected = _computed(ws, policy, now, "all")
    stored = {r[0]: r for r in ws.store.state_rows(policy.id)}
    for device_id, (out, _since) in expected.items():
        row = stored[device_id]
        assert (row[1], row[3], row[4]) == (out.state, out.detail, out.deny), device_id
    moments = {at for _p, _d, old, _new, at, _c in ws.store.history(policy_id=policy.id) if old is not None}
    assert policy.effective in moments  # the mass change, at effective
    assert policy.deadline in moments  # blocks and unverified denials, at the deadline
    assert min(moments) == policy.effective  # nothing changed before the policy took effect
    ws.close()
