"""What training measures, and the record it keeps.

Two kinds of figures:
- The original design's Top-K accuracy over masked positions: at every masked position, a hit
  when the hidden title is among the K best-scored titles; accuracy = hits / masked positions,
  summed over the whole epoch.
- Next-title ranking, the way recommendations are used: each validation user's last title is
  hidden and the whole catalogue is ranked (full ranking, no sampled negatives), with the
  user's other titles excluded. HR@K is the share of users whose hidden title ranks in the top
  K, NDCG@K discounts a hit at rank r by 1 / log2(r + 1), MRR is the mean of 1 / rank. A most-
  popular baseline is ranked the same way, so the figures say whether the model learned more
  than popularity. Ties count against the hidden title, so a model that scores every title the
  same ranks it last, not first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import vocab
from .data import ItemMapping, NextItemCases, next_item_inputs, seen_items

TOP_K = (1, 5, 10, 20)
HIT_RATE_K = (1, 5, 10, 20)
NDCG_K = (5, 10, 20)
RANKING_METRICS = (*(f"HR@{k}" for k in HIT_RATE_K), *(f"NDCG@{k}" for k in NDCG_K), "MRR")


# --- Top-K accuracy over masked positions ------------------------------------------------------


def topk_hits(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = TOP_K
) -> torch.Tensor:
    """[len(ks)] hit counts: how many rows of [M, vocab] logits rank their target in the top k."""
    k_max = min(max(ks), logits.shape[-1])
    top = logits.topk(k_max, dim=-1).indices
    found = (top == targets[:, None]).cumsum(dim=1).clamp(max=1)  # [M, k_max]: hit within first j+1
    columns = torch.tensor([min(k, k_max) - 1 for k in ks], device=logits.device)
    return found[:, columns].sum(dim=0)


class TopKAccuracy:
    """Hits and masked positions summed over an epoch; kept on the device until read, so no
    training step waits for the accelerator."""

    def __init__(self, ks: Sequence[int] = TOP_K) -> None:
        self.ks = tuple(ks)
        self.hits: torch.Tensor | int = 0
        self.positions = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.hits = self.hits + topk_hits(logits.detach(), targets, self.ks)
        self.positions += int(targets.numel())

    def result(self) -> dict[int, float]:
        if self.positions == 0:
            return {k: 0.0 for k in self.ks}
        hits = torch.as_tensor(self.hits).tolist()
        return {k: h / self.positions for k, h in zip(self.ks, hits)}


# --- next-title ranking ------------------------------------------------------------------------


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor
) -> torch.Tensor:
    """[B] 1-based rank of each target among the titles not excluded ([B, vocab] True).

    Ties count against the target (rank = how many candidates score at least as high)."""
    if exclude.gather(1, targets[:, None]).any():
        raise ValueError("a target is among the excluded titles; it would leak or never rank")
    scores = scores.float().masked_fill(exclude, float("-inf"))
    target_scores = scores.gather(1, targets[:, None])
    return (scores >= target_scores).sum(dim=1)


def ranking_metrics(ranks: torch.Tensor | Sequence[int]) -> dict[str, float]:
    """HR@1/5/10/20, NDCG@5/10/20 and MRR from 1-based ranks (one per user)."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    if ranks.numel() == 0:
        return {name: 0.0 for name in RANKING_METRICS}
    return {name: per_case(ranks, name).mean().item() for name in RANKING_METRICS}


