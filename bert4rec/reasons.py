"""Why a title is recommended: the titles of the history that raised its score most.

The method: each history title gets the credit of a two-point Shapley estimate, the mean of
  - its occlusion: how much the recommendation's log-probability falls when that title is taken
    out of the history (its position becomes padding, which attention never reads; every other
    title keeps its place), and
  - its word alone: how much higher the recommendation's log-probability is with that title as
    the whole history than with an empty one.
(For a history of two titles this is their exact Shapley value.) Occlusion alone misses what
several titles say at once: after three seasons of a series, taking out any one of them still
leaves the other two, so no season's removal lowers the fourth much, and whichever stray
title happened to move it most was named. The title on its own names the season that leads to
the fourth. The reasons of a recommendation are the (at most) three history titles with the
largest credit, counting only credits above zero. The log-probabilities are the model's own, a
softmax over every title of the catalogue: not over the titles that may be recommended, as the
score is, because there taking out the newest title of a series hides what it did (without it
the model expects that title, which is on the list and so out of the softmax, and the mass goes
to the next one).

Cost: one forward pass of the model with one row per occluded title, and one of two columns per
title alone, for all the recommendations at once. The model reads the newest max_seq_len - 1
titles (older ones cannot have raised anything); with the default 200 that is 199 rows, too
slow on a small CPU, so the titles to credit are first screened by attention rollout (Abnar &
Zuidema, 2020: how much of the MASK position's final state flows from each input position,
through every layer's attention averaged over heads, with the residual as half of each layer):
the `candidates` titles with the most flow are credited, the others are not reasons. With a
history no longer than `candidates` titles every one is credited.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import data
from .model import BERT4Rec

METHOD = (
    "each reason is a title of your history with the most credit for the recommendation: the "
    "mean of how much its removal lowers the recommendation's log-probability and how much it "
    "alone raises it (a two-point Shapley estimate, among the titles attention rollout screens "
    "as the most read); at most three, only those that raised it"
)
MAX_REASONS = 3
DEFAULT_CANDIDATES = 32


@torch.no_grad()
def explain(
    model: BERT4Rec,
    history: np.ndarray,
    targets: Sequence[int],
    mask_index: int,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    max_reasons: int = MAX_REASONS,
) -> list[list[tuple[int, float]]]:
    """For each target (item index) its reasons: (history item index, credit in nats),
    largest first. `history`: the item indices of the user's history, oldest first (the model
    reads the newest max_seq_len - 1)."""
    if not len(targets):
        return []
    device = next(model.parameters()).device
    inputs = data.next_item_inputs([history], mask_index, model.config.max_seq_len).to(device)
    columns = torch.nonzero((inputs[0] != data.PAD_INDEX) & (inputs[0] != mask_index)).flatten()
    if len(columns) > candidates:
        flow = rollout(model, inputs)[columns]
        columns = columns[flow.topk(candidates).indices]
    items = inputs[0, columns]
    chosen = torch.as_tensor(list(targets), device=device)
    # Row 0: the whole history; row 1 + c: without title c.
    occluded = inputs.repeat(len(columns) + 1, 1)
    occluded[torch.arange(1, len(columns) + 1, device=device), columns] = data.PAD_INDEX
    # Row 0: no history; row 1 + c: title c alone.
    alone = torch.full((len(columns) + 1, 2), mask_index, device=device)
    alone[0, 0] = data.PAD_INDEX
    alone[1:, 0] = items
    with_all = _target_log_probs(model, occluded, chosen)  # [1 + C, T]
    by_itself = _target_log_probs(model, alone, chosen)
    falls = with_all[0] - with_all[1:]  # [C, T]
    raises = by_itself[1:] - by_itself[0]
    credits = (0.5 * (falls + raises)).T.cpu()  # [T, C]
    items = items.tolist()
    found = []
    for row in credits:
        order = torch.argsort(row, descending=True)[:max_reasons].tolist()
        found.append([(items[c], float(row[c])) for c in order if row[c] > 0])
    return found


def _target_log_probs(model: BERT4Rec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[rows, T]: each row's log-probability of each target, in a softmax over every token."""
    return torch.log_softmax(model.next_item_logits(inputs).float(), dim=1)[:, targets]


def rollout(model: BERT4Rec, inputs: torch.Tensor) -> torch.Tensor:
    """[L]: the share of the last (MASK) position's final state that flows from each position
    of inputs [1, L], by attention rollout."""
    block_inputs: list[torch.Tensor] = []
    hooks = [
        block.register_forward_pre_hook(lambda module, args: block_inputs.append(args[0]))
        for block in model.blocks
    ]
    try:
        model.encode(inputs, last_only=True)
    finally:
        for hook in hooks:
            hook.remove()
    keep = inputs[0] != data.PAD_INDEX
    length = inputs.shape[1]
    flow = torch.eye(length, device=inputs.device)
    for block, x in zip(model.blocks, block_inputs):
        weights = attention_weights(block.attention, x[0], keep)
        flow = (0.5 * weights + 0.5 * torch.eye(length, device=inputs.device)) @ flow
    return flow[-1]


def attention_weights(
    attention: torch.nn.Module, x: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """[L, L] attention weights of one SelfAttention layer for states x [L, H], averaged over
    heads; padding gets none."""
    length, hidden = x.shape
    q, k, _ = attention.qkv(x).split(hidden, dim=1)
    q, k = (t.view(length, attention.heads, -1).transpose(0, 1) for t in (q, k))
    scores = (q @ k.transpose(1, 2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~keep[None, None, :], float("-inf"))
    return scores.softmax(dim=-1).mean(dim=0)
