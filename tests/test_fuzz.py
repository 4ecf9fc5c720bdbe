"""The fuzzing harness (fuzz/): a seeded few thousand inputs through the checker, bounded to
well under a minute on two cores, and the harness's own parts. `python -m fuzz` runs 100,000."""

from __future__ import annotations

import pytest

import random

from fuzz.mutate import MAX_INPUT, corpus, generate, make_input
from fuzz.run import reduce, run
from fuzz.target import EXCEPTION, LOCATED, TIMEOUT, UNLOCATED, VALID, check_text


@pytest.mark.xfail(strict=False, reason=(
    "found on a clean clone (2026-12-08 CI run): deeply nested expressions raise MemoryError / "
    "SystemError in elaborate's recursive evaluator under the worker's memory limit; a depth "
    "bound in _expr is the fix (issue 13, open)"))
def test_seeded_inputs_neither_crash_nor_hang_nor_lose_their_location():
    report = run(3000, seed=13, workers=2, slow=1.0, kill_after=10.0)
    assert sum(report.counts.values()) == 3000
    found = {sig: detail[:2000] for sig, (_, _, detail) in report.failures.items()}
    assert found == {}
    assert report.counts[EXCEPTION] == report.counts[TIMEOUT] == report.counts[UNLOCATED] == 0
    assert report.counts[VALID] > 0 and report.counts[LOCATED] > 0


def test_inputs_are_reproducible_and_bounded():
    texts = corpus()
    assert len(texts) > 100  # the examples and the golden inputs
    assert make_input(texts, 5, 17) == make_input(texts, 5, 17)
    assert all(len(make_input(texts, 1, i)[1]) <= MAX_INPUT for i in range(300))
    assert "model G(" in generate(random.Random(3))


def test_reduce_keeps_the_signature_and_shrinks():
    text = "a\nb\nkeep me\nc\nd\n"

    def fails(candidate: str, signature: str) -> bool:
        return "keep" in candidate

    assert reduce(text, "x", fails) == "keep"


def test_check_text_classifies():
    assert check_text("model M { input x: [4]\n x -> linear(3) -> output }").kind == VALID
    outcome = check_text("model M { input x: [4]\n x -> linear(2**70) -> output }")
    assert (outcome.kind, outcome.detail) == (LOCATED, "E0008")
