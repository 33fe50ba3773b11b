"""``apps: [list:india-2020-06-29]`` through the command line: dry run, apply, states,
the gate; name-only matches under both settings; ``catalog update`` on a running
database."""

from __future__ import annotations

from typing import Any

from helpers_semantics import AFTER, APPLIED, BEFORE, NEXT_DAY, Appban, checkin

INDIA = "list:india-2020-06-29"
WECHAT = {"id": "com.tencent.mm", "name": "WeChat", "version": "7.0.15"}


def _fleet(ab: Appban) -> None:
    ab.ingest(
        checkin("wechat-phone", owner="ann@example.com", apps=[WECHAT]),
        checkin("camscanner-iphone", platform="ios", owner="bob@example.com", apps=[{"id": "com.tencent.xin"}]),
        checkin("clean-phone", owner="cy@example.com"),
        checkin("named-phone", owner="di@example.com", apps=[{"name": "Xender"}]),
        checkin("generic-phone", owner="ed@example.com", apps=[{"name": "Cache Cleaner"}]),
        checkin("tiktok-phone", owner="fo@example.com", apps=[{"id": "com.zhiliaoapp.musically"}]),
    )


def _states(ab: Appban, now: str, policy: str = "tiktok-mail") -> dict[str, str]:
    return {
        d: ab.state(d, now, policy)
        for d in ("wechat-phone", "camscanner-iphone", "clean-phone", "named-phone", "generic-phone", "tiktok-phone")
    }


def test_a_policy_banning_the_list_covers_its_families_end_to_end(ab: Appban) -> None:
    _fleet(ab)
    preview = ab.apply(apps=[INDIA], dry_run=True)
    assert preview["dry_run"] is True
    assert ab.sql("SELECT count(*) FROM policies") == [(0,)]
    applied = ab.apply(apps=[INDIA])
    assert applied["status"] == "active"
    ab("evaluate", now=AFTER)
    assert _states(ab, AFTER) == {
        "wechat-phone": "blocked",  # com.tencent.mm: WeChat on Android
        "camscanner-iphone": "blocked",  # com.tencent.xin: WeChat's iOS bundle id
        "clean-phone": "compliant",
        "named-phone": "blocked",  # "Xender" is distinctive enough to match alone (by default it counts)
        "generic-phone": "compliant",  # "Cache Cleaner" never matches without an identifier
        "tiktok-phone": "blocked",  # TikTok is on the list too
    }
    assert ab.decide("EAS-wechat-phone", "ann@example.com", AFTER) == ("deny", "blocked:tiktok-mail")
    assert ab.decide("EAS-clean-phone", "cy@example.com", AFTER) == ("allow", "ok")
    status = ab.status(AFTER)
    assert status["states"]["blocked"] == 4 and status["states"]["compliant"] == 2
    # The evidence says the Xender match was by name.
    evidence = ab.show("named-phone", AFTER)["policies"]["tiktok-mail"]["evidence"]
    assert [e["match"] for e in evidence if e["kind"] == "app"] == ["name"]


