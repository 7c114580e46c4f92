"""The baselines against scores computed by hand on a 5-title toy, on planted stores (order,
neighbourhoods), and the evaluation path."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from planted import make_store

from bert4rec import baselines, blending, data, evaluate, metrics
from bert4rec.config import TrainConfig
from bert4rec.data import ItemMapping, NextItemCases, UserSequence

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


def test_item_knn_shrinkage_and_neighbourhood_by_hand():
    gram = baselines.co_occurrence(TOY, 5)
    # shrinkage s: users of both / (sqrt(users of i * users of j) + s)
    shrunk = baselines.ItemKNN(gram, shrinkage=10.0).scores([np.array([1])])[0]
    assert shrunk.tolist() == pytest.approx([INF, 2 / (math.sqrt(6) + 10), 1 / (2 + 10), 0, 0])
    # one neighbour: title 1 adds to its most similar title (2) alone, not to 3
    nearest = baselines.ItemKNN(gram, neighbours=1)
    assert nearest.scores([np.array([1])])[0].tolist() == pytest.approx(
        [INF, 2 / math.sqrt(6), 0.0, 0.0, 0.0]
    )
    # the cut is per history title (row): title 3's nearest is 2, title 1's is 2 too
    assert nearest.scores([np.array([1, 3])])[0].tolist() == pytest.approx(
        [INF, 2 / math.sqrt(6) + 2 / math.sqrt(6), INF, 0.0, 0.0]
    )
    assert nearest.describe() == "neighbours 1, shrinkage 0"
    assert baselines.ItemKNN(gram, neighbours=4).similarity.tolist() == (
        baselines.ItemKNN(gram).similarity.tolist()
    )


def test_nearest_only_keeps_each_rows_largest_entries_across_row_blocks(monkeypatch):
    monkeypatch.setattr(baselines, "ROW_BLOCK", 3)  # several blocks of rows
    rng = np.random.default_rng(4)
    similarity = rng.random((8, 8)).astype(np.float32)
    cut = baselines.nearest_only(similarity, 2)
    for row, kept in zip(similarity, cut):
        largest = np.sort(row)[-2:]
        assert sorted(kept[kept > 0].tolist()) == pytest.approx(largest.tolist())


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
        baselines.ItemKNN(gram, neighbours=3, shrinkage=10.0),
        baselines.EASE(baselines.EaseSolver.from_sequences(sequences, 30), 50.0),
        baselines.RecentEASE.from_ease(
            baselines.EASE(baselines.EaseSolver.from_sequences(sequences, 30), 50.0), 2.0
        ),
    ):
        scores = baseline.scores(sequences)
        for row, seen in zip(scores, sequences):
            assert np.all(row[seen - 1] == INF)
            assert np.all(np.isfinite(np.delete(row, seen - 1)))


def test_recent_ease_by_hand():
    """Scores x B with each history title weighted exp(-age / decay), age 0 for the newest;
    a title on the history twice counts once, at its newest place."""
    ease = baselines.EASE(baselines.EaseSolver.from_sequences(TOY, 5), 10.0)
    weights = ease.weights
    recent = baselines.RecentEASE.from_ease(ease, 2.0)
    assert (recent.lam, recent.decay) == (10.0, 2.0)
    scores = recent.scores([np.array([1, 2]), np.array([2, 1, 4, 2])])
    older = math.exp(-1 / 2)
    expected = [INF, INF, older * weights[0, 2] + weights[1, 2], 0.0, 0.0]
    assert scores[0].tolist() == pytest.approx(expected, rel=1e-5)
    # [2, 1, 4, 2]: 2 at age 0 (its older place counts nothing), 4 at age 1, 1 at age 2
    third = weights[1, 2] + older * weights[3, 2] + math.exp(-2 / 2) * weights[0, 2]
    fifth = weights[1, 4] + older * weights[3, 4] + math.exp(-1) * weights[0, 4]
    assert scores[1].tolist() == pytest.approx([INF, INF, third, INF, fifth], rel=1e-5)
    # each history title's share; the shares of a target sum to its score
    shares = recent.contributions(np.array([2, 1, 4, 2]), [3, 5])
    assert shares[0].tolist() == [0.0, 0.0]
    assert shares.sum(axis=0).tolist() == pytest.approx([third, fifth], rel=1e-5)
    assert recent.describe() == "lambda 10, decay 2 titles"


def test_recent_ease_without_decay_is_ease():
    ease = baselines.EASE(baselines.EaseSolver.from_sequences(TOY, 5), 10.0)
    histories = [np.array([1, 2]), np.array([5, 1, 2]), np.array([4])]
    recent = baselines.RecentEASE.from_ease(ease, math.inf)
    assert recent.scores(histories).tolist() == ease.scores(histories).tolist()
    assert recent.describe() == "lambda 10, every title alike"


def test_the_grid_ranks_as_evaluate_does(monkeypatch):
    """Settings are chosen on evaluate.baseline_ranks, a lighter path: it must give evaluate's
    own ranks (ties against the target included: ItemKNN's cut leaves many zero scores)."""
    monkeypatch.setattr(evaluate, "GRID_BATCH", 7)  # several batches
    rng = np.random.default_rng(2)
    sequences = [
        rng.choice(np.arange(1, 31), size=rng.integers(3, 12), replace=False) for _ in range(40)
    ]
    cases = data.hold_out_last(sequences)
    mapping = ItemMapping(tuple(range(101, 131)))
    ease = baselines.EASE(baselines.EaseSolver.from_sequences(sequences, 30), 50.0)
    for baseline in (
        baselines.MostPopular(sequences, 30),
        baselines.ItemKNN(baselines.co_occurrence(sequences, 30), neighbours=2),
        ease,
        baselines.RecentEASE.from_ease(ease, 1.0),
    ):
        scorer = evaluate.baseline_scorer(baseline, mapping)
        expected = evaluate.evaluate(cases, scorer, mapping, TrainConfig()).ranks
        assert evaluate.baseline_ranks(baseline, cases).tolist() == expected.tolist()


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
    recent = report["EASE-recent"]
    assert (recent["lambda"], recent["decay"] or math.inf) == (
        fitted.recent.lam,
        fitted.recent.decay,
    )
    assert len(recent["validation_NDCG@10_by_setting"]) == 2 * len(baselines.RECENCY_DECAYS)
    # every baseline's ranks of the validation targets, for the teacher's test (distill.py)
    assert set(fitted.validation_ranks) == set(baselines.BASELINE_NAMES)
    assert all(len(r) == 2 for r in fitted.validation_ranks.values())
    # ItemKNN by hand: after [4], 5 is the only similar title (rank 1); after [1, 2], 3 is.
    assert report["ItemKNN"]["validation"]["HR@1"] == 1.0
    # Test: after [4, 5], 1, 2, 3 all score 0 for ItemKNN: ties count against the target.
    assert report["ItemKNN"]["test"]["MRR"] == pytest.approx((1 / 3 + 1) / 2)


def test_item_knn_neighbourhood_and_shrinkage_are_chosen_on_validation():
    """Ten hub titles every user holds four of, and forty pairs each user holds one of: summed
    over a history of four hubs, the hubs' weak similarities outrank the pair's partner unless
    each title adds to its nearest titles alone."""
    rng = np.random.default_rng(0)
    pairs = [(11 + 2 * i, 12 + 2 * i) for i in range(40)]

    def user() -> np.ndarray:
        partner = pairs[rng.integers(len(pairs))]
        return np.concatenate([rng.choice(np.arange(1, 11), 4, replace=False), partner])

    train = [user() for _ in range(400)]
    held = [user() for _ in range(100)]
    validation = NextItemCases([u[:-1] for u in held], np.array([u[-1] for u in held]))
    mapping = ItemMapping(tuple(range(1001, 1091)))
    fitted = evaluate.fit_baselines(
        train, validation, None, mapping, TrainConfig(), lambdas=(10,), neighbours=(None, 1, 5)
    )
    knn = fitted.report["ItemKNN"]
    tried = knn["validation_NDCG@10_by_setting"]
    assert len(tried) == 3 * len(baselines.KNN_SHRINKAGES)
    assert knn["validation"]["NDCG@10"] == pytest.approx(max(tried.values()))
    assert (knn["neighbours"], knn["shrinkage"]) == (1, 0)  # the partner alone
    assert knn["validation"]["NDCG@10"] == pytest.approx(1.0)
    assert tried["neighbours all, shrinkage 0"] < 0.5
    # the grid's defaults are what a run tries
    assert len(baselines.KNN_NEIGHBOURS) * len(baselines.KNN_SHRINKAGES) == len(
        evaluate.fit_baselines(
            train, validation, None, mapping, TrainConfig(), lambdas=(10,)
        ).report["ItemKNN"]["validation_NDCG@10_by_setting"]
    )


def chain_users(shuffled: bool) -> tuple[list[UserSequence], ItemMapping]:
    """The planted chain store's users (each next title follows the last one), in their
    watch order or each user's titles shuffled."""
    store = make_store(Path(tempfile.mkdtemp()) / "bert.db", users=150)
    loaded = data.prepare_training_data(
        store, min_items=3, val_fraction=0.1, seed=0, split="leave-one-out"
    )
    users = loaded.test  # whole sequences
    if shuffled:
        rng = np.random.default_rng(0)
        users = [UserSequence(u.user_id, u.user_name, rng.permutation(u.items)) for u in users]
    return users, loaded.mapping


@pytest.mark.parametrize("shuffled", [False, True])
def test_recent_ease_beats_ease_on_ordered_lists_alone(shuffled):
    users, mapping = chain_users(shuffled)
    train, validation, test = data.leave_one_out(users)
    fitted = evaluate.fit_baselines(
        [u.items for u in train],
        data.hold_out_last([u.items for u in validation]),
        data.hold_out_last([u.items for u in test]),
        mapping,
        TrainConfig(),
    )
    ease, recent = fitted.report["EASE"], fitted.report["EASE-recent"]
    lead = recent["test"]["NDCG@10"] - ease["test"]["NDCG@10"]
    if shuffled:  # order says nothing: the decay chosen on validation is long, EASE-like
        assert recent["decay"] is None or recent["decay"] >= 8
        assert lead < 0.02
    else:  # the last title or two decide what comes next
        assert recent["decay"] is not None and recent["decay"] <= 4
        assert lead > 0.1


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
