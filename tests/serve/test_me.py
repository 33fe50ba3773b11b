"""An employee's own page, ``/me/<token>``, over a real socket: what it shows, its two
actions, and everything it refuses (bad links, forged or cross-site posts, bad input),
with nothing written when it refuses.

``people_database`` builds the database the browser tests and docs/screenshots.py use
too: five people near the real clock (``appban serve`` runs on it), two policies.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from helpers_serve import ServeProcess, ThreadServer

from appban.clock import format_time, now_micros
from appban.notify import links
from appban.serve import me
from appban.store import open_store
from appban.store.records import NewNotice
from helpers_cli import count, run, snapshot

HOSTILE = "<script>alert(1)</script>"
LONG = "L" * 10_240
PEOPLE = {
    "violating": "ann@example.com",
    "blocked": "bob@example.com",
    "compliant": "carla@example.com",
    "exempt": "dan@example.com",
    "hostile": "eve@example.com",
}
_PEOPLE_CSV = """\
email,name,org_unit,groups,timezone
ann@example.com,Ann Example,Sales,staff,Europe/London
bob@example.com,Bob Example,Engineering,staff,America/New_York
carla@example.com,Carla Example,Finance,staff,Asia/Kolkata
dan@example.com,Dan Example,Marketing,staff;social-media,Europe/Berlin
eve@example.com,Eve Example,Support,staff,Australia/Sydney
"""
TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
WECHAT = {"id": "com.tencent.xin", "name": "WeChat", "version": "7.0.14"}
NOTES = {"id": "com.example.notes", "name": "Notes", "version": "1.0"}


@dataclass(frozen=True)
class PeopleDatabase:
    path: str
    now: datetime  # the clock the database was built at (a little before the real one)

    def link(self, who: str, *, at: datetime | None = None) -> str:
        """``appban people link`` of a person of PEOPLE (a state name) or an email."""
        email = PEOPLE.get(who, who)
        result = run("--db", self.path, "people", "link", email, "--json", "--now", _iso(at or self.now))
        assert result.code == 0, result.err
        return str(json.loads(result.out)["link"])

    def path_of(self, who: str, *, at: datetime | None = None) -> str:
        return "/me/" + self.link(who, at=at).rsplit("/me/", 1)[1]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def device(self, source_id: str) -> int:
        return int(self.rows("SELECT id FROM devices WHERE source_id = ?", (source_id,))[0][0])


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checkin(device: str, owner: str, apps: list[dict[str, str]], at: datetime, model: str) -> str:
    return json.dumps(
        {
            "source": "intune",
            "device": {
                "id": device,
                "platform": "ios",
                "ownership": "personal",
                "owner": owner,
                "model": model,
                "os_version": "13.5.1",
                "eas_device_ids": [f"EAS{device}"],
            },
            "observed_at": _iso(at),
            "apps": apps,
        }
    )


def _policy(folder: Path, policy_id: str, app: str, title: str, effective: datetime, deadline: datetime) -> Path:
    path = folder / f"{policy_id}.yaml"
    path.write_text(
        f"id: {policy_id}\ntitle: {title}\nreason: Security risks\napps: [{app}]\n"
        "scope:\n  platforms: [ios, ipados, android]\n  mail_access: required\n"
        f"effective: {_iso(effective)}\ndeadline: {_iso(deadline)}\nmode: enforce\n",
        encoding="utf-8",
    )
    return path


def people_database(folder: Path) -> PeopleDatabase:
    """Five people, each with an iPhone that reads mail, near the real clock:

    - ann: WeChat on her iPhone, before wechat-mail's deadline: violating;
    - bob: TikTok on his iPhone, after tiktok-mail's deadline: blocked;
    - carla: no banned app: compliant under both;
    - dan: TikTok, but exempt from tiktok-mail until a month from now;
    - eve: WeChat named ``<script>alert(1)</script>`` on a device of that model, a
      second device whose model is 10 KB long, and a 10 KB name (written into the
      database as it is: an import would have made the markup safe, a tampered
      database need not have).

    Ann was sent the memo of wechat-mail.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    seen = now - timedelta(hours=1)
    db = str(folder / "people.db")
    people = folder / "people.csv"
    people.write_text(_PEOPLE_CSV, encoding="utf-8")
    checkins = folder / "checkins.jsonl"
    checkins.write_text(
        "\n".join(
            [
                _checkin("ANN-IPHONE", PEOPLE["violating"], [WECHAT, NOTES], seen, "iPhone 11"),
                _checkin("BOB-IPHONE", PEOPLE["blocked"], [TIKTOK], seen, "iPhone XR"),
                _checkin("CARLA-IPHONE", PEOPLE["compliant"], [NOTES], seen, "iPhone SE"),
                _checkin("DAN-IPHONE", PEOPLE["exempt"], [TIKTOK], seen, "iPhone 8"),
                _checkin("EVE-IPHONE", PEOPLE["hostile"], [{**WECHAT, "name": "WeChat"}], seen, "iPhone 12"),
                _checkin("EVE-LONG", PEOPLE["hostile"], [NOTES], seen, "iPhone 7"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    tiktok = _policy(
        folder,
        "tiktok-mail",
        "tiktok",
        "TikTok is not permitted on mobile devices that access company email",
        now - timedelta(days=3),
        now - timedelta(days=1),
    )
    wechat = _policy(
        folder,
        "wechat-mail",
        "wechat",
        "WeChat is not permitted on mobile devices that access company email",
        now - timedelta(days=1),
        now + timedelta(days=6),
    )
    at = ["--now", _iso(now)]
    for args in (
        ["init"],
        ["people", "import", str(people)],
        ["import", "appban", str(checkins)],
        ["policy", "apply", str(tiktok)],
        ["policy", "apply", str(wechat)],
        [
            "exempt",
            "add",
            "--policy",
            "tiktok-mail",
            "--person",
            PEOPLE["exempt"],
            "--until",
            _iso(now + timedelta(days=30)),
            "--reason",
            "Social media team: runs the company account",
        ],
        ["evaluate"],
    ):
        result = run("--db", db, *args, *at)
        assert result.code == 0, (args, result.err)
    store = open_store(db, create=False)
    try:
        with store.transaction():
            store.db.execute("UPDATE devices SET model = ? WHERE source_id = 'EVE-IPHONE'", (HOSTILE,))  # type: ignore[attr-defined]
            store.db.execute("UPDATE devices SET model = ? WHERE source_id = 'EVE-LONG'", (LONG,))  # type: ignore[attr-defined]
            store.db.execute(  # type: ignore[attr-defined]
                "UPDATE observations SET name = ? WHERE app_id = 'com.tencent.xin' AND device_id = "
                "(SELECT id FROM devices WHERE source_id = 'EVE-IPHONE')",
                (HOSTILE,),
            )
            store.db.execute("UPDATE people SET name = ? WHERE email = ?", ("Eve " + LONG, PEOPLE["hostile"]))  # type: ignore[attr-defined]
            micros = int(now.timestamp() * 1_000_000)
            store.add_notices([NewNotice("wechat-mail", PEOPLE["violating"], "memo", "", "mail", "", micros, micros)])
            for notice in store.claim_notices(micros, 10, micros + 60_000_000):
                store.finish_notice(notice.id, "sent", micros)
    finally:
        store.close()
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return PeopleDatabase(db, now)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> PeopleDatabase:
    return people_database(tmp_path_factory.mktemp("people"))


@pytest.fixture
def people(template: PeopleDatabase, tmp_path: Path) -> PeopleDatabase:
    copy = tmp_path / "people.db"
    copy.write_bytes(Path(template.path).read_bytes())
    return PeopleDatabase(str(copy), template.now)


@pytest.fixture
def site(people: PeopleDatabase) -> Any:
    with ThreadServer(people.path) as running, httpx.Client(base_url=running.url, timeout=30) as client:
        yield client


def _form(page: str) -> str:
    found = re.search(r'name="form" value="([^"]+)"', page)
    assert found, "the page has no form"
    return found.group(1)


def _post(site: httpx.Client, path: str, fields: dict[str, str], **headers: str) -> httpx.Response:
    """A form post as a browser sends it (same origin)."""
    return site.post(
        path,
        content=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )


# -- what the page shows -----------------------------------------------------------------


def test_a_violating_phone_says_what_where_when_and_what_to_do(site: httpx.Client, people: PeopleDatabase) -> None:
    r = site.get(people.path_of("violating"))
    assert r.status_code == 200, r.text
    page = r.text
    assert '<html lang="en">' in page
    assert "Ann Example" in page and "ann@example.com" in page and "Europe/London" in page
    assert "WeChat is not permitted" in page and "TikTok is not permitted" in page
    assert "Banned app found" in page
    # Why, in words: the app, the source, the device, the day in her zone.
    seen = (people.now - timedelta(hours=1)).astimezone(ZoneInfo("Europe/London"))
    when = f"{seen:%A} {seen.day} {seen:%B %Y}, {seen:%H:%M} (Europe/London)"
    assert f"WeChat seen by intune on your iPhone 11 on {when}" in page
    # The deadline in her zone, and in ISO form with its offset.
    deadline = (people.now + timedelta(days=6)).astimezone(ZoneInfo("Europe/London"))
    assert deadline.isoformat() in page
    assert "Remove WeChat from this device before" in page
    assert page.count(">I removed it</button>") == 1  # compliant under tiktok-mail: nothing to remove there
    assert page.count(">Request an exemption</button>") == 2
    # What appban stores: the people row, device facts, apps kept, notices, and the promise.
    assert "What appban stores about you" in page
    assert "Only apps that appban's catalog of banned apps names are kept" in page
    assert "Notes" not in page  # not in the catalog: not kept, not shown
    assert "EASANN-IPHONE" in page and "Sales" in page
    assert re.search(r"<td>memo</td><td>wechat-mail</td><td>sent</td>", page)


@pytest.mark.parametrize(
    ("who", "words"),
    [
        ("blocked", ["Mail blocked", "TikTok seen by intune on your iPhone XR", "it has passed", "Mail comes back"]),
        ("compliant", ["Compliant", "shows no banned app", "Nothing needs your attention now."]),
        ("exempt", ["Exempt until", "Social media team: runs the company account", "for all your devices"]),
    ],
)
def test_each_state_in_words(site: httpx.Client, people: PeopleDatabase, who: str, words: list[str]) -> None:
    page = site.get(people.path_of(who)).text
    for text in words:
        assert text in page, text
    if who != "blocked":
        assert ">I removed it</button>" not in page


def test_hostile_names_are_text(site: httpx.Client, people: PeopleDatabase) -> None:
    page = site.get(people.path_of("hostile")).text
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert LONG not in page  # 10 KB names are cut, and say how long they were
    assert "10,240 characters" in page
    assert len(page) < 60_000


def test_headers_of_the_page_and_its_stylesheet(site: httpx.Client, people: PeopleDatabase) -> None:
    r = site.get(people.path_of("violating"))
    assert r.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("text/html")
    assert "<script" not in r.text and " style=" not in r.text and "http" not in r.text.split("</head>")[0]
    css = site.get("/me.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert ":focus-visible" in css.text


_PAGE_HEADERS = (
    "content-security-policy",
    "referrer-policy",
    "cache-control",
    "x-content-type-options",
    "x-frame-options",
)


@pytest.mark.parametrize(
    ("method", "where", "status"),
    [
        ("PUT", "page", 405),
        ("DELETE", "page", 405),
        ("OPTIONS", "page", 405),
        ("PATCH", "page", 405),
        ("PUT", "/me.css", 405),
        ("POST", "/me.css", 405),
        ("GET", "/me", 404),
        ("POST", "/me", 404),
        ("GET", "/me/", 404),
        ("DELETE", "/me/a/b", 405),
        ("HEAD", "page", 200),
    ],
)
def test_every_answer_under_me_carries_the_pages_headers(
    site: httpx.Client, people: PeopleDatabase, method: str, where: str, status: int
) -> None:
    path = people.path_of("violating") if where == "page" else where
    r = site.request(method, path, content=b"x" if method in ("PUT", "POST", "PATCH") else None)
    assert r.status_code == status
    assert [h for h in _PAGE_HEADERS if h not in r.headers] == []
    assert r.headers["content-type"].startswith("text/html")
    if status == 405:
        assert "GET" in r.headers["allow"] and "This address takes only" in r.text
    assert "ann@" not in r.text


def test_a_failure_is_the_pages_own_answer(
    site: httpx.Client, people: PeopleDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("/secret/path/of/the/server")

    monkeypatch.setattr(me, "page_data", broken)
    r = site.get(people.path_of("violating"))
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert [h for h in _PAGE_HEADERS if h not in r.headers] == []
    assert "appban could not answer just now" in r.text and "secret" not in r.text


@pytest.mark.parametrize("how", ["expired", "forged", "cut", "other-key", "garbage", "nested"])
def test_a_bad_link_gets_one_answer_and_nothing_else(site: httpx.Client, people: PeopleDatabase, how: str) -> None:
    good = people.path_of("violating")
    path = {
        "expired": people.path_of("violating", at=people.now - timedelta(days=31)),
        "forged": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "cut": good.rsplit(".", 1)[0],
        "other-key": "/me/" + _other_key_token(people),
        "garbage": "/me/%3Cscript%3E",
        "nested": good + "/more",
    }[how]
    r = site.get(path)
    assert r.status_code == 404
    assert "This link is not valid or has expired: ask your helpdesk or use the newest link from your mail" in r.text
    assert "Ann" not in r.text and "ann@" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"


def _altered(token: str, how: str) -> str:
    who, expiry, mac = token.split(".")
    return {
        "bang": f"{who[:4]}!{who[4:]}.{expiry}.{mac}",  # a character base64 decoding would skip
        "percent": f"{who[:4]}%25{who[4:]}.{expiry}.{mac}",
        "space": f"{who[:4]}%20{who[4:]}.{expiry}.{mac}",
        "newline": f"{who[:4]}%0A{who[4:]}.{expiry}.{mac}",
        "padding": f"{who}=.{expiry}.{mac}",
        "padding-inside": f"{who[:4]}={who[4:]}.{expiry}.{mac}",
        "padded-mac": f"{who}.{expiry}.{mac}==",
        "leading-zero": f"{who}.0{expiry}.{mac}",
        "plus-expiry": f"{who}.+{expiry}.{mac}",
    }[how]


@pytest.mark.parametrize(
    "how",
    ["bang", "percent", "space", "newline", "padding", "padding-inside", "padded-mac", "leading-zero", "plus-expiry"],
)
def test_an_altered_link_is_not_a_link(site: httpx.Client, people: PeopleDatabase, how: str) -> None:
    """One link is one string: another spelling that decodes to the same is a 404."""
    good = people.path_of("violating")
    assert site.get(good).status_code == 200
    r = site.get("/me/" + _altered(good.removeprefix("/me/"), how))
    assert r.status_code == 404
    assert "This link is not valid or has expired" in r.text and "Ann" not in r.text


def _other_key_token(people: PeopleDatabase) -> str:
    """A well-made token for Ann, signed with another database's key."""
    folder = Path(people.path).parent / "other"
    folder.mkdir()
    other = str(folder / "other.db")
    assert run("--db", other, "init").code == 0
    store = open_store(other, create=False)
    try:
        return links.token(store, PEOPLE["violating"], now_micros())
    finally:
        store.close()


# -- the actions ---------------------------------------------------------------------------


def _device_field(page: str, policy: str) -> str:
    found = re.search(rf'name="policy" value="{policy}">\s*<input type="hidden" name="device" value="(\d+)">', page)
    assert found, f"no I removed it form under {policy}"
    return found.group(1)


def test_i_removed_it_records_an_attestation_and_says_so(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("violating")
    page = site.get(path).text
    device = _device_field(page, "wechat-mail")
    r = _post(site, path, {"form": _form(page), "action": "removed", "policy": "wechat-mail", "device": device})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{path}?done=removed"
    rows = people.rows("SELECT policy_id, device_id, person FROM attestations")
    assert rows == [("wechat-mail", int(device), PEOPLE["violating"])]
    audit = people.rows("SELECT subject, data FROM audit_log WHERE action = 'attestation'")
    assert audit == [(f"wechat-mail/dev-{device}", json.dumps({"person": PEOPLE["violating"]}, separators=(",", ":")))]
    after = site.get(r.headers["location"]).text
    assert "your word that the app is gone is recorded" in after
    assert "You said you removed the app" in after and "Nothing needs your attention now." in after


@pytest.mark.parametrize(
    ("who", "policy", "source_id"),
    [
        ("violating", "tiktok-mail", "ANN-IPHONE"),  # compliant under it: no button there
        ("exempt", "tiktok-mail", "DAN-IPHONE"),  # exempt
        ("compliant", "wechat-mail", "CARLA-IPHONE"),
    ],
)
def test_i_removed_it_only_where_something_is_to_remove(
    site: httpx.Client, people: PeopleDatabase, who: str, policy: str, source_id: str
) -> None:
    path = people.path_of(who)
    page = site.get(path).text
    device = str(people.device(source_id))
    before = snapshot(people.path)
    r = _post(site, path, {"form": _form(page), "action": "removed", "policy": policy, "device": device})
    assert r.status_code == 400 and "needs nothing from you under this policy now" in r.text
    assert snapshot(people.path) == before


def test_i_removed_it_twice_is_recorded_once(site: httpx.Client, people: PeopleDatabase) -> None:
    """A second click, or the form sent again and again: one attestation, one audit entry,
    until an inventory comes after it."""
    path = people.path_of("violating")
    page = site.get(path).text
    fields = {
        "form": _form(page),
        "action": "removed",
        "policy": "wechat-mail",
        "device": _device_field(page, "wechat-mail"),
    }
    for _ in range(20):
        r = _post(site, path, fields)
        assert r.status_code == 303 and r.headers["location"] == f"{path}?done=removed"
    assert count(people.path, "attestations") == 1
    assert count(people.path, "audit_log", "action = 'attestation'") == 1


def test_request_an_exemption_makes_a_request_for_admins(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("blocked")
    page = site.get(path).text
    fields = {
        "form": _form(page),
        "action": "requested",
        "policy": "tiktok-mail",
        "device": "",
        "reason": "I run the company's TikTok account",
    }
    r = _post(site, path, fields)
    assert r.status_code == 303, r.text
    rows = people.rows("SELECT policy_id, person, device_id, reason, state FROM exemption_requests")
    assert rows == [("tiktok-mail", PEOPLE["blocked"], None, "I run the company's TikTok account", "pending")]
    assert count(people.path, "audit_log", "action = 'exemption.request'") == 1
    after = site.get(r.headers["location"]).text
    assert "Your request is sent" in after and "Waiting for an answer" in after
    # The same request again waits for the first one's answer.
    again = _post(site, path, fields)
    assert again.status_code == 400 and "already asked" in again.text
    assert count(people.path, "exemption_requests") == 1


def test_an_answer_shows_on_the_page(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("blocked")
    page = site.get(path).text
    device = _device_field(page, "tiktok-mail")
    for reason in ("first", "second"):
        fields = {"form": _form(page), "action": "requested", "policy": "tiktok-mail", "reason": reason}
        fields["device"] = device if reason == "first" else ""
        assert _post(site, path, fields).status_code == 303
    until = format_time(now_micros() + 7 * 86_400_000_000)
    assert run("--db", people.path, "exempt", "grant", "1", "--until", until).code == 0
    assert run("--db", people.path, "exempt", "refuse", "2", "--reason", "Use a company phone").code == 0
    page = site.get(path).text
    assert "Refused" in page and "Use a company phone" in page
    assert "Granted" in page and "Exempt until" in page


def _hand_over(people: PeopleDatabase, source_id: str, to: str, apps: list[dict[str, str]], model: str) -> None:
    """A check-in naming a new owner for a device: it was handed over, or re-enrolled."""
    checkin = Path(people.path).parent / "handed-over.jsonl"
    checkin.write_text(_checkin(source_id, to, apps, people.now, model) + "\n", encoding="utf-8")
    result = run("--db", people.path, "import", "appban", str(checkin))
    assert result.code == 0, result.err


def test_a_new_owner_sees_neither_the_former_owners_reason_nor_their_word(
    site: httpx.Client, people: PeopleDatabase
) -> None:
    """Ann says she removed WeChat and is granted an exemption for her iPhone, for a
    private reason; the phone is handed to Bob. The exemption ends with the hand-over
    (it was granted on Ann's word), and Bob's page shows neither Ann's reason nor her
    word as his."""
    path = people.path_of("violating")
    page = site.get(path).text
    device = _device_field(page, "wechat-mail")
    done = _post(site, path, {"form": _form(page), "action": "removed", "policy": "wechat-mail", "device": device})
    assert done.status_code == 303
    private = "Private medical reason: my doctor only uses WeChat"
    fields = {"form": _form(page), "action": "requested", "policy": "wechat-mail", "device": device, "reason": private}
    assert _post(site, path, fields).status_code == 303
    until = format_time(now_micros() + 7 * 86_400_000_000)
    assert run("--db", people.path, "exempt", "grant", "1", "--until", until).code == 0
    _hand_over(people, "ANN-IPHONE", PEOPLE["blocked"], [WECHAT], "iPhone 11")
    bob = site.get(people.path_of("blocked")).text
    assert "iPhone 11" in bob  # his now
    assert "Private medical reason" not in bob
    assert "by an exemption someone else asked for while this device was theirs" not in bob
    assert "You hold no exemption." in bob
    revoked = run("--db", people.path, "--json", "exempt", "list", "--all")
    assert revoked.code == 0 and '"revoked_at": null' not in revoked.out
    assert "You said you removed the app" not in bob
    word = bob[bob.index("Your word that an app is gone") :]
    assert word.split("</section>")[0].count("<li>") == 0
    ann = site.get(path).text
    assert private in ann  # her own request, answered
    assert "iPhone 11" not in ann.split("Your exemptions and requests")[0]


@pytest.mark.parametrize(
    ("fields", "headers", "status"),
    [
        ({"form": None}, {}, 403),  # no form token
        ({"form": "AAAAAAAAAAAAAAAAAAAAAA"}, {}, 403),  # a wrong one
        ({"form": "other-page"}, {}, 403),  # the form token of another person's page
        ({}, {"Sec-Fetch-Site": "cross-site"}, 403),
        ({}, {"Sec-Fetch-Site": "same-site"}, 403),
        ({}, {"Origin": "https://evil.example.com"}, 403),
        ({}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),
        ({}, {"Origin": "http://127.0.0.1:1"}, 403),  # another port is another origin
        ({}, {"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({}, {"Content-Type": "application/json"}, 415),
        ({"reason": "x" * 9000}, {}, 413),
        ({"reason": ""}, {}, 400),
        ({"reason": "   "}, {}, 400),
        ({"reason": "y" * 501}, {}, 400),
        ({"reason": "two\nlines"}, {}, 400),
        ({"reason": "<b>bold</b>"}, {}, 400),
        ({"policy": "no-such-policy"}, {}, 400),
        ({"device": "999"}, {}, 400),  # not a device of hers
        ({"device": "dev-1"}, {}, 400),
        ({"action": "delete"}, {}, 400),
    ],
)
def test_refused_posts_write_nothing(
    site: httpx.Client, people: PeopleDatabase, fields: dict[str, str | None], headers: dict[str, str], status: int
) -> None:
    path = people.path_of("violating")
    page = site.get(path).text
    form = _form(page)
    if fields.get("form") == "other-page":
        fields = {**fields, "form": _form(site.get(people.path_of("blocked")).text)}
    sent = {"form": form, "action": "requested", "policy": "wechat-mail", "device": "", "reason": "I need it"}
    sent.update({k: v for k, v in fields.items() if v is not None})
    sent = {k: v for k, v in sent.items() if not (k in fields and fields[k] is None)}
    before = snapshot(people.path)
    r = _post(site, path, sent, **headers)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert "Nothing was recorded" in r.text or "Not recorded" in r.text
    assert snapshot(people.path) == before


def test_a_post_with_a_bad_link_is_refused_before_its_body(site: httpx.Client, people: PeopleDatabase) -> None:
    before = snapshot(people.path)
    path = people.path_of("violating", at=people.now - timedelta(days=40))
    r = _post(site, path, {"form": "x", "action": "removed", "policy": "wechat-mail", "device": "1"})
    assert r.status_code == 404
    assert snapshot(people.path) == before


def test_someone_elses_device_cannot_be_attested(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("violating")
    page = site.get(path).text
    bob = str(people.device("BOB-IPHONE"))
    before = snapshot(people.path)
    r = _post(site, path, {"form": _form(page), "action": "removed", "policy": "tiktok-mail", "device": bob})
    assert r.status_code == 400 and "not one of yours" in r.text
    assert snapshot(people.path) == before


def test_a_typed_reason_is_kept_when_refused(site: httpx.Client, people: PeopleDatabase) -> None:
    """The error is the form's: said in plain words at the top, naming the policy and
    linking to the field; inside the form, tied to the field (aria-describedby), which
    is marked invalid and takes the focus (autofocus: no script needed)."""
    path = people.path_of("violating")
    page = site.get(path).text
    r = _post(site, path, {"form": _form(page), "action": "requested", "policy": "wechat-mail", "reason": "<i>x</i>"})
    assert r.status_code == 400
    assert 'value="&lt;i&gt;x&lt;/i&gt;"' in r.text and "markup in text" not in r.text
    plain = "a reason can&#39;t contain “&lt;” followed by a letter, “/”, “!” or “?”"
    top = re.search(r'<p class="error" role="alert">(.*?)</p>', r.text, re.S)
    assert top is not None
    assert "your request for an exemption from “WeChat is not permitted" in top.group(1) and plain in top.group(1)
    assert '<a href="#reason-wechat-mail">' in top.group(1)
    assert f'<p class="error" id="request-err-wechat-mail">{plain}</p>' in r.text
    field = re.search(r'<input type="text" id="reason-wechat-mail"[^>]*>', r.text)
    assert field is not None
    assert 'aria-invalid="true" aria-describedby="request-err-wechat-mail" autofocus' in field.group(0)
    assert r.text.count("aria-invalid") == 1 and r.text.count("autofocus") == 1


def test_a_refused_device_is_marked_in_its_form(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("violating")
    fields = {"form": _form(site.get(path).text), "action": "requested", "policy": "tiktok-mail", "device": "999"}
    r = _post(site, path, {**fields, "reason": "kept"})
    assert r.status_code == 400 and "that device is not one of yours" in r.text
    select = re.search(r'<select id="device-tiktok-mail"[^>]*>', r.text)
    assert select is not None and 'aria-invalid="true" aria-describedby="request-err-tiktok-mail"' in select.group(0)
    assert 'href="#device-tiktok-mail"' in r.text and 'value="kept"' in r.text


# -- the access log ------------------------------------------------------------------------


def test_the_access_log_never_holds_the_token(people: PeopleDatabase) -> None:
    path = people.path_of("violating")
    token = path.rsplit("/", 1)[1]
    with ServeProcess(people.path, "--port", "0") as proc, httpx.Client(base_url=proc.url, timeout=30) as client:
        page = client.get(path).text
        assert client.get(path + "?done=removed").status_code == 200
        assert client.get(path + "x").status_code == 404
        assert client.get(path + "/deeper").status_code == 404
        r = _post(client, path, {"form": _form(page), "action": "requested", "policy": "wechat-mail", "reason": "x"})
        assert r.status_code == 303
        proc.stop()
    entries = proc.access_log()
    assert [e["path"] for e in entries] == ["/me/{token}"] * 3 + ["/me/{rest:path}", "/me/{token}"]
    assert [e["status"] for e in entries] == [200, 200, 404, 404, 303]
    assert not any(token[:20] in line or token[-10:] in line for line in proc.log)


# -- more of what the page shows ------------------------------------------------------------


def test_a_withdrawn_policy_shows_for_those_it_was_sent_to(site: httpx.Client, people: PeopleDatabase) -> None:
    result = run("--db", people.path, "policy", "withdraw", "wechat-mail", "--reason", "Sent in error")
    assert result.code == 0, result.err
    page = site.get(people.path_of("violating")).text
    assert "Withdrawn policies" in page and "Sent in error" in page
    assert "Nothing needs your attention now." in page
    assert ">I removed it</button>" not in page and 'value="wechat-mail"' not in page
    # Carla was sent nothing under it: it is simply gone from her page.
    assert "WeChat is not permitted" not in site.get(people.path_of("compliant")).text


def test_a_request_under_a_withdrawn_policy_waits_for_nothing(site: httpx.Client, people: PeopleDatabase) -> None:
    path = people.path_of("violating")
    fields = {"form": _form(site.get(path).text), "action": "requested", "policy": "wechat-mail", "reason": "Suppliers"}
    assert _post(site, path, fields).status_code == 303
    assert "Waiting for an answer" in site.get(path).text
    assert run("--db", people.path, "policy", "withdraw", "wechat-mail", "--reason", "Sent in error").code == 0
    page = site.get(path).text
    # The withdrawal closed it: refused, saying why.
    assert "the policy was withdrawn" in page and "Waiting for an answer" not in page


def test_the_policy_that_needs_something_comes_first(site: httpx.Client, people: PeopleDatabase) -> None:
    page = site.get(people.path_of("violating")).text
    assert page.index("WeChat is not permitted") < page.index("TikTok is not permitted")
    page = site.get(people.path_of("blocked")).text
    assert page.index("TikTok is not permitted") < page.index("WeChat is not permitted")
    assert "1 of your devices needs your attention" in page


def test_an_owner_who_was_never_imported_has_a_page(site: httpx.Client, people: PeopleDatabase) -> None:
    store = open_store(people.path, create=False)
    try:
        with store.transaction():
            store.db.execute("DELETE FROM people WHERE email = ?", (PEOPLE["blocked"],))  # type: ignore[attr-defined]
    finally:
        store.close()
    page = site.get(people.path_of("blocked")).text
    assert "Only your email address, bob@example.com" in page
    assert "times are shown in your time zone, UTC" in page
    assert "TikTok seen by intune on your iPhone XR" in page
