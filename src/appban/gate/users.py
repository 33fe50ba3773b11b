"""Whose name is it: the rules that bind a user name to a device's owner.

An owner is an e-mail address, as the store keeps it. A user name arrives in one of
three forms, and is compared exactly after ASCII lower-casing (never ``str.lower()``,
which folds characters such as the Kelvin sign ``\\u212a`` into ASCII ``k``):

- ``user@domain``: that address, and only that address;
- a bare ``user``: completed with the configured mail domains (``mail_domains``).
  With one domain it is ``user@domain``. With several, it names an owner only when
  exactly one of ``user@domain1``, ``user@domain2``... is a person the gate knows.
  With none, it names an owner only when exactly one person the gate knows has that
  local part, so ``jane.doe`` never reaches ``jane.doe@other.example`` while there is
  also a ``jane.doe@example.com``;
- ``DOMAIN\\user``: only when ``DOMAIN`` is one of the accepted NetBIOS domains
  (``netbios_domains``); ``user`` is then completed like a bare name (or compared
  exactly if it is an address). Any other ``DOMAIN\\`` prefix names no one.

Everything else (an empty name, a second backslash) names no one. The persons the
gate knows are the owners of the devices it answers for: devices with an ActiveSync
DeviceId or a mail password. Completing a bare name only ever asks who *else* has
its local part, so the gate keeps just the local parts two or more persons share
(``Namesakes``: a few, where a table of every person would cost a million strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from appban import settings
from appban.text import ascii_lower


class Known(Protocol):
    """The persons the gate knows, as far as the name rules need them."""

    def namesakes(self, local: str) -> tuple[str, ...]:
        """The owners whose address has this local part (before ``@``) when there are
        two or more; empty when there is at most one."""
        ...


class Namesakes:
    """``Known`` for the gate: the local parts that two or more known persons share.

    Kept by whoever follows the store (``load`` at start, ``update`` for the local
    parts of owners that changed); read by the name rules on the request path.
    """

    def __init__(self) -> None:
        self.shared: dict[str, tuple[str, ...]] = {}

    def namesakes(self, local: str) -> tuple[str, ...]:
        return self.shared.get(local, ())

    def load(self, shared: dict[str, list[str]]) -> None:
        self.shared = {local: tuple(owners) for local, owners in shared.items() if len(owners) > 1}

    def update(self, local: str, owners: list[str]) -> None:
        if len(owners) > 1:
            self.shared[local] = tuple(owners)
        else:
            self.shared.pop(local, None)


@dataclass(frozen=True, slots=True)
class Name:
    """A user name read by the rules: a whole address, or a local part to complete."""

    address: str = ""  # "user@domain", compared exactly
    local: str = ""  # a bare name (or the user of DOMAIN\user), completed by the rules


@dataclass(frozen=True)
class UserNames:
    mail_domains: tuple[str, ...] = ()
    netbios_domains: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls) -> UserNames:
        return cls(settings.get("mail_domains"), settings.get("netbios_domains"))

    @property
    def needs_index(self) -> bool:
        """Whether completing a bare name asks who else has it (not with exactly one domain)."""
        return len(self.mail_domains) != 1

    def describe(self) -> str:
        """The rule in force, in words, for the log at start-up."""
        if len(self.mail_domains) == 1:
            bare = f"a bare name is name@{self.mail_domains[0]}"
        elif self.mail_domains:
            bare = f"a bare name is the one known person among name@{{{','.join(self.mail_domains)}}}"
        else:
            bare = "a bare name matches only the one known person with that local part (no mail domains set)"
        if self.netbios_domains:
            prefix = f"DOMAIN\\name accepted for {','.join(self.netbios_domains)}"
        else:
            prefix = "any DOMAIN\\ prefix refused (no NetBIOS domains set)"
        return f"user names: name@domain exact; {bare}; {prefix}"

    def read(self, user: str) -> Name | None:
        """What ``user`` names by its form; None when the rules refuse the form."""
        name = ascii_lower(user)
        if "\\" in name:
            domain, _, name = name.partition("\\")
            if domain not in self.netbios_domains or "\\" in name:
                return None
        if not name:
            return None
        if "@" in name:
            return Name(address=name)
        return Name(local=name)

    def owns(self, user: str, owner: str, known: Known) -> bool:
        """Whether ``user`` names ``owner`` (an address as the store keeps it)."""
        name = self.read(user)
        if name is None:
            return False
        if name.address:
            return name.address == owner
        local, at, domain = owner.partition("@")
        if not at or local != name.local:
            return False
        domains = self.mail_domains
        if len(domains) == 1:
            return domain == domains[0]
        if domains and domain not in domains:
            return False
        others = known.namesakes(local)
        if not others:
            return True  # the owner is the one person the gate knows with this local part
        if not domains:
            return False
        # Several domains: the name must complete to exactly one person the gate knows.
        return sum(1 for d in domains if f"{local}@{d}" in others) == 1
