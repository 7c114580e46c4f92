from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert4rec import metrics
from bert4rec.data import ItemMapping, hold_out_last

INF = float("-inf")


def test_topk_hits_by_hand():
    logits = torch.tensor(
        [
            [INF, 0.9, 0.5, 0.1, 0.3],  # order: 1, 2, 4, 3
            [INF, 0.1, 0.2, 0.3, 0.4],  # order: 4, 3, 2, 1
            [INF, 0.5, 0.4, 0.3, 0.2],  # order: 1, 2, 3, 4
        ]
    )
    targets = torch.tensor([1, 2, 4])
    # target ranks: 1, 3, 4
    assert metrics.topk_hits(logits, targets, ks=(1, 2, 3, 4)).tolist() == [1, 1, 2, 3]


def test_topk_accuracy_sums_over_the_epoch():
    acc = metrics.TopKAccuracy(ks=(1, 2))
    acc.update(torch.tensor([[INF, 1.0, 0.0]]), torch.tensor([1]))
    acc.update(torch.tensor([[INF, 1.0, 0.0], [INF, 0.0, 1.0]]), torch.tensor([2, 1]))
    assert acc.result() == {1: pytest.approx(1 / 3), 2: pytest.approx(3 / 3)}
    assert acc.positions == 3


def test_ranks_exclude_seen_titles_and_count_ties_against_the_target():
    scores = torch.tensor([[INF, 5.0, 4.0, 3.0, 2.0]])
    exclude = torch.tensor([[True, True, False, False, False]])
    assert metrics.target_ranks(scores, torch.tensor([3]), exclude).tolist() == [2]
    flat = torch.zeros(1, 5)
    none = torch.zeros(1, 5, dtype=torch.bool)
    assert metrics.target_ranks(flat, torch.tensor([2]), none).tolist() == [5]  # last, not first
    with pytest.raises(ValueError, match="excluded"):
        metrics.target_ranks(scores, torch.tensor([1]), exclude)


