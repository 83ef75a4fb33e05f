"""Seeded sampling (sekd.train.sampling): exact draws from the warped distribution, independent of
the batch a sequence shares, with EOS kept and truncation reported."""

from __future__ import annotations

import math

import pytest
import torch

from sekd import models
from sekd.train import sampling


def test_warp_keeps_the_top_k_and_the_top_p_nucleus():
    scores = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    assert torch.isfinite(sampling.warp(scores, 1.0, 0, 1.0)).all()
    top2 = sampling.warp(scores, 1.0, 2, 1.0)
    assert torch.isfinite(top2).tolist() == [[True, True, False, False, False]]
    # nucleus 0.7: 0.5 + 0.2 reaches it, so the third token is dropped; 0.71 needs the third
    assert torch.isfinite(sampling.warp(scores, 1.0, 0, 0.7)).sum() == 2
    assert torch.isfinite(sampling.warp(scores, 1.0, 0, 0.71)).sum() == 3
    assert torch.isfinite(sampling.warp(scores, 1.0, 0, 0.01)).sum() == 1  # the top token stays
    torch.testing.assert_close(sampling.warp(scores, 2.0, 0, 1.0), scores / 2)
    with pytest.raises(ValueError, match="temperature"):
        sampling.warp(scores, 0.0, 0, 1.0)


def test_gumbel_max_draws_follow_the_warped_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    scores = probs.log()[None].expand(4000, -1)
    processor = sampling.SeededSampling(list(range(4000)), 1.0, 3, 1.0, prompt_width=0)
    drawn = processor(torch.zeros((4000, 0), dtype=torch.long), scores).argmax(-1)
    counts = torch.bincount(drawn, minlength=4).double() / 4000
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    assert (counts - expected).abs().max() < 0.03  # ~4 standard errors at n = 4000
    assert counts[3] == 0  # outside the top-k


def test_a_rows_draw_depends_on_its_seed_and_position_only():
    a = sampling.gumbel([7, 8], position=3, vocab_size=50)
    b = sampling.gumbel([8], position=3, vocab_size=50)
    assert torch.equal(a[1], b[0])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], sampling.gumbel([7], position=4, vocab_size=50)[0])
    assert sampling.row_seed(1, 2, 3) == sampling.row_seed(1, 2, 3) != sampling.row_seed(1, 3, 2)


def test_samples_do_not_depend_on_the_batch(tiny_model_dir, tiny_tokenizer):
    model = models.load_causal_lm(str(tiny_model_dir), "float32", False, None).eval()
    tok = tiny_tokenizer
    prompts = [tok("Ich bin hier")["input_ids"], tok("Guten Morgen, Welt")["input_ids"], [5, 6]]
    kwargs = dict(
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=12,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    together = sampling.sample(model, prompts, [11, 12, 13], **kwargs)
    seeds = [11, 12, 13]
    alone = [
        sampling.sample(model, [p], [s], **kwargs)[0] for p, s in zip(prompts, seeds, strict=True)
    ]
    assert together == alone
    again = sampling.sample(model, prompts[::-1], [13, 12, 11], **kwargs)
    assert again[::-1] == together
    other = sampling.sample(model, prompts, [21, 22, 23], **kwargs)
    assert other != together  # a random tiny model: different seeds, different samples
    for tokens, finished in together:
        assert 0 < len(tokens) <= 12
        assert finished == (tokens[-1] == tok.eos_token_id)
        assert finished or len(tokens) == 12  # cut at max_new_tokens, without EOS


def test_a_peaked_model_is_sampled_as_its_argmax(tiny_model_dir, tiny_tokenizer):
    """At a temperature near 0 the Gumbel noise cannot move the argmax: greedy decoding."""
    model = models.load_causal_lm(str(tiny_model_dir), "float32", False, None).eval()
    tok = tiny_tokenizer
    prompt = tok("Ich bin hier")["input_ids"]
    common = dict(max_new_tokens=8, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cold = sampling.sample(model, [prompt], [3], temperature=1e-6, top_k=0, top_p=1.0, **common)
    top1 = sampling.sample(model, [prompt], [4], temperature=1.0, top_k=1, top_p=1.0, **common)
    assert cold == top1
    assert math.isfinite(len(cold[0][0]))
