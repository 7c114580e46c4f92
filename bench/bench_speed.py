"""Training speed before and after each of the trainer's speed-ups, on ML-1M.

Each variant adds one thing to the one before it and runs bench/ours_worker.py (the ml1m
preset's network, leave-one-out training sequences, the trainer's own run_epoch and step) in a
fresh process, in turns (1 2 3 ... 1 2 3 ...) so that drift of a shared machine hits all alike;
it prints the median sequences per second of each, its gain over the first, and peak memory.

    python bench/bench_speed.py                       # 2 rounds of 3,000 sequences each
    python bench/bench_speed.py --rounds 3 --compile  # also try torch.compile (needs a compiler)

What the variants change (bert4rec/train.py, bert4rec/data.py):
- float32, random batches: every batch padded to its longest sequence, glibc's malloc defaults.
- keep freed memory: glibc keeps the step's large freed blocks for reuse (tuning.keep_freed_memory).
- length buckets: batches of similar lengths, so almost no padding is computed (--length-buckets).
- bf16: training steps in bfloat16 on a CPU that computes it natively (--cpu-bf16).
- packed-bit dropout: dropout masks from 16-bit slices of 64-bit random draws (--dropout-masks
  packed, bert4rec/packed_dropout.py) instead of torch's bernoulli_, one draw per element,
  attention weights included.
- compile: torch.compile around the training module (--compile), only with --compile here.
Present from the start in every variant: logits at masked positions only (non-titles at -inf
through the output bias, no pass over the scores), collation by array operations, threads set to
the cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench import movielens
from bench.compare_recbole import BenchError, Settings, machine, run_ours
from bert4rec import files

RESULTS = Path(__file__).resolve().parent / "results" / "speed.json"

VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "float32, random batches",
        ("--float32", "--no-buckets", "--no-keep-freed-memory", "--torch-dropout"),
    ),
    ("+ keep freed memory", ("--float32", "--no-buckets", "--torch-dropout")),
    ("+ length buckets", ("--float32", "--torch-dropout")),
    ("+ bf16 steps", ("--torch-dropout",)),
    ("+ packed-bit dropout (the preset)", ()),
)
COMPILE_VARIANT = ("+ torch.compile", ("--compile",))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    movielens.add_store_options(parser)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all variants (default 2)")
    parser.add_argument("--sequences", type=int, default=3000, help="timed sequences per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--warmup-batches",
        type=int,
        default=2,
        help="untimed batches first (more with --compile: it compiles during the first ones)",
    )
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help="write the summary here (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    db_path = Path(args.db)
    try:
        if not db_path.is_file():
            movielens.import_file(db_path, movielens.fetch_ml1m(args.cache or None))
        variants = VARIANTS + ((COMPILE_VARIANT,) if args.compile else ())
        width = max(len(name) for name, _ in variants)
        settings = Settings(
            sequences=args.sequences,
            batch_size=args.batch_size,
            threads=args.threads,
            warmup_batches=args.warmup_batches,
            samples="one-per-user",  # RecBole's settings; ours_worker reads only the above
            ft_ratio=None,
            seed=2020,
            evaluate=False,
        )
        runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
        for round_number in range(1, args.rounds + 1):
            for name, flags in variants:
                result = run_ours(db_path, settings, *flags)
                runs[name].append(result)
                print(
                    f"round {round_number}: {name:{width}s} "
                    f"{result['sequences_per_s']:7.1f} seq/s, "
                    f"peak RSS {result['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
    except (BenchError, movielens.MovieLensError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    first = statistics.median(r["sequences_per_s"] for r in runs[variants[0][0]])
    table = []
    print(f"\n{'variant':{width}s} {'seq/s':>8s} {'gain':>6s} {'peak RSS':>9s}")
    for name, _ in variants:
        speed = statistics.median(r["sequences_per_s"] for r in runs[name])
        memory = statistics.median(r["peak_rss_mb"] for r in runs[name])
        table.append({"variant": name, "sequences_per_s": speed, "peak_rss_mb": memory})
        print(f"{name:{width}s} {speed:8.1f} {speed / first:5.2f}x {memory:7.0f} MB")
    if args.json:
        summary = {
            "protocol": "training sequences per second, ml1m preset network, leave-one-out "
            f"training sequences, batch {args.batch_size}, {args.threads} threads, median of "
            f"{args.rounds} fresh-process runs of {args.sequences} sequences each",
            "machine": machine(),
            "table": table,
            "runs": runs,
        }
        files.write_json(args.json, summary)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
