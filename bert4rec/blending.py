"""The model's scores blended with EASE's, and the file that lets recommendations use it.

The two score on different scales (logits; EASE's regression outputs), so each row is first
standardised over its finite scores (mean 0, standard deviation 1), then mixed:
(1 - w) * model + w * EASE. The EASE share w is chosen on the validation targets
(evaluate.fit_blend); w = 0 is the model alone, exactly. A title either side gives -inf (padding,
special tokens, the user's own titles) stays -inf.

training writes output/models/ease_blend.pth (checkpoint.BLEND_FILE) when a share above 0 won
on validation; recommend.py blends when that file matches the model it loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import files

BLEND_KIND = "ease-blend"


def in_vocab_layout(title_scores: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, N] scores of titles 1..N as [B, vocab]: -inf for padding and the special tokens."""
    out = torch.full((title_scores.shape[0], vocab_size), float("-inf"))
    out[:, 1 : title_scores.shape[1] + 1] = title_scores
    return out


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation, both over its finite entries."""
    finite = torch.isfinite(scores)
    count = finite.sum(dim=1, keepdim=True).clamp(min=1)
    values = torch.where(finite, scores, 0.0)
    mean = values.sum(dim=1, keepdim=True) / count
    spread = torch.where(finite, (values - mean) ** 2, 0.0).sum(dim=1, keepdim=True) / count
    return torch.where(finite, (values - mean) / spread.sqrt().clamp(min=1e-12), float("-inf"))


def blend(
    model_scores: torch.Tensor, ease_scores: torch.Tensor, ease_weight: float
) -> torch.Tensor:
    """[B, vocab] (1 - w) * standardised model + w * standardised EASE; w = 0 is the model."""
    if ease_weight == 0:
        return model_scores.float()
    mixed = (1 - ease_weight) * standardise(model_scores.float()) + ease_weight * standardise(
        ease_scores.float()
    )
    return torch.where(
        torch.isfinite(model_scores) & torch.isfinite(ease_scores), mixed, -torch.inf
    )


class Blend(NamedTuple):
    """What recommendations need to blend: EASE's item weights and the share."""

    ease_weights: torch.Tensor  # [N, N] float32, baselines.EASE.weights
    ease_weight: float
    ease_lambda: float
    data_fingerprint: str  # of the training data the model was trained on
    model_epoch: int  # best_model.pth's epoch when the share was chosen

    def scores(self, model_scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, vocab] blended scores for histories of item indices; the history's own titles
        -inf."""
        n = self.ease_weights.shape[0]
        users = torch.zeros(len(histories), n)
        for row, history in enumerate(histories):
            if len(history):
                users[row, torch.as_tensor(np.asarray(history, dtype=np.int64) - 1)] = 1.0
        ease = (users @ self.ease_weights).masked_fill(users > 0, float("-inf"))
        return blend(
            model_scores.cpu(), in_vocab_layout(ease, model_scores.shape[1]), self.ease_weight
        )

    def describe(self) -> str:
        if self.ease_weight == 1:
            return (
                f"EASE alone (lambda {self.ease_lambda:g}), chosen on validation over the model "
                "and its blends with EASE"
            )
        return (
            f"a blend of the model ({1 - self.ease_weight:.0%}) and EASE (lambda "
            f"{self.ease_lambda:g}, {self.ease_weight:.0%}), the share chosen on validation"
        )

    def to_payload(self) -> dict:
        return {"kind": BLEND_KIND, **self._asdict()}

    @classmethod
    def from_payload(cls, payload: dict) -> Blend:
        if payload.get("kind") != BLEND_KIND:
            raise ValueError("not a blend file written by train_model.py")
        return cls(**{name: payload[name] for name in cls._fields})


def save(blend_file: Blend, path: str | os.PathLike[str]) -> None:
    files.write_with(path, lambda handle: torch.save(blend_file.to_payload(), handle))


def load(path: str | os.PathLike[str]) -> Blend | None:
    """The blend saved at `path`, or None when there is none (the model is used alone)."""
    path = Path(path)
    if not path.is_file():
        return None
    return Blend.from_payload(torch.load(path, map_location="cpu", weights_only=True))
