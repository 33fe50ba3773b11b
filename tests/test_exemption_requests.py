"""Employees' requests for an exemption (made on their page) and the admins' answers on
the command line: ``exempt requests``, ``exempt grant``, ``exempt refuse``; and
``people link``, the personal page link a helpdesk hands out."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.notify import links
from appban.policy import exemptions
from appban.serve.me import page_data
from appban.store import open_store
from appban.workspace import Workspace
from helpers_cli import NOW, POLICY_YAML, Fleet, assert_bad_input, count, run_tty

JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"
LATER = "2020-07-19T12:00:00Z"


def _ask(fleet: Fleet, person: str, reason: str, *, device: str | None = None, at: str = NOW) -> int:
    """A request as the page makes it: ``exemptions.request`` on a workspace."""
    ws = Workspace(str(fleet.db), parse_time(at), create=False)
    try:
        device_id = None if device is None else ws.store.get_device_by_key("agent", device).id  # type: ignore[union-attr]
        return int(exemptions.request(ws, "tiktok-mail", person, device_id, reason)["id"])
    finally:
        ws.close()


def _json(fleet: Fleet, *args: str) -> dict:  # type: ignore[type-arg]
    result = fleet.run(*args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def _device_id(fleet: Fleet, source_id: str) -> int:
    store = open_store(str(fleet.db), create=False)
    try:
        found = store.get_device_by_key("agent", source_id)
        assert found is not None and found.id is not None
        return found.id
    finally:
        store.close()


# -- requests -------------------------------------------------------------------------------


def test_a_request_is_audited_and_listed(fleet: Fleet) -> None:
    first = _ask(fleet, JANE, "I run the company account", device="JANE-IPHONE")
    second = _ask(fleet, JANE, "Any device of mine")
    assert count(fleet.db, "audit_log", "action = 'exemption.request'") == 2
    doc = _json(fleet, "exempt", "requests")
    assert doc["state"] == "pending"
    assert [r["id"] for r in doc["requests"]] == [first, second]
    one = doc["requests"][0]
    assert one["policy"] == "tiktok-mail" and one["person"] == JANE
    assert one["device"] == f"dev-{_device_id(fleet, 'JANE-IPHONE')}"
    assert one["reason"] == "I run the company account" and one["created_at"] == NOW
    assert doc["requests"][1]["device"] is None
    text = fleet.run("exempt", "requests")
    assert text.code == 0
    assert "I run the company account" in text.out and "all" in text.out and "2 pending requests" in text.out


def test_grant_makes_the_exemption_exempt_add_makes(fleet: Fleet) -> None:
    asked = _ask(fleet, JANE, "Marketing needs it", device="JANE-IPHONE")
    doc = _json(fleet, "exempt", "grant", str(asked), "--until", LATER)
    device = _device_id(fleet, "JANE-IPHONE")
    assert doc["request"] == asked and doc["state"] == "granted" and doc["asked_for"] == f"dev-{device}"
    assert doc["device"] == f"dev-{device}" and doc["person"] is None and doc["until"] == LATER
    rows = fleet.snapshot()
    assert [(r[1], r[2], r[3], r[6]) for r in rows["exemptions"]] == [
        ("tiktok-mail", None, device, "Marketing needs it")
    ]
    request = _json(fleet, "exempt", "requests", "--state", "granted")["requests"]
    assert [(r["id"], r["exemption"], r["decided_at"], r["decided_by"]) for r in request] == [
        (asked, doc["exemption"], NOW, "cli")
    ]
    assert count(fleet.db, "audit_log", "action = 'exemption.grant'") == 1
    assert count(fleet.db, "audit_log", "action = 'exemption'") == 1
    shown = _json(fleet, "device", "show", "JANE-IPHONE")
    assert shown["policies"]["tiktok-mail"]["state"] == "exempt" and shown["decision"] == "allow"


def test_a_person_wide_request_grants_the_person(fleet: Fleet) -> None:
    asked = _ask(fleet, JANE, "All of mine")
    doc = _json(fleet, "exempt", "grant", str(asked), "--until", LATER, "--reason", "Approved by the CISO")
    assert doc["person"] == JANE and doc["device"] is None
    assert [(r[2], r[3], r[6]) for r in fleet.snapshot()["exemptions"]] == [(JANE, None, "Approved by the CISO")]


def test_refuse_records_the_answer(fleet: Fleet) -> None:
    asked = _ask(fleet, JANE, "Please")
    doc = _json(fleet, "exempt", "refuse", str(asked), "--reason", "Use a company phone")
    assert doc == {
        "request": asked,
        "state": "refused",
        "policy": "tiktok-mail",
        "person": JANE,
        "answer": "Use a company phone",
    }
    listed = _json(fleet, "exempt", "requests", "--state", "all")["requests"]
    assert [(r["state"], r["answer"]) for r in listed] == [("refused", "Use a company phone")]
    assert _json(fleet, "exempt", "requests")["requests"] == []
    assert count(fleet.db, "audit_log", "action = 'exemption.refuse'") == 1
    assert count(fleet.db, "exemptions") == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["grant", "{id}", "--until", LATER], "ID"),  # already decided
        (["refuse", "{id}", "--reason", "no"], "ID"),
        (["grant", "999", "--until", LATER], "ID"),
        (["grant", "abc", "--until", LATER], "ID"),
        (["grant", "{other}", "--until", "2020-07-01T00:00:00Z"], "--until"),  # not in the future
        (["grant", "{other}", "--until", "soon"], "--until"),
        (["grant", "{other}", "--until", LATER, "--reason", "<b>x</b>"], "--reason"),
        (["refuse", "{other}", "--reason", ""], "--reason"),
        (["refuse", "{other}", "--reason", "x" * 501], "--reason"),
        (["refuse", "{other}", "--reason", "line\nbreak"], "--reason"),
        (["grant", "{late}", "--until", LATER], "ID"),  # --now is before the request was made
        (["refuse", "{late}", "--reason", "no"], "ID"),
    ],
)
def test_bad_answers_write_nothing(fleet: Fleet, args: list[str], field: str) -> None:
    decided = _ask(fleet, JANE, "first", device="JANE-IPHONE")
    other = _ask(fleet, JANE, "second")
    assert fleet.run("exempt", "refuse", str(decided), "--reason", "no").code == 0
    late = _ask(fleet, JANE, "third", device="JANE-IPHONE", at="2020-07-12T13:00:00Z")
    before = fleet.snapshot()
    filled = [a.format(id=decided, other=other, late=late) for a in args]
    assert_bad_input(fleet.run("exempt", *filled), field)
    assert fleet.snapshot() == before


def _hand_over(fleet: Fleet, source_id: str, owner: str, *, at: str = "2020-07-12T11:00:00Z") -> None:
    """A check-in naming a new owner for a device (it was handed over, or re-enrolled)."""
    line = json.dumps(
        {
            "source": "agent",
            "device": {"id": source_id, "platform": "ios", "ownership": "personal", "owner": owner},
            "observed_at": at,
            "apps": [{"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}],
        }
    )
    result = fleet.run("import", "appban", str(fleet.write("handed-over.jsonl", line + "\n")))
    assert result.code == 0, result.err


def test_grant_refuses_a_device_that_changed_hands(fleet: Fleet) -> None:
    """Jane asked for her phone; it is Bob's now: granting would exempt Bob's phone with
    Jane's reason, though Bob never asked. The request stays pending, for an admin to refuse."""
    asked = _ask(fleet, JANE, "My side business", device="JANE-IPHONE")
    _hand_over(fleet, "JANE-IPHONE", BOB)
    before = fleet.snapshot()
    line = assert_bad_input(fleet.run("exempt", "grant", str(asked), "--until", LATER), "ID")
    device = _device_id(fleet, "JANE-IPHONE")
    assert f"dev-{device}, which {JANE} no longer owns ({BOB} does)" in line
    assert f"appban exempt refuse {asked}" in line
    assert fleet.snapshot() == before
    assert [r["state"] for r in _json(fleet, "exempt", "requests")["requests"]] == ["pending"]
    assert _json(fleet, "exempt", "refuse", str(asked), "--reason", "The phone is not yours now")["state"] == "refused"


