"""The policy file's ``notices:`` section: audience, sender, reply-to, webhook and each
kind's templates, read at apply and kept in the policy; every bad field refused by
``appban policy apply`` with its line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appban.catalog import Catalog, load_shipped
from appban.errors import BadInput
from appban.policy.model import MAX_TEMPLATE_BYTES, Notices, NoticeTemplate, parse_policy
from helpers_cli import POLICY_YAML, Fleet, assert_bad_input, where

FULL = """\
notices:
  audience: in_scope
  sender: "IT Security <security@example.com>"
  reply_to: helpdesk@example.com
  webhook: https://chat.example.com/hooks/appban?channel=it
  templates:
    memo:
      subject: "Remove {{ apps }} from {{ devices|length }} device(s) by {{ deadline_local }}"
      text: words/memo.txt
      html: words/memo.html
    reminder: {subject: "Still there: {{ apps }}"}
"""
MEMO_TEXT = "Hello {{ person.name }}: {{ what_to_do }}\n{{ link }}\n"
MEMO_HTML = "<p>Hello {{ person.name }}</p><p>{{ what_to_do }}</p><a href='{{ link }}'>your page</a>\n"


def _catalog() -> Catalog:
    data = load_shipped()
    return Catalog(1, data.identifiers, {f: {"title": b.title} for f, b in data.families.items()}, lists=data.lists)


def _policy(fleet: Fleet, section: str, name: str = "policy.yaml") -> Path:
    return fleet.write(name, POLICY_YAML + section)


def _words(fleet: Fleet, files: dict[str, str | bytes]) -> None:
    (fleet.tmp / "words").mkdir(exist_ok=True)
    for name, content in files.items():
        fleet.write(f"words/{name}", content)


def _shown(fleet: Fleet) -> dict[str, object]:
    result = fleet.run("policy", "show", "tiktok-mail", "--json")
    assert result.code == 0, result
    notices = json.loads(result.out)["notices"]
    assert isinstance(notices, dict)
    return notices


def test_a_full_section_is_read_and_kept_with_the_templates_text(fleet: Fleet) -> None:
    _words(fleet, {"memo.txt": MEMO_TEXT, "memo.html": MEMO_HTML})
    path = _policy(fleet, FULL)
    result = fleet.run("policy", "apply", str(path))
    assert result.code == 0, result
    assert _shown(fleet) == {
        "audience": "in_scope",
        "sender": "IT Security <security@example.com>",
        "reply_to": "helpdesk@example.com",
        "webhook": "https://chat.example.com/hooks/appban?channel=it",
        "templates": {
            "memo": {
                "subject": "Remove {{ apps }} from {{ devices|length }} device(s) by {{ deadline_local }}",
                "text": MEMO_TEXT,
                "html": MEMO_HTML,
            },
            "reminder": {"subject": "Still there: {{ apps }}", "text": "", "html": ""},
        },
    }


def test_the_words_are_the_policys_not_the_files(fleet: Fleet) -> None:
    """Kept at apply: the server never reads the files, and a changed file is a new
    revision only when applied again."""
    _words(fleet, {"memo.txt": MEMO_TEXT, "memo.html": MEMO_HTML})
    path = _policy(fleet, FULL)
    assert fleet.run("policy", "apply", str(path)).code == 0
    (fleet.tmp / "words" / "memo.txt").unlink()
    templates = _shown(fleet)["templates"]
    assert isinstance(templates, dict) and templates["memo"]["text"] == MEMO_TEXT

    _words(fleet, {"memo.txt": MEMO_TEXT})
    again = fleet.run("policy", "apply", str(path), "--json")
    assert json.loads(again.out)["action"] == "unchanged"
    _words(fleet, {"memo.txt": "New words for {{ person.name }}\n"})
    changed = json.loads(fleet.run("policy", "apply", str(path), "--json").out)
    assert (changed["action"], changed["revision"]) == ("updated", 3)


def test_template_paths_are_relative_to_the_policy_file_not_the_working_directory(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _words(fleet, {"memo.txt": MEMO_TEXT})
    path = _policy(fleet, "notices:\n  templates:\n    memo:\n      text: words/memo.txt\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert fleet.run("policy", "apply", str(path)).code == 0
    absolute = _policy(fleet, f"notices:\n  templates:\n    memo:\n      text: {fleet.tmp / 'words' / 'memo.txt'}\n")
    assert fleet.run("policy", "apply", str(absolute)).code == 0


def test_no_section_and_an_empty_one_are_the_defaults() -> None:
    assert parse_policy(POLICY_YAML, _catalog()).notices == Notices()
    assert parse_policy(POLICY_YAML + "notices:\n", _catalog()).notices == Notices()
    policy = parse_policy(POLICY_YAML + "notices:\n  audience: all\n  templates: {exemption: {}}\n", _catalog())
    assert policy.notices == Notices(audience="all")
    assert policy.notices.template("memo") == NoticeTemplate()


def test_a_policy_given_as_text_takes_no_relative_template_path() -> None:
    with pytest.raises(BadInput) as err:
        parse_policy(POLICY_YAML + "notices:\n  templates:\n    memo:\n      text: memo.txt\n", _catalog())
    assert err.value.field == "notices.templates.memo.text" and err.value.line == 20
    assert "given as text" in err.value.detail


N = "notices:\n"
T = "notices:\n  templates:\n"
M = "notices:\n  templates:\n    memo:\n"
F = "notices.templates.memo"
# (the section, the field named, what the message says, a text on the line named)
BAD_FIELDS = [
    ("notices: 5\n", "notices", "expected a mapping, got '5'", "notices:"),
    (N + "  colour: red\n", "notices.colour", "unknown field (known: audience, reply_to", "colour"),
    (N + "  audience: everyone\n", "notices.audience", "'everyone' is not one of affected, in_scope, all", "audience"),
    (N + "  audience: no\n", "notices.audience", "write 'no' in quotes", "audience"),
    (N + "  sender: 42\n", "notices.sender", "expected an e-mail address, got '42'", "sender"),
    (N + "  sender: a@example.com, b@example.com\n", "notices.sender", "expected one address", "sender"),
    (N + "  sender: a@example.com b@example.com\n", "notices.sender", "expected one address", "sender"),
    (N + '  sender: "IT <it@example.com>\\r\\nBcc: x@example.net"\n', "notices.sender", "control character", "sender"),
    (N + "  reply_to: helpdesk\n", "notices.reply_to", "not an e-mail address: 'helpdesk'", "reply_to"),
    (N + "  reply_to: [a@example.com]\n", "notices.reply_to", "got a list", "reply_to"),
    (N + "  webhook: ftp://chat.example.com/x\n", "notices.webhook", "https:// URL with a host", "webhook"),
    (N + "  webhook: https://\n", "notices.webhook", "with a host", "webhook"),
    (N + "  webhook: https://bot:s3cret@chat.example.com/x\n", "notices.webhook", "no credentials", "webhook"),
    (N + "  webhook: https://chat.example.com:99999/x\n", "notices.webhook", "bad port", "webhook"),
    (N + "  webhook: https://chat.example.com/a b\n", "notices.webhook", "without spaces", "webhook"),
    (N + f"  webhook: https://chat.example.com/{'x' * 2000}\n", "notices.webhook", "at most 2000", "webhook"),
    (N + "  templates: [memo]\n", "notices.templates", "expected a mapping of notice kinds", "templates"),
    (T + "    memorandum: {}\n", "notices.templates.memorandum", "unknown notice kind", "memorandum"),
    (T + "    memo: words.txt\n", F, "a mapping of subject, text and html", "memo:"),
    (T + "    memo: {body: x}\n", F + ".body", "unknown field (known: subject", "memo:"),
    (M + "      subject: '{{ apps'\n", F + ".subject", "template syntax error", "subject"),
    (M + "      subject: '{{ nobody }}'\n", F + ".subject", "undefined", "subject"),
    (M + f"      subject: '{'x' * 301}'\n", F + ".subject", "at most 300", "subject"),
    (M + '      subject: "a\\nb"\n', F + ".subject", "one line", "subject"),
    (M + "      subject: ' '\n", F + ".subject", "must not be empty", "subject"),
    (M + "      text: 7\n", F + ".text", "a template file's path", "text"),
    (M + "      text: missing.txt\n", F + ".text", "cannot read template", "text"),
    (M + "      html: words\n", F + ".html", "not a regular file", "html"),
]


@pytest.mark.parametrize(("section", "field", "said", "at"), BAD_FIELDS)
def test_each_bad_field_is_refused_with_its_line(fleet: Fleet, section: str, field: str, said: str, at: str) -> None:
    (fleet.tmp / "words").mkdir(exist_ok=True)
    path = _policy(fleet, section)
    text = path.read_text(encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if i > POLICY_YAML.count("\n") and at in row)
    for args in (("policy", "apply", str(path)), ("policy", "apply", str(path), "--dry-run")):
        assert_bad_input(fleet.run(*args), f"{where(path, line)}: field {field}: ", said)
    fleet.assert_unchanged()


# (the template file's content, what the message says, the template's line, or None
# when the error is the policy's field's: then the message names the template)
BAD_TEMPLATES: list[tuple[str | bytes, str, int | None]] = [
    ("Hello\n\n{% for d in devices %}\n{{ d.name }\n{% endfor %}\n", "template syntax error", 4),
    ("Hello\n{% if apps %}\n", "template syntax error", 2),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}\n", "refused by the sandbox", None),
    ("{{ cycler.__init__.__globals__.os.system('id') }}\n", "refused by the sandbox", None),
    ("{{ 'x' * 100000000 }}\n", "refused by the sandbox", None),
    ("{{ person.shoe_size }}\n", "undefined", None),
    ("Hello\n" + "x" * MAX_TEMPLATE_BYTES, f"larger than {MAX_TEMPLATE_BYTES} bytes", None),
    (b"Hello\n\xff\n", "not UTF-8 at byte offset 6", 2),
    ("  \n\n", "is empty", None),
]


@pytest.mark.parametrize(("content", "said", "line"), BAD_TEMPLATES)
def test_a_bad_template_file_is_refused_naming_it(
    fleet: Fleet, content: str | bytes, said: str, line: int | None
) -> None:
    _words(fleet, {"memo.txt": content})
    path = _policy(fleet, M + "      text: words/memo.txt\n")
    template = fleet.tmp / "words" / "memo.txt"
    if line is None:
        expected = [f"{where(path, 20)}: field {F}.text: template '{template}'"]
    else:
        expected = [f"{where(template, line)}: field {F}.text: "]
    assert_bad_input(fleet.run("policy", "apply", str(path)), *expected, said)
    fleet.assert_unchanged()


def test_an_html_template_is_checked_as_html(fleet: Fleet) -> None:
    _words(fleet, {"memo.html": "<p>{{ devices[0].nope }}</p>\n"})
    path = _policy(fleet, M + "      html: words/memo.html\n")
    assert_bad_input(fleet.run("policy", "apply", str(path)), f"{where(path, 20)}: field {F}.html: ", "undefined")


def test_a_policy_with_its_own_templates_is_refused_where_they_cannot_be_checked() -> None:
    """Only rendering can try a template on a sample notice: a caller that gives no check
    (a library user of parse_policy) cannot apply a policy naming its own words."""
    from appban.notify.render import check_template

    text = (
        "id: p\ntitle: T\napps: [tiktok]\neffective: 2020-07-10T16:00:00Z\ndeadline: 2020-07-11T06:59:00Z\n"
        "notices:\n  templates:\n    memo:\n      subject: 'Remove {{ apps }}'\n"
    )
    catalog = _catalog()
    with pytest.raises(BadInput) as refused:
        parse_policy(text, catalog)
    assert refused.value.field == "notices.templates.memo.subject"
    assert parse_policy(text, catalog, check=check_template).notices.template("memo").subject == "Remove {{ apps }}"
