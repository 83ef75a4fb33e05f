"""The paper's † (Table 1): paired bootstrap resampling (Koehn, 2004) of each system against the
baseline (Forward KD), with sacrebleu's `PairedTest`; p < 0.05 is marked in the tables."""

from __future__ import annotations

import os


def paired_bootstrap(
    baseline: tuple[str, list[str]],
    systems: list[tuple[str, list[str]]],
    references: list[str],
    *,
    n_samples: int = 1000,
    seed: int = 12345,
    tokenize: str = "13a",
) -> dict[str, dict]:
    """{system: {"bleu", "p_value"}} for each system against `baseline` (seeded, reproducible)."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    for name, hyps in [baseline, *systems]:
        if len(hyps) != len(references):
            raise ValueError(f"{name}: {len(hyps)} hypotheses for {len(references)} references")
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)  # PairedTest reads its seed from here
    try:
        test = PairedTest(
            [baseline, *systems],
            metrics={"BLEU": BLEU(tokenize=tokenize)},
            references=[references],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, scores = test()
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    (metric,) = [k for k in scores if k != "System"]
    identical = {name for name, hyps in systems if list(hyps) == list(baseline[1])}
    out = {}
    for name, result in zip(scores["System"], scores[metric], strict=True):
        # sacrebleu's bootstrap is degenerate for a copy of the baseline (every resampled
        # difference is 0 and it reports p = 1/(n+1)): a copy is not significantly different.
        p_value = 1.0 if name in identical else result.p_value
        out[name] = {"bleu": result.score, "p_value": p_value}
    out["_signature"] = str(signatures[metric])
    return out
