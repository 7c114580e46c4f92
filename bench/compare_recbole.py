"""Training throughput and peak memory: RecBole 1.2.1's BERT4Rec against ours, on ML-1M.

Both sides train the paper's ML-1M architecture (hidden 64, feed-forward 256, 2 layers, 2 heads,
dropout 0.2, length 200, mask proportion 0.2) on the same sequences, for the same number of
training sequences, with the same batch size and thread count, each in a fresh process, in turns
(A B A B ...) so that drift of the shared machine hits both alike. It prints each run, the
medians, their ratio and the peak memory.

RecBole is never a project dependency: it lives in a virtual environment of its own outside the
repository ($BERT4REC_CACHE/recbole-venv, else ~/.cache/bert4rec-anime/recbole-venv), made here
on first use, and runs in bench/recbole_worker.py. The data is the MovieLens store of
bench/movielens.py (imported first if missing), exported to RecBole's atomic file format in the
cache with each user's items in the order our trainer reads them, so both sides see the same
sequences and the same leave-one-out targets. Our side runs in bench/ours_worker.py with the
project's python, through bert4rec.train as `train_model.py --preset ml1m` would.

Both throughputs are given: sequences per second (the goal's measure) and real (non-padding)
items per second, since RecBole computes every one of its 200 positions, padding included.
Peak memory is the peak RSS of each worker process, reading the data included.

    python bench/compare_recbole.py                 # RecBole and ours, 2 rounds of 6,040 sequences
    python bench/compare_recbole.py --only recbole  # one side alone
    python bench/compare_recbole.py --rounds 3 --json bench/results/recbole_compare.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import movielens
from bert4rec import data, db, files

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "recbole_worker.py"
OURS_WORKER = BENCH_DIR / "ours_worker.py"
RESULTS = BENCH_DIR / "results" / "recbole_compare.json"
DATASET = "ml1m-bench"  # not "ml-1m": RecBole would apply its own presets for a name it knows

# The benchmark environment. RecBole 1.2.1 breaks with numpy 2 and pandas 2.3, and pins colorlog
# and colorama. Its other requirements (ray, thop, plotly, tabulate, hyperopt) serve quick_start,
# hyper-tuning and FLOP counting, which the worker does not use, so RecBole goes in with
# --no-deps and we add what its training path imports. setuptools < 70 comes last, because
# torch 2.13's metadata asks for >= 77 and pip would otherwise upgrade it again.
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
VENV_STEPS: tuple[tuple[str, ...], ...] = (
    ("numpy==1.26.*", "pandas<2.3"),
    ("--no-deps", "recbole==1.2.1"),
    (
        "pyyaml>=5.1",
        "colorlog==4.7.2",
        "colorama==0.4.4",
        "scipy>=1.6",
        "scikit-learn>=0.23.2",
        "tqdm>=4.48.2",
        "tensorboard>=2.5",
        "texttable>=0.9",
        "psutil>=5.9",
    ),
    ("setuptools<70",),
)
VENV_MARKER = ".bench-venv-ready"
SMOKE_TEST = (
    "import recbole, torch, numpy; "
    "from recbole.config import Config; "
    "from recbole.data import create_dataset; "
    "from recbole.model.sequential_recommender.bert4rec import BERT4Rec; "
    "from recbole.trainer import Trainer; "
    "print(recbole.__version__, torch.__version__, numpy.__version__)"
)


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    """What both sides are asked to do (the same for each)."""

    sequences: int
    batch_size: int
    threads: int
    warmup_batches: int
    samples: str
    ft_ratio: float | None
    seed: int
    evaluate: bool


# --- the benchmark's environment ------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(venv: Path) -> Path:
    """The python of the RecBole environment, creating and filling it on first use."""
    python = venv_python(venv)
    recipe = json.dumps([TORCH, *VENV_STEPS])
    marker = venv / VENV_MARKER
    if python.is_file() and marker.is_file() and marker.read_text() == recipe:
        return python
    print(f"Making the RecBole environment in {venv} (a few minutes, once) ...", flush=True)
    if not python.is_file():
        run_checked([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    try:
        run_checked([*pip, TORCH])
    except BenchError:
        # Where PyPI offers only the CUDA build, the CPU one comes from PyTorch's own index.
        run_checked([*pip, TORCH, "--index-url", TORCH_CPU_INDEX])
    for step in VENV_STEPS:
        run_checked([*pip, *step])
    versions = run_checked([str(python), "-c", SMOKE_TEST]).strip()
    print(f"RecBole environment ready: recbole, torch, numpy = {versions}", flush=True)
    marker.write_text(recipe)
    return python


def run_checked(command: list[str], **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result.stdout


# --- the data ---------------------------------------------------------------------------------


def trainer_order_key(entry: db.ListEntry) -> tuple:
    """The order in which our trainer reads a history: its own rule (data.watch_order_key), so
    the two cannot drift. For the MovieLens store that is the timestamp, ties by anime_id."""
    if entry.completed_at or entry.started_at:
        raise BenchError("this export expects the MovieLens store (no completed/started dates)")
    return data.watch_order_key(entry)


def export_recbole_dataset(db_path: Path, data_dir: Path) -> Path:
    """Write the store's histories as DATASET/DATASET.inter; skipped when already current.

    Rows go out user by user in our trainer's order. RecBole sorts by (user, timestamp) with a
    stable sort, so its sequences, and its leave-one-out targets, are the same as ours.
    """
    conn = db.connect(db_path, create=False)
    try:
        if db.get_meta(conn, movielens.META_DATASET) != movielens.DATASET_NAME:
            raise BenchError(
                f"{db_path} is not a MovieLens store; make one with bench/movielens.py"
            )
        source = db.get_meta(conn, movielens.META_SOURCE_SHA256) or ""
        inter = data_dir / DATASET / f"{DATASET}.inter"
        stamp = inter.with_suffix(".source")
        if inter.is_file() and stamp.is_file() and stamp.read_text() == source:
            return inter
        inter.parent.mkdir(parents=True, exist_ok=True)
        partial = inter.with_suffix(".partial")
        with open(partial, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for history in db.load_histories(conn):
                for entry in sorted(history.entries, key=trainer_order_key):
                    handle.write(f"{history.user_id}\t{entry.anime_id}\t{entry.updated_at}\n")
        os.replace(partial, inter)
        stamp.write_text(source)
        return inter
    finally:
        conn.close()


# --- the two sides ----------------------------------------------------------------------------


def worker_env(threads: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONWARNINGS": "ignore::FutureWarning"}
    # numpy's and torch's OpenMP/BLAS pools get the same count as torch.set_num_threads.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_recbole(python: Path, data_dir: Path, work_dir: Path, settings: Settings) -> dict:
    """One RecBole run in a fresh process; its JSON result."""
    command = [
        str(python),
        str(WORKER),
        f"--data-dir={data_dir}",
        f"--dataset={DATASET}",
        f"--work-dir={work_dir}",
        f"--sequences={settings.sequences}",
        f"--batch-size={settings.batch_size}",
        f"--threads={settings.threads}",
        f"--warmup-batches={settings.warmup_batches}",
        f"--samples={settings.samples}",
        f"--seed={settings.seed}",
    ]
    if settings.ft_ratio is not None:
        command.append(f"--ft-ratio={settings.ft_ratio}")
    if settings.evaluate:
        command.append("--evaluate")
    output = run_checked(command, env=worker_env(settings.threads))
    return json.loads(output.strip().splitlines()[-1])


def run_ours(db_path: Path, settings: Settings, *flags: str) -> dict:
    """One run of our trainer in a fresh process of this python (bench/ours_worker.py: the
    ml1m preset, leave-one-out, trained through bert4rec.train); its JSON result, in the same
    keys as RecBole's. Its peak RSS is its own, reading the store included."""
    command = [
        sys.executable,
        str(OURS_WORKER),
        f"--db={db_path}",
        f"--sequences={settings.sequences}",
        f"--batch-size={settings.batch_size}",
        f"--threads={settings.threads}",
        f"--warmup-batches={settings.warmup_batches}",
        f"--seed={settings.seed}",
    ]
    output = run_checked([*command, *flags], env=worker_env(settings.threads))
    return json.loads(output.strip().splitlines()[-1])


