"""Dropout for CPU training from packed random bits (the `dropout_masks="packed"` setting).

torch's dropout on the CPU draws one random number per element (`bernoulli_`); in BERT4Rec's
training step the attention weights alone are B x heads x L x L per layer, and a profile put a
third of the step's time there. Here one 64-bit draw gives four 16-bit numbers, each compared with
a threshold: about a fifth of that cost. The drop probability is rounded to a multiple of
1/65536. The CPU's fused attention cannot drop out its weights (its fallback draws with
bernoulli_), so attention is spelled out to use these masks too.

On a GPU torch's own fused dropout and attention are faster, so they are kept there whatever
the setting (`uses_packed_masks`). Depends on torch alone, like the network that uses it.
"""

from __future__ import annotations

import torch

# The dropout_masks setting (ModelConfig, TrainConfig): "packed" uses this module where it applies
# (CPU training), "torch" uses torch's dropout everywhere.
DROPOUT_MASKS = ("packed", "torch")

_CHUNKS_PER_DRAW = 4
_CHUNK_VALUES = 1 << 16


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask of `shape`, each element False (dropped) with probability p, from the default
    generator (so seeding torch makes it reproducible)."""
    count = shape.numel()
    draws = torch.empty(-(-count // _CHUNKS_PER_DRAW), dtype=torch.int64, device=device)
    draws.random_(torch.iinfo(torch.int64).min, None)  # every bit random
    chunks = draws.view(torch.int16)[:count].view(shape)  # uniform over -32768..32767
    return chunks >= torch.iinfo(torch.int16).min + round(p * _CHUNK_VALUES)


def uses_packed_masks(x: torch.Tensor, p: float, training: bool) -> bool:
    """Whether dropout of x draws keep_mask's masks: when training on the CPU with 0 < p < 1
    (at p = 1 the rescaling 1 / (1 - p) is infinite)."""
    return training and 0.0 < p < 1.0 and x.device.type == "cpu"


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of x with keep_mask's masks (call where uses_packed_masks)."""
    return (x * keep_mask(x.shape, p, x.device)).mul_(1.0 / (1.0 - p))


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, p: float
) -> torch.Tensor:
    """What scaled_dot_product_attention computes with attn_mask=keep (a key-padding mask,
    [B, L]) and dropout_p=p, with keep_mask's masks on the weights. Scales are applied to the
    small tensors (q, the output), not to the B x heads x L x L weights: the same result with
    two passes over them fewer."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1)
    weights = weights * keep_mask(scores.shape, p, q.device).to(weights.dtype)
    return (weights @ v) * (1.0 / (1.0 - p))
