"""What the reasons cost: reasons.explain for 20 recommendations of a 500-title history.

    python bench/bench_reasons.py [--threads 2] [--titles 3000] [--repeats 7]

The model has the default size (TrainConfig: hidden 256, 2 layers, 4 heads, max_seq_len 200, so
it reads the newest 199 of the 500 titles) and random weights (the cost does not depend on
them); the catalogue has --titles titles. Prints the median wall time of explain() (one pass
over each title read alone) and of the scoring pass for comparison, on --threads CPU threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bert4rec import data, reasons
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

    def explain() -> None:
        reasons.explain(model, history, targets, mask)

    @torch.no_grad()
    def scoring() -> None:
        model.next_item_logits(data.next_item_inputs([history], mask, config.max_seq_len))

    read = min(HISTORY, config.max_seq_len - 1)
    print(
        f"reasons for {RECOMMENDATIONS} recommendations of a {HISTORY}-title history (the model "
        f"reads {read}); hidden {config.hidden}, {config.layers} layers, {config.heads} heads, "
        f"{args.titles} titles; {args.threads} threads; median of {args.repeats}"
    )
    rows = [(f"explain (each of the {read} titles alone)", explain), ("scoring pass", scoring)]
    for name, run in rows:
        print(f"  {name:<36} {median_seconds(run, args.repeats):7.3f} s")


if __name__ == "__main__":
    main()
