"""MovieLens-1M quality: our BERT4Rec against the published full-ranking numbers.

Trains with `train_model.py --preset ml1m` through the project's own code (bert4rec.train.train)
on the MovieLens store of bench/movielens.py (imported first if missing), then prints and writes
bench/results/ml1m.json: test NDCG@10, HR@10 and MRR (leave-one-out, full ranking, the user's
other titles excluded, best_model.pth as the preset picks it), the protocol, wall time,
training sequences per second, peak memory, versions, the machine and its load, and validation
NDCG@10 after every epoch against the training time, drawn in
bench/results/ml1m_ndcg_vs_time.png. The baselines (popularity, ItemKNN, EASE, EASE-recent) are
ranked on the same test targets, each at its settings chosen on validation.

    python bench/bench_ml1m.py                  # the preset as it is
    python bench/bench_ml1m.py --epochs 20      # any train_model.py flag changes the run

Goals: test NDCG@10 >= 0.16 and HR@10 >= 0.28 within 60 minutes of training on the
benchmark machine (2 CPU cores). The validation curve is for watching training only; the
figures that count are the test figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench import movielens
from bench.baseline_report import baseline_rows, blend_row, settings_of
from bench.compare_recbole import machine
from bench.recbole_worker import peak_rss_mb
from bert4rec import config as config_module
from bert4rec import db, files, tuning
from bert4rec.metrics import TrainingHistory
from bert4rec.train import LEAVE_ONE_OUT_PROTOCOL, TrainingError, train

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"NDCG@10": 0.16, "HR@10": 0.28, "training_minutes": 60.0}
# Converged BERT4Rec on ML-1M, full ranking, leave-one-out (test NDCG@10, HR@10).
PUBLISHED = {
    "Klenitskiy & Vasilev, RecSys 2023": {"NDCG@10": 0.1537, "HR@10": 0.2843},
    "Petrov & Macdonald, RecSys 2022": {"NDCG@10": 0.1516, "HR@10": 0.2821},
}


def curve(history: TrainingHistory) -> list[dict]:
    """Per epoch: training time so far (training and validation, without setup and file
    writes) and the validation figures."""
    elapsed = np.cumsum(history.epoch_seconds)
    return [
        {
            "epoch": epoch + 1,
            "seconds": round(float(elapsed[epoch]), 1),
            "val_NDCG@10": round(history.val_ranking["NDCG@10"][epoch], 4),
            "val_HR@10": round(history.val_ranking["HR@10"][epoch], 4),
            "val_loss": round(history.val_losses[epoch], 4),
        }
        for epoch in range(history.epochs_done)
    ]


def plot(
    points: list[dict],
    test: dict,
    path: Path,
    baselines: dict | None = None,
    served: dict | None = None,
) -> None:
    """Validation NDCG@10 against training time, the test figure (the model alone and what
    recommendations served), the goal, the published figures and each baseline's test NDCG@10
    (with its settings)."""
    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    minutes = [p["seconds"] / 60 for p in points]
    ax.plot(minutes, [p["val_NDCG@10"] for p in points], label="ours, validation NDCG@10")
    ax.scatter(
        [minutes[-1]], [test["NDCG@10"]], color="black", zorder=3, label="ours, test NDCG@10"
    )
    if served and served["ease_weight"] > 0:
        ax.scatter(
            [minutes[-1]],
            [served["test"]["NDCG@10"]],
            color="black",
            marker="^",
            zorder=3,
            label=f"served ({served_words(served)}), test NDCG@10",
        )
    ax.axhline(GOALS["NDCG@10"], color="green", linestyle="--", label="goal 0.16")
    for (name, figures), style in zip(PUBLISHED.items(), (":", "-.")):
        ax.axhline(figures["NDCG@10"], color="grey", linestyle=style, label=name)
    ax.axvline(GOALS["training_minutes"], color="red", linestyle=":", label="60 minutes")
    for (name, entry), colour in zip((baselines or {}).items(), ("C1", "C2", "C3", "C4")):
        if "test" in entry:
            label = f"{name} {settings_of(entry)}".rstrip()
            ax.axhline(entry["test"]["NDCG@10"], color=colour, linewidth=1, label=f"{label}, test")
    ax.set(
        title="BERT4Rec on MovieLens-1M (leave-one-out, full ranking), 2 CPU cores",
        xlabel="training time (minutes)",
        ylabel="NDCG@10",
    )
    ax.set_ylim(0, max(0.2, max(p["val_NDCG@10"] for p in points) * 1.1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    files.write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=110))


def report(
    config: config_module.TrainConfig,
    history: TrainingHistory,
    wall_s: float,
    load_at_start: list | None,
) -> dict:
    test = history.test_ranking
    training_s = float(np.sum(history.epoch_seconds))
    # Every epoch trains the same number of sequences, so the run's rate is the harmonic mean.
    speeds = history.train_sequences_per_second
    return {
        "test": {name: round(value, 4) for name, value in test.items()},
        "test_model_epoch": history.test_epoch,
        "test_popularity_baseline": {
            k: round(v, 4) for k, v in history.test_popularity_baseline.items()
        },
        # every baseline on the same targets, at the settings chosen on validation
        "baselines": baseline_rows(history.baselines),
        # what recommendations serve (the model alone or mixed), chosen on validation
        "blend": blend_row(history.blend),
        "protocol": LEAVE_ONE_OUT_PROTOCOL,
        "goals": GOALS,
        "goals_met": {
            "NDCG@10": test["NDCG@10"] >= GOALS["NDCG@10"],
            "HR@10": test["HR@10"] >= GOALS["HR@10"],
            "training_minutes": wall_s / 60 <= GOALS["training_minutes"],
        },
        "published": PUBLISHED,
        "epochs": history.epochs_done,
        "wall_s": round(wall_s, 1),
        "wall_s_means": "all of train(): reading the store, every epoch, the test, every file",
        "training_s": round(training_s, 1),
        "training_s_means": "training and per-epoch validation, without setup and file writes",
        "sequences_per_s": round(len(speeds) / sum(1.0 / v for v in speeds), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "curve": curve(history),
        "config": asdict(config),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def print_summary(result: dict) -> None:
    test, met = result["test"], result["goals_met"]

    def verdict(name: str) -> str:
        return "met" if met[name] else "NOT met"

    print(
        f"\nMovieLens-1M, leave-one-out, full ranking, test (best model by "
        f"{result['config']['select_by']}: epoch {result['test_model_epoch']} of "
        f"{result['epochs']}):"
    )
    print(f"  NDCG@10 {test['NDCG@10']:.4f} (goal >= {GOALS['NDCG@10']}: {verdict('NDCG@10')})")
    print(f"  HR@10   {test['HR@10']:.4f} (goal >= {GOALS['HR@10']}: {verdict('HR@10')})")
    print(f"  MRR     {test['MRR']:.4f}")
    print(
        f"  time    {result['wall_s'] / 60:.1f} min in all, {result['training_s'] / 60:.1f} min "
        f"of epochs (goal <= {GOALS['training_minutes']:.0f} min: {verdict('training_minutes')})"
    )
    print(
        f"  speed   {result['sequences_per_s']:.0f} training sequences/s; peak RSS "
        f"{result['peak_rss_mb']:.0f} MB"
    )
    served = result["blend"]
    if served:
        print(
            f"  served  NDCG@10 {served['test']['NDCG@10']:.4f}, HR@10 "
            f"{served['test']['HR@10']:.4f}: {served_words(served)} (chosen on validation)"
        )
    for name, figures in PUBLISHED.items():
        print(f"  published, {name}: NDCG@10 {figures['NDCG@10']}, HR@10 {figures['HR@10']}")
    for name, entry in result["baselines"].items():
        if "test" not in entry:
            print(f"  baseline {name}: {entry['skipped']}")
            continue
        print(
            f"  baseline {name} {settings_of(entry)}: NDCG@10 {entry['test']['NDCG@10']:.4f}, "
            f"HR@10 {entry['test']['HR@10']:.4f}"
        )


def served_words(served: dict) -> str:
    """'the model alone', or 'the model with 0.1 EASE-recent (lambda 500, decay 4)'."""
    if served["ease_weight"] == 0:
        return "the model alone"
    settings = settings_of({"lambda": served["ease_lambda"], "decay": served["decay"]})
    if served["ease_weight"] == 1:
        return f"{served['part']} alone {settings}"
    return f"the model with {served['ease_weight']:g} {served['part']} {settings}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=None, help="download cache (movielens.py)")
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "ml1m.json", help="default: %(default)s"
    )
    parser.add_argument(
        "--plot", type=Path, default=RESULTS / "ml1m_ndcg_vs_time.png", help="default: %(default)s"
    )
    config_module.add_arguments(parser)  # every train_model.py flag, over the ml1m preset
    args = parser.parse_args(argv)
    given = {**config_module.PRESETS["ml1m"], **config_module.given_settings(args)}
    settings = config_module.from_dict(given)
    try:
        settings.validate()
        if settings.split != "leave-one-out":
            raise ValueError("the benchmark's protocol is --split leave-one-out")
        if not Path(settings.db).is_file():
            movielens.import_file(settings.db, movielens.fetch_ml1m(args.cache))
        load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        tuned = tuning.tune_for_training(settings)  # as train_model.py does
        started = time.perf_counter()
        history = train(settings)
        wall_s = time.perf_counter() - started
    except (ValueError, TrainingError, movielens.MovieLensError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = report(settings, history, wall_s, load_at_start)
    result["tuning"] = tuned
    files.write_json(args.json, result)
    plot(result["curve"], result["test"], args.plot, result["baselines"], result["blend"])
    print_summary(result)
    print(f"  written: {args.json}, {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
