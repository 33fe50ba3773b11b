"""The name rules: which owner a user name names (gate/users.py)."""

from __future__ import annotations

import pytest

from appban.gate.users import Namesakes, UserNames, ascii_lower

JANE = "jane.doe@example.com"


class People:
    """``users.Known`` over a fixed list of owners."""

    def __init__(self, *owners: str) -> None:
        self.owners = set(owners)

    def namesakes(self, local: str) -> tuple[str, ...]:
        found = tuple(sorted(o for o in self.owners if o.partition("@")[0] == local))
        return found if len(found) > 1 else ()


def test_ascii_lower_folds_only_ascii() -> None:
    assert ascii_lower("Jane.DOE@Example.COM") == "jane.doe@example.com"
    assert ascii_lower("\u212aate") == "\u212aate"  # str.lower() would give "kate"
    assert ascii_lower("ÄNNE") == "Änne"


@pytest.mark.parametrize(
    ("user", "owns"),
    [
        ("jane.doe@example.com", True),
        ("JANE.DOE@EXAMPLE.COM", True),
        ("jane.doe", True),  # the one jane.doe known
        ("jane.doe@example.org", False),
        ("jane", False),
        ("EXAMPLE\\jane.doe", False),  # no NetBIOS domain accepted
        ("\\jane.doe", False),
        ("\u212aate@example.com", False),
        ("jane.doe\u200b", False),
        ("", False),
    ],
)
def test_no_domains_configured(user: str, owns: bool) -> None:
    assert UserNames().owns(user, JANE, People(JANE, "bob@example.com")) is owns


def test_no_domains_a_shared_local_part_names_no_one() -> None:
    people = People(JANE, "jane.doe@other.example")
    assert not UserNames().owns("jane.doe", JANE, people)
    assert not UserNames().owns("jane.doe", "jane.doe@other.example", people)
    assert UserNames().owns("jane.doe@other.example", "jane.doe@other.example", people)


def test_one_mail_domain_completes_bare_names() -> None:
    names = UserNames(("example.com",))
    nobody = People()  # not asked: with one domain the completion is the address
    assert names.owns("jane.doe", JANE, nobody)
    assert not names.owns("jane.doe", "jane.doe@other.example", nobody)
    assert names.owns("jane.doe@other.example", "jane.doe@other.example", nobody)
    assert not names.owns("CORP\\jane.doe", JANE, nobody)


def test_several_mail_domains_need_one_person_among_them() -> None:
    names = UserNames(("example.com", "example.net"))
    assert names.owns("jane.doe", JANE, People(JANE))
    assert names.owns("jane.doe", "jane.doe@example.net", People("jane.doe@example.net"))
    both = People(JANE, "jane.doe@example.net")
    assert not names.owns("jane.doe", JANE, both)
    assert not names.owns("jane.doe", "jane.doe@other.example", People("jane.doe@other.example"))
    # A third domain's jane.doe does not make the name ambiguous among the configured ones.
    assert names.owns("jane.doe", JANE, People(JANE, "jane.doe@other.example"))


def test_netbios_domains() -> None:
    names = UserNames(("example.com",), ("corp", "example"))
    nobody = People()
    assert names.owns("CORP\\Jane.Doe", JANE, nobody)
    assert names.owns("Example\\jane.doe", JANE, nobody)
    assert names.owns("CORP\\jane.doe@example.com", JANE, nobody)
    assert not names.owns("OTHER\\jane.doe", JANE, nobody)
    assert not names.owns("CORP\\", JANE, nobody)
    assert not names.owns("CORP\\EXAMPLE\\jane.doe", JANE, nobody)
    # Without mail domains, the user after an accepted prefix is completed like a bare name.
    assert UserNames((), ("corp",)).owns("CORP\\jane.doe", JANE, People(JANE))


def test_describe_says_which_rule_is_in_force() -> None:
    assert "no mail domains set" in UserNames().describe()
    assert "any DOMAIN\\ prefix refused" in UserNames().describe()
    assert "name@example.com" in UserNames(("example.com",)).describe()
    assert "accepted for corp" in UserNames((), ("corp",)).describe()


def test_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBAN_MAIL_DOMAINS", "Example.COM, example.net")
    monkeypatch.setenv("APPBAN_NETBIOS_DOMAINS", "CORP")
    assert UserNames.from_settings() == UserNames(("example.com", "example.net"), ("corp",))


def test_namesakes_keep_only_shared_local_parts() -> None:
    known = Namesakes()
    known.load({"jane.doe": [JANE, "jane.doe@other.example"], "bob": ["bob@example.com"]})
    assert known.namesakes("jane.doe") == (JANE, "jane.doe@other.example")
    assert known.namesakes("bob") == ()
    known.update("jane.doe", [JANE])  # the other one left
    assert known.namesakes("jane.doe") == ()
    known.update("bob", ["bob@example.com", "bob@example.net"])
    assert known.namesakes("bob") == ("bob@example.com", "bob@example.net")
