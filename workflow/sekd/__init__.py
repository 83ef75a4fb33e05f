"""Self-Evolution Knowledge Distillation (Song et al., COLING 2025) as a reproducible workflow.

Two layers, split by module (tests/test_layers.py checks the boundary):

Parse time, torch-free (imported by the Snakefile and the rules):
  `config` (schema, validation, defaults, cross-key checks), `config_docs` (config/README.md),
  `objectives` (each objective and hyper-parameter declared once), `variants` (KD run names),
  `runs` (teacher-store sources in run names, runtime keys), `study` (the tables and figures of
  config/paper.yaml as jobs), `sequences` (where a run's training sequences come from: the
  teacher outputs' paths and generation settings), `data` (ALMA files), `errors`, `sizing` (each
  GPU job's memory and GPU hours, checked at plan time against the profile's GPU).

Compute (import torch and transformers at the top):
  `losses` (reference losses, eqs. 1-10) and `chunked` (their memory-flat kernels), `batches`
  (encode + collate), `trainer` (DistillTrainer.compute_loss -> losses.distill_loss),
  `checkpoints` (checkpoint/preemption protocol), `distributed` (torchrun/srun, the teacher's
  DeepSpeed engine), `train` (TrainJob, run), `selection` (which SFT checkpoint is kept),
  `teacher_store`, `teacher_outputs` (the teacher's outputs for the training prompts), `sampling`
  (seeded, batch-independent samples), `onpolicy` (the student's own samples during training),
  `pool` (the optimizer batch as one pool of tokens), `store_fidelity`, `models`,
  `tokenizer`, `prompts`, `decode`, `score`, `comet`, `significance`; and the report side:
  `tables`, `figures`, `report`, `fidelity_report`, `archive`, `logs`.
"""

__version__ = "0.1.0"
