"""The baselines against scores computed by hand on a 5-title toy, and the evaluation path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert4rec import baselines, blending, evaluate, metrics
from bert4rec.config import TrainConfig
from bert4rec.data import ItemMapping, NextItemCases

INF = float("-inf")
# Titles 1..3 and 4..5 are watched by different users, so X'X is block-diagonal:
#   1: users 0, 1     2: users 0, 1, 2     3: users 1, 2     4: users 3, 4     5: users 3, 4, 5
TOY = [np.array(s) for s in ([1, 2], [1, 2, 3], [2, 3], [4, 5], [5, 4], [5])]


def test_co_occurrence_counts_users_watching_both():
    gram = baselines.co_occurrence(TOY, 5)
    assert gram.tolist() == [
        [2, 2, 1, 0, 0],
        [2, 3, 2, 0, 0],
        [1, 2, 2, 0, 0],
        [0, 0, 0, 2, 2],
        [0, 0, 0, 2, 3],
    ]


def test_most_popular_by_hand():
    scores = baselines.MostPopular(TOY, 5).scores([np.array([2])])[0]
    # counts 2, 3, 2, 2, 3: title 5 first (2 is seen), then 1, 3, 4 (ties by lower index).
    assert scores[1] == INF
    assert list(np.argsort(-scores[[0, 2, 3, 4]], kind="stable")) == [3, 0, 1, 2]
    assert scores[4] > scores[0] > scores[2] > scores[3]


def test_item_knn_by_hand():
    knn = baselines.ItemKNN(baselines.co_occurrence(TOY, 5))
    scores = knn.scores([np.array([1]), np.array([2, 3])])
    # cosine(i, j) = users of both / sqrt(users of i * users of j)
    assert scores[0].tolist() == pytest.approx([INF, 2 / math.sqrt(6), 1 / math.sqrt(4), 0.0, 0.0])
    # History {2, 3}: title 1 scores cos(1, 2) + cos(1, 3); 4 and 5 nothing.
    assert scores[1].tolist() == pytest.approx(
        [2 / math.sqrt(6) + 1 / math.sqrt(4), INF, INF, 0.0, 0.0]
    )


def test_ease_by_hand():
    gram = baselines.co_occurrence(TOY, 5)
    lam = 10.0
    ease = baselines.EASE(baselines.EaseSolver.from_sequences(TOY, 5), lam)
    # In the block {4, 5} EASE is a ridge regression of one title on the other:
    # weight(4 -> 5) = G45 / (G44 + lambda), weight(5 -> 4) = G45 / (G55 + lambda).
    assert ease.weights[3, 4] == pytest.approx(2 / 12)
    assert ease.weights[4, 3] == pytest.approx(2 / 13)
    assert ease.scores([np.array([4])])[0].tolist() == pytest.approx([0.0, 0.0, 0.0, INF, 2 / 12])
    # In the block {1, 2, 3}: each column is the ridge regression of that title on the other
    # two, (G_oo + lambda I)^-1 G_oj, with a zero diagonal (Steck 2019, eq. 8).
    for j in range(3):
        others = [i for i in range(3) if i != j]
        ridge = np.linalg.solve(gram[np.ix_(others, others)] + lam * np.eye(2), gram[others, j])
        assert ease.weights[others, j] == pytest.approx(ridge, rel=1e-5)
        assert ease.weights[j, j] == 0
    assert np.all(ease.weights[:3, 3:] == 0) and np.all(ease.weights[3:, :3] == 0)


def test_ease_through_woodbury_equals_the_inverse():
    """Fewer users than titles take the Woodbury identity; zero rows added to the same users
    leave X'X as it is and take the plain inverse: the weights agree."""
    rng = np.random.default_rng(1)
    users = (rng.random((12, 40)) < 0.3).astype(np.float32)
    padded = np.vstack([users, np.zeros((40, 40), dtype=np.float32)])
    few, many = baselines.EaseSolver(users), baselines.EaseSolver(padded)
    assert few.woodbury and not many.woodbury
    for lam in (1.0, 10.0, 500.0):
        assert few.weights(lam) == pytest.approx(many.weights(lam), abs=1e-6)


def test_no_baseline_ranks_a_seen_title():
    rng = np.random.default_rng(0)
    sequences = [
        rng.choice(np.arange(1, 31), size=rng.integers(2, 12), replace=False) for _ in range(40)
    ]
    gram = baselines.co_occurrence(sequences, 30)
    for baseline in (
        baselines.MostPopular(sequences, 30),
        baselines.ItemKNN(gram),
        baselines.EASE(baselines.EaseSolver.from_sequences(sequences, 30), 50.0),
    ):
        scores = baseline.scores(sequences)
        for row, seen in zip(scores, sequences):
            assert np.all(row[seen - 1] == INF)
            assert np.all(np.isfinite(np.delete(row, seen - 1)))


