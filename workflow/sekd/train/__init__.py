"""Training runs (§4.2): `job` (TrainJob and one rank's run), `trainer` (the Trainer with the
paper's loss), `losses` (eqs. 1-10) and `chunked` (their memory-flat kernels), `pool` (the optimizer
batch as one pool of tokens), `onpolicy` and `sampling` (the student's own samples),
`checkpoints` (checkpoint and preemption protocol), `distributed` (torchrun and srun launch),
`sft_checkpoint` (which SFT checkpoint is kept) and `run_lock` (who trains a run).
"""
