"""The Store protocol is the store's whole public surface, and SQLiteStore implements it.

Structural typing is only checked by mypy, which CI does not run on every change, so
these tests check the same thing at run time with ``inspect``: every protocol member
exists on SQLiteStore with a compatible signature, and every ``store.<name>`` used
outside ``store/`` is declared in the protocol (so a new call cannot bypass it).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import appban
from appban.store import SQLiteStore, Store

SRC = Path(appban.__file__).parent
# `store.name` after a variable or attribute named store or _store (`store.`,
# `self.store.`, `self._store.`, `ws.store.`), but not the module path in
# `from appban.store.records import ...`.
_USE = re.compile(r"(?<![\w.])(?:\w+\.)?_?store\.([A-Za-z_]\w*)")
# Deliberate SQLite-only uses outside the protocol: (file under src/appban, member).
# None today: every backend answers every call. Add here only with a reason.
SQLITE_ONLY: set[tuple[str, str]] = set()
# What only a store may touch: its connection, SQLite's pragmas, the file under it.
_BACKEND_ONLY = re.compile(r"\b_?store\.db\b|\.db\.execute|\bPRAGMA\b|\bst_ino\b|\bst_dev\b")


def protocol_members() -> dict[str, Any]:
    """Name -> the Protocol's function, or None for a data attribute."""
    members: dict[str, Any] = {name: None for name in Store.__annotations__}
    for name, value in vars(Store).items():
        # Protocol itself adds dunders (__init__, __subclasshook__): not the interface.
        if inspect.isfunction(value) and not name.startswith("_"):
            members[name] = value
    return members


def store_uses() -> dict[str, list[str]]:
    """Name -> where (file:line) code outside store/ uses ``store.<name>``."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "store":
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.lstrip().startswith(("from ", "import ", "#")):
                continue
            for match in _USE.finditer(line):
                if (rel.as_posix(), match.group(1)) in SQLITE_ONLY:
                    continue
                found.setdefault(match.group(1), []).append(f"{rel}:{number}")
    return found


def _returns(fn: Any) -> str:
    """The declared return type, seeing a @contextmanager generator as the manager it makes."""
    annotation = str(inspect.signature(fn).return_annotation)
    wrapped = getattr(fn, "__wrapped__", None)
    if wrapped is not None and inspect.isgeneratorfunction(wrapped):
        inner = re.fullmatch(r"Iterator\[(.*)\]", annotation)
        if inner:
            return f"AbstractContextManager[{inner.group(1)}]"
    return annotation


def test_protocol_is_not_empty() -> None:
    assert len(protocol_members()) > 10


@pytest.mark.parametrize("name", sorted(protocol_members()))
def test_sqlite_store_has_member(name: str) -> None:
    assert hasattr(SQLiteStore, name), f"SQLiteStore lacks Store.{name}"
    declared = protocol_members()[name]
    actual = getattr(SQLiteStore, name)
    if declared is None:
        assert not callable(actual), f"Store.{name} is data, SQLiteStore.{name} a method"
        return
    assert callable(actual), f"SQLiteStore.{name} is not a method"


@pytest.mark.parametrize("name", sorted(n for n, f in protocol_members().items() if f is not None))
def test_sqlite_store_signature_is_compatible(name: str) -> None:
    """Same parameters (name, kind, type, default) in order; extra ones must be optional."""
    want = inspect.signature(protocol_members()[name])
    impl = getattr(SQLiteStore, name)
    have = inspect.signature(impl)
    have_params = list(have.parameters.values())
    for i, param in enumerate(want.parameters.values()):
        if param.kind is param.KEYWORD_ONLY:
            other = have.parameters.get(param.name)
        else:
            other = have_params[i] if i < len(have_params) else None
        assert other is not None, f"SQLiteStore.{name} lacks parameter {param.name}"
        assert (other.name, other.kind) == (param.name, param.kind), (
            f"SQLiteStore.{name}: parameter {other} where Store has {param}"
        )
        assert str(other.annotation) == str(param.annotation), (
            f"SQLiteStore.{name}({param.name}): {other.annotation}, Store {param.annotation}"
        )
        assert other.default == param.default, (
            f"SQLiteStore.{name}({param.name}): default {other.default!r}, Store {param.default!r}"
        )
    extra = [p for p in have_params if p.name not in want.parameters]
    for p in extra:
        assert p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD), (
            f"SQLiteStore.{name} requires {p.name}, which Store callers never pass"
        )
    assert _returns(impl) == str(want.return_annotation), (
        f"SQLiteStore.{name} returns {_returns(impl)}, Store says {want.return_annotation}"
    )


def test_every_store_use_is_declared() -> None:
    """Calling a store method from outside store/ means declaring it in Store first."""
    declared = protocol_members()
    undeclared = {name: where for name, where in store_uses().items() if name not in declared}
    assert not undeclared, (
        "store members used outside src/appban/store/ but not declared in Store "
        f"(src/appban/store/base.py): {undeclared}"
    )


def test_nothing_outside_the_store_touches_the_backend() -> None:
    """No SQLite connection, PRAGMA or database file is used outside store/: each is
    one backend's business, and the next backend has none of them."""
    found = []
    # A reader's scratch file in a temporary directory (never the store): Intune's
    # detectedApp pages list devices per app, and are turned round into apps per device
    # on disk so that memory stays bounded.
    scratch = {Path("inventory/intune.py")}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "store" or rel in scratch:
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _BACKEND_ONLY.search(code):
                found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, found


def test_the_backend_scan_sees_a_use() -> None:
    assert _BACKEND_ONLY.search('self._store.db.execute("PRAGMA cache_size = -4096")')
    assert _BACKEND_ONLY.search("self._inode = (st.st_dev, st.st_ino)")
    assert _BACKEND_ONLY.search("con = ws.store.db")
    assert not _BACKEND_ONLY.search('"db": ws.db')


def test_the_scan_sees_the_uses() -> None:
    """Guard the regex: if it stopped matching, the test above would pass vacuously."""
    uses = store_uses()
    for name in ("transaction", "get_meta", "devices_by_eas", "policy_facts"):
        assert name in uses
    assert _USE.search("self._store.gate_seq()")


def test_sqlite_store_instance_answers() -> None:
    store: Store = SQLiteStore(":memory:")
    try:
        assert store.backend == "sqlite"
        assert store.schema_version() == 0
    finally:
        store.close()
