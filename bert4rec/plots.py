"""The charts and the metrics file of output/plots/, drawn from a run's TrainingHistory.

Figures are built with matplotlib's object API and rendered by its Agg (PNG) canvas: no window,
no pyplot state, so this works on a server and from any thread.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import baselines, files
from .metrics import TOP_K, TrainingHistory

PLOT_FILES = ("loss_curve.png", "accuracy_curve.png", "combined_metrics.png", "learning_curve.png")
METRICS_FILE = "training_metrics.json"
SMOOTHING = 0.6  # exponential moving average weight of the past in learning_curve.png


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    files.write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=110))


def _epochs(history: TrainingHistory) -> np.ndarray:
    return np.arange(1, history.epochs_done + 1)


def _finish(ax, title: str, ylabel: str, ylim: tuple | None = None, **legend) -> None:
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(**legend)
    ax.grid(alpha=0.3)


def _draw_losses(ax, history: TrainingHistory) -> None:
    epochs = _epochs(history)
    ax.plot(epochs, history.train_losses, label="train loss", marker=".")
    ax.plot(epochs, history.val_losses, label="validation loss", marker=".")
    if history.best_epoch:
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label="best model")
    _finish(ax, "Loss (masked titles)", "cross-entropy")


def _draw_accuracy(ax, history: TrainingHistory, which: str) -> None:
    series = history.train_accuracies if which == "train" else history.val_accuracies
    for k in TOP_K:
        ax.plot(_epochs(history), series[k], label=f"Top-{k}", marker=".")
    name = "Training" if which == "train" else "Validation"
    _finish(ax, f"{name} Top-K accuracy", "accuracy", (0, 1))


BASELINE_STYLES = {
    "popularity": ":",
    "ItemKNN": "-.",
    "EASE": "--",
    baselines.ORDER_AWARE: (0, (6, 2, 1, 2, 1, 2)),  # dash-dot-dot
}


def baseline_label(history: TrainingHistory, name: str) -> str:
    """'EASE-recent (lambda 100, decay 2)': the name and the settings chosen on validation."""
    settings = baselines.settings_label(history.baselines.get(name, {}))
    return f"{name} ({settings})" if settings else name


def baseline_figures(history: TrainingHistory) -> dict[str, dict[str, float]]:
    """Validation figures of each baseline that ran: the report's, else (a file written
    before the baselines were added) the popularity baseline's."""
    measured = {n: e["validation"] for n, e in history.baselines.items() if "validation" in e}
    if not measured and history.popularity_baseline:
        measured = {"popularity": history.popularity_baseline}
    return measured


def _draw_baselines(ax, history: TrainingHistory, metric_names: tuple[str, ...]) -> None:
    """A horizontal line per baseline and metric, in the colour of that metric's curve."""
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    for name, figures in baseline_figures(history).items():
        label = baseline_label(history, name)
        for metric in metric_names:
            ax.axhline(
                figures[metric],
                color=colours.get(f"val next-title {metric} (smoothed)", "grey"),
                linestyle=BASELINE_STYLES.get(name, "--"),
                linewidth=1,
                label=f"{label} {metric}",
            )


def _draw_topk_bars(ax, history: TrainingHistory) -> None:
    """The best epoch's Top-K (the model that is kept; the last epoch's when none is marked):
    masked-title accuracy (train, validation) and next-title hit rate of the model and of
    each baseline."""
    epoch = history.best_epoch or history.epochs_done
    at = epoch - 1
    groups = {
        "train Top-K acc": [history.train_accuracies[k][at] for k in TOP_K],
        "val Top-K acc": [history.val_accuracies[k][at] for k in TOP_K],
        "val next-title HR@K": [history.val_ranking[f"HR@{k}"][at] for k in TOP_K],
    }
    for name, figures in baseline_figures(history).items():
        groups[f"{baseline_label(history, name)} HR@K"] = [figures[f"HR@{k}"] for k in TOP_K]
    x = np.arange(len(TOP_K))
    width = 0.8 / len(groups)
    for i, (label, values) in enumerate(groups.items()):
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, [f"K={k}" for k in TOP_K])
    which = "best epoch" if history.best_epoch else "epoch"
    ax.set(title=f"Top-K comparison ({which} {epoch})", ylabel="rate", ylim=(0, 1))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")


def smooth(values: list[float], weight: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average, bias-corrected so the first points are not pulled to 0."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return np.array(out)


def loss_curve(history: TrainingHistory, path: Path) -> None:
    fig = Figure(figsize=(8, 5))
    _draw_losses(fig.add_subplot(), history)
    _save(fig, path)


def accuracy_curve(history: TrainingHistory, path: Path) -> None:
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    epochs = _epochs(history)
    for k in TOP_K:
        (line,) = ax.plot(epochs, history.val_accuracies[k], label=f"val Top-{k}", marker=".")
        ax.plot(
            epochs,
            history.train_accuracies[k],
            color=line.get_color(),
            linestyle="--",
            label=f"train Top-{k}",
        )
    _finish(ax, "Top-K accuracy on masked titles", "accuracy", (0, 1), ncol=2, fontsize="small")
    _save(fig, path)


def combined_metrics(history: TrainingHistory, path: Path) -> None:
    fig = Figure(figsize=(13, 9))
    axes = fig.subplots(2, 2)
    _draw_losses(axes[0, 0], history)
    _draw_accuracy(axes[0, 1], history, "train")
    _draw_accuracy(axes[1, 0], history, "val")
    _draw_topk_bars(axes[1, 1], history)
    _save(fig, path)


def learning_curve(history: TrainingHistory, path: Path) -> None:
    fig = Figure(figsize=(13, 5))
    loss_ax, rank_ax = fig.subplots(1, 2)
    epochs = _epochs(history)
    for label, values in (("train loss", history.train_losses), ("val loss", history.val_losses)):
        (line,) = loss_ax.plot(epochs, smooth(values), label=f"{label} (smoothed)")
        loss_ax.plot(epochs, values, color=line.get_color(), alpha=0.25)
    _finish(loss_ax, "Smoothed loss", "cross-entropy")
    for label, values in (
        ("val Top-10 acc", history.val_accuracies[10]),
        ("val next-title HR@10", history.val_ranking["HR@10"]),
        ("val next-title NDCG@10", history.val_ranking["NDCG@10"]),
    ):
        (line,) = rank_ax.plot(epochs, smooth(values), label=f"{label} (smoothed)")
        rank_ax.plot(epochs, values, color=line.get_color(), alpha=0.25)
    _draw_baselines(rank_ax, history, ("HR@10", "NDCG@10"))
    _finish(rank_ax, "Smoothed validation quality", "rate", (0, 1), fontsize="small")
    _save(fig, path)


def write_metrics_json(history: TrainingHistory, path: Path, extra: dict | None = None) -> None:
    """Every per-epoch series (one value per epoch), the popularity baseline and `extra`."""
    record = {"epochs": _epochs(history).tolist(), **history.to_dict(), **(extra or {})}
    files.write_json(path, record)


def write_all(
    history: TrainingHistory, folder: str | os.PathLike[str], extra: dict | None = None
) -> None:
    """All four charts and training_metrics.json into `folder` (output/plots)."""
    folder = Path(folder)
    loss_curve(history, folder / "loss_curve.png")
    accuracy_curve(history, folder / "accuracy_curve.png")
    combined_metrics(history, folder / "combined_metrics.png")
    learning_curve(history, folder / "learning_curve.png")
    write_metrics_json(history, folder / METRICS_FILE, extra)
