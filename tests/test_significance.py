"""Paired bootstrap: seeded, and it separates a clearly better system from an equal one."""

from __future__ import annotations

import random

import pytest

from sekd.evaluate.significance import paired_bootstrap, pool_seeds, pooled_paired_bootstrap


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


def test_chrf_is_tested_beside_bleu_on_the_same_resamples():
    import os

    import sacrebleu
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    refs = _corpus(n=120, seed=4)
    base, better = _noisy(refs, 0.5, 1), _noisy(refs, 0.2, 2)
    result = paired_bootstrap(("base", base), [("better", better)], refs, n_samples=200, seed=5)
    assert result["better"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(better, [refs]).score)
    assert result["base"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(base, [refs]).score)
    assert result["better"]["chrf_p_value"] < 0.05 and result["base"]["chrf_p_value"] is None
    assert "nc:6" in result["_chrf_signature"] and "bs:200" in result["_chrf_signature"]
    # each metric alone, through sacrebleu directly at the same seed: the same p-values
    os.environ["SACREBLEU_SEED"] = "5"
    try:
        for metric, key in ((BLEU(), "p_value"), (CHRF(), "chrf_p_value")):
            test = PairedTest(
                [("base", base), ("better", better)], {"m": metric}, [refs], "bs", n_samples=200
            )
            _, scores = test()
            (name,) = [k for k in scores if k != "System"]  # sacrebleu's: BLEU, chrF2
            assert scores[name][1].p_value == result["better"][key]
    finally:
        del os.environ["SACREBLEU_SEED"]


def test_a_copy_of_the_baseline_is_not_significant_in_chrf_either():
    refs = _corpus(n=50)
    base = _noisy(refs, 0.5, 1)
    result = paired_bootstrap(("base", base), [("copy", list(base))], refs, n_samples=100)
    assert result["copy"]["chrf_p_value"] == 1.0


# Every seed counts: the test sentences of all seeds pooled, paired seed-wise


def test_one_seed_pooled_is_exactly_todays_call():
    refs = _corpus(n=80, seed=5)
    base, better = _noisy(refs, 0.5, 1), _noisy(refs, 0.3, 2)
    today = paired_bootstrap(("base", base), [("better", better)], refs, n_samples=300, seed=9)
    pooled = pooled_paired_bootstrap(
        ("base", [base]), [("better", [better])], refs, n_samples=300, seed=9
    )
    assert pooled == today


def test_two_seeds_are_pooled_and_paired_seed_wise():
    refs = _corpus(n=60, seed=6)
    base = [_noisy(refs, 0.5, 1), _noisy(refs, 0.5, 11)]
    better = [_noisy(refs, 0.3, 2), _noisy(refs, 0.3, 12)]
    pooled = pooled_paired_bootstrap(
        ("base", base), [("better", better), ("copy", [list(h) for h in base])], refs,
        n_samples=300, seed=9,
    )  # fmt: skip
    # the same as the bootstrap over the concatenated seeds against the references repeated
    explicit = paired_bootstrap(
        ("base", base[0] + base[1]),
        [("better", better[0] + better[1]), ("copy", base[0] + base[1])],
        refs + refs,
        n_samples=300,
        seed=9,
    )
    assert pooled == explicit
    assert pooled["better"]["p_value"] < 0.05
    # a system that is the baseline seed by seed is a copy (p = 1); with its seeds swapped it is
    # not, so sentence i of seed s is paired with the baseline's sentence i of seed s
    assert pooled["copy"]["p_value"] == 1.0
    swapped = pooled_paired_bootstrap(
        ("base", base), [("swapped", [base[1], base[0]])], refs, n_samples=300, seed=9
    )
    assert swapped["swapped"]["p_value"] < 1.0
    # and it differs from the one-seed test on seed 1 alone
    first = paired_bootstrap(
        ("base", base[0]), [("better", better[0])], refs, n_samples=300, seed=9
    )
    assert first["better"]["bleu"] != pooled["better"]["bleu"]


def test_pooling_checks_seeds_and_lengths():
    with pytest.raises(ValueError, match="b: 1 seeds for the baseline's 2"):
        pooled_paired_bootstrap(("a", [["x"], ["y"]]), [("b", [["x"]])], ["r"])
    with pytest.raises(ValueError, match="b, seed #2: 2 hypotheses for 1 references"):
        pooled_paired_bootstrap(("a", [["x"], ["y"]]), [("b", [["x"], ["y", "z"]])], ["r"])
    with pytest.raises(ValueError, match="a: no seed's hypotheses"):
        pool_seeds("a", [], 3)
    assert pool_seeds("a", [["1", "2"], ["3", "4"]], 2) == ["1", "2", "3", "4"]