def per_case(ranks: torch.Tensor, metric: str) -> torch.Tensor:
    """[cases] float64 each case's share of a ranking metric ("HR@K", "NDCG@K" or "MRR")."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    if metric == "MRR":
        return 1.0 / ranks
    name, k = metric.split("@")
    hit = ranks <= int(k)
    if name == "HR":
        return hit.double()
    return torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0)


def paired_lead(ranks: torch.Tensor, other: torch.Tensor, metric: str) -> dict[str, float]:
    """How far one scorer's ranks lead another's on the same cases by `metric` (the mean of
    the per-case differences), with the standard error of that mean: a lead of one or two
    standard errors is what a few hundred cases give by chance."""
    difference = per_case(ranks, metric) - per_case(other, metric)
    count = difference.numel()
    spread = difference.std().item() if count > 1 else 0.0
    return {"lead": difference.mean().item(), "standard_error": spread / max(count, 1) ** 0.5}


class NextItemScores(NamedTuple):
    """What one pass over next-title cases measures (see score_next_items)."""

    ranks: torch.Tensor  # [cases] 1-based rank, the history's titles excluded
    loss: float  # mean cross-entropy of the hidden titles over all titles, nothing excluded
    accuracy: dict[int, float]  # Top-K accuracy of the hidden titles, nothing excluded


def not_a_title_mask(num_items: int) -> torch.Tensor:
    """[vocab] True for padding and the special tokens (vocab.py): never a target or a hit."""
    mask = torch.ones(vocab.vocab_size(num_items), dtype=torch.bool)
    mask[vocab.title_slice(num_items)] = False
    return mask


def score_next_items(
    cases: NextItemCases,
    score: Callable[[torch.Tensor, list[np.ndarray]], torch.Tensor],
    mapping: ItemMapping,
    max_seq_len: int,
    batch_size: int,
) -> NextItemScores:
    """Score every case once. `score` maps [B, L] inputs (history + MASK,
    data.next_item_inputs) and the B whole histories to [B, vocab] scores on the CPU. The
    ranks exclude each history's titles, padding and the special tokens, whatever the scores
    say; the loss and the Top-K accuracy are the original design's masked-position
    measures, with the
    hidden title as the one mask.

    Cases are scored in order of history length, so that a batch is padded only a little; the
    results come back in the cases' own order."""
    not_a_title = not_a_title_mask(mapping.num_items)
    lengths = np.array([min(len(h), max_seq_len) for h in cases.histories], dtype=np.int64)
    by_length = np.argsort(lengths, kind="stable")
    ranks = torch.zeros(len(by_length), dtype=torch.long)
    loss_sum = 0.0
    accuracy = TopKAccuracy(TOP_K)
    for start in range(0, len(by_length), batch_size):
        chosen = by_length[start : start + batch_size]
        histories = [cases.histories[i] for i in chosen]
        targets = torch.as_tensor(np.asarray(cases.targets)[chosen], dtype=torch.long)
        inputs = next_item_inputs(histories, mapping.mask_index, max_seq_len)
        if (inputs == targets[:, None]).any():
            raise ValueError("a hidden title is in its own input: the evaluation would leak")
        scores = score(inputs, histories).float()
        exclude = seen_items(histories, mapping.vocab_size) | not_a_title
        ranks[torch.from_numpy(chosen)] = target_ranks(scores, targets, exclude)
        loss_sum += F.cross_entropy(scores, targets, reduction="sum").item()
        accuracy.update(scores, targets)
    return NextItemScores(ranks, loss_sum / max(1, len(by_length)), accuracy.result())


def rank_next_items(
    cases: NextItemCases,
    score: Callable[[torch.Tensor, list[np.ndarray]], torch.Tensor],
    mapping: ItemMapping,
    max_seq_len: int,
    batch_size: int,
) -> torch.Tensor:
    """[cases] 1-based rank of each hidden title (score_next_items), in the cases' order."""
    return score_next_items(cases, score, mapping, max_seq_len, batch_size).ranks


# --- the record of a run -----------------------------------------------------------------------


