"""Validation, test and the baselines: everything that ranks next-title cases, one path.

A scorer maps a batch of next-title cases, given both as the model's inputs (history + MASK,
data.next_item_inputs, [B, L]) and as the whole histories (item indices), to [B, vocab]
scores. The model, the baselines (baselines.py) and the blend are scorers, and every one
is measured by `evaluate`: the same cases, full ranking, the history's titles excluded, ties
against the target (metrics.score_next_items).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from . import baselines, blending, distributed, metrics
from .config import TrainConfig
from .data import ItemMapping, NextItemCases
from .metrics import TOP_K

Scorer = Callable[[torch.Tensor, Sequence[np.ndarray]], torch.Tensor]
BLEND_WEIGHTS = tuple(i / 10 for i in range(11))  # the item-item part's shares tried


class Evaluation(NamedTuple):
    loss: float  # the original design's masked-title cross-entropy, the hidden target masked
    accuracy: dict[int, float]  # the original design's Top-K accuracy, same masks
    ranking: dict[str, float]  # HR/NDCG/MRR of next-title ranking (metrics.ranking_metrics)
    seconds: float
    ranks: torch.Tensor  # [cases] each target's 1-based rank, in the cases' order


@torch.no_grad()
def evaluate(
    cases: NextItemCases,
    scorer: Scorer,
    mapping: ItemMapping,
    config: TrainConfig,
    *,
    shared: bool = True,
) -> Evaluation:
    """Score every case once. Under torchrun each process scores every W-th case and the
    figures are summed over the processes, so every process gets the same ones; shared=False
    scores them all here, for work that only the first process does (the test of
    best_model.pth, the blend: its files are only on the first process's machine)."""
    started = time.perf_counter()
    shares: list[tuple[metrics.NextItemScores, int]] = []

    def rank(share: NextItemCases) -> torch.Tensor:
        scored = metrics.score_next_items(
            share, scorer, mapping, config.max_seq_len, config.batch_size
        )
        shares.append((scored, len(share.targets)))
        return scored.ranks

    ranks = distributed.rank_in_shares(cases, rank) if shared else rank(cases)  # [distributed]
    scored, count = shares[0]
    sums = torch.tensor(
        [scored.loss * count, *(scored.accuracy[k] * count for k in TOP_K), count],
        dtype=torch.float64,
    )
    if shared:
        sums = distributed.all_reduce_sum(sums)  # [distributed] unchanged in a plain run
    total = max(1.0, float(sums[-1]))
    accuracy = {k: float(sums[1 + i]) / total for i, k in enumerate(TOP_K)}
    return Evaluation(
        float(sums[0]) / total,
        accuracy,
        metrics.ranking_metrics(ranks),
        time.perf_counter() - started,
        ranks,
    )


def model_scorer(model: torch.nn.Module, device: torch.device) -> Scorer:
    """The model's logits at the MASK, in float32 even with --amp or --cpu-bf16: bf16 scores
    tie often, and ties count against the hidden title."""
    model.eval()

    def score(inputs: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return model.next_item_logits(inputs.to(device)).float().cpu()

    return score


def baseline_scorer(baseline, mapping: ItemMapping) -> Scorer:
    """A baselines.py recommender's [B, N] title scores in the vocabulary's layout."""

    def score(inputs: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return blending.in_vocab_layout(
            torch.from_numpy(baseline.scores(histories)), mapping.vocab_size
        )

    return score


class Replay:
    """A scorer that computes each batch once and replays it on later passes over the same
    cases (evaluate scores them in the same order every time): the blend's weights are tried
    on one set of model and EASE scores."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.saved: list[torch.Tensor] = []
        self.calls = 0

    def rewind(self) -> Replay:
        self.calls = 0
        return self

    def __call__(self, inputs: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.calls == len(self.saved):
            self.saved.append(self.scorer(inputs, histories))
        scores = self.saved[self.calls]
        if scores.shape[0] != len(histories):
            raise RuntimeError("Replay was given other cases than it saw first")
        self.calls += 1
        return scores


# --- the baselines -----------------------------------------------------------------------------


class FittedBaselines(NamedTuple):
    report: dict[str, dict]  # name -> {"validation": ranking, "test": ranking, ...}
    ease: baselines.EASE | None  # at the lambda chosen on validation; None when skipped
    recent: baselines.RecentEASE | None = None  # lambda and decay chosen on validation
    # name -> [validation cases] each target's rank by that baseline at its chosen settings
    validation_ranks: dict[str, torch.Tensor] | None = None


GRID_BATCH = 512  # cases a baseline scores at once while its settings are chosen


def baseline_ranks(baseline, cases: NextItemCases) -> torch.Tensor:
    """[cases] each target's 1-based rank by a baselines.py recommender, as `evaluate` ranks
    it (metrics.target_ranks: the history's titles excluded, ties against the target) but
    without the loss and accuracy it also measures: what choosing settings on a grid needs,
    at a fraction of the cost. Under torchrun each process ranks every W-th case."""

    def rank(share: NextItemCases) -> torch.Tensor:
        ranks = []
        for start in range(0, len(share.targets), GRID_BATCH):
            end = start + GRID_BATCH
            scores = torch.from_numpy(baseline.scores(share.histories[start:end]))
            targets = torch.as_tensor(np.asarray(share.targets[start:end]), dtype=torch.long)
            ranks.append(metrics.target_ranks(scores, targets - 1, torch.isneginf(scores)))
        return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)

    return distributed.rank_in_shares(cases, rank)  # [distributed] unchanged in a plain run


def fit_baselines(
    train_sequences: Sequence[np.ndarray],
    validation: NextItemCases,
    test: NextItemCases | None,
    mapping: ItemMapping,
    config: TrainConfig,
    lambdas: Sequence[float] = baselines.EASE_LAMBDAS,
    decays: Sequence[float] = baselines.RECENCY_DECAYS,
    neighbours: Sequence[int | None] = baselines.KNN_NEIGHBOURS,
    shrinkages: Sequence[float] = baselines.KNN_SHRINKAGES,
) -> FittedBaselines:
    """Fit the baselines on the training sequences and rank the validation (and test) targets
    with each. Each one's settings are those of its grid with the best validation NDCG@10:
    ItemKNN's (neighbours, shrinkage) of `neighbours` x `shrinkages` (a tie goes to the larger
    neighbourhood, then the smaller shrinkage), EASE's lambda of `lambdas`, EASE-recent's
    (lambda, decay) of `lambdas` x `decays` (a tie goes to the longer decay); the test figures
    are of those settings alone."""
    report: dict[str, dict] = {}
    ranks: dict[str, torch.Tensor] = {}
    n = mapping.num_items

    def measure(name: str, baseline, started: float, **extra) -> None:
        scorer = baseline_scorer(baseline, mapping)
        validated = evaluate(validation, scorer, mapping, config)
        entry = {**extra, "validation": validated.ranking}
        ranks[name] = validated.ranks
        if test is not None:
            entry["test"] = evaluate(test, scorer, mapping, config).ranking
        entry["seconds"] = round(time.perf_counter() - started, 2)
        report[name] = entry

    def validation_ndcg(baseline) -> float:
        return metrics.ranking_metrics(baseline_ranks(baseline, validation))["NDCG@10"]

    started = time.perf_counter()
    measure("popularity", baselines.MostPopular(train_sequences, n), started)
    reason = baselines.too_large(n) if config.baselines else "off (--no-baselines)"
    if reason is not None:
        for name in baselines.BASELINE_NAMES[1:]:
            report[name] = {"skipped": reason}
        return FittedBaselines(report, None, None, ranks)
    started = time.perf_counter()
    users = baselines.history_matrix(train_sequences, n)
    gram = baselines.gram_of(users)
    gram_seconds = time.perf_counter() - started

    tried_knn: dict[str, float] = {}
    best_knn: tuple[float, baselines.ItemKNN] | None = None
    for shrinkage in sorted(shrinkages):
        every = baselines.ItemKNN(gram, None, shrinkage)  # one cosine per shrinkage
        for kept in sorted(neighbours, key=lambda k: -math.inf if k is None else -k):
            knn = every.nearest(kept)
            tried_knn[knn.describe()] = ndcg = validation_ndcg(knn)
            if best_knn is None or ndcg > best_knn[0]:
                best_knn = (ndcg, knn)
    assert best_knn is not None
    knn = best_knn[1]
    measure(
        "ItemKNN",
        knn,
        started,
        neighbours=knn.neighbours,  # None: every title
        shrinkage=knn.shrinkage,
        **{"validation_NDCG@10_by_setting": tried_knn},
    )

    started = time.perf_counter() - gram_seconds
    solver = baselines.EaseSolver(users, gram)
    tried: dict[float, float] = {}
    tried_recent: dict[str, float] = {}
    best: baselines.EASE | None = None
    best_recent: tuple[float, baselines.RecentEASE] | None = None
    for lam in lambdas:
        ease = baselines.EASE(solver, lam)
        tried[lam] = validation_ndcg(ease)
        if best is None or tried[lam] > tried[best.lam]:
            best = ease
        for decay in sorted(decays, reverse=True):
            recent = baselines.RecentEASE.from_ease(ease, decay)
            ndcg = tried[lam] if np.isinf(decay) else validation_ndcg(recent)
            tried_recent[f"lambda {lam:g}, decay {decay:g}"] = ndcg
            if best_recent is None or ndcg > best_recent[0]:
                best_recent = (ndcg, recent)
    assert best is not None and best_recent is not None
    measure(
        "EASE",
        best,
        started,
        **{"lambda": best.lam, "validation_NDCG@10_by_lambda": tried},
    )
    recent = best_recent[1]
    measure(  # its seconds include EASE's: the two share each lambda's weights
        baselines.ORDER_AWARE,
        recent,
        started,
        **{
            "lambda": recent.lam,
            "decay": None if np.isinf(recent.decay) else recent.decay,  # None: no decay (JSON)
            "validation_NDCG@10_by_setting": tried_recent,
        },
    )
    return FittedBaselines(report, best, recent, ranks)


def describe_baselines(report: dict[str, dict], part: str) -> str:
    """'popularity HR@10 0.1 NDCG@10 0.05; ItemKNN (neighbours 50, shrinkage 10) ...; EASE
    (lambda 100) ...; EASE-recent (lambda 100, decay 2) ...' for one part."""
    described = []
    for name, entry in report.items():
        if "skipped" in entry:
            described.append(f"{name} {entry['skipped']}")
            continue
        settings = baselines.settings_label(entry)
        settings = f" ({settings})" if settings else ""
        figures = entry[part]
        described.append(
            f"{name}{settings} HR@10 {figures['HR@10']:.4f} NDCG@10 {figures['NDCG@10']:.4f}"
        )
    return "; ".join(described)


# --- the blend ---------------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One scorer recommendations may use: the model mixed with an item-item part."""

    part: str | None  # the item-item part's name ("EASE", "EASE-recent"); None: the model alone
    share: float  # the part's share: 0 the model alone, 1 the part alone

    @property
    def alone(self) -> bool:
        return self.share in (0, 1)

    @property
    def name(self) -> str:
        """'model', 'EASE-recent', or 'model + EASE-recent 0.6'."""
        if self.share == 0:
            return "model"
        return self.part if self.share == 1 else f"model + {self.part} {self.share:g}"


def candidates(parts: Sequence[str], shares: Sequence[float]) -> list[Candidate]:
    """The model alone, then each part at each share above 0 (a tie goes to the earlier)."""
    return [Candidate(None, 0.0)] + [Candidate(p, s) for p in parts for s in shares if s > 0]


def item_item_parts(fitted: FittedBaselines) -> dict[str, baselines.RecentEASE]:
    """The item-item parts a blend is chosen among: EASE (EASE-recent at decay inf) and
    EASE-recent at its validation settings, unless those are EASE's own; {} when skipped."""
    if fitted.ease is None:
        return {}
    parts = {blending.PLAIN: baselines.RecentEASE.from_ease(fitted.ease, float("inf"))}
    recent = fitted.recent
    if recent is not None and (recent.lam, recent.decay) != (fitted.ease.lam, float("inf")):
        parts[recent.name] = recent
    return parts


def blend_scorer(model_part: Scorer, item_part: Scorer, share: float) -> Scorer:
    """The blending.blend of two scorers' scores at this share of the item-item part."""

    def score(inputs: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return blending.blend(model_part(inputs, histories), item_part(inputs, histories), share)

    return score


def leads(blended: Evaluation, ease: Evaluation) -> dict[str, dict[str, float]]:
    """The blend's lead over EASE alone on the same cases, HR@10 and NDCG@10, each with its
    standard error (metrics.paired_lead)."""
    return {m: metrics.paired_lead(blended.ranks, ease.ranks, m) for m in ("HR@10", "NDCG@10")}


def mix_over_alone(
    by_candidate: dict[Candidate, Evaluation], best: Candidate, min_lead: float
) -> dict | None:
    """Whether the best candidate, a mix, leads the best scorer alone (the model, or an
    item-item part) on validation NDCG@10 by min_lead standard errors; None when the best is
    one alone already, or min_lead is 0. A tie among those alone goes to the earlier."""
    alone = [c for c in by_candidate if c.alone]
    if min_lead <= 0 or best.alone or not alone:
        return None
    better = max(alone, key=lambda c: by_candidate[c].ranking["NDCG@10"])
    lead = metrics.paired_lead(by_candidate[best].ranks, by_candidate[better].ranks, "NDCG@10")
    error = lead["standard_error"]
    errors = lead["lead"] / error if error > 0 else None  # None: every target moved alike
    return {
        "part": best.part,
        "ease_weight": best.share,
        "alone": better.name,
        "lead": lead["lead"],
        "standard_error": error,
        "standard_errors": errors,
        "min_lead": min_lead,
        "kept": errors >= min_lead if errors is not None else lead["lead"] > 0,
    }


def fit_blend(
    model_score: Scorer,
    parts: dict[str, baselines.RecentEASE],
    validation: NextItemCases,
    test: NextItemCases | None,
    mapping: ItemMapping,
    config: TrainConfig,
    shares: Sequence[float] = BLEND_WEIGHTS,
    *,
    min_lead: float = 0.0,
    shared: bool = True,
) -> dict:
    """The scorer recommendations use, chosen on validation NDCG@10 among the model alone, each
    item-item part of `parts` (item_item_parts; "EASE" among them) alone, and the model mixed
    with each at every share of `shares` (blending.blend). Returns its validation (and test)
    figures, those of every candidate and its lead over EASE alone on the same targets
    (shared: as for evaluate). "ease_weight" is the chosen part's share (0: the model alone).

    min_lead (--blend-min-lead): a mix (a share strictly between 0 and 1) must lead the best of
    the scorers alone by that many standard errors of the per-target difference, else that one
    is chosen. The best of twenty-odd candidates on a few hundred targets leads by about one
    standard error by chance alone (winner's curse), and on our stores the test targets put
    such a mix a few users either side of EASE (docs/BENCHMARKS.md)."""

    def measure(cases: NextItemCases, scorer: Scorer) -> Evaluation:
        return evaluate(cases, scorer, mapping, config, shared=shared)

    def scorers() -> tuple[Replay, dict[str, Replay]]:
        items = {name: Replay(baseline_scorer(part, mapping)) for name, part in parts.items()}
        return Replay(model_score), items

    def scorer_of(candidate: Candidate, model: Replay, items: dict[str, Replay]) -> Scorer:
        if candidate.part is None:
            return model.rewind()
        return blend_scorer(model.rewind(), items[candidate.part].rewind(), candidate.share)

    model_part, item_parts = scorers()
    by_candidate = {
        c: measure(validation, scorer_of(c, model_part, item_parts))
        for c in candidates(list(parts), shares)
    }
    tried = {c: found.ranking["NDCG@10"] for c, found in by_candidate.items()}
    best = max(by_candidate, key=lambda c: (tried[c], -c.share))  # a tie goes to the model
    chosen, mix_test = best, mix_over_alone(by_candidate, best, min_lead)
    if mix_test is not None and not mix_test["kept"]:
        chosen = next(c for c in by_candidate if c.alone and c.name == mix_test["alone"])
    chosen_validation = by_candidate[chosen]
    ease_validation = measure(validation, item_parts[blending.PLAIN].rewind())
    part = parts.get(chosen.part) if chosen.part is not None else None
    result = {
        "part": chosen.part,
        "ease_weight": chosen.share,
        "ease_lambda": part.lam if part is not None else None,
        "decay": None if part is None or np.isinf(part.decay) else part.decay,  # None: none
        "validation": chosen_validation.ranking,
        "validation_NDCG@10_by_share": {
            name: {c.share: tried[c] for c in by_candidate if c.part in (None, name)}
            for name in parts
        },
        "lead_over_ease": {"validation": leads(chosen_validation, ease_validation)},
    }
    if mix_test is not None:
        result["best_mix"] = mix_test
    if test is not None:
        model_part, item_parts = scorers()
        chosen_test = measure(test, scorer_of(chosen, model_part, item_parts))
        ease_test = measure(test, item_parts[blending.PLAIN].rewind())
        result["test"] = chosen_test.ranking
        result["lead_over_ease"]["test"] = leads(chosen_test, ease_test)
    return result
