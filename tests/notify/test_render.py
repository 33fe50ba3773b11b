"""Rendering notices (appban.notify.render) from a real database built through the CLI:
each kind in the person's time zone, one notice for several devices, hostile names
kept as data, the message as a mail reader parses it, a policy's own templates and
Jinja2's sandbox, the webhook's body, and ``preview``."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from appban.clock import Micros, parse_time
from appban.errors import BadInput, NotFound
from appban.notify import links
from appban.notify.render import (
    MAX_NAME,
    MAX_SUBJECT,
    Rendered,
    clean_subject,
    email_message,
    message_bytes,
    preview,
    render,
    webhook_body,
)
from appban.store.records import NOTICE_KINDS, Notice
from appban.workspace import Workspace
from helpers_semantics import DEADLINE, TIKTOK_ANDROID, TIKTOK_IOS, Appban, checkin

NOW = "2020-07-10T18:00:00Z"  # after the policy is applied, before its deadline
ANN = "ann@example.com"
# The deadline (2020-07-11T06:59:00Z) and the check-ins (2020-07-10T15:00:00Z) in Kolkata (+05:30).
DEADLINE_KOLKATA = "Saturday 11 July 2020, 12:29 (Asia/Kolkata)"
DEADLINE_KOLKATA_ISO = "2020-07-11T12:29:00+05:30"
SEEN_KOLKATA = "Friday 10 July 2020, 20:30 (Asia/Kolkata)"


def _now(text: str = NOW) -> Micros:
    return parse_time(text)


@pytest.fixture
def world(ab: Appban) -> Appban:
    """Ann (Kolkata) with a phone that has TikTok; Bob (New York) with a clean phone."""
    ab.people(
        [
            (ANN, "Ann Example", "Sales", "staff", "Asia/Kolkata"),
            ("bob@example.com", "Bob Example", "Sales", "staff", "America/New_York"),
        ]
    )
    ab.ingest(
        checkin("ann-phone", owner=ANN, apps=[TIKTOK_ANDROID], model="Pixel 4"),
        checkin("bob-phone", owner="bob@example.com"),
    )
    ab.apply()
    return ab


@pytest.fixture
def ws(world: Appban) -> Iterator[Workspace]:
    workspace = Workspace(world.db, _now(), create=False)
    try:
        yield workspace
    finally:
        workspace.store.close()


def notice(
    kind: str = "memo", *, id: int = 7, person: str = ANN, occasion: str = "", devices: tuple[int, ...] = ()
) -> Notice:
    return Notice(
        id=id,
        policy_id="tiktok-mail",
        person=person,
        kind=kind,
        occasion=occasion,
        channel="mail",
        devices=devices,
        created_at=_now(),
        due_at=_now(),
        state="sending",
        attempts=0,
        next_try=None,
        claimed_until=None,
        sent_at=None,
        last_error="",
    )


def with_notices(ab: Appban, section: str) -> str:
    """The test policy's file with a ``notices:`` section, in the database's folder."""
    text = Path(ab.policy_file()).read_text(encoding="utf-8") + "notices:\n" + section
    path = ab.root / "policy-with-notices.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def device_id(ab: Appban, source_id: str) -> int:
    return int(ab.sql("SELECT id FROM devices WHERE source_id = ?", (source_id,))[0][0])


def parsed(r: Rendered) -> email.message.EmailMessage:
    raw = email_message(r).as_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def parts(msg: email.message.EmailMessage) -> dict[str, str]:
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}  # type: ignore[attr-defined]


# -- each kind ----------------------------------------------------------------------------


def _occasion_for(ab: Appban, kind: str) -> tuple[str, tuple[int, ...]]:
    """What the planner would put in the row for ``kind``, made in the database first."""
    phone = device_id(ab, "ann-phone")
    if kind.startswith("exemption"):
        doc = ab(
            "exempt", "add", "--policy", "tiktok-mail", "--person", ANN,
            "--until", "2020-08-01T00:00:00Z", "--reason", "Travelling with a locked phone", now=NOW,
        )  # fmt: skip
        return f"ex-{doc['exemption']}", ()
    if kind == "correction":
        ab("policy", "withdraw", "tiktok-mail", "--reason", "The memo was sent in error", now=NOW)
        return "", ()
    if kind in ("blocked", "restored"):
        return str(_now()), (phone,)
    if kind == "policy_changed":
        return "rev-1", ()
    if kind == "reminder":
        return str(parse_time(DEADLINE) - 2 * 3600 * 1_000_000), ()
    return "", ()


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_each_kind_renders_in_the_persons_time_zone(world: Appban, kind: str) -> None:
    occasion, devices = _occasion_for(world, kind)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(kind, occasion=occasion, devices=devices), _now())
    workspace.store.close()

    assert (r.notice_id, r.kind, r.policy_id, r.to, r.to_name) == (7, kind, "tiktok-mail", ANN, "Ann Example")
    assert r.subject and "\n" not in r.subject and "{{" not in r.subject
    assert r.context["person"]["timezone"] == "Asia/Kolkata"
    assert r.context["deadline_local"] == DEADLINE_KOLKATA
    assert r.context["deadline_local_iso"] == DEADLINE_KOLKATA_ISO
    assert r.context["deadline_iso"] == "2020-07-11T06:59:00Z"
    for body in (r.text, r.html):
        assert "Hello Ann Example" in body
        assert r.link in body
        assert r.context["what_to_do"].replace("\u2019", "'")[:40] in body.replace("&#39;", "'")
        if kind != "correction":  # a withdrawn policy's states mean nothing any more
            assert "Pixel 4 (Android)" in body, body
            assert SEEN_KOLKATA in body
        else:
            assert "Pixel 4" not in body and r.context["devices"] == []
        if kind in ("memo", "reminder", "policy_changed"):
            assert DEADLINE_KOLKATA in body and DEADLINE_KOLKATA_ISO in body
    if kind in ("memo", "reminder", "blocked"):
        assert "TikTok" in r.subject
    if kind.startswith("exemption"):
        assert r.context["exemption"]["until"]["local"] == "Saturday 1 August 2020, 05:30 (Asia/Kolkata)"
        assert "Saturday 1 August 2020, 05:30 (Asia/Kolkata)" in r.text
        assert "2020-08-01T05:30:00+05:30" in r.html
    if kind == "correction":
        assert "The memo was sent in error" in r.text and "withdrawn" in r.subject + r.text
    assert json.loads(json.dumps(r.context)) == r.context  # JSON-able: the webhook carries it


def test_each_kind_renders_for_someone_with_no_device_concerned(world: Appban) -> None:
    """Audience ``all`` reaches people with nothing to do: every template copes."""
    workspace = Workspace(world.db, _now(), create=False)
    for kind in NOTICE_KINDS:
        r = render(workspace.store, notice(kind, person="bob@example.com"), _now())
        assert r.context["devices"] == [] and "Hello Bob Example" in r.text
        assert r.context["deadline_local"] == "Saturday 11 July 2020, 02:59 (America/New_York)"
    memo = render(workspace.store, notice("memo", person="bob@example.com"), _now())
    assert "Nothing to do now" in memo.text and "TikTok" in memo.text  # named from the catalog
    workspace.store.close()


def test_an_unknown_time_zone_is_shown_in_utc(world: Appban) -> None:
    world.write_sql(f"UPDATE people SET timezone = 'Mars/Olympus_Mons' WHERE email = '{ANN}'")
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    assert r.context["deadline_local"] == "Saturday 11 July 2020, 06:59 (UTC)"
    assert r.context["deadline_local_iso"] == "2020-07-11T06:59:00+00:00"


# -- devices ------------------------------------------------------------------------------


def test_three_devices_make_one_notice_that_lists_all_three(ab: Appban) -> None:
    ab.people([(ANN, "Ann Example", "Sales", "staff", "Asia/Kolkata")])
    ab.ingest(
        checkin("ann-pixel", owner=ANN, apps=[TIKTOK_ANDROID], model="Pixel 4"),
        checkin("ann-iphone", owner=ANN, platform="ios", apps=[TIKTOK_IOS], model="iPhone12,1"),
        checkin("ann-ipad", owner=ANN, platform="ipados", apps=[TIKTOK_IOS], model="iPad8,1"),
    )
    ab.apply()
    workspace = Workspace(ab.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    assert [d["name"] for d in r.context["devices"]] == ["Pixel 4 (Android)", "iPhone12,1 (iOS)", "iPad8,1 (iPadOS)"]
    for body in (r.text, r.html):
        for model in ("Pixel 4", "iPhone12,1", "iPad8,1"):
            assert body.count(model) == 1, (model, body)
        assert body.count("TikTok, seen by agent on 10 July 2020 at 20:30") == 3
    assert "Your 3 devices" in r.text
    assert "from the devices listed below" in r.context["what_to_do"]


def test_an_app_seen_by_two_sources_names_both(ab: Appban) -> None:
    """Two sources' records of one phone (they share its ActiveSync DeviceId): which
    source saw the app, and when, each in the person's time zone."""
    ab.people([(ANN, "Ann Example", "Sales", "staff", "Asia/Kolkata")])
    ab.ingest(
        checkin("ann-phone", owner=ANN, apps=[TIKTOK_ANDROID], eas=["EASANN1"], model="Pixel 4"),
        checkin("ANN-MDM-7", owner=ANN, apps=[TIKTOK_ANDROID], eas=["EASANN1"], source="mdm",
                at="2020-07-10T15:15:00Z"),
        now="2020-07-10T15:20:00Z",
    )  # fmt: skip
    ab.apply()
    workspace = Workspace(ab.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    assert len(r.context["devices"]) == 1
    found = r.context["devices"][0]["apps"]
    assert [a["text"] for a in found] == [
        "TikTok, seen by agent on 10 July 2020 at 20:30 and by mdm on 10 July 2020 at 20:45"
    ]
    assert [(s["source"], s["at"]["iso"]) for s in found[0]["seen"]] == [
        ("agent", "2020-07-10T15:00:00Z"),
        ("mdm", "2020-07-10T15:15:00Z"),
    ]


def test_what_is_shown_is_read_when_sent_not_when_planned(world: Appban) -> None:
    """The row names what a notice is about; the app found, and whose device it is,
    are read at send time. A device given to someone else is not shown."""
    phone = device_id(world, "ann-phone")
    world.ingest(checkin("ann-phone", owner=ANN, at="2020-07-10T17:00:00Z", model="Pixel 4"), now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    assert r.context["devices"] == [] and "Nothing to do now" in r.text
    workspace.store.close()

    world.ingest(checkin("ann-phone", owner="bob@example.com", at="2020-07-10T17:30:00Z"), now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice("blocked", occasion="1", devices=(phone,)), _now())
    workspace.store.close()
    assert r.context["devices"] == [] and "Pixel" not in r.text


def test_unverified_devices_say_why(world: Appban) -> None:
    world.ingest(
        checkin("ann-work", owner=ANN, platform="ios", apps=[], inventory_scope="managed", model="iPhone11,8"),
        now=NOW,
    )
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice("reminder", occasion="1"), _now())
    workspace.store.close()
    states = {d["model"]: (d["state"], d["state_text"]) for d in r.context["devices"]}
    assert states["iPhone11,8"] == (
        "unverified",
        "not checked: we can see only the apps your organisation manages on it",
    )
    assert states["Pixel 4"] == ("violating", "TikTok is on it")
    assert "could not check" in r.context["what_to_do"]


# -- hostile names ------------------------------------------------------------------------

HOSTILE_MODEL = "<script>alert(1)</script>{{ 7*7 }}\r\nBcc: victim@example.net\r\n" + "B" * 10_000
LONG_NAME = "TikTok " + "A" * 10_000


def _make_hostile(ab: Appban) -> None:
    """Names as a source could send them, written to the database as such: rendering
    must hold whatever the store holds, whatever the importers let through."""
    con_updates = (
        f"UPDATE devices SET model = '{HOSTILE_MODEL}' WHERE source_id = 'ann-phone'",
        f"UPDATE observations SET name = '{LONG_NAME}' WHERE name = 'TikTok'",
    )
    ab.write_sql(*con_updates)


def test_hostile_names_are_data_in_both_parts(world: Appban) -> None:
    _make_hostile(world)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    device = r.context["devices"][0]
    assert len(device["model"]) == MAX_NAME and device["model"].endswith("B\u2026")
    assert "\r" not in device["model"] and "\n" not in device["model"]
    app = device["apps"][0]["name"]
    assert len(app) == MAX_NAME and app.endswith("\u2026")
    # Never a template: {{ 7*7 }} stays as written.
    assert "{{ 7*7 }}" in r.text and "49" not in r.text
    assert "{{ 7*7 }}" in r.html and "49" not in r.html
    # Escaped in HTML, as is in text (text/plain shows it).
    assert "<script>" not in r.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.html
    assert "<script>alert(1)</script>" in r.text
    # No line of the text starts with what the name tried to inject.
    assert not any(line.startswith("Bcc:") for line in r.text.splitlines())
    assert "A" * 300 not in r.text + r.html and "B" * 300 not in r.text + r.html
    # The subject names the app: one line, cut.
    assert len(r.subject) <= MAX_SUBJECT and r.subject.endswith("\u2026")


def test_a_subject_built_from_hostile_names_stays_one_header_line(world: Appban, tmp_path: Path) -> None:
    _make_hostile(world)
    policy = with_notices(world, '  templates:\n    memo:\n      subject: "{{ devices[0].model }} {{ apps }}"\n')
    world("policy", "apply", policy, now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    assert r.subject.startswith("<script>alert(1)</script>{{ 7*7 }} Bcc: victim@example.net BBB")
    assert len(r.subject) == MAX_SUBJECT
    raw = email_message(r).as_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_all("Subject") is not None and len(msg.get_all("Subject") or []) == 1
    assert msg.get_all("Bcc") is None
    # Python's writer folds before an encoded word after a space: unfolded, two spaces.
    assert " ".join(msg["Subject"].split()) == r.subject
    assert [a.addr_spec for a in msg["To"].addresses] == [ANN]


def test_clean_subject_replaces_every_control_character() -> None:
    assert clean_subject(" a\r\nb\tc\x00d\u2028e\x85f\u202eg ") == "a b c d e f g"
    long = clean_subject("x" * 10_000)
    assert len(long) == MAX_SUBJECT and long.endswith("\u2026")


# -- the message --------------------------------------------------------------------------


def test_the_message_as_a_mail_reader_parses_it(world: Appban) -> None:
    policy = with_notices(world, '  sender: "IT Security <security@example.com>"\n  reply_to: helpdesk@example.com\n')
    world("policy", "apply", policy, now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    first = render(workspace.store, notice(), _now())
    later = render(workspace.store, notice(), _now("2020-07-10T19:00:00Z"))
    other = render(workspace.store, notice("reminder", id=8, occasion="123"), _now())
    workspace.store.close()

    msg = parsed(first)
    assert first.message_id == later.message_id  # a retry is recognisable
    assert re.fullmatch(r"<appban\.7\.[0-9a-f]{20}@example\.com>", first.message_id)
    assert other.message_id != first.message_id
    assert msg["Message-ID"] == first.message_id
    assert str(msg["From"]) == "IT Security <security@example.com>"
    assert str(msg["To"]) == "Ann Example <ann@example.com>"
    assert str(msg["Reply-To"]) == "helpdesk@example.com"
    assert msg["Subject"].strip() == first.subject and len(msg.get_all("Subject") or []) == 1
    assert msg["Date"].datetime.isoformat() == "2020-07-10T18:00:00+00:00"
    assert (msg["Auto-Submitted"], msg["X-Appban-Notice"], msg["X-Appban-Kind"]) == ("auto-generated", "7", "memo")
    assert msg.get_content_type() == "multipart/alternative"
    got = parts(msg)
    assert list(got) == ["text/plain", "text/html"]
    assert got["text/plain"].replace("\r\n", "\n") == first.text
    assert got["text/html"].replace("\r\n", "\n") == first.html
    # Every physical header line is within SMTP's limit, and no header value holds CR or LF.
    head = email_message(first).as_bytes().split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


def _same_message(r: Rendered) -> email.message.EmailMessage:
    """message_bytes(r) is email_message(r)'s bytes, and says what ``r`` says, as a mail
    reader parses it: CRLF only, no line past 78 characters but a long word's."""
    raw = message_bytes(r)
    assert email_message(r).as_bytes() == raw
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    head, _body = raw.split(b"\r\n\r\n", 1)
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects and all(not p.defects for p in msg.iter_parts())  # type: ignore[attr-defined]
    assert msg["Subject"] == r.subject and msg["Message-ID"] == r.message_id
    assert [a.addr_spec for a in msg["To"].addresses] == [r.to]
    assert msg["To"].addresses[0].display_name == r.to_name
    assert {k: v.replace("\r\n", "\n") for k, v in parts(msg).items()} == {"text/plain": r.text, "text/html": r.html}
    return msg


def test_the_message_built_directly_is_the_same_message(world: Appban) -> None:
    """message_bytes, the sender's fast way: plain ASCII, non-ASCII names and words,
    text a reader could take for an encoded word, and a policy's text with very long
    lines, trailing spaces and lines a mail system treats specially."""
    _make_hostile(world)
    world.write_sql(f"UPDATE people SET name = 'Zoë \"Quotes\", Ünïcode' WHERE email = '{ANN}'")
    words = world.root / "words"
    words.mkdir()
    (words / "memo.txt").write_text(
        "From here on\n.\n.leading dot\ntrailing space \n" + "x" * 3000 + "\n{{ apps }} \u00e9\u6f22\U0001f600\n\n\n",
        encoding="utf-8",
    )
    section = (
        "  sender: '\"Sécurité, IT\" <security@example.com>'\n  reply_to: helpdesk@example.com\n"
        "  templates:\n    memo:\n      text: words/memo.txt\n"
        '      subject: "=?utf-8?q?fake?= {{ person.name }} \u00e9t\u00e9 {{ apps }}"\n'
    )
    world("policy", "apply", with_notices(world, section), now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    plain = render(workspace.store, notice("reminder", occasion="5"), _now())
    workspace.store.close()
    fast = _same_message(r)
    # Shown as written, not decoded as the encoded word it looks like.
    assert r.subject.startswith("=?utf-8?q?fake?= Zoë") and fast["Subject"] == r.subject
    assert str(fast["From"]) == '"Sécurité, IT" <security@example.com>'
    assert r.text.startswith("From here on\n.\n.leading dot\ntrailing space \nxxx") and r.text.endswith("\n\n\n")
    _same_message(plain)


def test_a_message_to_a_non_ascii_address_is_left_to_the_email_package(world: Appban) -> None:
    world.people([("zoë@example.com", "Zoë Example", "Sales", "staff", "Europe/Paris")], now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(person="zoë@example.com"), _now())
    workspace.store.close()
    raw = message_bytes(r)
    assert "To: Zoë Example <zoë@example.com>".encode() in raw


def test_without_a_policy_sender_the_setting_is_the_sender(world: Appban, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_MAIL_FROM", "Compliance <compliance@corp.example.com>")
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    workspace.store.close()
    assert r.sender == "Compliance <compliance@corp.example.com>" and r.reply_to == ""
    assert r.message_id.endswith("@corp.example.com>")
    msg = parsed(r)
    assert str(msg["From"]) == "Compliance <compliance@corp.example.com>" and msg["Reply-To"] is None


def test_a_non_ascii_address_travels_as_smtputf8(world: Appban) -> None:
    world.people([("zoë@example.com", "Zoë Example", "Sales", "staff", "Europe/Paris")], now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(person="zoë@example.com"), _now())
    workspace.store.close()
    raw = email_message(r).as_bytes()
    assert "zoë@example.com".encode() in raw
    msg = email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)
    assert msg["X-Appban-Kind"] == "memo"


def test_the_link_is_the_persons_own_page(ws: Workspace) -> None:
    r = render(ws.store, notice(), _now())
    token = r.link.rsplit("/me/", 1)[1]
    assert r.link.startswith("http://localhost:8080/me/")
    assert links.read(ws.store, token, _now()) == ANN


def test_the_webhook_body(ws: Workspace) -> None:
    r = render(ws.store, notice(), _now())
    raw = webhook_body(r)
    body = json.loads(raw)
    assert raw == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()  # compact
    assert body == {
        "notice": 7,
        "kind": "memo",
        "policy": "tiktok-mail",
        "email": ANN,
        "name": "Ann Example",
        "subject": r.subject,
        "text": r.text,
        "link": r.link,
        "deadline": "2020-07-11T06:59:00Z",
        "devices": [
            {
                "id": f"dev-{r.context['devices'][0]['id'][4:]}",
                "model": "Pixel 4",
                "platform": "Android",
                "state": "violating",
                "last_seen": "2020-07-10T15:00:00Z",
                "apps": ["TikTok"],
            }
        ],
    }


# -- a policy's own templates -------------------------------------------------------------


def _own(ab: Appban, files: dict[str, str], parts_yaml: str) -> str:
    folder = ab.root / "words"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return with_notices(ab, f"  templates:\n    memo:\n{parts_yaml}")


def test_a_policys_own_templates_are_used(world: Appban) -> None:
    _make_hostile(world)
    path = _own(
        world,
        {
            "memo.txt": "Dear {{ person.name }}: {% for d in devices %}[{{ d.model }}]{% endfor %}"
            " by {{ deadline_iso }}\n",
            "memo.html": "<p>Dear {{ person.name }}: {% for d in devices %}<b>{{ d.model }}</b>{% endfor %}</p>\n",
        },
        '      subject: "Our words for {{ person.name }}"\n      text: words/memo.txt\n      html: words/memo.html\n',
    )
    world("policy", "apply", path, now=NOW)
    workspace = Workspace(world.db, _now(), create=False)
    r = render(workspace.store, notice(), _now())
    reminder = render(workspace.store, notice("reminder", occasion="1"), _now())
    workspace.store.close()
    assert r.subject == "Our words for Ann Example"
    assert r.text.startswith("Dear Ann Example: [<script>alert(1)</script>{{ 7*7 }}  Bcc: victim@example.net  BBB")
    assert "B\u2026] by 2020-07-11T06:59:00Z" in r.text
    assert r.html.startswith("<p>Dear Ann Example: <b>&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}")
    assert "<script>" not in r.html
    assert reminder.subject.startswith("Reminder: remove TikTok")  # kinds it does not name are shipped


def _store_template(ab: Appban, part: str, source: str) -> None:
    """A template that never passed apply's check (an older appban stored it, or the
    database was edited): rendering must still hold."""
    rows = ab.sql("SELECT body FROM policies WHERE id = 'tiktok-mail'")
    body = json.loads(rows[0][0])
    body["notices"]["templates"] = {"memo": {"subject": "", "text": "", "html": "", part: source}}
    con_body = json.dumps(body).replace("'", "''")
    ab.write_sql(f"UPDATE policies SET body = '{con_body}' WHERE id = 'tiktok-mail'")


@pytest.mark.parametrize(
    ("part", "source", "said"),
    [
        ("text", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "refused by the sandbox"),
        ("html", "{{ cycler.__init__.__globals__.os }}", "refused by the sandbox"),
        ("text", "{{ 2 ** 100000 }}", "refused by the sandbox"),
        ("text", "{{ 'x' * 100000000 }}", "refused by the sandbox"),
        ("subject", "{{ no_such_thing }}", "undefined"),
        ("text", "{% for %}", "syntax error"),
        ("text", "{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_that_fails_at_render_is_bad_input_naming_it(
    world: Appban, part: str, source: str, said: str
) -> None:
    _store_template(world, part, source)
    workspace = Workspace(world.db, _now(), create=False)
    with pytest.raises(BadInput) as err:
        render(workspace.store, notice(), _now())
    workspace.store.close()
    assert err.value.field == "template memo"
    assert said in err.value.detail and err.value.detail.startswith(f"{part}:")
    assert "\n" not in str(err.value)


def test_a_template_cannot_make_a_notice_of_unbounded_size(world: Appban) -> None:
    _store_template(world, "text", "{% for i in range(100000) %}{{ devices[0].apps[0].text }}{% endfor %}")
    world.write_sql(f"UPDATE observations SET name = '{LONG_NAME}' WHERE name = 'TikTok'")
    workspace = Workspace(world.db, _now(), create=False)
    with pytest.raises(BadInput, match="renders more than"):
        render(workspace.store, notice(), _now())
    workspace.store.close()


# -- preview ------------------------------------------------------------------------------


def test_preview_renders_as_it_would_be_sent(ws: Workspace) -> None:
    shown = preview(ws, "tiktok-mail", "  Ann@Example.com ", "memo")
    sent = render(ws.store, notice(id=0), ws.now)
    assert shown.notice_id == 0
    assert (shown.subject, shown.text, shown.html, shown.message_id) == (
        sent.subject,
        sent.text,
        sent.html,
        sent.message_id,
    )
    # Before the deadline nothing is blocked: a preview of the kind shows the devices
    # that need something done; after it, the blocked one.
    blocked = preview(ws, "tiktok-mail", ANN, "blocked")
    assert [(d["model"], d["state"]) for d in blocked.context["devices"]] == [("Pixel 4", "violating")]
    ws.now = _now("2020-07-11T08:00:00Z")
    with ws.writing():
        ws.evaluator.evaluate_due(ws.now)
    blocked = preview(ws, "tiktok-mail", ANN, "blocked")
    assert [(d["model"], d["state"]) for d in blocked.context["devices"]] == [("Pixel 4", "blocked")]


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        (("nope", ANN, "memo"), NotFound, "policy"),
        (("tiktok-mail", "nobody@example.com", "memo"), NotFound, "--person"),
        (("tiktok-mail", "not an address", "memo"), BadInput, "--person"),
        (("tiktok-mail", ANN, "memorandum"), BadInput, "--kind"),
    ],
)
def test_preview_refuses_what_does_not_exist(
    ws: Workspace, args: tuple[str, str, str], error: type, field: str
) -> None:
    with pytest.raises(error) as err:
        preview(ws, *args)
    assert isinstance(err.value, BadInput) and err.value.field == field


def test_render_of_a_notice_whose_policy_is_gone(ws: Workspace) -> None:
    gone = notice()
    gone.policy_id = "gone"
    with pytest.raises(NotFound) as err:
        render(ws.store, gone, _now())
    assert err.value.field == "policy"
