"""``name_matches``: what a banned app matched by its display name alone means."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_states import DEADLINE, EFFECTIVE, POLICY, facts

from appban.catalog import load_shipped
from appban.errors import BadInput
from appban.policy.model import parse_policy
from appban.policy.states import DETAIL_BY_NAME, compute

NAMED = "name:Xender"
WECHAT = "com.tencent.mm"
BEFORE_DEADLINE = EFFECTIVE + 1
AFTER_DEADLINE = DEADLINE + 1


def test_by_default_a_name_match_counts_as_present() -> None:
    f = facts(present=[NAMED], by_name=frozenset({NAMED}))
    assert compute(POLICY, f, AFTER_DEADLINE).state == "blocked"
    assert compute(POLICY, f, BEFORE_DEADLINE).state == "violating"


@pytest.mark.parametrize(("on_unverified", "deny"), [("allow", ""), ("block", "unverified:tiktok-mail")])
def test_unverified_makes_a_name_only_match_prove_nothing(on_unverified: str, deny: str) -> None:
    policy = replace(POLICY, name_matches="unverified", on_unverified=on_unverified)
    out = compute(policy, facts(present=[NAMED], by_name=frozenset({NAMED})), AFTER_DEADLINE)
    assert (out.state, out.detail, out.deny) == ("unverified", f"{DETAIL_BY_NAME}: {NAMED}", deny)


def test_an_identifier_match_beside_a_name_match_still_blocks() -> None:
    policy = replace(POLICY, name_matches="unverified")
    out = compute(policy, facts(present=[NAMED, WECHAT], by_name=frozenset({NAMED})), AFTER_DEADLINE)
    assert (out.state, out.detail) == ("blocked", f"present: {WECHAT}")


def test_without_a_name_match_the_setting_changes_nothing() -> None:
    for present in ([], [WECHAT]):
        f = facts(present=present)
        assert compute(replace(POLICY, name_matches="unverified"), f, AFTER_DEADLINE) == compute(
            POLICY, f, AFTER_DEADLINE
        )


_BASE = "id: p\ntitle: T\napps: [list:india-2020-06-29]\n"
_BASE += "effective: 2020-07-10T16:00:00Z\ndeadline: 2020-07-11T06:59:00Z\n"


def test_a_policy_file_sets_name_matches_and_bans_the_list() -> None:
    from appban.catalog import Catalog

    data = load_shipped()
    catalog = Catalog(1, data.identifiers, {f: {"title": b.title} for f, b in data.families.items()}, lists=data.lists)
    policy = parse_policy(_BASE + "name_matches: unverified\n", catalog)
    assert policy.name_matches == "unverified"
    assert len(policy.families) == 59 and "wechat" in policy.families and not policy.explicit
    assert parse_policy(_BASE, catalog).name_matches == "count"
    with pytest.raises(BadInput) as err:
        parse_policy(_BASE + "name_matches: sometimes\n", catalog, file="p.yaml")
    assert err.value.field == "name_matches" and err.value.line == 6
