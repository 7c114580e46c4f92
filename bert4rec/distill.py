"""An item-item teacher: a share of the training loss learns its ranking (--distill).

A few hundred users are too few for the network to learn which titles go together from the
masked titles alone: it memorises each training user's list instead, and validation falls after
a dozen epochs. EASE (baselines.py) knows those pairs. Knowledge distillation (Hinton et al.
2015) adds, at every masked position, the cross-entropy between the teacher's distribution over
the titles and the network's: for a sequence whose visible titles are x, the teacher scores
x B (EASE's item-item weights B), the visible titles excluded, and softmax(scores / temperature)
is the soft target of each of its masked positions (the network, too, sees the whole sequence
but its masked titles).

Which teacher (--distill-teacher, choose_teacher). On time-ordered lists (AniList's, MovieLens)
what comes next follows the last few titles far more than the whole list, and EASE over the
whole list can rank the newest title below popularity, teaching the network to rank it so too.
"auto" takes the item-item model that ranks the validation targets best: EASE-recent at the
lambda and decay chosen there (evaluate.fit_baselines). Its teacher weighs each visible title
by its distance d to the masked position, exp(-(d - 1) / decay): BERT4Rec is bidirectional and
masks anywhere, so titles on both sides count, the nearest most; for the newest title
(d = age + 1) this is EASE-recent's own weighting. The weights are scaled to sum to the number
of visible titles, as EASE's do, so --distill-temperature sharpens both teachers alike (a
scale changes no ranking: the newest-title targets rank as EASE-recent does). When the decay
chosen is none (unordered lists) the teacher is EASE over every visible title alike. "EASE"
always takes that one (what runs trained with before the choice existed).

When the teacher is used (--distill-min-lead). A teacher helps when it ranks what the network
cannot yet: the network starts from the popularity ranking (--popularity-init), and a teacher no
better than that only pulls it back there (on 75 dated AniList users EASE over the whole list
ranked the newest title at HR@10 0.027 and, as teacher, halved the model's HR@10: 0.053 against
0.107 without it). So the teacher is used only when its validation NDCG@10 leads the popularity
baseline's on the same targets by --distill-min-lead standard errors of the per-user difference
(metrics.paired_lead); otherwise training goes on without it and the log says why. The test
costs nothing: both were ranked on validation when the baselines were fitted.

The teacher is cross-fitted: the training users fall into FOLDS groups by their newest title,
and a user's soft targets come from an EASE fitted on the other groups alone. An EASE fitted on
the user itself would hand back what it memorised of that very list (the masked titles score
high because they are on it), and the network would learn to memorise from its teacher; on
500 MyAnimeList users the cross-fitted teacher lifted validation NDCG@10 past ItemKNN's where
the plain one stalled below it (docs/BENCHMARKS.md).

The network stays the model that is saved and used; the teacher only shapes its training.
Cost: FOLDS EASE fits at the start (baselines.EaseSolver), FOLDS [vocab, titles] float32 tables
held while training (bounded by MAX_TABLE_BYTES), and [masked positions, titles] soft targets
per step, the size of the logits the step already computes. The order-aware teacher also
gathers each sequence's visible titles' rows ([sequences, length, titles], GATHER_BYTES at a
time) and multiplies them by each masked position's weights: masked positions x length x titles
operations a step (64 sequences of 200 with 15% masked, 3,000 titles: about 1 GFLOP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import baselines, metrics
from .config import DISTILL_TEACHERS
from .vocab import NUM_SPECIAL_TOKENS, PAD_INDEX, title_slice

FOLDS = 5
MAX_TABLE_BYTES = 2 * 1024**3  # all folds' tables together
GATHER_BYTES = 256 * 1024**2  # the order-aware teacher's gathered rows, per chunk of sequences


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
    1..N; padding, MASK and the reserved token add nothing. `decay`: inf weighs every visible
    title alike (EASE); finite, by its distance d to the masked position, exp(-(d - 1) / decay)
    (EASE-recent)."""

    def __init__(
        self,
        fold_weights: Sequence[np.ndarray],
        temperature: float,
        device: torch.device,
        share: float = 1.0,
        decay: float = math.inf,
    ) -> None:
        if len(fold_weights) != FOLDS:
            raise ValueError(f"a teacher needs {FOLDS} folds' weights")
        self.num_items = fold_weights[0].shape[0]
        self.temperature = temperature
        self.share = share  # of the training loss (--distill)
        self.decay = float(decay)
        self.tables = []
        for weights in fold_weights:
            table = torch.zeros(self.num_items + NUM_SPECIAL_TOKENS, self.num_items)
            table[title_slice(self.num_items)] = torch.from_numpy(weights)
            self.tables.append(table.to(device))

    @torch.no_grad()
    def soft_targets(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[M, N] the teacher's distribution over titles 1..N for each masked position, in the
        row order of the network's logits (`labels != 0`, row-major)."""
        visible = torch.where(inputs > self.num_items, PAD_INDEX, inputs)  # MASK -> padding
        newest = torch.where(labels[:, -1] != PAD_INDEX, labels[:, -1], inputs[:, -1])
        folds = fold_of(newest)
        rows, places = (labels != PAD_INDEX).nonzero(as_tuple=True)
        if math.isinf(self.decay):
            scores = self._sequence_scores(visible, folds)[rows]
        else:
            scores = self._distance_scores(visible, folds, rows, places)
        # column 0 collects the padding and is dropped
        seen = torch.zeros(len(inputs), self.num_items + 1, dtype=torch.bool, device=inputs.device)
        seen.scatter_(1, visible, True)
        scores = scores.masked_fill(seen[rows, 1:], float("-inf")) / self.temperature
        return torch.softmax(scores, dim=1)

    def _sequence_scores(self, visible: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
        """[B, N] each sequence's visible titles' rows summed (every masked position alike)."""
        scores = torch.zeros(len(visible), self.num_items, device=visible.device)
        for fold, table in enumerate(self.tables):
            in_fold = folds == fold
            if in_fold.any():
                scores[in_fold] = F.embedding_bag(
                    visible[in_fold], table, mode="sum", padding_idx=PAD_INDEX
                )
        return scores

    def _distance_scores(
        self, visible: torch.Tensor, folds: torch.Tensor, rows: torch.Tensor, places: torch.Tensor
    ) -> torch.Tensor:
        """[M, N] for masked position m (sequence rows[m], place places[m]): the visible
        titles' rows weighted exp(-(d - 1) / decay) by their distance d to it, the weights
        scaled to sum to the number of visible titles, summed."""
        batch, length = visible.shape
        device = visible.device
        distance = (torch.arange(length, device=device)[None, :] - places[:, None]).abs()
        weights = torch.exp((1 - distance).float() / self.decay)  # [M, L]
        shown = visible[rows] != PAD_INDEX
        weights = weights.masked_fill(~shown, 0.0)
        # summing to the number of visible titles, as EASE's weights of 1 do: the same
        # temperature sharpens both teachers alike (each position's ranking is unchanged)
        weights *= shown.sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(1e-12)
        # each sequence's masked positions side by side: slot = its index within the sequence
        slot = torch.arange(len(rows), device=device) - torch.searchsorted(rows, rows)
        slots = int(slot.max()) + 1 if len(rows) else 1
        by_sequence = torch.zeros(batch, slots, length, device=device)
        by_sequence[rows, slot] = weights
        scores = torch.zeros(len(rows), self.num_items, device=device)
        per_chunk = max(1, GATHER_BYTES // (length * self.num_items * 4))
        where = torch.full((batch,), -1, dtype=torch.long, device=device)
        for fold, table in enumerate(self.tables):
            for chunk in (folds == fold).nonzero()[:, 0].split(per_chunk):
                gathered = F.embedding(visible[chunk], table)  # [c, L, N]; padding adds 0
                summed = torch.bmm(by_sequence[chunk], gathered)  # [c, slots, N]
                where[chunk] = torch.arange(len(chunk), device=device)
                local = where[rows]
                picked = local >= 0
                scores[picked] = summed[local[picked], slot[picked]]
                where[chunk] = -1
        return scores

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
    decay: float = math.inf,
) -> Teacher:
    """One EASE (at `lam`) per fold, each fitted on the sequences of the other folds
    (baselines.EaseSolver), one fold at a time; `decay` as Teacher's."""
    folds = fold_of(np.array([int(s[-1]) for s in sequences]))
    users = baselines.history_matrix(sequences, num_items)
    # with many users, one X'X less each fold's own is cheaper than each fold's X'X
    total = baselines.gram_of(users) if len(users) >= num_items else None
    weights = []
    for fold in range(FOLDS):
        others, own = users[folds != fold], users[folds == fold]
        gram = None if total is None else total - baselines.gram_of(own)
        weights.append(baselines.EaseSolver(others, gram).weights(lam))
    return Teacher(weights, temperature, device, share, decay)


class TeacherChoice(NamedTuple):
    """The teacher --distill-teacher picks, and whether --distill-min-lead keeps it."""

    name: str  # "EASE" or "EASE-recent" (baselines' names)
    lam: float
    decay: float  # inf: every visible title alike
    ndcg: float  # its validation NDCG@10
    popularity_ndcg: float  # the popularity baseline's, same targets
    lead: float  # ndcg - popularity_ndcg, the mean of the per-user differences
    standard_errors: float | None  # lead / its standard error; None when every user moved alike
    used: bool

    def describe(self) -> str:
        """What it teaches, for the log: the model's name and its settings."""
        if math.isinf(self.decay):
            return f"{self.name}'s ranking (lambda {self.lam:g}, every visible title alike)"
        return (
            f"{self.name}'s ranking (lambda {self.lam:g}, decay {self.decay:g}: each visible "
            f"title weighs exp(-(distance - 1) / {self.decay:g}) by its distance to the masked one)"
        )

    def evidence(self) -> str:
        """The validation figures the choice rests on."""
        errors = (
            "" if self.standard_errors is None else f", {self.standard_errors:.1f} standard errors"
        )
        return (
            f"validation NDCG@10 {self.ndcg:.4f} against popularity's {self.popularity_ndcg:.4f} "
            f"(lead {self.lead:+.4f}{errors})"
        )


def choose_teacher(
    report: dict[str, dict],
    validation_ranks: dict[str, torch.Tensor],
    teacher: str,
    min_lead: float,
) -> TeacherChoice:
    """The teacher of --distill-teacher from the fitted baselines (evaluate.fit_baselines:
    each one's report entry and validation ranks): "auto" is EASE-recent at its chosen
    (lambda, decay), named EASE when no decay was chosen; "EASE" is EASE at its lambda. It is
    used when min_lead is 0, or when its validation NDCG@10 leads popularity's by at least
    min_lead standard errors of the per-user difference (a lead with no spread: when above 0)."""
    if teacher not in DISTILL_TEACHERS:
        raise ValueError(f"--distill-teacher must be one of {', '.join(DISTILL_TEACHERS)}")
    source = baselines.ORDER_AWARE if teacher == "auto" else "EASE"
    entry = report[source]
    decay = entry.get("decay") if source == baselines.ORDER_AWARE else None
    name = baselines.ORDER_AWARE if decay is not None else "EASE"
    lead = metrics.paired_lead(validation_ranks[source], validation_ranks["popularity"], "NDCG@10")
    spread = lead["standard_error"]
    errors = lead["lead"] / spread if spread > 0 else None
    clear = errors >= min_lead if errors is not None else lead["lead"] > 0
    return TeacherChoice(
        name=name,
        lam=float(entry["lambda"]),
        decay=math.inf if decay is None else float(decay),
        ndcg=entry["validation"]["NDCG@10"],
        popularity_ndcg=report["popularity"]["validation"]["NDCG@10"],
        lead=lead["lead"],
        standard_errors=errors,
        used=min_lead <= 0 or clear,
    )
