"""The paper's † (Table 1): paired bootstrap resampling (Koehn, 2004) of each system against the
baseline (Forward KD), with sacrebleu's `PairedTest`, for BLEU and for chrF (the same resamples:
sacrebleu draws the indices once per system); p < 0.05 is marked in the tables.

Every seed counts: `pooled_paired_bootstrap` resamples the test sentences of all seeds pooled,
sentence i of seed s of a system paired with sentence i of seed s of the baseline (the references
repeated once per seed). With one seed it is `paired_bootstrap` on that seed's hypotheses."""

from __future__ import annotations

import os

from sekd.plan.schema import default

METRICS = (("bleu", "p_value", "_signature"), ("chrf", "chrf_p_value", "_chrf_signature"))
"""(score key, p-value key, signature key) of BLEU and chrF, in PairedTest's metric order; BLEU
keeps the keys it had before chrF was tested beside it."""


def _run_paired_test(named: list[tuple[str, list[str]]], references: list[str], **test) -> tuple:
    """sacrebleu's PairedTest (bootstrap) of BLEU and chrF on `named` (the baseline first), its
    seed set through SACREBLEU_SEED (which it reads) and the variable restored after."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(test["seed"])
    try:
        return PairedTest(
            named,
            metrics={"BLEU": BLEU(tokenize=test["tokenize"]), "chrF": CHRF()},
            references=[references],
            test_type="bs",
            n_samples=test["n_samples"],
        )()
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous


def paired_bootstrap(
    baseline: tuple[str, list[str]],
    systems: list[tuple[str, list[str]]],
    references: list[str],
    *,
    n_samples: int = 1000,
    seed: int = 12345,
    tokenize: str = default("scoring.tokenize"),
) -> dict[str, dict]:
    """{system: {"bleu", "p_value", "chrf", "chrf_p_value"}} for each system against `baseline`
    (seeded, reproducible), and "_signature" (BLEU's) and "_chrf_signature"."""
    for name, hyps in [baseline, *systems]:
        if len(hyps) != len(references):
            raise ValueError(f"{name}: {len(hyps)} hypotheses for {len(references)} references")
    signatures, scores = _run_paired_test(
        [baseline, *systems], references, n_samples=n_samples, seed=seed, tokenize=tokenize
    )
    identical = {name for name, hyps in systems if list(hyps) == list(baseline[1])}
    out: dict = {name: {} for name in scores["System"]}
    names = [k for k in scores if k != "System"]  # sacrebleu's: "BLEU", "chrF2"
    for metric, (score_key, p_key, signature_key) in zip(names, METRICS, strict=True):
        out[signature_key] = str(signatures[metric])
        for name, result in zip(scores["System"], scores[metric], strict=True):
            # sacrebleu's bootstrap is degenerate for a copy of the baseline (every resampled
            # difference is 0 and it reports p = 1/(n+1)): a copy is not significantly different.
            p_value = 1.0 if name in identical else result.p_value
            out[name].update({score_key: result.score, p_key: p_value})
    return out


def pool_seeds(name: str, per_seed: list[list[str]], n_references: int) -> list[str]:
    """The hypotheses of every seed, concatenated in seed order: [S·N] from S lists of N (one per
    seed, N = `n_references`); an error naming `name` and the seed's position otherwise."""
    if not per_seed:
        raise ValueError(f"{name}: no seed's hypotheses")
    pooled: list[str] = []
    for i, hyps in enumerate(per_seed):
        if len(hyps) != n_references:
            raise ValueError(
                f"{name}, seed #{i + 1}: {len(hyps)} hypotheses for {n_references} references"
            )
        pooled += hyps
    return pooled


def pooled_paired_bootstrap(
    baseline: tuple[str, list[list[str]]],
    systems: list[tuple[str, list[list[str]]]],
    references: list[str],
    **kwargs,
) -> dict[str, dict]:
    """`paired_bootstrap` over the test sentences of all seeds pooled: each system and the
    baseline give one list of hypotheses per seed (the same seeds, in the same order), sentence i
    of seed s of a system is paired with sentence i of seed s of the baseline and with reference
    i; BLEU and chrF alike. `kwargs`: n_samples, seed, tokenize of `paired_bootstrap`. With one
    seed this is exactly `paired_bootstrap(baseline, systems, references)` on that seed."""
    n_seeds = len(baseline[1])
    for name, per_seed in systems:
        if len(per_seed) != n_seeds:
            raise ValueError(f"{name}: {len(per_seed)} seeds for the baseline's {n_seeds}")
    n = len(references)
    return paired_bootstrap(
        (baseline[0], pool_seeds(baseline[0], baseline[1], n)),
        [(name, pool_seeds(name, per_seed, n)) for name, per_seed in systems],
        list(references) * n_seeds,
        **kwargs,
    )
