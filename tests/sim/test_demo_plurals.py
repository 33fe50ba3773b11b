"""The demo's sentences agree with their numbers: "1 device", "1 person", "1 does not".

Small companies make counts of one likely; the seeds below between them print every
sentence the demo has with a 1 in it (checked, so that a seed change cannot make this
test pass by printing none). The memo's counts are not among them: since the memo goes
to people with an unverified device too, no small seed tells exactly one person.
"""

from __future__ import annotations

import re

import pytest

from helpers_cli import run

# A count of one followed by a plural noun or a plural verb.
WRONG = re.compile(
    r"(?<![\d,.])1 (devices|people|entries|check-ins|"
    r"do not|violate it|report |have |were |belong |run |are |keep their|lose their)"
)
SEEDS = range(1, 8)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    folder = tmp_path_factory.mktemp("plurals")
    found = {}
    for seed in SEEDS:
        result = run("--db", str(folder / f"demo{seed}.db"), "demo", "--employees", "10", "--seed", str(seed))
        assert result.code == 0, result.err
        found[seed] = result.out
    return found


def test_no_count_of_one_takes_a_plural(outputs: dict[int, str]) -> None:
    for seed, out in outputs.items():
        wrong = [line for line in out.splitlines() if WRONG.search(line)]
        assert not wrong, (seed, wrong)


@pytest.mark.parametrize(
    "sentence",
    [
        r"TikTok on 1 device the inventory",
        r"1 violates it now \(1 person\)",
        r", 1 does not violate it: 1 does not read company mail",
        r"1 unverified device keeps its mail",
        r"\(1 reports managed apps only",
        r"1 device blocked, 1 told",
        r"1 device of 1 person still blocked",
    ],
)
def test_the_seeds_print_the_singular_forms(outputs: dict[int, str], sentence: str) -> None:
    assert any(re.search(sentence, out) for out in outputs.values()), sentence


def test_two_take_the_plural(outputs: dict[int, str]) -> None:
    text = "\n".join(outputs.values())
    assert re.search(r"\b2 violate it now \(2 people\)", text)
    assert re.search(r"\b2 unverified devices keep their mail", text)
