"""Train our BERT4Rec for a fixed number of sequences and print one JSON line.

The counterpart of recbole_worker.py for compare_recbole.py: it runs in a fresh process of the
project's own python, builds the run exactly as `train_model.py --preset ml1m` does
(bert4rec.train.start_run: the store, the leave-one-out split, the paper's network, AdamW with
its schedule, the length-bucketed masked batches) and trains with the trainer's own epoch loop
(run_epoch and make_step), only cut to a number of sequences instead of whole epochs. One
sequence is one user's training history (the last 200 titles before the validation target),
masked as our trainer masks it.

The timed part runs from the first timed batch to the last optimizer step, batch building
(padding and masking) included, after a few untimed warm-up batches; setup (reading the store,
building the model, the popularity baseline) is not timed but its memory counts in the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from bench.recbole_worker import measured, peak_rss_mb, reset_peak_rss, vm_hwm_mb
from bert4rec import checkpoint, train, tuning
from bert4rec import config as config_module
from bert4rec.data import MaskedBatch
from bert4rec.vocab import PAD_INDEX


class Batches:
    """The training batches, epoch after epoch (each reshuffled and remasked), until `wanted`
    sequences have been given; counts what went through."""

    def __init__(self, run: train.Run, wanted: int, first_epoch: int) -> None:
        self.run = run
        self.wanted = wanted
        self.epoch = first_epoch
        self.sequences = self.tokens = self.loss_positions = self.batches = 0

    def __iter__(self) -> Iterator[MaskedBatch]:
        while True:
            self.run.train_set.set_epoch(self.epoch)
            for batch in self.run.train_loader:
                if self.sequences >= self.wanted:
                    return
                self.sequences += batch.inputs.shape[0]
                self.tokens += int((batch.inputs != PAD_INDEX).sum())
                self.loss_positions += int((batch.labels != PAD_INDEX).sum())
                self.batches += 1
                yield batch
            self.epoch += 1


def measure(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    settings = {
        **config_module.PRESETS["ml1m"],
        "db": args.db,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "seed": args.seed,
        "checkpoint_every": 0,
        # the paper's dropout, as RecBole's side runs it (the preset keeps the defaults' 0.1);
        # packed masks do the same work at any rate
        "dropout": 0.2,
        # training alone: no baselines fitted in the setup (RecBole's side fits none either)
        "baselines": False,
        "cpu_bf16": config_module.PRESETS["ml1m"]["cpu_bf16"] and not args.float32,
        "length_buckets": config_module.PRESETS["ml1m"]["length_buckets"] and not args.no_buckets,
        "compile": args.compile,
        # torch's own dropout masks (bernoulli_), attention included, with --torch-dropout
        "dropout_masks": "torch" if args.torch_dropout else "packed",
        # the earlier preset's loss over the whole catalogue with --whole-catalogue-loss
        "exclude_seen": not args.whole_catalogue_loss,
    }
    with tempfile.TemporaryDirectory() as output:
        config = replace(config_module.from_dict(settings), output=output)
        config.validate()
        # glibc's defaults (large blocks unmapped when freed) with --no-keep-freed-memory
        tuning.tune_for_training(config, keep_freed=not args.no_keep_freed_memory)
        started = time.perf_counter()
        run = train.start_run(config, checkpoint.OutputPaths(Path(output)))  # logs nothing here
        setup_s = time.perf_counter() - started
        setup_rss_mb = peak_rss_mb()
        # What training adds on top of the data (as in recbole_worker.py).
        training_peak_measured = reset_peak_rss()
        step = train.make_step(
            run.model, run.optimizer, run.scheduler, run.scaler, config.grad_clip
        )
        device, amp = run.device, run.train_amp_dtype
        warmup = Batches(run, args.warmup_batches * args.batch_size, first_epoch=0)
        if args.warmup_batches:
            train.run_epoch(
                run.parallel_model,
                warmup,
                device,
                amp,
                description="Warm-up",
                step=step,
                exclude_seen=config.exclude_seen,
            )
        timed = Batches(run, args.sequences, first_epoch=1)
        tick = time.perf_counter()
        result = train.run_epoch(
            run.parallel_model,
            timed,
            device,
            amp,
            description="Timed",
            step=step,
            exclude_seen=config.exclude_seen,
        )
        wall_s = time.perf_counter() - tick
    training_rss_mb = vm_hwm_mb() if training_peak_measured else None
    return {
        "implementation": "ours",
        "training_precision": str(amp).removeprefix("torch.") if amp else "float32",
        "variant": {
            "length_buckets": config.length_buckets,
            "keep_freed_memory": not args.no_keep_freed_memory,
            "compile": config.compile,
            "packed_bit_dropout": not args.torch_dropout,
            "exclude_seen": config.exclude_seen,
        },
        "model": "BERT4Rec",
        "sample_definition": (
            "one user's training history (up to 200 titles before the validation target), "
            "padded to its batch's longest (length buckets), masked by our trainer"
        ),
        "train_rows_per_epoch": len(run.train_set),
        "batch_size": args.batch_size,
        "warmup_batches": warmup.batches,
        "mean_loss": round(result.loss, 4),
        **measured(timed, wall_s, setup_s, setup_rss_mb, training_rss_mb, load_before),
        "config": asdict(config),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the MovieLens store (bench/movielens.py)")
    parser.add_argument("--sequences", type=int, default=6040, help="training sequences to time")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup-batches", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--float32",
        action="store_true",
        help="train in float32 even where the preset trains in bfloat16 (--cpu-bf16)",
    )
    parser.add_argument(
        "--no-buckets", action="store_true", help="batches of random lengths (no --length-buckets)"
    )
    parser.add_argument(
        "--no-keep-freed-memory",
        action="store_true",
        help="leave glibc's malloc thresholds alone (tuning.keep_freed_memory off)",
    )
    parser.add_argument("--compile", action="store_true", help="train with --compile")
    parser.add_argument(
        "--torch-dropout",
        action="store_true",
        help="--dropout-masks torch: torch's dropout (bernoulli_ masks) instead of packed bits",
    )
    parser.add_argument(
        "--whole-catalogue-loss",
        action="store_true",
        help="--no-exclude-seen: the training loss ranks each hidden title against the whole "
        "catalogue, not only the titles its sequence does not show",
    )
    args = parser.parse_args(argv)
    print(json.dumps(measure(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
