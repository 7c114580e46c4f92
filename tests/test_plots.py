"""The charts of output/plots/: what they draw, read back from matplotlib's own objects."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from bert4rec import plots
from bert4rec.metrics import RANKING_METRICS, TOP_K, TrainingHistory


def figures(hr: float) -> dict[str, float]:
    return {
        **{f"HR@{k}": min(1.0, hr * k / 10) for k in TOP_K},
        **{m: hr / 2 for m in RANKING_METRICS if not m.startswith("HR@")},
    }


def history_of(val_losses: list[float]) -> TrainingHistory:
    """Epoch e (1-based) has every accuracy and hit rate e / 10; the best epoch is the one
    with the lowest validation loss; all four baselines ran."""
    history = TrainingHistory()
    for epoch, val_loss in enumerate(val_losses, start=1):
        rate = epoch / 10
        history.record_epoch(
            train_loss=1.0,
            train_accuracy={k: rate for k in TOP_K},
            val_loss=val_loss,
            val_accuracy={k: rate for k in TOP_K},
            ranking={m: rate for m in RANKING_METRICS},
            sequences_per_second=1.0,
            seconds=1.0,
            learning_rate=1e-3,
        )
    history.baselines = {
        "popularity": {"validation": figures(0.05)},
        "ItemKNN": {"neighbours": 50, "shrinkage": 10.0, "validation": figures(0.1)},
        "EASE": {"lambda": 200.0, "validation": figures(0.15)},
        "EASE-recent": {"lambda": 100.0, "decay": 2.0, "validation": figures(0.3)},
    }
    return history


def test_topk_bars_show_the_best_epoch_not_the_last():
    history = history_of([3.0, 1.0, 2.0, 2.5])  # best: epoch 2 of 4
    ax = Figure().add_subplot()
    plots._draw_topk_bars(ax, history)
    assert ax.get_title() == "Top-K comparison (best epoch 2)"
    bars = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
    for group in ("train Top-K acc", "val Top-K acc", "val next-title HR@K"):
        assert bars[group] == pytest.approx([0.2] * len(TOP_K))
    # every baseline has its bars, named with the settings chosen on validation
    recent = bars["EASE-recent (lambda 100, decay 2) HR@K"]
    assert recent == pytest.approx([figures(0.3)[f"HR@{k}"] for k in TOP_K])
    assert "ItemKNN (neighbours 50, shrinkage 10) HR@K" in bars
    assert "EASE (lambda 200) HR@K" in bars and "popularity HR@K" in bars


def test_learning_curve_draws_all_four_baselines_with_their_settings():
    history = history_of([3.0, 2.0])
    ax = Figure().add_subplot()
    ax.plot([1, 2], [0.1, 0.2], label="val next-title HR@10 (smoothed)")
    plots._draw_baselines(ax, history, ("HR@10", "NDCG@10"))
    lines = {line.get_label(): line for line in ax.get_lines()}
    expected = {
        "popularity",
        "ItemKNN (neighbours 50, shrinkage 10)",
        "EASE (lambda 200)",
        "EASE-recent (lambda 100, decay 2)",
    }
    for name in expected:
        for metric in ("HR@10", "NDCG@10"):
            assert f"{name} {metric}" in lines
    recent = lines["EASE-recent (lambda 100, decay 2) HR@10"]
    assert recent.get_ydata()[0] == pytest.approx(0.3)
    # each baseline its own line style
    assert set(plots.BASELINE_STYLES) == set(history.baselines)
    assert len({str(style) for style in plots.BASELINE_STYLES.values()}) == 4
    history.baselines["EASE-recent"]["decay"] = None  # no decay chosen: every title alike
    assert plots.baseline_label(history, "EASE-recent") == "EASE-recent (lambda 100, decay none)"


def test_all_charts_are_written_for_four_baselines(tmp_path):
    plots.write_all(history_of([3.0, 1.0, 2.0]), tmp_path)
    for name in plots.PLOT_FILES:
        assert (tmp_path / name).stat().st_size > 0