def test_ranking_metrics_by_hand():
    result = metrics.ranking_metrics([1, 3, 30, 6])
    assert result["HR@1"] == pytest.approx(1 / 4)
    assert result["HR@5"] == pytest.approx(2 / 4)
    assert result["HR@10"] == pytest.approx(3 / 4)
    assert result["HR@20"] == pytest.approx(3 / 4)
    assert result["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert result["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(7)) / 4)
    assert result["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 30 + 1 / 6) / 4)
    assert set(result) == set(metrics.RANKING_METRICS)


def test_per_case_figures_average_to_the_ranking_metrics():
    ranks = torch.tensor([1, 3, 30, 6, 11])
    whole = metrics.ranking_metrics(ranks)
    for name in metrics.RANKING_METRICS:
        assert metrics.per_case(ranks, name).mean().item() == pytest.approx(whole[name])


def test_paired_lead_by_hand():
    ours, theirs = torch.tensor([1, 3, 20]), torch.tensor([2, 3, 1])
    hits = metrics.paired_lead(ours, theirs, "HR@10")  # differences 0, 0, -1
    assert hits["lead"] == pytest.approx(-1 / 3)
    assert hits["standard_error"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    gains = metrics.paired_lead(ours, theirs, "NDCG@10")
    differences = [1 - 1 / math.log2(3), 0.0, -1.0]
    assert gains["lead"] == pytest.approx(sum(differences) / 3)
    assert gains["standard_error"] == pytest.approx(np.std(differences, ddof=1) / math.sqrt(3))
    assert metrics.paired_lead(ours, ours, "NDCG@10") == {"lead": 0.0, "standard_error": 0.0}


def test_rank_next_items_full_ranking_without_leaks():
    mapping = ItemMapping((11, 12, 13, 14, 15, 16))
    cases = hold_out_last([np.array([1, 2, 3]), np.array([4, 5])])
    seen_inputs = []

    def score(inputs, histories):
        seen_inputs.append(inputs)
        # Scores 6 > 5 > ... > 1: each history's titles are excluded before ranking.
        return torch.arange(mapping.vocab_size, dtype=torch.float).expand(len(inputs), -1)

    ranks = metrics.rank_next_items(cases, score, mapping, max_seq_len=10, batch_size=1)
    # user 1: target 3, candidates 3..6 minus none seen of them -> 6, 5, 4 rank above it: 4.
    # user 2: target 5, 4 seen, candidates 6, 5, 3, 2, 1 -> rank 2.
    assert ranks.tolist() == [4, 2]
    assert all((x[:, -1] == mapping.mask_index).all() for x in seen_inputs)


def test_a_leaking_case_is_refused():
    mapping = ItemMapping((11, 12, 13))
    leaky = metrics.NextItemCases([np.array([1, 2])], np.array([2]))
    with pytest.raises(ValueError, match="leak"):
        metrics.rank_next_items(leaky, lambda x, histories: torch.zeros(1, 6), mapping, 5, 4)


def test_history_records_one_value_per_epoch_and_the_best():
    history = metrics.TrainingHistory()
    acc = {k: 0.5 for k in metrics.TOP_K}
    ranking = {m: 0.1 for m in metrics.RANKING_METRICS}
    for val_loss in (3.0, 2.0, 2.5):
        history.record_epoch(
            train_loss=1.0,
            train_accuracy=acc,
            val_loss=val_loss,
            val_accuracy=acc,
            ranking=ranking,
            sequences_per_second=10.0,
            seconds=1.0,
            learning_rate=0.1,
        )
    assert (history.best_epoch, history.best_val_loss, history.epochs_since_best()) == (2, 2.0, 1)
    restored = metrics.TrainingHistory.from_dict(
        {**history.to_dict(), "train_accuracies": {"1": [0.5] * 3, "5": [], "10": [], "20": []}}
    )
    assert restored.train_accuracies[1] == [0.5] * 3


def record_by_ndcg(history: metrics.TrainingHistory, val_loss: float, ndcg: float) -> bool:
    """One epoch whose every ranking figure is `ndcg`, the best chosen by NDCG@10."""
    acc = {k: 0.5 for k in metrics.TOP_K}
    return history.record_epoch(
        train_loss=1.0,
        train_accuracy=acc,
        val_loss=val_loss,
        val_accuracy=acc,
        ranking={m: ndcg for m in metrics.RANKING_METRICS},
        sequences_per_second=10.0,
        seconds=1.0,
        learning_rate=0.1,
        select_by="NDCG@10",
    )


def test_history_can_pick_the_best_epoch_by_validation_ndcg():
    history = metrics.TrainingHistory()
    # The loss bottoms out at epoch 2 while the ranking keeps improving until epoch 3.
    for val_loss, ndcg in ((3.0, 0.10), (2.0, 0.12), (2.5, 0.15), (2.6, 0.14)):
        record_by_ndcg(history, val_loss, ndcg)
    assert (history.best_epoch, history.best_score, history.best_val_loss) == (3, 0.15, 2.5)
    assert history.epochs_since_best() == 1
    assert history.describe_best() == "epoch 3 (highest validation NDCG@10, 0.1500)"


def test_a_tie_in_ndcg_goes_to_the_lower_validation_loss():
    history = metrics.TrainingHistory()
    # A few validation users: NDCG@10 reaches 1.0 at epoch 2 and stays while the loss falls.
    epochs = ((3.0, 0.5), (2.0, 1.0), (1.5, 1.0), (1.7, 1.0), (1.2, 0.9))
    improved = [record_by_ndcg(history, val_loss, ndcg) for val_loss, ndcg in epochs]
    assert improved == [True, True, True, False, False]
    assert (history.best_epoch, history.best_score, history.best_val_loss) == (3, 1.0, 1.5)


def test_score_next_items_sorts_by_length_but_answers_in_case_order():
    mapping = ItemMapping(tuple(range(11, 21)))
    histories = [np.array([1, 2, 3, 4, 5]), np.array([6]), np.array([7, 8, 9])]
    cases = metrics.NextItemCases(histories, np.array([6, 7, 10]))
    widths = []

    def score(inputs, histories):
        widths.append(inputs.shape[1])
        # Titles score by index (10 best); padding and tokens -inf, as the model gives them.
        scores = torch.arange(mapping.vocab_size, dtype=torch.float).repeat(len(inputs), 1)
        scores[:, 0] = scores[:, mapping.num_items + 1 :] = float("-inf")
        return scores

    scored = metrics.score_next_items(cases, score, mapping, max_seq_len=10, batch_size=1)
    assert widths == [2, 4, 6]  # shortest history first
    # Target 6 after 10, 9, 8, 7 (1..5 seen); 7 after 10, 9, 8 (6 seen); 10 first.
    assert scored.ranks.tolist() == [5, 4, 1]
    assert scored.ranks.tolist() == metrics.rank_next_items(cases, score, mapping, 10, 2).tolist()
    assert scored.accuracy[1] == pytest.approx(1 / 3)  # only target 10 is the top title
    assert scored.loss > 0
