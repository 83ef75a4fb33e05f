"""Self-Evolution Knowledge Distillation (Song et al., COLING 2025) as a reproducible workflow.

One folder per layer and stage (tests/test_layers.py checks the boundaries):

- `plan/` (torch-free; the Snakefile and the rules import it at parse time): the config, the
  objectives and hyper-parameters declared once, run names, the study's jobs, each job's
  params, and the GPU sizing of the jobs that load a model.
- `data/`: the ALMA files, the prompts, the tokenizer and the training batches.
- `train/`: SFT and KD runs: the job, the Trainer, the losses and their chunked kernels, on-policy
  sampling, checkpoints, multi-process launch.
- `teacher/`: what is computed once from a teacher: its store of logits, its generated training
  sequences, and the store's fidelity to the online teacher.
- `evaluate/`: decoding, BLEU, COMET, significance, the validation fit.
- `report/`: tables, figures, curves, the sensitivity table, the HTML report, the compute budget,
  the archive.

At the top, what every stage shares: `errors`, `atomic` (complete outputs or none), `logs`,
`models` (loading and building base models) and `gpu_required` (no GPU job without a GPU).
"""

__version__ = "0.1.0"