# --- the comparison ---------------------------------------------------------------------------


def describe(side: str, result: dict) -> str:
    return (
        f"{side:9s} {result['sequences']:>7,} seq in {result['wall_s']:7.1f} s = "
        f"{result['sequences_per_s']:8.1f} seq/s, {result.get('tokens_per_s', 0):9.0f} tokens/s, "
        f"peak RSS {result['peak_rss_mb']:7.0f} MB"
    )


def compare(args: argparse.Namespace) -> dict:
    settings = Settings(
        sequences=args.sequences,
        batch_size=args.batch_size,
        threads=args.threads,
        warmup_batches=args.warmup_batches,
        samples=args.samples,
        ft_ratio=args.ft_ratio,
        seed=args.seed,
        evaluate=args.evaluate,
    )
    cache = args.cache or movielens.cache_dir()
    db_path = Path(args.db)
    if not db_path.is_file():
        movielens.import_file(db_path, movielens.fetch_ml1m(cache))
    # "ours" is the preset as users run it (bf16 training steps where the CPU computes bf16
    # natively); "ours-fp32" is the same in float32, RecBole's precision.
    sides = ("recbole", "ours", "ours-fp32") if args.only is None else (args.only,)
    if "recbole" in sides:
        python = ensure_venv(args.venv or cache / "recbole-venv")
        data_dir = cache / "recbole-data"
        export_recbole_dataset(db_path, data_dir)
    runners = {
        "recbole": lambda: run_recbole(python, data_dir, cache / "recbole-work", settings),
        "ours": lambda: run_ours(db_path, settings),
        "ours-fp32": lambda: run_ours(db_path, settings, "--float32"),
    }

    results: dict[str, list[dict]] = {side: [] for side in sides}
    for round_number in range(1, args.rounds + 1):
        for side in sides:  # A B A B: alternate, so that drift hits both sides alike
            result = runners[side]()
            results[side].append(result)
            print(f"round {round_number}: {describe(side, result)}", flush=True)

    summary: dict = {
        "settings": asdict(settings),
        "machine": machine(),
        "runs": results,
        "median": {side: medians(runs) for side, runs in results.items()},
    }
    print()
    for side, median in summary["median"].items():
        print(
            f"median {side:9s} {median['sequences_per_s']:8.1f} seq/s, "
            f"{median['tokens_per_s']:9.0f} real items/s, peak RSS {median['peak_rss_mb']:.0f} MB "
            f"({median['peak_rss_training_mb'] or 0:.0f} MB during training alone)"
        )
    for side in ("ours", "ours-fp32"):
        if side not in summary["median"] or "recbole" not in summary["median"]:
            continue
        key = "ours_vs_recbole" if side == "ours" else "ours_fp32_vs_recbole"
        summary[key] = ratios(summary["median"][side], summary["median"]["recbole"])
        r = summary[key]
        print(
            f"{side} / RecBole: {r['sequences_per_s']:.2f}x sequences/s, {r['tokens_per_s']:.2f}x "
            f"real items/s, {r['peak_rss_mb']:.2f}x peak memory -> goal (>= {SPEED_GOAL:g}x "
            f"sequences/s with lower peak memory) {'met' if r['goal_met'] else 'NOT met'}"
        )
    return summary


