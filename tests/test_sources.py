"""``appban source``: sources, their tokens and osquery enroll secrets.

A token is printed once and only its digest is kept: the database file never holds
it. Revoking takes effect for the next lookup.
"""

from __future__ import annotations

from pathlib import Path

from appban import sources
from appban.store import open_store
from helpers_semantics import Appban

NOW = "2020-07-10T15:00:00Z"


def _authenticate(ab: Appban, token: str, kind: str = sources.TOKEN) -> str | None:
    store = open_store(ab.db, create=False)
    try:
        return sources.authenticate(store, token, kind)
    finally:
        store.close()


def test_a_token_is_shown_once_and_only_its_digest_is_kept(ab: Appban) -> None:
    assert ab("source", "add", "intune", now=NOW) == {"source": "intune", "added": True}
    made = ab("source", "token", "create", "intune", now=NOW)
    token = made["token"]
    assert made["source"] == "intune" and len(token) > 40
    assert _authenticate(ab, token) == "intune"
    for name in Path(ab.db).parent.iterdir():  # the database, its WAL and shared memory
        if name.name.startswith("appban.db"):
            assert token.encode() not in name.read_bytes()
    listed = ab("source", "list", now=NOW)["sources"]
    assert [(s["name"], s["tokens"]) for s in listed] == [("intune", 1)]


def test_two_tokens_of_a_source_are_revoked_together(ab: Appban) -> None:
    ab("source", "add", "jamf", now=NOW)
    first = ab("source", "token", "create", "jamf", now=NOW)["token"]
    second = ab("source", "token", "create", "jamf", now=NOW)["token"]
    assert first != second
    revoked = ab("source", "token", "revoke", "jamf", now=NOW)
    assert len(revoked["revoked"]) == 2
    assert _authenticate(ab, first) is None and _authenticate(ab, second) is None
    assert ab("source", "token", "revoke", "jamf", now=NOW)["revoked"] == []
    # A new token after a revocation works.
    third = ab("source", "token", "create", "jamf", now=NOW)["token"]
    assert _authenticate(ab, third) == "jamf"


def test_a_token_is_not_an_enroll_secret_nor_the_other_way(ab: Appban) -> None:
    ab("source", "add", "agent", now=NOW)
    token = ab("source", "token", "create", "agent", now=NOW)["token"]
    secret = ab("source", "osquery-secret", "create", now=NOW)["token"]
    assert _authenticate(ab, secret, sources.OSQUERY_SECRET) == "osquery"
    assert _authenticate(ab, secret, sources.TOKEN) is None
    assert _authenticate(ab, token, sources.OSQUERY_SECRET) is None
    # The secret's source was added with it.
    assert {s["name"] for s in ab("source", "list", now=NOW)["sources"]} == {"agent", "osquery"}


def test_unknown_and_forged_tokens_name_no_source(ab: Appban) -> None:
    ab("source", "add", "agent", now=NOW)
    token = ab("source", "token", "create", "agent", now=NOW)["token"]
    for forged in ("", token[:-1], token + "x", token.upper(), "appban-src-" + "A" * 500, "\udcff"):
        assert _authenticate(ab, forged) is None


def test_adding_a_source_twice_changes_nothing(ab: Appban) -> None:
    ab("source", "add", "intune", now=NOW)
    assert ab("source", "add", "intune", now=NOW)["added"] is False
    entries = [e for e in ab("audit", "list", now=NOW) if e["action"] == "source-add"]
    assert len(entries) == 1


def test_bad_names_and_unknown_sources_are_refused(ab: Appban) -> None:
    for name in ("Intune", "<script>", "a" * 65, ".x", "a b", ""):
        result = ab.run("source", "add", name, now=NOW)
        assert result.code == 2, name
        assert "NAME" in result.err and "Traceback" not in result.err
    result = ab.run("source", "token", "create", "nobody", now=NOW)
    assert result.code == 2 and "source add nobody" in result.err
    assert ab("source", "list", now=NOW)["sources"] == []


def test_tokens_are_audited_but_never_written_to_the_log(ab: Appban) -> None:
    ab("source", "add", "intune", now=NOW)
    token = ab("source", "token", "create", "intune", now=NOW)["token"]
    ab("source", "token", "revoke", "intune", now=NOW)
    actions = [e["action"] for e in ab("audit", "list", now=NOW)]
    assert actions[-3:] == ["source-add", "token-create", "token-revoke"]
    exported = ab.root / "audit.jsonl"
    ab("audit", "export", str(exported), now=NOW)
    assert token not in exported.read_text("utf-8")
