"""The teacher of --distill: soft targets by hand (EASE and the order-aware one), cross-fitting,
which teacher is chosen and when it is used, and the training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planted import make_store
from test_train import read_metrics, tiny_config

from bert4rec import baselines, distill
from bert4rec import config as config_module
from bert4rec import train as training
from bert4rec.config import PRESETS, TrainConfig

N = 4
MASK = N + 1
CPU = torch.device("cpu")


def toy_weights(scale: float = 1.0) -> np.ndarray:
    return scale * np.arange(1, N * N + 1, dtype=np.float32).reshape(N, N) / 10


def test_soft_targets_by_hand():
    """Row 0: visible {1}, two masked positions; row 1: visible {2, 3}, one masked position."""
    weights = toy_weights()
    teacher = distill.Teacher([weights] * distill.FOLDS, temperature=0.5, device=CPU)
    # row 1 shows title 3 twice: each appearance adds its row of weights
    inputs = torch.tensor([[0, 1, MASK, MASK], [2, MASK, 3, 3]])
    labels = torch.tensor([[0, 0, 3, 4], [0, 1, 0, 0]])
    targets = teacher.soft_targets(inputs, labels)
    assert targets.shape == (3, N)  # one row per masked position, in row-major order
    first = torch.softmax(torch.tensor(weights[0, 1:]) / 0.5, 0)  # title 1's row, 1 excluded
    assert targets[0].tolist() == pytest.approx([0.0, *first.tolist()])
    assert targets[1].tolist() == pytest.approx(targets[0].tolist())
    scores = weights[1] + 2 * weights[2]  # title 2 once, title 3 twice
    second = torch.softmax(torch.tensor(scores[[0, 3]]) / 0.5, 0)
    assert targets[2].tolist() == pytest.approx([float(second[0]), 0.0, 0.0, float(second[1])])


def test_order_aware_soft_targets_by_hand():
    """Each visible title weighs exp(-(d - 1) / decay) by its distance d to the masked place,
    on both sides of it."""
    weights = toy_weights()
    decay = 2.0
    teacher = distill.Teacher([weights] * distill.FOLDS, 0.5, CPU, decay=decay)
    # row 0: 1 at place 1 and 2 at place 3 around the masked place 2, 4 masked at place 4
    inputs = torch.tensor([[0, 1, MASK, 2, MASK], [0, 0, 2, 1, MASK]])
    labels = torch.tensor([[0, 0, 3, 0, 4], [0, 0, 0, 0, 3]])
    targets = teacher.soft_targets(inputs, labels)
    assert targets.shape == (3, N)

    def expected(scores: np.ndarray, candidates: list[int]) -> list[float]:
        probabilities = torch.softmax(torch.tensor(scores[candidates]) / 0.5, 0)
        row = [0.0] * N
        for title, probability in zip(candidates, probabilities.tolist()):
            row[title] = probability
        return row

    # The weights are scaled to sum to the number of visible titles (2 in each row here).
    # Masked place 2: titles 1 and 2 at distance 1 (weights 1 and 1); candidates 3 and 4.
    first = weights[0] + weights[1]
    assert targets[0].tolist() == pytest.approx(expected(first, [2, 3]))
    # masked place 4: 2 at distance 1, 1 at distance 3
    far = np.exp(-2 / decay)
    second = (weights[1] + far * weights[0]) * 2 / (1 + far)
    assert targets[1].tolist() == pytest.approx(expected(second, [2, 3]))
    # row 1's newest-title case (1 newest, then 2): EASE-recent's weighting, age = d - 1
    recent = baselines.RecentEASE(weights, 10.0, decay)
    older = np.exp(-1 / decay)
    scores = recent.scores([np.array([2, 1])])[0] * 2 / (1 + older)
    assert targets[2].tolist() == pytest.approx(expected(scores, [2, 3]))


def test_order_aware_teacher_without_decay_is_ease_and_chunks_agree(monkeypatch):
    rng = np.random.default_rng(3)
    weights = [rng.random((N, N)).astype(np.float32) for _ in range(distill.FOLDS)]
    inputs = torch.tensor([[0, 1, MASK, 2], [3, MASK, 1, MASK], [MASK, 4, 2, 1]])
    labels = torch.tensor([[0, 0, 4, 0], [0, 2, 0, 4], [3, 0, 0, 0]])
    plain = distill.Teacher(weights, 0.5, CPU).soft_targets(inputs, labels)
    far = distill.Teacher(weights, 0.5, CPU, decay=1e9).soft_targets(inputs, labels)
    torch.testing.assert_close(far, plain)
    whole = distill.Teacher(weights, 0.5, CPU, decay=2.0).soft_targets(inputs, labels)
    monkeypatch.setattr(distill, "GATHER_BYTES", 1)  # one sequence a chunk
    chunked = distill.Teacher(weights, 0.5, CPU, decay=2.0).soft_targets(inputs, labels)
    torch.testing.assert_close(chunked, whole)
    assert not torch.allclose(whole, plain)  # the decay changes what is taught
    assert torch.allclose(whole.sum(dim=1), torch.ones(len(whole)))


def ranks_of(ranks: list[int]) -> torch.Tensor:
    return torch.tensor(ranks, dtype=torch.float64)


def fitted_report(decay: float | None) -> dict[str, dict]:
    figures = {"validation": {"NDCG@10": 0.5}}
    return {
        "popularity": {"validation": {"NDCG@10": 0.1}},
        "EASE": {"lambda": 200.0, **figures},
        "EASE-recent": {"lambda": 50.0, "decay": decay, **figures},
    }


def test_the_teacher_is_the_model_that_ranks_validation_best():
    ranks = {name: ranks_of([1, 2, 1, 3] * 10) for name in ("EASE", "EASE-recent")}
    ranks["popularity"] = ranks_of([30, 50, 20, 40] * 10)
    ordered = distill.choose_teacher(fitted_report(2.0), ranks, "auto", 2.0)
    assert (ordered.name, ordered.lam, ordered.decay, ordered.used) == ("EASE-recent", 50, 2, True)
    assert "decay 2" in ordered.describe() and "standard errors" in ordered.evidence()
    # no decay chosen (unordered lists): EASE-recent is EASE, at its own lambda
    unordered = distill.choose_teacher(fitted_report(None), ranks, "auto", 2.0)
    assert (unordered.name, unordered.lam, unordered.decay) == ("EASE", 50, float("inf"))
    assert "every visible title alike" in unordered.describe()
    forced = distill.choose_teacher(fitted_report(2.0), ranks, "EASE", 2.0)
    assert (forced.name, forced.lam, forced.decay) == ("EASE", 200, float("inf"))


def test_a_teacher_no_clearer_than_popularity_is_not_used():
    ranks = {"popularity": ranks_of([5, 2, 20, 8] * 10)}
    # ahead of popularity on some users, behind on others: a lead within chance
    ranks["EASE-recent"] = ranks_of([1, 5, 8, 20] * 10)
    ranks["EASE"] = ranks_of([50, 60, 40, 30] * 10)  # behind on every user
    for teacher in ("auto", "EASE"):
        choice = distill.choose_teacher(fitted_report(2.0), ranks, teacher, 2.0)
        assert not choice.used and choice.standard_errors < 2
        # --distill-min-lead 0: used whatever it leads by (older runs)
        assert distill.choose_teacher(fitted_report(2.0), ranks, teacher, 0.0).used
    behind = distill.choose_teacher(fitted_report(2.0), ranks, "EASE", 2.0)
    assert behind.lead < 0 and behind.standard_errors < 0


def test_runs_saved_before_the_choice_resume_with_ease_always_used():
    saved = config_module.to_dict(TrainConfig())
    del saved["distill_teacher"], saved["distill_min_lead"]
    older = config_module.from_saved(saved)
    assert (older.distill_teacher, older.distill_min_lead) == ("EASE", 0.0)
    assert (TrainConfig().distill_teacher, TrainConfig().distill_min_lead) == ("auto", 2.0)
    with pytest.raises(ValueError, match="--distill-teacher"):
        TrainConfig(distill_teacher="ItemKNN").validate()
    with pytest.raises(ValueError, match="--distill-min-lead"):
        TrainConfig(distill_min_lead=-1).validate()


def test_each_row_is_taught_by_the_fold_of_its_newest_title():
    folds = [toy_weights(f + 1) for f in range(distill.FOLDS)]
    teacher = distill.Teacher(folds, temperature=1.0, device=CPU)
    # newest title 4 (masked in row 0, visible in row 1): fold 4 % FOLDS either way
    inputs = torch.tensor([[1, 2, MASK], [1, MASK, 4]])
    labels = torch.tensor([[0, 0, 4], [0, 2, 0]])
    fold = 4 % distill.FOLDS
    targets = teacher.soft_targets(inputs, labels)
    expected = torch.softmax(torch.tensor(folds[fold][0] + folds[fold][1])[[2, 3]], 0)
    assert targets[0, 2:].tolist() == pytest.approx(expected.tolist())
    expected = torch.softmax(torch.tensor(folds[fold][0] + folds[fold][3])[[1, 2]], 0)
    assert targets[1, 1:3].tolist() == pytest.approx(expected.tolist())


def test_teacher_of_a_user_never_learned_from_that_user():
    """Each fold's EASE is fitted on the other folds' users: a pair of titles only one user
    holds gets no weight in that user's teacher, and full weight in the others'."""
    rng = np.random.default_rng(0)
    n = 30
    sequences = [rng.choice(np.arange(1, n - 1), size=8, replace=False) for _ in range(60)]
    sequences.append(np.array([3, 5, n - 1, n]))  # the only user with titles n - 1 and n
    teacher = distill.fit_teacher(sequences, n, lam=10.0, temperature=1.0, device=CPU)
    own = int(distill.fold_of(np.array([n]))[0])
    others = [s for s in sequences if distill.fold_of(np.array([s[-1]]))[0] != own]
    expected = baselines.EaseSolver.from_sequences(others, n).weights(10.0)
    assert teacher.tables[own][1 : n + 1].numpy() == pytest.approx(expected, abs=1e-5)
    assert float(teacher.tables[own][n - 1, n - 1]) == 0.0  # title n-1 -> n: unseen pair
    other = (own + 1) % distill.FOLDS
    assert float(teacher.tables[other][n - 1, n - 1]) > 0.0


def test_too_large_catalogues_skip_the_teacher():
    assert distill.too_large(3000) is None
    assert "GB" in distill.too_large(20_000)


def test_distill_needs_fixed_windows_and_is_off_in_the_ml1m_preset():
    with pytest.raises(ValueError, match="--random-windows"):
        TrainConfig(distill=0.5, random_windows=True).validate()
    with pytest.raises(ValueError, match="--distill"):
        TrainConfig(distill=1.5).validate()
    assert PRESETS["ml1m"]["distill"] == 0.0
    assert TrainConfig().distill > 0  # on by default


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "bert.db", users=120)


def test_training_with_a_teacher_and_without_one(store, tmp_path):
    taught = training.train(tiny_config(store, tmp_path / "a", epochs=2, distill=0.5))
    log = (tmp_path / "a/logs/training.log").read_text(encoding="utf-8")
    # The planted store's next title follows the last one: the order-aware teacher ranks the
    # validation targets best (EASE-recent at a decay, on the log's baselines line too).
    assert "Distillation: 0.5 of the training loss learns EASE-recent's ranking (lambda" in log
    assert "chosen by --distill-teacher auto, validation NDCG@10" in log
    assert "EASE-recent (lambda" in log.split("Baselines, next-title ranking")[1]
    plain = training.train(tiny_config(store, tmp_path / "b", epochs=2, distill=0.0))
    # The teacher changes the steps (and so the second epoch), not what is reported as loss.
    assert taught.train_losses[0] != plain.train_losses[0] or (
        taught.val_losses[1] != plain.val_losses[1]
    )
    skipped = training.train(
        tiny_config(store, tmp_path / "c", epochs=1, distill=0.5, baselines=False)
    )
    log = (tmp_path / "c/logs/training.log").read_text(encoding="utf-8")
    assert "--distill: EASE was skipped" in log and skipped.epochs_done == 1
    # Asked for a lead no teacher reaches: training goes on without one, and says why.
    training.train(tiny_config(store, tmp_path / "d", epochs=1, distill=0.5, distill_min_lead=1e6))
    log = (tmp_path / "d/logs/training.log").read_text(encoding="utf-8")
    assert "--distill: off, because its teacher, EASE-recent's ranking (lambda" in log
    assert "Distillation:" not in log
    # --distill-teacher EASE: EASE over every visible title alike, whatever the order
    training.train(tiny_config(store, tmp_path / "e", epochs=1, distill_teacher="EASE"))
    log = (tmp_path / "e/logs/training.log").read_text(encoding="utf-8")
    assert "learns EASE's ranking (lambda" in log and "every visible title alike" in log
    assert read_metrics(tmp_path / "a")["epochs"] == [1, 2]