def test_a_catalogue_past_the_limit_is_skipped_with_a_reason():
    assert baselines.too_large(baselines.MAX_DENSE_TITLES) is None
    reason = baselines.too_large(baselines.MAX_DENSE_TITLES + 1)
    assert "skipped" in reason and "GB" in reason


def test_fit_baselines_chooses_lambda_on_validation_and_ranks_fully():
    mapping = ItemMapping(tuple(range(101, 106)))
    validation = NextItemCases([np.array([4]), np.array([1, 2])], np.array([5, 3]))
    test = NextItemCases([np.array([4, 5]), np.array([2, 3])], np.array([1, 1]))
    fitted = evaluate.fit_baselines(TOY, validation, test, mapping, TrainConfig(), lambdas=(1, 10))
    report = fitted.report
    assert set(report) == set(baselines.BASELINE_NAMES)
    assert report["EASE"]["lambda"] in (1, 10) and fitted.ease.lam == report["EASE"]["lambda"]
    # ItemKNN by hand: after [4], 5 is the only similar title (rank 1); after [1, 2], 3 is.
    assert report["ItemKNN"]["validation"]["HR@1"] == 1.0
    # Test: after [4, 5], 1, 2, 3 all score 0 for ItemKNN: ties count against the target.
    assert report["ItemKNN"]["test"]["MRR"] == pytest.approx((1 / 3 + 1) / 2)


def test_blend_is_the_model_at_weight_0_and_keeps_exclusions():
    model = torch.tensor([[INF, 3.0, 1.0, 2.0, INF]])
    ease = torch.tensor([[INF, INF, 0.1, 0.9, INF]])
    assert torch.equal(blending.blend(model, ease, 0.0), model)
    mixed = blending.blend(model, ease, 1.0)
    assert mixed[0, 1] == INF and mixed[0, 3] > mixed[0, 2]
    standard = blending.standardise(torch.tensor([[INF, 1.0, 3.0]]))
    assert standard[0, 1:].tolist() == pytest.approx([-1.0, 1.0])


def evaluation_of(ranks: list[int]) -> evaluate.Evaluation:
    ranked = torch.tensor(ranks, dtype=torch.float64)
    return evaluate.Evaluation(0.0, {}, metrics.ranking_metrics(ranked), 0.0, ranked)


def test_a_mix_must_lead_the_best_one_alone_by_enough_standard_errors():
    model_alone, ease_alone = evaluate.Candidate(None, 0.0), evaluate.Candidate("EASE", 1.0)
    recent_alone = evaluate.Candidate("EASE-recent", 1.0)
    mixed = evaluate.Candidate("EASE-recent", 0.5)
    # 100 targets. EASE-recent alone ranks each 5th; EASE alone each 20th; the model each 50th.
    recent, ease, model = [5] * 100, [20] * 100, [50] * 100
    # A mix that lifts two targets from 5th to 1st: a lead within chance.
    by_luck = [1, 1] + [5] * 98
    # A mix that lifts most targets one place: a lead far beyond chance.
    by_much = [4] * 90 + [6] * 10
    for mix, kept in ((by_luck, False), (by_much, True)):
        by_candidate = {
            model_alone: evaluation_of(model),
            ease_alone: evaluation_of(ease),
            recent_alone: evaluation_of(recent),
            mixed: evaluation_of(mix),
        }
        test = evaluate.mix_over_alone(by_candidate, mixed, min_lead=2.0)
        assert test["alone"] == "EASE-recent" and test["kept"] is kept
        assert test["part"] == "EASE-recent" and test["ease_weight"] == 0.5
        lead = metrics.paired_lead(
            by_candidate[mixed].ranks, by_candidate[recent_alone].ranks, "NDCG@10"
        )
        assert test["standard_errors"] == pytest.approx(lead["lead"] / lead["standard_error"])
        assert (test["standard_errors"] >= 2) is kept
    # The best one alone may be the model; and a best candidate alone needs no test.
    by_candidate = {
        model_alone: evaluation_of(recent),
        ease_alone: evaluation_of(model),
        mixed: evaluation_of(by_luck),
    }
    assert evaluate.mix_over_alone(by_candidate, mixed, min_lead=2.0)["alone"] == "model"
    assert evaluate.mix_over_alone(by_candidate, ease_alone, min_lead=2.0) is None
    assert evaluate.mix_over_alone(by_candidate, mixed, min_lead=0.0) is None


def test_pmi_embeddings_put_titles_held_together_close():
    vectors = baselines.pmi_embeddings(TOY, 5, dim=4)
    assert vectors.shape == (5, 4) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    # Titles 4 and 5 are never held with 1..3: their vectors live in another subspace.
    assert np.abs(cosine[:3, 3:]).max() < 1e-3
    assert np.all(np.linalg.norm(vectors, axis=1) > 0)
