"""SPEC's compliance states as a pure function of (policy, facts, time).

Every state, every boundary time (exactly at the deadline, at an exemption's end, at
the moment an inventory becomes too old), the scope rules, and the promise the
evaluator relies on: nothing changes between ``now`` and the ``next_check`` it returns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appban.clock import parse_time
from appban.policy.evaluator import decision_from
from appban.policy.model import Policy, Scope
from appban.policy.states import STATES, Facts, compute, in_scope

HOUR = 3600 * 1_000_000
DAY = 24 * HOUR
EFFECTIVE = parse_time("2020-07-10T16:00:00Z")
DEADLINE = parse_time("2020-07-11T06:59:00Z")
SEEN = parse_time("2020-07-10T15:00:00Z")

POLICY = Policy(
    id="tiktok-mail",
    title="TikTok",
    apps=("tiktok",),
    effective=EFFECTIVE,
    deadline=DEADLINE,
    scope=Scope(platforms=("ios", "ipados", "android"), exclude_groups=("security-research",)),
    max_inventory_age=7 * DAY,
)


def policy(**changes: Any) -> Policy:
    return replace(POLICY, **changes)


def scope(**changes: Any) -> Policy:
    return replace(POLICY, scope=replace(POLICY.scope, **changes))


def facts(**changes: Any) -> Facts:
    base = Facts(
        platform="android",
        ownership="personal",
        groups=frozenset({"staff"}),
        mail_access=True,
        inventory_scope="full",
        observed_at=SEEN,
        catalog_version=1,
        present=[],
    )
    return replace(base, **changes)


TIKTOK = ["com.zhiliaoapp.musically"]


# -- scope ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("android", True),
        ("ios", True),
        ("ipados", True),
        ("macos", False),
        ("windows", False),
        ("chromeos", False),
        ("linux", False),
    ],
)
def test_scope_platforms(platform: str, expected: bool) -> None:
    assert in_scope(POLICY, facts(platform=platform)) is expected
    state = compute(POLICY, facts(platform=platform, present=TIKTOK), EFFECTIVE).state
    assert state == ("violating" if expected else "out_of_scope")


def test_empty_platform_list_means_every_platform() -> None:
    assert in_scope(scope(platforms=()), facts(platform="windows"))


def test_mail_access_required_leaves_out_devices_without_mail() -> None:
    out = compute(POLICY, facts(mail_access=False, present=TIKTOK), DEADLINE)
    assert (out.state, out.deny, out.next_check) == ("out_of_scope", "", None)
    assert compute(POLICY, facts(mail_access=True, present=TIKTOK), DEADLINE).state == "blocked"


def test_mail_access_any_includes_devices_without_mail() -> None:
    p = scope(mail_access="any")
    assert compute(p, facts(mail_access=False, present=TIKTOK), DEADLINE).state == "blocked"
    assert compute(p, facts(mail_access=True, present=TIKTOK), DEADLINE).state == "blocked"


@pytest.mark.parametrize(
    ("ownership", "device", "expected"),
    [
        ("any", "personal", True),
        ("any", "corporate", True),
        ("any", "unknown", True),
        ("corporate", "corporate", True),
        ("corporate", "personal", False),
        ("corporate", "unknown", False),
        ("personal", "personal", True),
        ("personal", "corporate", False),
        ("personal", "unknown", False),
    ],
)
def test_scope_ownership(ownership: str, device: str, expected: bool) -> None:
    assert in_scope(scope(ownership=ownership), facts(ownership=device)) is expected


def test_include_groups_need_one_common_group() -> None:
    p = scope(include_groups=("sales", "support"))
    assert in_scope(p, facts(groups=frozenset({"support", "staff"})))
    assert not in_scope(p, facts(groups=frozenset({"staff"})))
    assert not in_scope(p, facts(groups=frozenset()))


def test_empty_include_groups_mean_everyone_even_without_groups() -> None:
    assert in_scope(POLICY, facts(groups=frozenset()))


def test_exclude_groups_win_over_include_groups() -> None:
    p = scope(include_groups=("staff",))
    assert not in_scope(p, facts(groups=frozenset({"staff", "security-research"})))
    assert compute(p, facts(groups=frozenset({"security-research"}), present=TIKTOK), DEADLINE).state == "out_of_scope"


# -- compliant, violating, blocked ----------------------------------------------------------


def test_full_inventory_without_the_app_is_compliant_until_it_ages() -> None:
    out = compute(POLICY, facts(), EFFECTIVE)
    assert (out.state, out.deny) == ("compliant", "")
    assert out.next_check == SEEN + 7 * DAY + 1  # the first moment it is *older* than 7d


def test_present_before_the_deadline_is_violating_and_wakes_at_the_deadline() -> None:
    out = compute(POLICY, facts(present=TIKTOK), EFFECTIVE)
    assert (out.state, out.deny, out.next_check) == ("violating", "", DEADLINE)
    assert "com.zhiliaoapp.musically" in out.detail


def test_one_microsecond_before_the_deadline_is_still_violating() -> None:
    assert compute(POLICY, facts(present=TIKTOK), DEADLINE - 1).state == "violating"


def test_exactly_at_the_deadline_is_blocked() -> None:
    out = compute(POLICY, facts(present=TIKTOK), DEADLINE)
    assert (out.state, out.deny, out.next_check) == ("blocked", "blocked:tiktok-mail", None)


def test_monitor_mode_never_blocks() -> None:
    p = policy(mode="monitor")
    for now in (EFFECTIVE, DEADLINE - 1, DEADLINE, DEADLINE + 365 * DAY):
        out = compute(p, facts(present=TIKTOK), now)
        assert (out.state, out.deny) == ("violating", "")
        assert out.next_check is None  # nothing will ever change by time alone


def test_monitor_mode_never_denies_unverified_either() -> None:
    p = policy(mode="monitor", on_unverified="block")
    out = compute(p, facts(inventory_scope="managed"), DEADLINE + DAY)
    assert (out.state, out.deny) == ("unverified", "")


def test_a_managed_inventory_that_shows_the_app_proves_presence() -> None:
    assert compute(POLICY, facts(inventory_scope="managed", present=TIKTOK), DEADLINE).state == "blocked"


def test_a_stale_inventory_that_showed_the_app_still_blocks() -> None:
    # Presence was seen; age only weakens a proof of absence.
    out = compute(POLICY, facts(present=TIKTOK), SEEN + 30 * DAY)
    assert (out.state, out.deny) == ("blocked", "blocked:tiktok-mail")


# -- unverified -----------------------------------------------------------------------------


def test_no_inventory_is_unverified() -> None:
    out = compute(POLICY, facts(observed_at=None), EFFECTIVE)
    assert (out.state, out.deny) == ("unverified", "")
    assert "no inventory" in out.detail


def test_managed_scope_cannot_prove_absence() -> None:
    out = compute(POLICY, facts(inventory_scope="managed"), EFFECTIVE)
    assert out.state == "unverified"
    assert "managed" in out.detail


def test_an_inventory_is_stale_once_older_than_max_inventory_age() -> None:
    exactly = SEEN + 7 * DAY  # exactly max_inventory_age old: not older than it
    assert compute(POLICY, facts(), exactly).state == "compliant"
    assert compute(POLICY, facts(), exactly).next_check == exactly + 1
    out = compute(POLICY, facts(), exactly + 1)
    assert out.state == "unverified"
    assert "max_inventory_age" in out.detail


def test_a_shorter_max_inventory_age_ages_sooner() -> None:
    p = policy(max_inventory_age=2 * HOUR)
    assert compute(p, facts(), SEEN + 2 * HOUR).state == "compliant"
    assert compute(p, facts(), SEEN + 2 * HOUR + 1).state == "unverified"


def test_snapshot_filtered_against_an_older_catalog_cannot_prove_absence() -> None:
    out = compute(POLICY, facts(catalog_version=1), EFFECTIVE, required_catalog=2)
    assert out.state == "unverified"
    assert "catalog" in out.detail
    assert compute(POLICY, facts(catalog_version=2), EFFECTIVE, required_catalog=2).state == "compliant"
    assert compute(POLICY, facts(catalog_version=3), EFFECTIVE, required_catalog=2).state == "compliant"


def test_a_snapshot_kept_whole_proves_absence_whatever_the_catalog_version() -> None:
    assert compute(POLICY, facts(catalog_version=None), EFFECTIVE, required_catalog=9).state == "compliant"


def test_on_unverified_allow_never_denies() -> None:
    out = compute(POLICY, facts(inventory_scope="managed"), DEADLINE + DAY)
    assert (out.state, out.deny, out.next_check) == ("unverified", "", None)


def test_on_unverified_block_denies_from_the_deadline() -> None:
    p = policy(on_unverified="block")
    before = compute(p, facts(inventory_scope="managed"), DEADLINE - 1)
    assert (before.state, before.deny, before.next_check) == ("unverified", "", DEADLINE)
    at = compute(p, facts(inventory_scope="managed"), DEADLINE)
    assert (at.state, at.deny, at.next_check) == ("unverified", "unverified:tiktok-mail", None)


def test_on_unverified_block_applies_to_stale_inventories() -> None:
    p = policy(on_unverified="block", max_inventory_age=HOUR)
    out = compute(p, facts(), DEADLINE)
    assert (out.state, out.deny) == ("unverified", "unverified:tiktok-mail")


# -- exempt ---------------------------------------------------------------------------------


def test_an_active_exemption_wins_over_blocked_and_ends_exactly_at_until() -> None:
    until = DEADLINE + DAY
    f = facts(present=TIKTOK, exemptions=((EFFECTIVE, until, "travelling"),))
    during = compute(POLICY, f, DEADLINE)
    assert (during.state, during.deny, during.next_check) == ("exempt", "", until)
    assert "travelling" in during.detail
    assert compute(POLICY, f, until - 1).state == "exempt"
    after = compute(POLICY, f, until)
    assert (after.state, after.deny) == ("blocked", "blocked:tiktok-mail")


def test_an_exemption_starts_exactly_at_its_start() -> None:
    starts = DEADLINE + HOUR
    f = facts(present=TIKTOK, exemptions=((starts, starts + DAY, "later"),))
    before = compute(POLICY, f, starts - 1)
    assert before.state == "blocked"
    assert before.next_check == starts  # the evaluator must wake up for it
    assert compute(POLICY, f, starts).state == "exempt"


def test_the_longest_of_overlapping_exemptions_counts() -> None:
    f = facts(
        present=TIKTOK,
        exemptions=((EFFECTIVE, DEADLINE + HOUR, "a"), (EFFECTIVE, DEADLINE + DAY, "b")),
    )
    out = compute(POLICY, f, DEADLINE)
    assert (out.state, out.next_check) == ("exempt", DEADLINE + DAY)


def test_an_exemption_does_not_bring_a_device_into_scope() -> None:
    f = facts(platform="macos", exemptions=((EFFECTIVE, DEADLINE + DAY, "x"),))
    assert compute(POLICY, f, DEADLINE).state == "out_of_scope"


def test_an_exemption_covers_an_unverified_device_under_on_unverified_block() -> None:
    p = policy(on_unverified="block")
    f = facts(inventory_scope="managed", exemptions=((EFFECTIVE, DEADLINE + DAY, "x"),))
    assert (compute(p, f, DEADLINE).state, compute(p, f, DEADLINE).deny) == ("exempt", "")
    assert compute(p, f, DEADLINE + DAY).deny == "unverified:tiktok-mail"


# -- attestation ----------------------------------------------------------------------------


def test_attestation_after_the_snapshot_makes_a_device_compliant() -> None:
    out = compute(POLICY, facts(present=TIKTOK, attested_at=SEEN + HOUR), DEADLINE)
    assert (out.state, out.deny) == ("compliant", "")
    assert "attested" in out.detail


def test_a_later_inventory_showing_the_app_overrides_an_attestation() -> None:
    out = compute(
        POLICY,
        facts(present=TIKTOK, observed_at=SEEN + 2 * HOUR, attested_at=SEEN + HOUR),
        DEADLINE,
    )
    assert (out.state, out.deny) == ("blocked", "blocked:tiktok-mail")


def test_an_inventory_from_the_moment_of_attestation_does_not_override_it() -> None:
    # "a later inventory" is strictly later.
    out = compute(POLICY, facts(present=TIKTOK, observed_at=SEEN, attested_at=SEEN), DEADLINE)
    assert out.state == "compliant"


def test_attestation_is_what_makes_a_managed_device_compliant() -> None:
    assert compute(POLICY, facts(inventory_scope="managed"), DEADLINE).state == "unverified"
    f = facts(inventory_scope="managed", attested_at=SEEN + HOUR)
    p = policy(on_unverified="block")
    out = compute(p, f, DEADLINE + 30 * DAY)
    assert (out.state, out.deny) == ("compliant", "")


def test_attestation_does_not_override_an_active_exemption() -> None:
    f = facts(present=TIKTOK, attested_at=SEEN + HOUR, exemptions=((EFFECTIVE, DEADLINE + DAY, "x"),))
    assert compute(POLICY, f, DEADLINE).state == "exempt"


# -- decisions from states ------------------------------------------------------------------


def test_decision_from_no_denies_is_allow_ok() -> None:
    assert decision_from([]) == ("allow", "ok")


def test_decision_ignores_states_that_deny_nothing() -> None:
    assert decision_from(["", ""]) == ("allow", "ok")
    assert decision_from(["", "unverified:b"]) == ("deny", "unverified:b")


def test_decision_prefers_blocked_over_unverified_then_policy_id() -> None:
    assert decision_from(["unverified:a", "blocked:z", "blocked:m"]) == ("deny", "blocked:m")
    assert decision_from(["unverified:b", "unverified:a"]) == ("deny", "unverified:a")


# -- the promise behind next_check ----------------------------------------------------------

_times = st.integers(min_value=SEEN - 2 * DAY, max_value=DEADLINE + 20 * DAY)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[Policy, Facts, int, int]:
    p = policy(
        mode=draw(st.sampled_from(["enforce", "monitor"])),
        on_unverified=draw(st.sampled_from(["allow", "block"])),
        max_inventory_age=draw(st.sampled_from([HOUR, DAY, 7 * DAY])),
    )
    exemptions = tuple(
        (start, start + length, "x")
        for start, length in draw(st.lists(st.tuples(_times, st.integers(1, 10 * DAY)), max_size=2) | st.just([]))
    )
    # Mostly in scope, with a fresh full inventory and no attestation: the interesting cases.
    f = facts(
        platform=draw(st.sampled_from(["android", "ios", "android", "macos"])),
        mail_access=draw(st.sampled_from([True, True, True, False])),
        inventory_scope=draw(st.sampled_from(["full", "full", "managed"])),
        observed_at=draw(st.one_of(_times, _times, st.none())),
        catalog_version=draw(st.sampled_from([None, 2, 2, 1])),
        present=draw(st.sampled_from([[], TIKTOK])),
        attested_at=draw(st.sampled_from([None, None, None]) | _times),
        exemptions=exemptions,
    )
    return p, f, draw(_times), draw(st.integers(0, 30 * DAY))


@settings(max_examples=500, deadline=None)
@given(_cases())
def test_nothing_changes_before_next_check(case: tuple[Policy, Facts, int, int]) -> None:
    """The evaluator sleeps until next_check: the outcome must hold until then."""
    p, f, now, step = case
    out = compute(p, f, now, required_catalog=2)
    assert out.state in STATES
    # Every moment the answer could turn on, and a few others.
    moments = [now + step, now + 400 * DAY, p.deadline - 1, p.deadline]
    if f.observed_at is not None:
        moments += [f.observed_at + p.max_inventory_age + d for d in (-1, 0, 1)]
    for starts, until, _why in f.exemptions:
        moments += [starts - 1, starts, until - 1, until]
    if out.next_check is not None:
        assert out.next_check > now
        moments.append(out.next_check - 1)
    probes = [t for t in moments if t > now and (out.next_check is None or t < out.next_check)]
    for later in probes:
        again = compute(p, f, later, required_catalog=2)
        assert (again.state, again.deny) == (out.state, out.deny), (now, later, out, again)


# -- effective: "state is computed from here" (SPEC) ----------------------------------------------


def test_before_effective_no_one_is_held_by_the_policy() -> None:
    out = compute(POLICY, facts(present=TIKTOK), EFFECTIVE - 1)
    assert (out.state, out.deny, out.next_check) == ("out_of_scope", "", EFFECTIVE)
    assert "not yet effective" in out.detail


def test_at_effective_states_are_computed() -> None:
    assert compute(POLICY, facts(present=TIKTOK), EFFECTIVE).state == "violating"
    assert compute(POLICY, facts(), EFFECTIVE).state == "compliant"
