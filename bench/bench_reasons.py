"""What the reasons cost: the credits of 20 recommendations of a 500-title history, from the
model (reasons.model_credits) and from EASE-recent (reasons.part_credits), and their choice.

    python bench/bench_reasons.py [--threads 2] [--titles 3000] [--repeats 7]

The model has the default size (TrainConfig: hidden 256, 2 layers, 4 heads, max_seq_len 200, so
it reads the newest 199 of the 500 titles) and random weights (the cost does not depend on
them), and so has EASE-recent (decay 2); the catalogue has --titles titles. Prints the median
wall time of each (the model's: one pass over each title read alone) and of the model's
scoring pass for comparison, on --threads CPU threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bert4rec import baselines, data, reasons
from bert4rec.config import TrainConfig
from bert4rec.model import BERT4Rec
from bert4rec.train import model_config_for

HISTORY = 500
RECOMMENDATIONS = 20


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--titles", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = model_config_for(TrainConfig(), args.titles)
    model = BERT4Rec(config).eval()
    rng = np.random.default_rng(0)
    history = rng.choice(np.arange(1, args.titles + 1), HISTORY, replace=False)
    mask = args.titles + 1
    targets = rng.choice(np.setdiff1d(np.arange(1, args.titles + 1), history), RECOMMENDATIONS)
    targets = targets.tolist()

    weights = rng.standard_normal((args.titles, args.titles), dtype=np.float32)
    recent = baselines.RecentEASE(weights, 100.0, 2.0)

    def model_credits() -> None:
        reasons.model_credits(model, history, targets, mask)

    def part_credits() -> None:
        reasons.part_credits(recent, history, targets)

    credits = reasons.model_credits(model, history, targets, mask)
    rows = [list(zip(credits.items.tolist(), row.tolist())) for row in credits.values]

    def choose() -> None:
        reasons.choose(rows, [None] * len(rows))

    @torch.no_grad()
    def scoring() -> None:
        model.next_item_logits(data.next_item_inputs([history], mask, config.max_seq_len))

    read = min(HISTORY, config.max_seq_len - 1)
    print(
        f"reasons for {RECOMMENDATIONS} recommendations of a {HISTORY}-title history (the model "
        f"reads {read}); hidden {config.hidden}, {config.layers} layers, {config.heads} heads, "
        f"{args.titles} titles; {args.threads} threads; median of {args.repeats}"
    )
    timed = [
        (f"model credits (each of the {read} titles alone)", model_credits),
        ("EASE-recent credits", part_credits),
        ("choosing the reasons", choose),
        ("scoring pass", scoring),
    ]
    for name, run in timed:
        print(f"  {name:<46} {median_seconds(run, args.repeats):7.3f} s")


if __name__ == "__main__":
    main()
