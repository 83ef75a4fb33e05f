"""Self-Evolution Knowledge Distillation (Song et al., COLING 2025) as a reproducible workflow.

One module a job: `config` (schema + validation), `data` (ALMA files), `prompts` (ParroT
instructions), `losses` (eqs. 1-10), `tokenizer`, `models`, `train`, `decode`, `score`, `tables`.
"""

__version__ = "0.1.0"
