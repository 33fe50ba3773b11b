"""The shipped catalog file: its schema, one family per identifier, provenance everywhere,
and India's list of 29 June 2020 whole."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from appban.catalog import load_shipped
from appban.catalog.catalog import KINDS, normalise_name
from appban.catalog.layers import SITE, merge, parse_catalog
from appban.errors import BadInput

RAW = yaml.safe_load(resources.files("appban.catalog").joinpath("data/catalog.yaml").read_text("utf-8"))

# The apps the government's press release of 29 June 2020 names, in its order, as the
# issue that asked for them spells them.
_RELEASE = (
    "TikTok, SHAREit, Kwai, UC Browser, Baidu map, Shein, Clash of Kings, DU battery saver, Helo, Likee, "
    "YouCam makeup, Mi Community, CM Browser, Virus Cleaner, APUS Browser, ROMWE, Club Factory, Newsdog, "
    "Beauty Plus, WeChat, UC News, QQ Mail, Weibo, Xender, QQ Music, QQ Newsfeed, Bigo Live, SelfieCity, "
    "Mail Master, Parallel Space, Mi Video Call, WeSync, ES File Explorer, Viva Video, Meitu, Vigo Video, "
    "New Video Status, DU Recorder, Vault-Hide, Cache Cleaner, DU Cleaner, DU Browser, Hago, Cam Scanner, "
    "Clean Master, Wonder Camera, Photo Wonder, QQ Player, We Meet, Sweet Selfie, Baidu Translate, Vmate, "
    "QQ International, QQ Security Center, QQ Launcher, U Video, V fly Status Video, Mobile Legends, DU Privacy"
)
INDIA_2020_06_29 = _RELEASE.split(", ")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


def test_every_identifier_has_a_known_kind_a_value_and_provenance() -> None:
    for family, body in RAW["families"].items():
        assert body["title"].strip(), family
        for i, entry in enumerate(body["identifiers"]):
            where = f"{family}.identifiers[{i}]"
            assert entry["kind"] in KINDS, where
            assert str(entry["value"]).strip(), where
            assert len(entry["provenance"].strip()) > 20, where
            if entry["kind"] == "name":
                assert isinstance(entry["distinctive"], bool), where
            else:
                assert "distinctive" not in entry, where


def test_no_identifier_in_two_families() -> None:
    seen: dict[tuple[str, str], str] = {}
    for family, body in RAW["families"].items():
        for entry in body["identifiers"]:
            value = str(entry["value"])
            key = (entry["kind"], normalise_name(value) if entry["kind"] == "name" else value)
            assert seen.setdefault(key, family) == family, f"{key} in {seen[key]} and {family}"


def test_identifiers_are_exact_never_patterns() -> None:
    """Matching is exact: no wildcard or prefix may hide in a value."""
    for body in RAW["families"].values():
        for entry in body["identifiers"]:
            if entry["kind"] in ("android", "ios"):
                assert re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)+", entry["value"]), entry["value"]
            if entry["kind"] == "appstore":
                assert re.fullmatch(r"[0-9]+", str(entry["value"])), entry["value"]


def test_the_india_list_holds_exactly_the_59_apps_of_the_press_release() -> None:
    members = RAW["lists"]["india-2020-06-29"]["families"]
    assert len(members) == len(set(members)) == 59
    titles = [RAW["families"][m]["title"] for m in members]
    # Each app of the release is one family, in the release's order (titles as the
    # stores spell them: "Beauty Plus" is BeautyPlus, "Baidu map" Baidu Map).
    for named, title in zip(INDIA_2020_06_29, titles, strict=True):
        assert _squash(named) in _squash(title) or _squash(title) in _squash(named), (named, title)


def test_generic_names_never_match_alone() -> None:
    """The issue's look-alikes: a source that gives only these names matches nothing."""
    data = load_shipped()
    matching = {normalise_name(i.value) for i in data.identifiers if i.kind == "name"}
    for name in ("Cache Cleaner", "Virus Cleaner", "Mail Master", "We Meet", "U Video"):
        assert normalise_name(name) not in matching, name
    kept = {normalise_name(n) for f in data.families.values() for n, _p in f.unmatched_names}
    assert {"cache cleaner", "virus cleaner", "mail master", "we meet", "u video"} <= kept


def test_families_without_a_confirmed_identifier_say_so() -> None:
    for family, body in RAW["families"].items():
        kinds = {e["kind"] for e in body["identifiers"]}
        if not kinds & {"android", "ios", "appstore"}:
            assert "could be confirmed" in body.get("notes", ""), family


def test_a_site_layer_claiming_a_shipped_identifier_is_an_error_naming_both() -> None:
    site = parse_catalog(
        "families:\n  my-chat:\n    title: My chat\n    identifiers:\n"
        "      - {kind: android, value: com.tencent.mm, provenance: our own review of the app}\n",
        file="site.yaml",
        layer=SITE,
    )
    with pytest.raises(BadInput) as err:
        merge(load_shipped(), site)
    assert "android:com.tencent.mm" in str(err.value)
    assert "my-chat (site)" in str(err.value) and "wechat (shipped)" in str(err.value)


def test_a_site_list_may_name_shipped_families_but_not_unknown_ones() -> None:
    text = "lists:\n  ours:\n    title: Ours\n    provenance: our review\n    families: [wechat, {}]\n"
    merged = merge(load_shipped(), parse_catalog(text.format("tiktok"), file="site.yaml", layer=SITE))
    assert merged.lists["ours"].families == ("wechat", "tiktok")
    with pytest.raises(BadInput) as err:
        merge(load_shipped(), parse_catalog(text.format("nowhere"), file="site.yaml", layer=SITE))
    assert err.value.field == "lists.ours.families" and "nowhere" in str(err.value)


_ONE = "families:\n  x:\n    title: X\n    identifiers:\n      - "


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (_ONE + "{kind: android, value: a.b}\n", "provenance"),
        (_ONE + "{kind: nope, value: a.b, provenance: p}\n", "kind"),
        (_ONE + "{kind: name, value: X, provenance: p}\n", "distinctive"),
        ("families:\n  X Y:\n    title: X\n", "families.X Y"),
        ("families: [1, 2]\n", "families"),
        ("colours: {}\n", "colours"),
    ],
)
def test_a_bad_catalog_file_names_its_field(text: str, field: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_catalog(text, file="site.yaml", layer=SITE)
    assert str(err.value).startswith("site.yaml")
    assert field in (err.value.field or ""), str(err.value)
