"""The synthetic company: the shares the demo's story depends on, and its determinism."""

from __future__ import annotations

import io
import random
from collections import Counter

import pytest
from rich.console import Console

from appban import output
from appban.progress import tracker
from appban.sim.fleet import SECURITY_RESEARCH, SOCIAL_MEDIA, build_company
from appban.sim.timeline import default_timeline

MOBILE = ("ios", "ipados", "android")


def test_the_company_looks_like_one() -> None:
    t = default_timeline()
    company = build_company(4000, random.Random(1), t)
    assert len(company.people) == 4000
    assert len({p.email for p in company.people}) == 4000
    platforms = Counter(d.device.platform for d in company.devices)
    assert set(platforms) == {"ios", "ipados", "android", "macos", "windows"}
    phones = [d for d in company.devices if d.device.platform in MOBILE]
    with_tiktok = [d for d in phones if d.tiktok is not None]
    assert 0.08 < len(with_tiktok) / len(phones) < 0.16
    variants = Counter(d.tiktok.id for d in with_tiktok if d.tiktok)
    assert variants.most_common(1)[0][0] == "com.zhiliaoapp.musically"
    assert {"com.zhiliaoapp.musically.go", "com.ss.android.ugc.trill"} <= set(variants)
    ios_tiktok = {d.tiktok.id for d in with_tiktok if d.tiktok and d.device.platform == "ios"}
    assert "com.zhiliaoapp.musically" in ios_tiktok
    mail = [d for d in phones if d.device.eas_device_ids]
    assert 0.8 < len(mail) / len(phones) < 0.98
    managed = [d for d in mail if d.device.inventory_scope == "managed"]
    assert managed and all(d.device.ownership == "personal" and d.tiktok is None for d in managed)
    for d in company.devices:
        if d.device.platform in MOBILE and d.device.inventory_scope == "full":
            assert 20 <= len(d.apps) <= 40  # a realistic phone, not a list of one app
        assert d.first_seen < t.effective
        if d.removal_at is not None:
            assert d.tiktok is not None and t.effective <= d.removal_at
    assert {p.timezone for p in company.people} >= {"America/Los_Angeles", "Europe/London"}
    assert any(SECURITY_RESEARCH in p.groups for p in company.people)


def test_the_exempt_person_and_the_attester() -> None:
    company = build_company(50, random.Random(3), default_timeline())
    person = company.exempt_person
    assert SOCIAL_MEDIA in person.groups
    theirs = [d for d in company.devices if d.device.owner == person.email and d.tiktok]
    assert theirs and all(d.removal_at is None for d in theirs)  # they keep it, exempted
    attester = company.attester.device
    assert attester.inventory_scope == "managed" and attester.eas_device_ids


def test_same_seed_same_company() -> None:
    t = default_timeline()
    a, b = (build_company(300, random.Random(9), t) for _ in range(2))
    assert a.people == b.people
    assert [(d.device, d.first_seen, d.refresh_at, d.removal_at) for d in a.devices] == [
        (d.device, d.first_seen, d.refresh_at, d.removal_at) for d in b.devices
    ]


def test_the_progress_bar_shows_the_phase_and_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal: the phase and how far it got; disabled (a pipe, --json): nothing at all."""
    screens: list[io.StringIO] = []

    def terminal(stderr: bool = False) -> Console:
        assert stderr, "progress goes to stderr, never into the output"
        screens.append(io.StringIO())
        return Console(file=screens[-1], force_terminal=True, width=80)

    monkeypatch.setattr(output, "console", terminal)
    with tracker(enabled=False) as progress:
        progress.phase("nothing", total=3)
        progress.advance(3)
    assert screens == []
    with tracker(enabled=True) as progress:
        progress.phase("checking", total=2)
        progress.advance(2)
    [screen] = screens
    assert "checking" in screen.getvalue() and "2/2" in screen.getvalue()
