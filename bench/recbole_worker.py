"""Train RecBole 1.2.1's BERT4Rec for a fixed number of sequences and print one JSON line.

Runs with the python of the benchmark's own virtual environment (made by compare_recbole.py),
never with the project's: RecBole is not a project dependency and this file imports nothing
from `bert4rec`. It builds Config, dataset, model and trainer directly, because
`recbole.quick_start` imports ray.

What one training sample is. RecBole's SequentialDataset augments each user's history
i_0 .. i_{n-1} into n - 1 prefix rows ("i_0 .. i_{k-1} -> i_k", the prefix cut to the last
MAX_ITEM_LIST_LENGTH items). Leave-one-out gives the last row to test, the one before to
validation, and the n - 3 others to training, so a RecBole epoch over ML-1M is 982,089 prefix rows,
not 6,040 users. Each row is a left-aligned item list padded to 200 positions; BERT4Rec masks it
(the mask_itemseq transform, run per batch in the collate function) and ignores the row's target.
We count one row that goes through forward and backward as one sequence.

--samples one-per-user (the default) keeps only each user's longest training prefix, so that an
epoch is one sequence per user, as in a trainer that feeds each user's history once per epoch
(the longest prefix ends one item before such a history, i_{n-4} instead of i_{n-3}: RecBole's
last training row holds i_{n-3} only as the target, which BERT4Rec does not read).
--samples all-prefixes trains on RecBole's own epoch of every prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch

try:
    import resource
except ImportError:  # Windows
    resource = None

# The paper's ML-1M configuration (Sun et al. 2019), in RecBole's parameter names.
PAPER_ML1M = {
    "n_layers": 2,
    "n_heads": 2,
    "hidden_size": 64,
    "inner_size": 256,
    "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2,
    "hidden_act": "gelu",
    "MAX_ITEM_LIST_LENGTH": 200,
    "mask_ratio": 0.2,
    "loss_type": "CE",
}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    if resource is None:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Make the kernel's peak-RSS mark start again from now (Linux only); True if it did."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def vm_hwm_mb() -> float | None:
    """The peak RSS since the last reset_peak_rss(), from /proc/self/status; None elsewhere."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def recbole_config(args: argparse.Namespace):
    from recbole.config import Config

    config_dict = {
        **PAPER_ML1M,
        "data_path": args.data_dir,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "train_neg_sample_args": None,  # CE over all items, as the paper
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "train_batch_size": args.batch_size,
        "eval_batch_size": 256,
        "learning_rate": args.learning_rate,
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "worker": 0,  # collate (masking included) in this process, as the timing should see it
        "checkpoint_dir": os.path.join(os.getcwd(), "saved"),
    }
    if args.ft_ratio is not None:
        config_dict["ft_ratio"] = args.ft_ratio
    return Config(model="BERT4Rec", dataset=args.dataset, config_dict=config_dict)


def longest_prefix_per_user(train_dataset):
    """The training rows that hold each user's longest prefix (one row per user)."""
    users = train_dataset.inter_feat[train_dataset.uid_field].numpy()
    lengths = train_dataset.inter_feat[train_dataset.item_list_length_field].numpy()
    order = np.lexsort((lengths, users))  # by user, then by prefix length
    last_of_user = np.append(users[order][1:] != users[order][:-1], True)
    keep = np.sort(order[last_of_user])
    return train_dataset.copy(train_dataset.inter_feat[keep])


class Batches:
    """The training loader's batches, epoch after epoch, until `sequences` rows have been given.

    It also counts what went through: rows, non-padding positions, and the masked positions that
    carry a loss (RecBole's own rule: MASK_INDEX > 0).
    """

    def __init__(self, stream: Iterator, sequences: int, item_list_field: str) -> None:
        self.stream = stream
        self.wanted = sequences
        self.item_list_field = item_list_field
        self.sequences = self.tokens = self.loss_positions = self.batches = 0

    def __iter__(self):
        while self.sequences < self.wanted:
            interaction = next(self.stream)
            self.sequences += len(interaction)
            self.tokens += int((interaction[self.item_list_field] > 0).sum())
            self.loss_positions += int((interaction["MASK_INDEX"] > 0).sum())
            self.batches += 1
            yield interaction


