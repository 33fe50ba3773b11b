"""Durations as the policy file wrote them: ``24h`` stays ``24h`` (not ``1d``) when shown."""

from __future__ import annotations

import json

import msgspec

from appban.catalog import Catalog
from appban.policy.model import Policy, parse_policy
from helpers_cli import POLICY_YAML, Fleet


def _written(max_age: str, reminders: str) -> str:
    text = POLICY_YAML.replace("max_inventory_age: 7d", f"max_inventory_age: {max_age}")
    return text.replace("reminders: [24h, 2h]", f"reminders: {reminders}")


def test_policy_show_prints_durations_as_written(fleet: Fleet) -> None:
    path = fleet.write("policy.yaml", _written("24h", "[48h, 90m, 1d12h]"))
    assert fleet.run("policy", "apply", str(path)).code == 0
    result = fleet.run("policy", "show", "tiktok-mail", "--json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["max_inventory_age"] == "24h"
    assert shown["reminders"] == ["48h", "90m", "1d12h"]
    text = fleet.run("policy", "show", "tiktok-mail")
    assert "24h" in text.out and "1d12h" in text.out


def test_the_same_durations_written_otherwise_are_the_same_rule_in_effect(fleet: Fleet) -> None:
    """A new notation is a new revision (the file changed), but nothing it decides changes."""
    path = fleet.write("policy.yaml", _written("168h", "[1d, 2h]"))
    result = fleet.run("policy", "apply", str(path), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["state_changes"] == 0
    shown = json.loads(fleet.run("policy", "show", "tiktok-mail", "--json").out)
    assert (shown["max_inventory_age"], shown["reminders"]) == ("168h", ["1d", "2h"])


def test_a_policy_stored_before_durations_kept_their_text_still_loads() -> None:
    """Stored bodies used to hold appban's notation (``1d``): read back the same way."""
    policy = parse_policy(_written("24h", "[24h, 2h]"), _catalog())
    old = policy.to_json()
    old["max_inventory_age"], old["reminders"] = "1d", ["1d", "2h"]
    again = Policy.from_json(msgspec.json.decode(msgspec.json.encode(old)))
    assert again.max_inventory_age == policy.max_inventory_age
    assert again.reminders == policy.reminders
    assert again.to_json()["max_inventory_age"] == "1d"


def test_to_json_round_trips_the_written_text() -> None:
    policy = parse_policy(_written(" 36h ", "[90m, 1d 12h]"), _catalog())
    body = policy.to_json()
    assert (body["max_inventory_age"], body["reminders"]) == ("36h", ["90m", "1d 12h"])
    assert Policy.from_json(body).to_json() == body
    assert policy.max_inventory_age == 36 * 3600 * 1_000_000


def _catalog() -> Catalog:
    return Catalog(1, [], {"tiktok": {"name": "TikTok"}})
