"""The store contract: what every backend must do, run against each of them.

``store`` is parametrised over ``BACKENDS``; a PostgreSQL backend joins by adding a
factory there (skipping itself when no server is configured). The tests use only the
``Store`` protocol (src/appban/store/base.py) and ``open_store``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appban.catalog import Identifier
from appban.catalog.matching import match_kept
from appban.store import Store, open_store
from appban.store.records import (
    AuditEntry,
    DeviceRow,
    Exemption,
    Observation,
    Person,
    PolicyRow,
    StateRow,
)

T = 1_594_393_200_000_000  # 2020-07-10T15:00:00Z
H = 3_600_000_000


def _sqlite(tmp: Path) -> tuple[Store, Callable[[], Store]]:
    path = str(tmp / "contract.db")
    return open_store(path, create=True), lambda: open_store(path, create=False)


BACKENDS: dict[str, Callable[[Path], tuple[Store, Callable[[], Store]]]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Callable[[], Store]]]:
    store, reopen = BACKENDS[request.param](tmp_path)
    try:
        yield store, reopen
    finally:
        store.close()


@pytest.fixture
def store(backend: tuple[Store, Callable[[], Store]]) -> Store:
    return backend[0]


def device(
    source_id: str = "phone-1",
    *,
    owner: str = "ann@example.com",
    eas: tuple[str, ...] = ("EAS1",),
    platform: str = "android",
    **kw: object,
) -> DeviceRow:
    return DeviceRow(
        None,
        kw.pop("source", "agent"),
        source_id,
        platform,
        kw.pop("ownership", "personal"),  # type: ignore[arg-type]
        owner,
        kw.pop("inventory_scope", "full"),
        kw.pop("observed_at", T),
        eas_ids=eas,
        **kw,
    )  # type: ignore[arg-type]


def obs(
    key: str,
    family: str = "tiktok",
    kind: str = "android",
    at: int = T,
    app_id: str | None = "",
    name: str = "Name",
) -> Observation:
    return Observation(
        key,
        key if app_id == "" else app_id,
        name,
        "1.0",
        None,
        family,
        kind,
        "identifier" if kind else "",
        at,
        at,
    )


def add_device(store: Store, d: DeviceRow) -> int:
    with store.transaction():
        d.id = store.insert_device(d)
    return d.id


# -- lifecycle and transactions -------------------------------------------------------------


def test_a_created_store_has_a_schema_and_reopens_with_its_data(
    backend: tuple[Store, Callable[[], Store]],
) -> None:
    store, reopen = backend
    assert store.schema_version() >= 1
    with store.transaction():
        store.set_meta("k", "v")
    other = reopen()
    try:
        assert other.schema_version() == store.schema_version()
        assert other.get_meta("k") == "v"
        assert other.backend == store.backend
    finally:
        other.close()


def test_a_transaction_commits_or_rolls_back_everything(store: Store) -> None:
    with store.transaction():
        store.set_meta("a", "1")
    with pytest.raises(RuntimeError), store.transaction():
        store.set_meta("a", "2")
        store.put_people([Person("x@example.com")], T)
        with store.transaction():  # nested: joins the outer one
            store.set_meta("b", "1")
        raise RuntimeError("boom")
    assert store.get_meta("a") == "1"
    assert store.get_meta("b") is None
    assert store.get_person("x@example.com") is None
    with store.transaction():  # still usable after a rollback
        store.set_meta("a", "3")
    assert store.get_meta("a") == "3"


def test_meta_and_gate_counter(store: Store) -> None:
    assert store.get_meta("missing") is None
    assert store.get_meta("missing", "d") == "d"
    with store.transaction():
        store.set_meta("k", "1")
        store.set_meta("k", "2")
        seqs = [store.next_gate_seq() for _ in range(3)]
    assert store.get_meta("k") == "2"
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


# -- people and devices ---------------------------------------------------------------------


def test_people_round_trip_and_update(store: Store) -> None:
    with store.transaction():
        store.put_people([Person("ann@example.com", "Ann", "Sales", ("a", "b"), "Europe/London")], T)
    assert store.get_person("ann@example.com") == Person("ann@example.com", "Ann", "Sales", ("a", "b"), "Europe/London")
    with store.transaction():
        store.put_people([Person("ann@example.com", "Ann Lee", "Eng", (), "UTC")], T + H)
    assert store.get_person("ann@example.com") == Person("ann@example.com", "Ann Lee", "Eng", (), "UTC")
    assert store.get_person("nobody@example.com") is None


def test_devices_are_found_every_way(store: Store) -> None:
    a = add_device(
        store,
        device("phone-1", eas=("EAS1", "EAS2"), model="Pixel", mail_reported=True, catalog_version=3),
    )
    b = add_device(
        store,
        device(
            "phone-1",
            source="intune",
            owner="bob@example.com",
            eas=("EAS2",),
            mail_reported=None,
            catalog_version=None,
        ),
    )
    assert a != b
    got = store.get_device(a)
    assert got is not None
    assert (
        got.source,
        got.source_id,
        got.platform,
        got.owner,
        got.eas_ids,
        got.model,
        got.mail_reported,
        got.catalog_version,
        got.observed_at,
        got.decision,
        got.reason,
    ) == (
        "agent",
        "phone-1",
        "android",
        "ann@example.com",
        ("EAS1", "EAS2"),
        "Pixel",
        True,
        3,
        T,
        "allow",
        "ok",
    )
    assert store.get_device(b).mail_reported is None  # type: ignore[union-attr]
    assert store.get_device(b).catalog_version is None  # type: ignore[union-attr]
    assert store.get_device(999) is None
    assert store.get_device_by_key("intune", "phone-1").id == b  # type: ignore[union-attr]
    assert store.get_device_by_key("intune", "nope") is None
    assert [d.id for d in store.devices_by_source_id("phone-1")] == [a, b]
    assert [d.id for d in store.devices_of_owner("bob@example.com")] == [b]
    assert [d.id for d in store.devices_by_eas("EAS2")] == [a, b]
    assert [d.id for d in store.devices_by_eas("EAS1")] == [a]
    assert store.devices_by_eas("EAS9") == []
    assert [d.id for d in store.iter_devices()] == [a, b]


def test_updating_a_device_moves_its_activesync_ids(store: Store) -> None:
    a = add_device(store, device(eas=("OLD1", "KEEP")))
    d = store.get_device(a)
    assert d is not None
    old = d.eas_ids
    d.eas_ids, d.observed_at, d.owner, d.inventory_scope = (
        ("KEEP", "NEW1"),
        T + H,
        "bob@example.com",
        "managed",
    )
    with store.transaction():
        store.update_device(d, old)
    assert store.devices_by_eas("OLD1") == []
    assert [x.id for x in store.devices_by_eas("NEW1")] == [a]
    assert [x.id for x in store.devices_by_eas("KEEP")] == [a]
    got = store.get_device(a)
    assert got is not None
    assert (got.observed_at, got.owner, got.inventory_scope) == (
        T + H,
        "bob@example.com",
        "managed",
    )


def test_decisions_are_stored_per_device(store: Store) -> None:
    a = add_device(store, device("a"))
    b = add_device(store, device("b"))
    with store.transaction():
        store.set_decision(a, "deny", "blocked:p", store.next_gate_seq())
    assert store.decisions_of([a, b]) == {a: ("deny", "blocked:p"), b: ("allow", "ok")}
    assert store.decisions_of([]) == {}
    many = list(range(1, 1200))  # more ids than one query may bind
    assert set(store.decisions_of(many)) == {a, b}


# -- observations ---------------------------------------------------------------------------


def test_observations_upsert_refresh_and_go(store: Store) -> None:
    a = add_device(store, device())
    with store.transaction():
        store.write_observations(a, [obs("com.zhiliaoapp.musically"), obs("x.watched", family="")], [], [], T)
    with store.transaction():
        store.write_observations(a, [], [("com.zhiliaoapp.musically", "2.0", T + H)], ["x.watched"], T + H)
    rows = {o.app_key: o for o in store.observations(a)}
    assert (
        rows["com.zhiliaoapp.musically"].version,
        rows["com.zhiliaoapp.musically"].first_seen,
        rows["com.zhiliaoapp.musically"].last_seen,
        rows["com.zhiliaoapp.musically"].gone_at,
    ) == ("2.0", T, T + H, None)
    assert rows["x.watched"].gone_at == T + H
    assert [o.app_key for o in store.observations(a, present_only=True)] == ["com.zhiliaoapp.musically"]
    # An upsert brings a gone app back.
    with store.transaction():
        store.write_observations(a, [obs("x.watched", family="", at=T + 2 * H)], [], [], T + 2 * H)
    assert [o.app_key for o in store.observations(a, present_only=True)] == [
        "com.zhiliaoapp.musically",
        "x.watched",
    ]


def test_present_apps_by_family_and_by_identifier(store: Store) -> None:
    a = add_device(store, device("a"))
    b = add_device(store, device("b"))
    with store.transaction():
        store.write_observations(a, [obs("com.zhiliaoapp.musically"), obs("com.example.foo", family="")], [], [], T)
        store.write_observations(b, [obs("com.example.foo", family="", kind="ios")], [], [], T)
    assert store.present_apps(["tiktok"], []) == {a: ["com.zhiliaoapp.musically"]}
    assert store.present_apps([], [("android", "com.example.foo")]) == {a: ["com.example.foo"]}
    both = store.present_apps(["tiktok"], [("android", "com.example.foo"), ("ios", "com.example.foo")])
    assert {k: sorted(v) for k, v in both.items()} == {
        a: ["com.example.foo", "com.zhiliaoapp.musically"],
        b: ["com.example.foo"],
    }
    with store.transaction():
        store.write_observations(a, [], [], ["com.zhiliaoapp.musically"], T + H)
    assert store.present_apps(["tiktok"], []) == {}


def test_kept_observations_are_matched_against_new_identifiers(store: Store) -> None:
    a = add_device(store, device("a"))
    i = add_device(store, device("i", platform="ios"))
    with store.transaction():
        store.write_observations(
            a,
            [
                obs("com.example.foo", family="", kind=""),
                obs("name:Foo Lite", family="", kind="", app_id=None, name="Foo Lite"),
            ],
            [],
            [],
            T,
        )
        store.write_observations(i, [obs("com.example.foo", family="", kind="")], [], [], T)
        matched = match_kept(
            store,
            [
                Identifier("android", "com.example.foo", "foo", "test"),
                Identifier("name", "foo  lite", "foo", "test"),
            ],
        )
    assert matched == 2
    rows = {o.app_key: (o.family, o.match_kind, o.confidence) for o in store.observations(a)}
    assert rows == {
        "com.example.foo": ("foo", "android", "identifier"),
        "name:Foo Lite": ("foo", "name", "name"),
    }
    # The iOS app of the same id is not an Android package.
    assert [(o.family, o.match_kind) for o in store.observations(i)] == [("", "")]
    # A row watched only for a policy takes the family the same identifier gets later.
    with store.transaction():
        store.write_observations(i, [obs("com.example.bar", family="", kind="ios")], [], [], T + H)
        assert match_kept(store, [Identifier("ios", "com.example.bar", "bar", "test")]) == 1
        assert match_kept(store, [Identifier("ios", "com.example.bar", "", "policy")]) == 0
    assert {o.app_key: o.family for o in store.observations(i)} == {
        "com.example.bar": "bar",
        "com.example.foo": "",
    }


# -- catalog, policies, exemptions, attestations --------------------------------------------


def test_catalog_versions(store: Store) -> None:
    before, _families, _ids = store.catalog()
    with store.transaction():
        store.add_catalog(
            {"fam": {"title": "Fam", "publisher": "P"}},
            [Identifier("android", "a.b", "fam", "src")],
            before + 1,
        )
    version, families, ids = store.catalog()
    assert version == before + 1
    assert families["fam"] == {"title": "Fam", "publisher": "P"}
    assert Identifier("android", "a.b", "fam", "src", before + 1) in ids


def test_policies_round_trip_and_keep_their_creation_time(store: Store) -> None:
    row = PolicyRow("p", "active", 1, "{}", "id: p", T, T)
    with store.transaction():
        store.save_policy(row)
        store.save_policy(PolicyRow("a", "draft", 1, "{}", "id: a", T, T))
    with store.transaction():
        store.save_policy(PolicyRow("p", "withdrawn", 2, '{"x":1}', "id: p", T + H, T + H, T + H, "error"))
    got = store.get_policy("p")
    assert got == PolicyRow("p", "withdrawn", 2, '{"x":1}', "id: p", T, T + H, T + H, "error")
    assert [p.id for p in store.list_policies()] == ["a", "p"]
    assert store.get_policy("none") is None


def test_exemptions_and_attestations(store: Store) -> None:
    a = add_device(store, device())
    with store.transaction():
        store.save_policy(PolicyRow("p", "active", 1, "{}", "", T, T))
        e1 = store.add_exemption(Exemption(0, "p", "ann@example.com", None, T, T + H, "why", T))
        e2 = store.add_exemption(Exemption(0, "p", None, a, T, T + 2 * H, "because", T))
        store.add_attestation("p", a, "ann@example.com", T + H)
        store.add_attestation("p", a, "ann@example.com", T)
    assert e1 != e2
    assert [(e.id, e.person, e.device_id, e.until) for e in store.exemptions()] == [
        (e1, "ann@example.com", None, T + H),
        (e2, None, a, T + 2 * H),
    ]
    assert store.attested_at("p", a) == T + H  # the latest
    assert store.attested_at("p", a + 1) is None
    assert store.attestations("p") == {a: T + H}
    assert store.attestations("q") == {}


# -- states and history ---------------------------------------------------------------------


def test_states_history_and_policy_facts(store: Store) -> None:
    a = add_device(store, device("a", eas=("E",)))
    b = add_device(store, device("b", eas=(), owner="bob@example.com", ownership="corporate"))
    with store.transaction():
        store.put_people([Person("ann@example.com", "Ann", "Sales", ("g1", "g2"))], T)
        store.put_states([StateRow("p", a, "violating", T, "d", "", T + 5 * H), StateRow("p", b, "compliant", T)])
        store.add_history([("p", a, None, "violating", T, "policy"), ("p", b, None, "compliant", T, "policy")])
    with store.transaction():
        store.put_states([StateRow("p", a, "blocked", T + 5 * H, "d", "blocked:p", None)])
        store.add_history([("p", a, "violating", "blocked", T + 5 * H, "time")])
    assert store.device_states(a) == {"p": StateRow("p", a, "blocked", T + 5 * H, "d", "blocked:p", None)}
    assert store.device_states(999) == {}
    assert store.history(device_id=a) == [
        ("p", a, None, "violating", T, "policy"),
        ("p", a, "violating", "blocked", T + 5 * H, "time"),
    ]
    assert len(store.history(policy_id="p")) == 3 and store.history(policy_id="q") == []
    facts = {r[0]: r for r in store.policy_facts("p")}
    assert facts[a][1:9] == ("android", "personal", "ann@example.com", 1, "full", T, None, "g1;g2")
    assert bool(facts[b][4]) is False and facts[b][8] == ""
    assert facts[a][9:] == ("blocked", T + 5 * H, "d", "blocked:p", None)
    unknown = {r[0]: r for r in store.policy_facts("new-policy")}
    assert unknown[a][9] is None  # every device, even without a stored state


def test_due_rows_denies_and_withdrawal(store: Store) -> None:
    a = add_device(store, device("a"))
    b = add_device(store, device("b"))
    c = add_device(store, device("c"))
    with store.transaction():
        store.put_states(
            [
                StateRow("p", a, "violating", T, "", "", T + H),
                StateRow("p", b, "blocked", T, "", "blocked:p", None),
                StateRow("q", b, "unverified", T, "", "unverified:q", T + 3 * H),
                StateRow("q", c, "compliant", T, "", "", None),
            ]
        )
    assert store.due_policies(T) == []
    assert store.due_policies(T + H) == ["p"]
    assert sorted(store.due_policies(T + 3 * H)) == ["p", "q"]
    assert [r[0] for r in store.policy_facts("p", due_before=T + H)] == [a]
    assert list(store.policy_facts("p", due_before=T + H - 1)) == []
    denies = store.denies_of([a, b, c], ["p", "q"])
    assert {k: sorted(v) for k, v in denies.items()} == {
        a: [],
        b: ["blocked:p", "unverified:q"],
        c: [],
    }
    assert store.denies_of([b], ["q"]) == {b: ["unverified:q"]}
    assert store.denies_of([b], []) == {b: []}
    with store.transaction():
        assert store.clear_denies("p") == [b]
    assert store.denies_of([a, b], ["p", "q"]) == {a: [], b: ["unverified:q"]}
    assert store.due_policies(T + 10 * H) == ["q"]  # a withdrawn policy never wakes up
    assert store.device_states(b)["p"].state == "blocked"  # the state itself is kept


def test_state_rows_for_reports(store: Store) -> None:
    a = add_device(store, device("a"))
    b = add_device(store, device("b", owner="bob@example.com", platform="ios"))
    with store.transaction():
        store.put_people([Person("ann@example.com", "Ann", "Sales")], T)
        store.put_states([StateRow("p", b, "compliant", T), StateRow("p", a, "blocked", T, "x", "blocked:p")])
    rows = list(store.state_rows("p"))
    assert [tuple(r) for r in rows] == [
        (a, "blocked", T, "x", "blocked:p", None, "ann@example.com", "android", "Sales"),
        (b, "compliant", T, "", "", None, "bob@example.com", "ios", ""),
    ]
    assert [r[0] for r in store.state_rows("p", state="compliant")] == [b]
    assert list(store.state_rows("other")) == []


# -- audit ----------------------------------------------------------------------------------


def test_audit_entries_in_sequence(store: Store) -> None:
    assert store.last_audit() is None or store.last_audit().seq >= 1  # type: ignore[union-attr]
    start = store.last_audit().seq if store.last_audit() else 0  # type: ignore[union-attr]
    entries = [AuditEntry(start + i, T + i, "act", f"s{i}", "{}", f"p{i}", f"h{i}") for i in (1, 2, 3)]
    with store.transaction():
        store.append_audit(entries[:2])
    with store.transaction():
        store.append_audit(entries[2:])
    assert store.last_audit() == entries[2]
    assert list(store.iter_audit())[-3:] == entries
    with pytest.raises(Exception), store.transaction():  # noqa: B017 - any backend error
        store.append_audit([entries[0]])  # a sequence number is used once
    assert list(store.iter_audit())[-3:] == entries


def test_mail_owners_and_the_local_parts_they_share(store: Store) -> None:
    for i, owner in enumerate(
        [
            "jane.doe@example.com",
            "jane.doe.x@example.com",
            "jane.doe@other.example",
            "jane.doe2@example.com",
            "bob@example.com",
            "ann@example.com",
            "ann@example.net",
        ]
    ):
        add_device(store, device(f"p{i}", owner=owner, eas=(f"EAS{i}",)))
    add_device(store, device("no-mail", owner="bob@other.example", eas=()))  # reads no mail: not counted
    assert store.mail_owners("jane.doe") == ["jane.doe@example.com", "jane.doe@other.example"]
    assert store.mail_owners("bob") == ["bob@example.com"]
    assert store.shared_local_parts() == {
        "ann": ["ann@example.com", "ann@example.net"],
        "jane.doe": ["jane.doe@example.com", "jane.doe@other.example"],
    }