SPEED_GOAL = 3.0  # the goal: at least 3x RecBole's training throughput, with lower peak memory


def medians(runs: list[dict]) -> dict:
    def median_of(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    keys = ("sequences_per_s", "tokens_per_s", "peak_rss_mb", "peak_rss_training_mb")
    return {key: median_of(key) for key in keys}


def ratios(ours: dict, recbole: dict) -> dict:
    result = {
        key: round(ours[key] / recbole[key], 2)
        for key in ("sequences_per_s", "tokens_per_s", "peak_rss_mb")
    }
    result["goal_met"] = (
        result["sequences_per_s"] >= SPEED_GOAL and ours["peak_rss_mb"] < recbole["peak_rss_mb"]
    )
    return result


def machine() -> dict:
    """What the figures were measured on (the load average says how busy it was)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        model = names[0] if names else model
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "commit": source_commit(),
    }


@functools.cache
def source_commit() -> str | None:
    """The commit of the code measured (with '+changes' when the work tree differs), or None
    outside a git checkout. Read once, when the benchmark starts (below): a commit made while
    it runs is not the code it measures."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


source_commit()  # at import, as the benchmark starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    movielens.add_store_options(parser)
    parser.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="RecBole's environment (default: CACHE/recbole-venv)",
    )
    parser.add_argument(
        "--only",
        choices=("recbole", "ours", "ours-fp32"),
        default=None,
        help="run one side alone (ours-fp32: ours in float32, RecBole's precision)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    parser.add_argument(
        "--sequences",
        type=int,
        default=6040,
        help="timed training sequences per run (default 6040: one epoch)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup-batches", type=int, default=2)
    parser.add_argument(
        "--samples",
        choices=("one-per-user", "all-prefixes"),
        default="one-per-user",
        help="RecBole's training rows: each user's longest prefix (comparable to "
        "one sequence per user) or RecBole's own epoch of every prefix",
    )
    parser.add_argument(
        "--ft-ratio",
        type=float,
        default=None,
        help="RecBole's share of last-item-only batches (its default: 0.5)",
    )
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--evaluate", action="store_true", help="RecBole also ranks the test targets after its run"
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help="write the summary here (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        summary = compare(args)
    except (BenchError, movielens.MovieLensError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        files.write_json(args.json, summary)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
