"""EASE as the teacher of --distill: soft targets by hand, cross-fitting, and the training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planted import make_store
from test_train import read_metrics, tiny_config

from bert4rec import baselines, distill
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
    assert "Distillation: 0.5 of the training loss learns EASE's ranking" in log
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
    assert read_metrics(tmp_path / "a")["epochs"] == [1, 2]
