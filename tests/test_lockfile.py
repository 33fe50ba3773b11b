"""The lock file CI installs from agrees with pyproject.toml.

Every dependency pyproject.toml declares (with the test extra) is pinned in
requirements/test.txt, and every pin is inside the range pyproject.toml allows: a
range changed without regenerating the lock (or a lock edited by hand) fails here,
not as a confusing install error.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "test.txt"


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text("utf-8").splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if found:
            pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def test_the_lock_says_how_it_was_made() -> None:
    assert "uv pip compile pyproject.toml --extra test" in LOCK.read_text("utf-8")


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    env = default_environment()
    checked = 0
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in {LOCK.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"
        )
        checked += 1
    assert checked >= 10, checked  # the parser saw the declared dependencies
