"""Paired bootstrap: seeded, and it separates a clearly better system from an equal one."""

from __future__ import annotations

import random

import pytest

from sekd.significance import paired_bootstrap


def _corpus(n=60, seed=0):
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "ran",
        "on",
        "under",
        "mat",
        "house",
        "garden",
        "quickly",
        "slowly",
        "today",
    ]
    return [" ".join(rng.choice(words) for _ in range(8)) for _ in range(n)]


def _noisy(refs, rate, seed):
    rng = random.Random(seed)
    return [" ".join(w if rng.random() > rate else "xyz" for w in r.split()) for r in refs]


def test_better_system_is_significant_and_an_equal_one_is_not():
    refs = _corpus(n=200)
    base = _noisy(refs, 0.5, 1)
    nearly_equal = _noisy(refs[:3], 0.5, 3) + base[3:]  # 3 of 200 sentences differ
    result = paired_bootstrap(
        ("base", base), [("better", _noisy(refs, 0.1, 2)), ("equal", nearly_equal)], refs
    )
    assert result["better"]["p_value"] < 0.05
    assert result["equal"]["p_value"] > 0.05
    assert result["base"]["p_value"] is None
    assert "bs:1000" in result["_signature"] and "seed:12345" in result["_signature"]


def test_seeded_and_reproducible():
    refs = _corpus(seed=3)
    a = [r.replace("cat", "dog") for r in refs]
    b = [r.replace("the", "a") for r in refs]
    first = paired_bootstrap(("a", a), [("b", b)], refs, n_samples=200, seed=7)
    second = paired_bootstrap(("a", a), [("b", b)], refs, n_samples=200, seed=7)
    assert first == second


def test_length_mismatch_names_the_system():
    with pytest.raises(ValueError, match="short: 1 hypotheses for 2"):
        paired_bootstrap(("base", ["a", "b"]), [("short", ["a"])], ["a", "b"])


def test_a_copy_of_the_baseline_is_not_significant():
    refs = _corpus(n=50)
    base = _noisy(refs, 0.5, 1)
    result = paired_bootstrap(("base", base), [("copy", list(base))], refs, n_samples=100)
    assert result["copy"]["p_value"] == 1.0
