"""Rule fit: a trained model's validation NLL and KL(p||q) to a teacher
(sekd.evaluate.validation_fit)."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import models
from sekd.evaluate import validation_fit as fit
from sekd.gpu_required import require_gpus
from sekd.logs import logged

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    models.configure_torch_threads(snakemake.threads)
    p = snakemake.params
    result = fit.fit(
        snakemake.input.model,
        snakemake.input.teacher,
        snakemake.input.tokenizer,
        dict(zip(p.directions, snakemake.input.valid, strict=True)),
        p.languages,
        p.max_length,
        p.batch_size,
        p.dtype,
        p.teacher_dtype,
        # prompt.response_newline, training.truncation: in params only when not the defaults
        formatting={k: v for k, v in p.items() if k in ("response_newline", "truncation")},
    )
    fit.write(result, snakemake.output[0])
    print(f"NLL {result['nll']:.4f}, KL {result['kl']:.4f} over {result['tokens']} tokens")
    print(
        f"{result['examples']} validation examples, {result['dropped']} dropped (prompt too long), "
        f"{result['truncated']} truncated"
    )