def test_a_list_beside_families_and_identifiers(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(apps=["tiktok", INDIA, "android:com.example.notes"])
    ab("evaluate", now=AFTER)
    assert _states(ab, AFTER)["wechat-phone"] == "blocked"
    shown = ab("policy", "show", "tiktok-mail", now=AFTER)
    assert INDIA in str(shown)


def test_an_unknown_list_is_bad_input_naming_the_field(ab: Appban) -> None:
    result = ab.run("policy", "apply", ab.policy_file(apps=["list:india-2021"]), now=APPLIED)
    assert result.code == 2
    assert "apps[0]" in result.err and "india-2021" in result.err and "india-2020-06-29" in result.err
    assert "Traceback" not in result.err


def test_name_matches_unverified_proves_neither_presence_nor_absence(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(apps=[INDIA], name_matches="unverified", on_unverified="block")
    ab("evaluate", now=AFTER)
    show = ab.show("named-phone", AFTER)["policies"]["tiktok-mail"]
    assert show["state"] == "unverified"
    assert "matched by name only" in show["detail"]
    assert ab.decide("EAS-named-phone", "di@example.com", AFTER) == ("deny", "unverified:tiktok-mail")
    # Identifier matches are unaffected.
    assert ab.state("wechat-phone", AFTER) == "blocked"
    assert ab.state("generic-phone", AFTER) == "compliant"


def test_a_bad_name_matches_value_is_refused(ab: Appban) -> None:
    result = ab.run("policy", "apply", ab.policy_file(name_matches="maybe"), now=APPLIED)
    assert result.code == 2 and "name_matches" in result.err


def _site(ab: Appban, text: str, now: str) -> Any:
    return ab("catalog", "update", ab.file(".yaml", text), now=now)


def test_catalog_update_adds_changes_and_removes_then_survives_init(ab: Appban) -> None:
    _fleet(ab)
    ab.apply(apps=[INDIA])
    ab("evaluate", now=AFTER)
    version = ab("catalog", "list", now=AFTER)["version"]
    # The site takes WeChat's Android package out (say, a false match), and adds a
    # family of its own with a list that names it beside a shipped family.
    site = """
families:
  wechat:
    title: WeChat
    publisher: Tencent
    identifiers:
      - {kind: ios, value: com.tencent.xin, provenance: "our review"}
  notes-app:
    title: Example Notes
    identifiers:
      - {kind: android, value: com.example.notes, provenance: "our MDM's app list"}
lists:
  india-2020-06-29:
    title: India's list, with our notes app
    provenance: our security team
    families: [wechat, xender, tiktok, notes-app]
"""
    done = _site(ab, site, NEXT_DAY)
    assert done["catalog_version"] == version + 1
    assert "wechat: android:com.tencent.mm" in done["removed"]
    assert "notes-app: android:com.example.notes" in done["added"]
    assert done["lists"] == ["india-2020-06-29"]
    assert done["policies"] == ["tiktok-mail"]
    # Re-evaluated at once: WeChat's Android package no longer matches, and the
    # snapshot, filtered before the list named com.example.notes, cannot prove its
    # absence (data minimisation): unverified until the phone's next snapshot.
    wechat_phone = ab.show("wechat-phone", NEXT_DAY)["policies"]["tiktok-mail"]
    assert wechat_phone["state"] == "unverified" and "catalog older" in wechat_phone["detail"]
    assert ab.state("camscanner-iphone", NEXT_DAY) == "blocked"
    # The list the policy bans is now the site's.
    listed = ab("catalog", "show", "list:india-2020-06-29", now=NEXT_DAY)
    assert [f["family"] for f in listed["families"]] == ["wechat", "xender", "tiktok", "notes-app"]
    layers = {f["family"]: f["layer"] for f in ab("catalog", "list", now=NEXT_DAY)["families"]}
    assert layers["wechat"] == "site" and layers["notes-app"] == "site" and layers["shein"] == "shipped"
    # The audit log records the catalog version of the change.
    entries = ab.sql("SELECT data FROM audit_log WHERE action = 'catalog' AND subject = ?", (f"v{version + 1}",))
    assert len(entries) == 1 and "android:com.tencent.mm" in entries[0][0]
    assert ab("audit", "verify", now=NEXT_DAY)["ok"] is True
    # An upgrade (init) re-syncs the shipped catalog and keeps the site's layer.
    ab("init", now=NEXT_DAY)
    assert ab("catalog", "show", "wechat", now=NEXT_DAY)["layer"] == "site"
    assert ab("catalog", "list", now=NEXT_DAY)["version"] == version + 1
    ab.ingest(checkin("wechat-phone", at=NEXT_DAY, owner="ann@example.com", apps=[WECHAT]), now=NEXT_DAY)
    assert ab.state("wechat-phone", NEXT_DAY) == "compliant"
    # A new snapshot, filtered against the new catalog, proves what the new family says.
    notes = [{"id": "com.example.notes"}]
    ab.ingest(checkin("clean-phone", at=NEXT_DAY, owner="cy@example.com", apps=notes), now=NEXT_DAY)
    assert ab.state("clean-phone", NEXT_DAY) == "blocked"


def test_a_site_identifier_a_shipped_family_claims_is_refused_and_nothing_changes(ab: Appban) -> None:
    before = ab.dump()
    site = "families:\n  mine:\n    title: Mine\n    identifiers:\n"
    site += "      - {kind: android, value: cn.xender, provenance: p}\n"
    result = ab.run("catalog", "update", ab.file(".yaml", site), now=BEFORE)
    assert result.code == 2
    assert "android:cn.xender" in result.err and "mine (site)" in result.err and "xender (shipped)" in result.err
    assert ab.dump() == before
