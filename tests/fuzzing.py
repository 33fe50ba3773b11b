"""How long the parsers' fuzz tests run: their default in CI, or ``FUZZ_EXAMPLES`` for a
long run (``FUZZ_EXAMPLES=20000 pytest tests/inventory -k fuzz``)."""

from __future__ import annotations

import os


def examples(default: int) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", default))
