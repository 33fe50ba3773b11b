"""The docs say what the code does: the CLI reference and settings table are generated
and current, the README starts with the two commands, and CI runs the README's tests.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import click
import pytest

from appban.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

# SPEC and STYLE: the README gives exactly these two commands first, run then test.
RUN_COMMAND = "pip install . && appban demo"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


def _load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_gen()
COMMANDS = [(ctx.command_path, cmd) for cmd, ctx in gen.commands()]


# -- the CLI reference -------------------------------------------------------------------


def test_cli_reference_is_current() -> None:
    committed = (DOCS / "cli.md").read_text("utf-8")
    assert committed == gen.cli_markdown(), (
        "docs/cli.md is out of date: run `python docs/gen_cli.py` and commit the result"
    )


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_and_option_is_in_cli_reference(path: str, cmd: click.Command) -> None:
    # Redundant with the test above, but names exactly what is missing.
    text = (DOCS / "cli.md").read_text("utf-8")
    assert f"\n## {path}\n" in text, f"`{path}` is missing from docs/cli.md"
    section = text.split(f"\n## {path}\n", 1)[1].split("\n## ", 1)[0]
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            for opt in param.opts:
                assert opt in section, f"`{path} {opt}` is missing from docs/cli.md"


def test_walk_sees_nested_commands() -> None:
    # Guard the generator: a walk that stopped at the top level would still be "current".
    paths = {p for p, _ in COMMANDS}
    assert {"appban", "appban policy apply", "appban gate decide", "appban audit verify"} <= paths


# -- settings ----------------------------------------------------------------------------


def test_settings_table_is_current() -> None:
    text = (DOCS / "concepts.md").read_text("utf-8")
    assert text == gen.with_settings_table(text), (
        "the settings table in docs/concepts.md is out of date: run `python docs/gen_cli.py`"
    )


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_is_documented(name: str) -> None:
    text = (DOCS / "concepts.md").read_text("utf-8")
    setting = SETTINGS[name]
    assert f"`{setting.name}`" in text, f"setting {name} is not in docs/concepts.md"
    assert f"`{setting.env}`" in text, f"{setting.env} is not in docs/concepts.md"


# -- README and CI -----------------------------------------------------------------------


def _readme_commands() -> list[str]:
    """The commands of the README's first code block, which must come before any section."""
    text = README.read_text("utf-8")
    block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    assert block is not None, "README.md has no code block"
    first_section = re.search(r"^## ", text, re.M)
    assert first_section is None or block.start() < first_section.start(), (
        "README.md must give the two commands before its first section"
    )
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_readme_begins_with_run_and_test_commands() -> None:
    assert README.read_text("utf-8").startswith("# appban\n")
    assert _readme_commands() == [RUN_COMMAND, TEST_COMMAND]


def _ci_lines() -> list[list[str]]:
    """.ci/run's commands, as words, without comments or blank lines."""
    out = []
    for raw in CI_RUN.read_text("utf-8").splitlines():
        words = shlex.split(raw, comments=True)
        if words:
            out.append(words)
    return out


def test_ci_installs_the_test_extras() -> None:
    # `[python -m] pip install [--quiet ...] -e '.[test]'`: the README's install.
    editable = shlex.split(TEST_COMMAND.split("&&")[0])[-2:]  # -e .[test]

    def installs(words: list[str]) -> bool:
        if "install" not in words or "pip" not in words[: words.index("install")]:
            return False
        return any(words[i : i + 2] == editable for i in range(len(words)))

    assert any(installs(words) for words in _ci_lines()), f".ci/run does not run `pip install {' '.join(editable)}`"


def test_ci_runs_the_readme_test_command() -> None:
    test = shlex.split(TEST_COMMAND.split("&&")[1])  # python -m pytest
    assert any(words[: len(test)] == test for words in _ci_lines()), (
        f".ci/run does not run `{' '.join(test)}`, the README's test command"
    )