def measured(
    timed, wall_s: float, setup_s: float, setup_rss: float, training_rss: float | None, load
) -> dict:
    """The figures both workers report alike (ours_worker.py uses this too): throughput of a
    Batches counter `timed` over `wall_s`, memory, load and threads."""
    return {
        "sequences": timed.sequences,
        "batches": timed.batches,
        "wall_s": round(wall_s, 3),
        "sequences_per_s": round(timed.sequences / wall_s, 2),
        "tokens_per_s": round(timed.tokens / wall_s, 1),
        "mean_tokens_per_sequence": round(timed.tokens / max(timed.sequences, 1), 1),
        "loss_positions_per_s": round(timed.loss_positions / wall_s, 1),
        "setup_s": round(setup_s, 1),
        "peak_rss_after_setup_mb": round(setup_rss, 1),
        "peak_rss_training_mb": None if training_rss is None else round(training_rss, 1),
        "peak_rss_mb": round(max(setup_rss, peak_rss_mb(), training_rss or 0.0), 1),
        # Other work on the machine skews a run: the 1-minute load average, before and after.
        "load_average": [load, os.getloadavg()[0] if load is not None else None],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def endless(loader) -> Iterator:
    while True:  # each pass over the loader is a freshly shuffled epoch
        yield from loader


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    import recbole
    from recbole.data import create_dataset
    from recbole.data.utils import create_samplers, get_dataloader
    from recbole.model.sequential_recommender.bert4rec import BERT4Rec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    config = recbole_config(args)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_set, valid_set, test_set = dataset.build()
    prefixes_per_epoch = len(train_set)
    if args.samples == "one-per-user":
        train_set = longest_prefix_per_user(train_set)
    samplers = create_samplers(config, dataset, [train_set, valid_set, test_set])
    train_data = get_dataloader(config, "train")(config, train_set, samplers[0], shuffle=True)
    test_data = get_dataloader(config, "test")(config, test_set, samplers[2], shuffle=False)
    init_seed(config["seed"], config["reproducibility"])
    model = BERT4Rec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    setup_s = time.perf_counter() - started
    setup_rss_mb = peak_rss_mb()
    # The augmented dataset is built and stays in memory; what training adds on top is seen by
    # restarting the peak mark here (ru_maxrss may restart with it, hence setup_rss_mb first).
    training_peak_measured = reset_peak_rss()

    stream = endless(train_data)
    item_list_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    # A few untimed batches first: the first steps pay for allocations and lazy initialisation.
    warmup = Batches(stream, args.warmup_batches * args.batch_size, item_list_field)
    if args.warmup_batches:
        trainer._train_epoch(warmup, epoch_idx=0)
    timed = Batches(stream, args.sequences, item_list_field)
    tick = time.perf_counter()
    loss_sum = trainer._train_epoch(timed, epoch_idx=1)  # RecBole's own training step
    wall_s = time.perf_counter() - tick
    training_rss_mb = vm_hwm_mb() if training_peak_measured else None

    result = {
        "implementation": "recbole",
        "model": "BERT4Rec",
        "samples": args.samples,
        "sample_definition": (
            "one RecBole training row: a user's prefix of up to 200 items, padded to 200, "
            "masked by RecBole's mask_itemseq transform"
        ),
        "train_rows_per_epoch": len(train_set),
        "recbole_prefix_rows_per_epoch": prefixes_per_epoch,
        "batch_size": args.batch_size,
        "warmup_batches": warmup.batches,
        "mean_loss": round(loss_sum / max(timed.batches, 1), 4),
        **measured(timed, wall_s, setup_s, setup_rss_mb, training_rss_mb, load_before),
        "config": {
            **PAPER_ML1M,
            "ft_ratio": config["ft_ratio"],
            "learning_rate": config["learning_rate"],
            "optimizer": config["learner"],
            "seed": config["seed"],
        },
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": __import__("pandas").__version__,
            "python": platform.python_version(),
        },
    }
    if args.evaluate:
        tick = time.perf_counter()
        metrics = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        result["test_metrics"] = {k: round(float(v), 4) for k, v in metrics.items()}
        result["test_protocol"] = (
            "RecBole full ranking over all items, the user's own items NOT excluded; MRR is MRR@10"
        )
        result["evaluate_s"] = round(time.perf_counter() - tick, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding DATASET/DATASET.inter")
    parser.add_argument("--dataset", default="ml1m-bench")
    parser.add_argument("--work-dir", required=True, help="RecBole writes log/, saved/ here")
    parser.add_argument("--sequences", type=int, default=6040, help="training sequences to time")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup-batches", type=int, default=2)
    parser.add_argument(
        "--samples", choices=("one-per-user", "all-prefixes"), default="one-per-user"
    )
    parser.add_argument(
        "--ft-ratio",
        type=float,
        default=None,
        help="share of batches that mask only the last item (RecBole's default for BERT4Rec: 0.5)",
    )
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--evaluate", action="store_true", help="also rank the test targets")
    args = parser.parse_args(argv)
    # RecBole's Config reads --key=value options from sys.argv as its own settings: hide ours.
    sys.argv = sys.argv[:1]
    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas and torch, about RecBole
    args.data_dir = os.path.abspath(args.data_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    os.chdir(args.work_dir)  # RecBole writes log_tensorboard/ and saved/ into the current folder
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