@dataclass
class TrainingHistory:
    """Every per-epoch figure, one value per epoch (index 0 is epoch 1)."""

    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    train_accuracies: dict[int, list[float]] = field(default_factory=lambda: _per_k())
    val_accuracies: dict[int, list[float]] = field(default_factory=lambda: _per_k())
    val_ranking: dict[str, list[float]] = field(
        default_factory=lambda: {m: [] for m in RANKING_METRICS}
    )
    train_sequences_per_second: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    popularity_baseline: dict[str, float] = field(default_factory=dict)  # constant over epochs
    # name -> {"validation": ranking, "test": ranking (when tested), "lambda", "seconds"} or
    # {"skipped": why}: popularity, ItemKNN, EASE and EASE-recent on the same targets, with the
    # settings chosen on validation (evaluate.fit_baselines)
    baselines: dict[str, dict] = field(default_factory=dict)
    # After training: what recommendations serve, chosen among the model, EASE, EASE-recent and
    # mixes (evaluate.fit_blend); empty when not run
    blend: dict = field(default_factory=dict)
    best_epoch: int = 0
    best_val_loss: float | None = None  # the best epoch's
    select_by: str = "val-loss"  # what chose best_epoch (config.SELECTIONS)
    best_score: float | None = None  # the best epoch's figure of select_by
    # Filled when training ends where there are test targets (the user split's test users,
    # leave-one-out's last titles): the best model (best_model.pth) and the popularity
    # baseline on them.
    test_ranking: dict[str, float] = field(default_factory=dict)
    test_popularity_baseline: dict[str, float] = field(default_factory=dict)
    test_epoch: int = 0

    @property
    def epochs_done(self) -> int:
        return len(self.train_losses)

    def record_epoch(
        self,
        *,
        train_loss: float,
        train_accuracy: dict[int, float],
        val_loss: float,
        val_accuracy: dict[int, float],
        ranking: dict[str, float],
        sequences_per_second: float,
        seconds: float,
        learning_rate: float,
        select_by: str = "val-loss",
    ) -> bool:
        """Append one epoch; True when it is the best so far: the lowest validation loss, or
        with select_by "NDCG@10" the highest validation NDCG@10 (on a tie, the lower
        validation loss)."""
        self.train_losses.append(train_loss)
        self.val_losses.append(val_loss)
        for k in TOP_K:
            self.train_accuracies[k].append(train_accuracy[k])
            self.val_accuracies[k].append(val_accuracy[k])
        for name in RANKING_METRICS:
            self.val_ranking[name].append(ranking[name])
        self.train_sequences_per_second.append(sequences_per_second)
        self.epoch_seconds.append(seconds)
        self.learning_rates.append(learning_rate)
        self.select_by = select_by
        if select_by == "val-loss":
            score = val_loss
            improved = self.best_score is None or score < self.best_score
        else:
            # A tie (common on a few validation users, where NDCG@10 reaches its ceiling
            # early) goes to the lower validation loss: the later, surer epoch.
            score = ranking[select_by]
            improved = (
                self.best_score is None
                or score > self.best_score
                or (score == self.best_score and val_loss < self.best_val_loss)
            )
        if improved:
            self.best_score = score
            self.best_val_loss = val_loss
            self.best_epoch = self.epochs_done
        return improved

    def describe_best(self) -> str:
        """'epoch 12 (lowest validation loss, 5.8671)' or '... (highest validation NDCG@10 ...)'."""
        if self.select_by == "val-loss":
            return f"epoch {self.best_epoch} (lowest validation loss, {self.best_val_loss:.4f})"
        return (
            f"epoch {self.best_epoch} (highest validation {self.select_by}, {self.best_score:.4f})"
        )

    def forget_best(self) -> None:
        """The best model so far is lost: the next epoch recorded becomes the best."""
        self.best_epoch, self.best_score, self.best_val_loss = 0, None, None

    def epochs_since_best(self) -> int:
        return self.epochs_done - self.best_epoch

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingHistory:
        history = cls(**data)
        # A JSON round trip turns the K keys into strings.
        history.train_accuracies = {int(k): v for k, v in history.train_accuracies.items()}
        history.val_accuracies = {int(k): v for k, v in history.val_accuracies.items()}
        return history


def _per_k() -> dict[int, list[float]]:
    return {k: [] for k in TOP_K}
