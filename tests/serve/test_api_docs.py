"""docs/api.md's examples, run against a real server: its curl commands (```sh blocks)
and its Python example (```python), each answer compared with the one the document
shows after it (```json; a "..." message stands for any)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers_serve import Database, ThreadServer

from appban.settings import SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, str | None]]:
    """(language, code, the ```json answer shown right after it, if any)."""
    text = DOC.read_text(encoding="utf-8")
    found = list(BLOCK.finditer(text))
    out = []
    for i, match in enumerate(found):
        lang, code = match.groups()
        if lang in ("sh", "python"):
            nxt = found[i + 1] if i + 1 < len(found) else None
            adjacent = nxt is not None and nxt.group(1) == "json" and not text[match.end() : nxt.start()].strip()
            out.append((lang, code, nxt.group(2) if nxt is not None and adjacent else None))
    return out


def same(shown: Any, got: Any) -> bool:
    if shown == "...":
        return True
    if isinstance(shown, dict) and isinstance(got, dict):
        return shown.keys() == got.keys() and all(same(shown[k], got[k]) for k in shown)
    if isinstance(shown, list) and isinstance(got, list):
        return len(shown) == len(got) and all(same(a, b) for a, b in zip(shown, got, strict=True))
    return bool(shown == got)


def test_the_document_has_curl_and_python_examples() -> None:
    langs = [lang for lang, _, _ in examples()]
    assert langs.count("sh") >= 2 and langs.count("python") == 1
    assert all("curl" in code for lang, code, _ in examples() if lang == "sh")
    assert [shown is not None for lang, _, shown in examples() if lang == "sh"] == [True, True]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl command is not installed")
def test_the_examples_run_as_documented(server: ThreadServer, database: Database, tmp_path: Path) -> None:
    env = {**os.environ, "URL": server.url, "TOKEN": database.token}
    outputs = []
    for lang, code, shown in examples():
        command = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (code, done.stdout, done.stderr)
        if shown is not None:
            assert same(json.loads(shown), json.loads(done.stdout)), (shown, done.stdout)
        outputs.append(done.stdout)
    assert outputs[-1].split() == ["0", "MACBOOK-C02XL0GT", "applied", "None"]
    listed = {d["source_id"] for d in database.appban("device", "list")["devices"]}
    assert listed == {"00008020-000915083C80012E", "PIXEL-4A-7781", "MACBOOK-C02XL0GT"}


def test_every_serve_setting_is_in_the_document() -> None:
    text = DOC.read_text(encoding="utf-8")
    for setting in SETTINGS.values():
        if setting.name.startswith("serve_"):
            assert f"`{setting.env}`" in text or setting.env in text, setting.env


def test_the_document_names_no_machine_path() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "/tmp" not in text and "/work" not in text