def test_grant_still_grants_a_device_handed_back(fleet: Fleet) -> None:
    asked = _ask(fleet, JANE, "Marketing needs it", device="JANE-IPHONE")
    _hand_over(fleet, "JANE-IPHONE", BOB, at="2020-07-12T10:00:00Z")
    _hand_over(fleet, "JANE-IPHONE", JANE, at="2020-07-12T11:00:00Z")
    assert _json(fleet, "exempt", "grant", str(asked), "--until", LATER)["state"] == "granted"


def test_a_withdrawal_closes_the_requests_under_the_policy(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exemptions, "MAX_PENDING", 1)
    asked = _ask(fleet, JANE, "Marketing needs it")
    withdrawn = fleet.run("policy", "withdraw", "tiktok-mail", "--reason", "Sent in error", "--json")
    assert withdrawn.code == 0 and json.loads(withdrawn.out)["requests_closed"] == 1
    before = fleet.snapshot()
    line = assert_bad_input(fleet.run("exempt", "grant", str(asked), "--until", LATER), "ID")
    assert f"request {asked} was already refused" in line
    assert fleet.snapshot() == before
    listed = _json(fleet, "exempt", "requests", "--state", "all")["requests"]
    assert [(r["id"], r["state"]) for r in listed] == [(asked, "refused")]
    # The policy in force now: Jane may ask under it (her closed request counts no more).
    again = fleet.write("again.yaml", POLICY_YAML.replace("id: tiktok-mail", "id: tiktok-mail-2"))
    assert fleet.run("policy", "apply", str(again)).code == 0
    ws = Workspace(str(fleet.db), parse_time(NOW), create=False)
    try:
        exemptions.request(ws, "tiktok-mail-2", JANE, None, "Marketing still needs it")
    finally:
        ws.close()
    assert count(fleet.db, "exemption_requests", "state = 'pending'") == 1


