"""EASE as a teacher: a share of the training loss learns the baseline's ranking (--distill).

A few hundred users are too few for the network to learn which titles go together from the
masked titles alone: it memorises each training user's list instead, and validation falls after
a dozen epochs. EASE (baselines.py) knows those pairs. Knowledge distillation (Hinton et al.
2015) adds, at every masked position, the cross-entropy between EASE's distribution over the
titles and the network's: for a sequence whose visible titles are x, EASE scores x B, the
visible titles excluded, and softmax(scores / temperature) is the soft target of each of its
masked positions (the network, too, sees the whole sequence but its masked titles).

The teacher is cross-fitted: the training users fall into FOLDS groups by their newest title,
and a user's soft targets come from an EASE fitted on the other groups alone. An EASE fitted on
the user itself would hand back what it memorised of that very list (the masked titles score
high because they are on it), and the network would learn to memorise from its teacher; on
500 MyAnimeList users the cross-fitted teacher lifted validation NDCG@10 past ItemKNN's where
the plain one stalled below it (docs/BENCHMARKS.md).

The network stays the model that is saved and used; EASE only shapes its training. Cost: FOLDS
EASE fits at the start (baselines.EaseSolver), FOLDS [vocab, titles] float32 tables held while
training (bounded by MAX_TABLE_BYTES), and [masked positions, titles] soft targets per step, the
size of the logits the step already computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import baselines
from .vocab import NUM_SPECIAL_TOKENS, PAD_INDEX, title_slice

FOLDS = 5
MAX_TABLE_BYTES = 2 * 1024**3  # all folds' tables together


def fold_of(newest_titles: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The fold of each sequence, from its newest title (what every batch row ends with, so a
    user keeps its fold in every epoch, masked or not)."""
    return newest_titles % FOLDS


def too_large(num_items: int) -> str | None:
    """Why the teacher is skipped for a catalogue this size, or None when it fits."""
    needed = FOLDS * (num_items + NUM_SPECIAL_TOKENS) * num_items * 4
    if needed <= MAX_TABLE_BYTES:
        return None
    return (
        f"skipped: {FOLDS} cross-fitted EASE tables for {num_items:,} titles need "
        f"{needed / 1024**3:.1f} GB (the limit is {MAX_TABLE_BYTES / 1024**3:.0f} GB)"
    )


class Teacher:
    """One [vocab, N] table per fold: row t holds what title t adds to the scores of titles
    1..N; padding, MASK and the reserved token add nothing."""

    def __init__(
        self,
        fold_weights: Sequence[np.ndarray],
        temperature: float,
        device: torch.device,
        share: float = 1.0,
    ) -> None:
        if len(fold_weights) != FOLDS:
            raise ValueError(f"a teacher needs {FOLDS} folds' weights")
        self.num_items = fold_weights[0].shape[0]
        self.temperature = temperature
        self.share = share  # of the training loss (--distill)
        self.tables = []
        for weights in fold_weights:
            table = torch.zeros(self.num_items + NUM_SPECIAL_TOKENS, self.num_items)
            table[title_slice(self.num_items)] = torch.from_numpy(weights)
            self.tables.append(table.to(device))

    @torch.no_grad()
    def soft_targets(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[M, N] EASE's distribution over titles 1..N for each masked position, in the row
        order of the network's logits (`labels != 0`, row-major)."""
        visible = torch.where(inputs > self.num_items, PAD_INDEX, inputs)  # MASK -> padding
        newest = torch.where(labels[:, -1] != PAD_INDEX, labels[:, -1], inputs[:, -1])
        folds = fold_of(newest)
        scores = torch.zeros(len(inputs), self.num_items, device=inputs.device)
        for fold, table in enumerate(self.tables):
            rows = folds == fold
            if rows.any():
                scores[rows] = F.embedding_bag(
                    visible[rows], table, mode="sum", padding_idx=PAD_INDEX
                )
        # column 0 collects the padding and is dropped
        seen = torch.zeros(len(inputs), self.num_items + 1, dtype=torch.bool, device=inputs.device)
        seen.scatter_(1, visible, True)
        scores = scores.masked_fill(seen[:, 1:], float("-inf")) / self.temperature
        rows = (labels != PAD_INDEX).nonzero()[:, 0]
        return torch.softmax(scores, dim=1)[rows]

    def loss_sum(
        self, logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the network's logits [M, vocab] against EASE's soft targets,
        summed over the masked positions (float32 whatever the autocast dtype)."""
        targets = self.soft_targets(inputs, labels)
        log_probs = torch.log_softmax(logits.float(), dim=1)[:, title_slice(self.num_items)]
        return -(targets * log_probs).sum()

    def step_loss_sum(
        self,
        masked_loss_sum: torch.Tensor,
        logits: torch.Tensor,
        inputs: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """What a training step minimises: (1 - share) x the masked-title loss + share x the
        loss against the soft targets, both summed over the masked positions."""
        taught = self.loss_sum(logits, inputs, labels)
        return (1.0 - self.share) * masked_loss_sum + self.share * taught


def fit_teacher(
    sequences: Sequence[np.ndarray],
    num_items: int,
    lam: float,
    temperature: float,
    device: torch.device,
    share: float = 1.0,
) -> Teacher:
    """One EASE (at `lam`) per fold, each fitted on the sequences of the other folds
    (baselines.EaseSolver), one fold at a time."""
    folds = fold_of(np.array([int(s[-1]) for s in sequences]))
    users = baselines.history_matrix(sequences, num_items)
    # with many users, one X'X less each fold's own is cheaper than each fold's X'X
    total = baselines.gram_of(users) if len(users) >= num_items else None
    weights = []
    for fold in range(FOLDS):
        others, own = users[folds != fold], users[folds == fold]
        gram = None if total is None else total - baselines.gram_of(own)
        weights.append(baselines.EaseSolver(others, gram).weights(lam))
    return Teacher(weights, temperature, device, share)
