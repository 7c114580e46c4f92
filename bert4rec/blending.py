"""The model's scores mixed with an item-item model's, and the file that lets recommendations
use the mix.

The item-item part is EASE's weights B read over the history with each title weighted
exp(-age / decay), age 0 for the newest (baselines.RecentEASE): EASE-recent; decay inf weighs
every title alike, and that is plain EASE. One code path scores both.

The two parts score on different scales (logits; EASE's regression outputs), so each row is
first standardised (mean 0, standard deviation 1), then mixed: (1 - w) * model + w * part. Both
are standardised over the same titles, exactly those that may be ranked: not padding or the
special tokens, not the user's own titles (which training under --exclude-seen leaves
unconstrained in the model's row, while the part gives them -inf), not whatever the caller has
banned beforehand (set to -inf in the model's row). Over different titles the part's effective
share would differ from user to user. The share w is chosen on the validation targets
(evaluate.fit_blend); w = 0 is the model alone, exactly; w = 1 ranks as the part alone.

Training writes output/models/ease_blend.pth (checkpoint.BLEND_FILE) when a share above 0 won
on validation; recommend.py uses it when that file matches the model it loads. A file written
before EASE-recent existed holds plain EASE (decay inf) and loads as such.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import baselines, files

BLEND_KIND = "ease-blend"
PLAIN = "EASE"  # the part's name when every title counts alike (decay inf)


def in_vocab_layout(title_scores: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, N] scores of titles 1..N as [B, vocab]: -inf for padding and the special tokens."""
    out = torch.full((title_scores.shape[0], vocab_size), float("-inf"))
    out[:, 1 : title_scores.shape[1] + 1] = title_scores
    return out


def rankable(model_scores: torch.Tensor, part_scores: torch.Tensor) -> torch.Tensor:
    """[B, vocab] bool: the titles both parts may rank (finite in both rows)."""
    return torch.isfinite(model_scores) & torch.isfinite(part_scores)


