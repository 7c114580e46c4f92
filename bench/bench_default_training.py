"""How long the default training takes on a CPU: 2,000 users of about 300 titles each.

Builds a synthetic store (the bundled simulator's world, bert4rec/synthetic.py, written through
bert4rec/db.py as the data stages write it: 3,000 titles, 2,000 accounts whose lists average about
300 titles), then trains it with train_model.py's defaults alone (as 3_train_model does: the
user split, early stopping, baselines and blend included) through bert4rec.train.train, and
writes bench/results/default_training.json: the time to the best epoch (setup, baselines and
every epoch up to it), the whole run's time, the epochs, the validation figures of the model
and the baselines, and their figures on the held-out test users (nothing is chosen on them).

    python bench/bench_default_training.py                # 20 to 60 minutes on 2 cores
    python bench/bench_default_training.py --users 300    # a quick look
    python bench/bench_default_training.py --epochs 20    # any train_model.py flag changes it
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.baseline_report import baseline_rows, blend_row, rounded
from bench.compare_recbole import machine
from bench.gpu_check import build_synthetic_store
from bert4rec import config as config_module
from bert4rec import files, plots, tuning
from bert4rec import train as training
from bert4rec.checkpoint import OutputPaths

RESULTS = Path(__file__).resolve().parent / "results" / "default_training.json"
LIST_SIZE_LOG_MEAN = 5.3  # synthetic.generate_world: lists of about 300 titles on average


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000, help="accounts generated (2000)")
    parser.add_argument("--titles", type=int, default=3000, help="catalogue size (3000)")
    parser.add_argument("--work", help="store and outputs (default: a temporary folder)")
    parser.add_argument("--json", default=str(RESULTS), help=f"default: {RESULTS}")
    config_module.add_arguments(parser)  # every train_model.py flag, over the defaults
    args = parser.parse_args(argv)
    given = config_module.given_settings(args)
    with tempfile.TemporaryDirectory(prefix="bench_default_") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = run(work, args.users, args.titles, given)
    files.write_json(Path(args.json), result)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=1))
    print(f"written: {args.json}")
    return 0


def run(work: Path, users: int, titles: int, given: dict | None = None) -> dict:
    """Builds the store under `work` and trains it with the defaults, over them `given`
    (train_model.py settings; the store and output folder are always the bench's own)."""
    store = work / "synthetic.db"
    started = time.perf_counter()
    built = build_synthetic_store(store, titles, users, list_size_log_mean=LIST_SIZE_LOG_MEAN)
    store_seconds = time.perf_counter() - started
    config = config_module.from_dict(
        {**(given or {}), "db": str(store), "output": str(work / "output")}
    )
    config.validate()
    tuning.tune_for_training(config)  # as train_model.py does
    started = time.perf_counter()
    history = training.train(config)
    wall = time.perf_counter() - started
    metrics_file = OutputPaths(work / "output").plots / plots.METRICS_FILE
    report = json.loads(metrics_file.read_text("utf-8"))
    best = history.best_epoch
    setup = wall - sum(history.epoch_seconds)  # data, baselines, model, final files
    to_best = setup + sum(history.epoch_seconds[:best])
    ranking = {name: round(values[best - 1], 4) for name, values in history.val_ranking.items()}
    return {
        "what": "train_model.py's defaults on a synthetic store (bench/bench_default_training.py)",
        "machine": machine(),
        "store": {**built, "seconds_to_build": round(store_seconds, 1)},
        "data": report.get("data"),
        "epochs": history.epochs_done,
        "best_epoch": best,
        "minutes_to_best_epoch": round(to_best / 60, 1),
        "minutes_in_all": round(wall / 60, 1),
        "setup_and_final_seconds": round(setup, 1),
        "median_epoch_seconds": round(statistics.median(history.epoch_seconds), 2),
        "validation_at_best": ranking,
        # on the held-out test users (none under --split leave-one-out: its test is the last title)
        "test_at_best": rounded(history.test_ranking) if history.test_ranking else None,
        # each baseline's validation and test figures, at the settings chosen on validation
        "baselines": baseline_rows(history.baselines or {}),
        "blend": blend_row(history.blend),
        "blend_validation_NDCG@10_by_share": (history.blend or {}).get(
            "validation_NDCG@10_by_share"
        ),
        "ranking_protocol": report.get("ranking_protocol"),
        "config": asdict(config),
    }


if __name__ == "__main__":
    sys.exit(main())
