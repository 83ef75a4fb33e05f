"""The optimizer batch as one pool of tokens: run options ``norm`` and ``pool`` (issue 11).

Eqs. 1 and 9 average over "the N tokens" and §5.2.1 picks the top-K% of "the batch"; the paper
does not say whether the batch is one micro-batch on one rank or the whole optimizer batch
(every gradient-accumulation step of every rank). The defaults take the micro-batch; these
helpers give the trainer (sekd.train.trainer) the optimizer batch:

- `step_tokens`: N of the step, the non-ignored shifted labels (``labels[:, 1:] != -100``, the
  tokens `sekd.train.losses.distill_loss` averages over) of the step's micro-batches, summed over
  ranks;
- `select_hard`: the k = ⌈K/100·N⌉ tokens of the step with the largest d, from every rank's
  d; ties broken by position: rank, then micro-batch, then row-major token order (a stable
  descending sort), so that exactly k are chosen.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sekd.train.losses import IGNORE_INDEX, _topk_count


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def shifted_mask(labels: Tensor) -> Tensor:
    """The trained positions [B, T-1] of labels [B, T]: position t predicts token t+1."""
    return labels[:, 1:] != IGNORE_INDEX


def step_tokens(batches: list[dict], device: torch.device | str) -> int:
    """N of an optimizer step: the trained tokens (`shifted_mask`) of this rank's micro-batches
    `batches`, summed over the ranks when torch.distributed is initialised (a collective)."""
    count = sum(int(shifted_mask(b["labels"]).sum()) for b in batches)
    if not _distributed():
        return count
    total = torch.tensor([count], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(total)
    return int(total.item())


def _gathered(local: Tensor) -> tuple[Tensor, int]:
    """(every rank's `local` [n_r] concatenated in rank order, this rank's offset in it); a
    collective when torch.distributed is initialised."""
    if not _distributed() or torch.distributed.get_world_size() == 1:
        return local, 0
    world = torch.distributed.get_world_size()
    size = torch.tensor([local.numel()], dtype=torch.int64, device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    torch.distributed.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(sizes), dtype=local.dtype, device=local.device)
    padded[: local.numel()] = local
    parts = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded)
    rank = torch.distributed.get_rank()
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]), sum(sizes[:rank])


def select_hard(d_parts: list[Tensor], top_k_percent: float) -> list[Tensor]:
    """The hard tokens of sekd_topk over the optimizer batch (§5.2.1): `d_parts` holds d [n_i]
    of this rank's micro-batches' trained tokens (row-major); returns one bool [n_i] per part.
    Exactly k = ⌈K/100·N⌉ tokens of the N of all ranks are hard: the largest d, ties broken
    by position (lower rank, then earlier micro-batch, then earlier token first)."""
    local = torch.cat([d.float().reshape(-1) for d in d_parts])
    pooled, offset = _gathered(local)
    k = _topk_count(top_k_percent, pooled.numel())
    order = torch.sort(pooled, descending=True, stable=True).indices[:k]
    hard = torch.zeros(pooled.numel(), dtype=torch.bool, device=pooled.device)
    hard[order] = True
    mine = hard[offset : offset + local.numel()]
    return list(mine.split([d.numel() for d in d_parts]))


def on_grid(labels: Tensor, hard: Tensor) -> Tensor:
    """Hard tokens [n] of the trained positions of labels [B, T] as a bool [B, T-1] mask."""
    mask = shifted_mask(labels)
    out = torch.zeros(mask.shape, dtype=torch.bool, device=hard.device)
    out[mask.to(hard.device)] = hard
    return out