def _jamf(fleet: Fleet, eas: list[str], at: str) -> None:
    """Jane's iPhone as Jamf reports it; with her phone's ActiveSync DeviceId, the two are one device."""
    line = json.dumps(
        {
            "source": "jamf",
            "device": {"id": "JANE-JAMF", "platform": "ios", "owner": JANE, "eas_device_ids": eas},
            "observed_at": at,
            "apps": [{"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}],
        }
    )
    result = fleet.run("import", "appban", str(fleet.write("jamf.jsonl", line + "\n")), "--now", at)
    assert result.code == 0, result.err


def test_a_request_for_a_device_linked_into_another_is_granted_for_the_device_it_became(fleet: Fleet) -> None:
    _jamf(fleet, ["EASJAMF"], NOW)
    ws = Workspace(str(fleet.db), parse_time(NOW), create=False)
    try:
        found = ws.store.get_device_by_key("jamf", "JANE-JAMF")
        assert found is not None and found.id is not None
        jamf = found.id
        asked = int(exemptions.request(ws, "tiktok-mail", JANE, jamf, "For the Jamf one")["id"])
    finally:
        ws.close()
    _jamf(fleet, ["EASJAMF", "EASJANE1"], "2020-07-12T13:00:00Z")
    store = open_store(str(fleet.db), create=False)
    try:
        assert store.get_device(jamf) is None  # folded into Jane's phone
        became = store.get_record("jamf", "JANE-JAMF")
        assert became is not None
        target = became.device_id
        page = page_data(store, JANE, parse_time("2020-07-12T13:00:00Z"))
        assert [r["who"] for r in page["requests"]] == ["iOS device"]  # hers, by name, not dev-N
    finally:
        store.close()
    text = fleet.run("exempt", "grant", str(asked), "--until", LATER, "--now", "2020-07-12T14:00:00Z")
    assert text.code == 0, text.err
    assert f"for dev-{target} (dev-{jamf} as asked, linked into it since) until" in text.out
    assert [(r[3], r[6]) for r in fleet.snapshot()["exemptions"]] == [(target, "For the Jamf one")]
    shown = _json(fleet, "device", "show", f"dev-{target}", "--now", "2020-07-12T14:00:00Z")
    assert shown["policies"]["tiktok-mail"]["state"] == "exempt"


def test_requests_long_shows_each_reason_whole_at_80_columns(fleet: Fleet) -> None:
    reason = "I run the company's account with our suppliers in Shenzhen; " * 6 + "élan"
    asked = _ask(fleet, JANE, reason.strip(), device="JANE-IPHONE")
    table = run_tty("--db", str(fleet.db), "--now", NOW, "exempt", "requests", columns=80)
    assert table.code == 0, table.err
    assert "1 pending request (--long shows each reason whole)" in table.out
    assert "élan" not in table.out  # cut to fit
    long = run_tty("--db", str(fleet.db), "--now", NOW, "exempt", "requests", "--long", columns=80)
    assert long.code == 0, long.err
    lines = long.out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert f"request: {asked}" in lines and f"person: {JANE}" in lines and "state: pending" in lines
    shown = " ".join(line.strip() for line in long.out.split("reason: ", 1)[1].splitlines()[:-1])
    assert shown == reason.strip()
    assert "1 pending request" in lines[-1] and "--long" not in lines[-1]
    piped = fleet.run("exempt", "requests")
    assert reason.strip() in piped.out and "--long" not in piped.out  # piped, nothing is cut


def test_requests_state_must_be_known(fleet: Fleet) -> None:
    result = fleet.run("exempt", "requests", "--state", "maybe")
    assert result.code == 2 and "--state" in result.err


def test_the_page_cannot_ask_for_what_is_not_its_own(fleet: Fleet) -> None:
    ws = Workspace(str(fleet.db), parse_time(NOW), create=False)
    try:
        jane_phone = _device_id(fleet, "JANE-IPHONE")
        bob_phone = _device_id(fleet, "BOB-PIXEL")
        with pytest.raises(BadInput, match="not one of yours"):
            exemptions.request(ws, "tiktok-mail", JANE, bob_phone, "his phone")
        with pytest.raises(BadInput, match="not in force for you"):
            exemptions.request(ws, "no-such-policy", JANE, None, "x")
        with pytest.raises(BadInput, match="not in force for you"):  # no device of theirs is in scope
            exemptions.request(ws, "tiktok-mail", "nobody@example.com", None, "x")
        for reason, message in (("", "reason is needed"), ("x" * 501, "at most 500"), ("a\x07b", "control")):
            with pytest.raises(BadInput, match=message):
                exemptions.request(ws, "tiktok-mail", JANE, jane_phone, reason)
        exemptions.request(ws, "tiktok-mail", JANE, jane_phone, "  kept stripped  ")
        with pytest.raises(BadInput, match="already asked"):
            exemptions.request(ws, "tiktok-mail", JANE, jane_phone, "again")
        assert [r.reason for r in ws.store.exemption_requests()] == ["kept stripped"]
    finally:
        ws.close()


# Unicode's Bidi_Control property (PropList.txt), every one of them.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize("mark", list(BIDI_CONTROLS), ids=lambda c: f"U+{ord(c):04X}")
def test_a_reason_with_a_bidi_control_is_refused(fleet: Fleet, mark: str) -> None:
    ws = Workspace(str(fleet.db), parse_time(NOW), create=False)
    try:
        with pytest.raises(BadInput, match="control character"):
            exemptions.request(ws, "tiktok-mail", JANE, None, f"needed {mark}for work")
    finally:
        ws.close()
    assert count(fleet.db, "exemption_requests") == 0
    asked = _ask(fleet, JANE, "needed for work")
    before = fleet.snapshot()
    assert_bad_input(fleet.run("exempt", "refuse", str(asked), "--reason", f"no{mark} thanks"), "--reason")
    assert fleet.snapshot() == before


def test_pending_requests_of_one_person_are_bounded(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exemptions, "MAX_PENDING", 2)
    _ask(fleet, JANE, "one", device="JANE-IPHONE")
    _ask(fleet, JANE, "two")
    with pytest.raises(BadInput, match="2 requests waiting"):
        _third_request(fleet)
    assert count(fleet.db, "exemption_requests") == 2


def _third_request(fleet: Fleet) -> None:
    """A third pending request of Jane's, for another device of hers."""
    store = open_store(str(fleet.db), create=False)
    try:
        with store.transaction():
            store.db.execute(  # type: ignore[attr-defined]
                "UPDATE devices SET owner = ? WHERE source_id = 'BOB-PIXEL'", (JANE,)
            )
    finally:
        store.close()
    _ask(fleet, JANE, "three", device="BOB-PIXEL")


# -- people link ------------------------------------------------------------------------------


def test_people_link_prints_a_fresh_link_the_page_accepts(fleet: Fleet) -> None:
    env = {"APPBAN_PUBLIC_URL": "https://appban.example.com/", "APPBAN_LINK_TTL": "2d"}
    doc = _json_env(fleet, env, "people", "link", "Jane.Doe@Example.com")
    assert doc["email"] == JANE
    assert doc["expires"] == "2020-07-14T12:00:00Z"
    parts = urlsplit(doc["link"])
    assert (parts.scheme, parts.netloc) == ("https", "appban.example.com")
    token = parts.path.removeprefix("/me/")
    store = open_store(str(fleet.db), create=False)
    try:
        assert links.read(store, token, parse_time(NOW)) == JANE
        assert links.read(store, token, parse_time("2020-07-14T12:00:00Z")) is None
    finally:
        store.close()
    text = fleet.run("people", "link", JANE, env=env)
    assert text.code == 0 and text.out.startswith("https://appban.example.com/me/")
    assert fleet.snapshot() == fleet.before  # nothing stored per link


@pytest.mark.parametrize("email", ["a@example.com", "ab@example.com", "abc@example.com", "jürgen@example.com"])
def test_a_link_is_read_only_as_it_was_written(fleet: Fleet, email: str) -> None:
    """Base64 that decodes to the same address but is not what ``token`` wrote (the
    unused low bits of its last character set, padding, another alphabet), and an
    expiry written another way, are not the link."""
    store = open_store(str(fleet.db), create=False)
    now = parse_time(NOW)
    try:
        good = links.token(store, email, now)
        assert links.read(store, good, now) == email
        who, expiry, mac = good.split(".")
        variants = [
            f"{who}=.{expiry}.{mac}",
            f"{who}.0{expiry}.{mac}",
            f"{who}.{expiry}.{mac}=",
            f"{who.replace('-', '+').replace('_', '/')}+/.{expiry}.{mac}",
            f"{who[:2]}\n{who[2:]}.{expiry}.{mac}",
            f" {good}",
            f"{good}\n",
        ]
        if len(who) % 4:  # the last character carries bits no byte uses: set one
            last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(who[-1])
            flipped = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
            assert flipped != who[-1]
            variants.append(f"{who[:-1]}{flipped}.{expiry}.{mac}")
        for variant in variants:
            assert links.read(store, variant, now) is None, variant
    finally:
        store.close()


def _json_env(fleet: Fleet, env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    result = fleet.run(*args, "--json", env=env)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_people_link_of_an_owner_not_imported(fleet: Fleet) -> None:
    store = open_store(str(fleet.db), create=False)
    try:
        with store.transaction():
            store.db.execute("DELETE FROM people WHERE email = ?", (BOB,))  # type: ignore[attr-defined]
    finally:
        store.close()
    assert _json(fleet, "people", "link", BOB)["email"] == BOB


@pytest.mark.parametrize("email", ["nobody@example.com", "not-an-address", "a\u200bb@example.com", ""])
def test_people_link_of_no_one_is_bad_input(fleet: Fleet, email: str) -> None:
    assert_bad_input(fleet.run("people", "link", email), "EMAIL")


def test_people_link_expires_with_the_link_ttl(fleet: Fleet) -> None:
    doc = _json(fleet, "people", "link", JANE)
    assert doc["expires"] == format_time(parse_time(NOW) + 30 * 86_400_000_000)