def _moments(scores: torch.Tensor, over: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's mean and standard deviation ([B, 1] each) over the entries `over` marks."""
    count = over.sum(dim=1, keepdim=True).clamp(min=1)
    values = torch.where(over, scores, 0.0)
    mean = values.sum(dim=1, keepdim=True) / count
    spread = torch.where(over, (values - mean) ** 2, 0.0).sum(dim=1, keepdim=True) / count
    return mean, spread.sqrt().clamp(min=1e-12)


def standardise(scores: torch.Tensor, over: torch.Tensor | None = None) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation, both over the entries `over` marks
    (default: its finite ones); -inf elsewhere."""
    over = torch.isfinite(scores) if over is None else over
    mean, spread = _moments(scores, over)
    return torch.where(over, (scores - mean) / spread, float("-inf"))


def blend(model_scores: torch.Tensor, part_scores: torch.Tensor, share: float) -> torch.Tensor:
    """[B, vocab] (1 - share) * standardised model + share * standardised part, both
    standardised over the titles both may rank, -inf elsewhere; share 0 is the model's scores."""
    if share == 0:
        return model_scores.float()
    model_scores, part_scores = model_scores.float(), part_scores.float()
    over = rankable(model_scores, part_scores)
    mixed = (1 - share) * standardise(model_scores, over) + share * standardise(part_scores, over)
    return torch.where(over, mixed, float("-inf"))


def credit_scales(
    model_scores: torch.Tensor, part_scores: torch.Tensor, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """([B], [B]): what one unit of each part's score is worth in each row's blended score,
    (1 - share) / the model row's spread and share / the part row's spread (the same spreads
    `blend` divides by). A scorer alone keeps its own units: (1, 0) at share 0, (0, 1) at 1."""
    rows = model_scores.shape[0]
    if share in (0, 1):
        ones, zeros = torch.ones(rows), torch.zeros(rows)
        return (ones, zeros) if share == 0 else (zeros, ones)
    model_scores, part_scores = model_scores.float(), part_scores.float()
    over = rankable(model_scores, part_scores)
    model_spread = _moments(model_scores, over)[1][:, 0]
    part_spread = _moments(part_scores, over)[1][:, 0]
    return (1 - share) / model_spread.cpu(), share / part_spread.cpu()


def part_settings(lam: float, decay: float) -> str:
    """'lambda 100, decay 2 titles', or 'lambda 100' when every title counts alike."""
    recency = baselines.decay_words(decay)
    return f"lambda {lam:g}, {recency}" if recency else f"lambda {lam:g}"


class Blend(NamedTuple):
    """What recommendations need to score: the item-item part and its share."""

    weights: torch.Tensor  # [N, N] float32, EASE's item-item weights (baselines.EASE.weights)
    decay: float  # in titles of age (baselines.recency_weights); inf: every title alike (EASE)
    name: str  # the part's name: "EASE" or "EASE-recent"
    lam: float  # EASE's lambda
    share: float  # the part's share of the mix: 1 the part alone (0 is never saved)
    data_fingerprint: str  # of the training data the model was trained on
    model_epoch: int  # best_model.pth's epoch when the share was chosen
    tried: tuple[str, ...] = (PLAIN,)  # the item-item parts the choice was made among

    def part(self) -> baselines.RecentEASE:
        return baselines.RecentEASE(self.weights.numpy(), self.lam, self.decay)

    def part_scores(self, histories: Sequence[np.ndarray], vocab_size: int) -> torch.Tensor:
        """[B, vocab] the part's scores for histories of item indices (oldest first); the
        history's own titles, padding and the special tokens -inf."""
        return in_vocab_layout(torch.from_numpy(self.part().scores(histories)), vocab_size)

    def scores(self, model_scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, vocab] blended scores; titles at -inf in model_scores stay out."""
        part = self.part_scores(histories, model_scores.shape[1])
        return blend(model_scores.cpu(), part, self.share)

    def describe(self) -> str:
        """'EASE-recent alone (lambda 100, decay 2 titles), chosen on validation over ...'."""
        settings = part_settings(self.lam, self.decay)
        alone = ", ".join(f"{name} alone" for name in self.tried)
        each = "each" if len(self.tried) > 1 else "it"
        chosen = f"chosen on validation over the model alone, {alone} and the model's mixes"
        chosen += f" with {each}"
        if self.share == 1:
            return f"{self.name} alone ({settings}), {chosen}"
        return (
            f"a mix of the model ({1 - self.share:.0%}) and {self.name} ({settings}; "
            f"{self.share:.0%}), {chosen}"
        )

    def to_payload(self) -> dict:
        payload = self._asdict()
        return {"kind": BLEND_KIND, **payload, "tried": list(self.tried)}

    @classmethod
    def from_payload(cls, payload: dict) -> Blend:
        if payload.get("kind") != BLEND_KIND:
            raise ValueError("not a blend file written by train_model.py")
        if "ease_weights" in payload:  # written before EASE-recent: plain EASE
            return cls(
                payload["ease_weights"],
                math.inf,
                PLAIN,
                float(payload["ease_lambda"]),
                float(payload["ease_weight"]),
                payload["data_fingerprint"],
                payload["model_epoch"],
            )
        fields = {name: payload[name] for name in cls._fields}
        return cls(**{**fields, "tried": tuple(fields["tried"])})


def save(blend_file: Blend, path: str | os.PathLike[str]) -> None:
    files.write_with(path, lambda handle: torch.save(blend_file.to_payload(), handle))


def load(path: str | os.PathLike[str]) -> Blend | None:
    """The blend saved at `path`, or None when there is none (the model is used alone)."""
    path = Path(path)
    if not path.is_file():
        return None
    return Blend.from_payload(torch.load(path, map_location="cpu", weights_only=True))
