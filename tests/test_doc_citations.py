"""The README and docs are the product's own description: they cite no document that
is not in the repository (a specification, a style guide, an issue tracker's entry).
Public protocol documents (MS-ASHTTP, RFCs) are fine: anyone can read them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# SPEC and STYLE as the names of documents (upper case); spec.md, issue 6, ../shared in any case.
OUTSIDE = re.compile(r"\bSPEC\b|\bSTYLE\b|(?i:\bspec(ification)?\.md\b|\bissues? #?\d+(?![\w-])|\.\./shared\b)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_cite_nothing_outside_the_repository(path: Path) -> None:
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)
