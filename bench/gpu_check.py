"""The GPU check: one prepared run that measures the CUDA paths, under 8 minutes.

    bench/gpu_check.sh                                   # on a machine with an NVIDIA GPU
    bench/gpu_check.sh --quick --device cpu              # rehearse every part on the CPU
    python -m bench.gpu_check --ml1m-db data/ml1m.db     # from the repository root
    python -m bench.gpu_check --quick                    # here: the CUDA parts are skipped

It needs the project's files, not the project installed (from the repository root, `-m` finds
them; bench/gpu_check.sh sets PYTHONPATH and finds the ML-1M store), and the packages a CUDA
machine with PyTorch has (numpy, tqdm, matplotlib, requests); it downloads nothing. Its child
processes get the repository root on PYTHONPATH. Each part runs through the project's own code
(bert4rec.train.train, train_model.py under torchrun, bert4rec.recommender and recommend.py), in
its own try/except: a part that fails records its error and the others still run. Everything
goes to one JSON file (--out), rewritten after every part, and a summary is printed at the end.

Parts, in order (the later ones are skipped when --budget-seconds would run out):
- environment: GPU name and memory, torch, CUDA, cuDNN and NCCL versions, what --amp picks.
- synthetic_store: a store of the original design's size (3,000 titles; 3,900 users, of whom
  about 3,200 have the 20 titles load_users.py asks for, so that about 45 training steps of 64
  make an epoch, as in the original design's console example), from the bundled AniList
  simulator's world (bert4rec/synthetic.py) written straight into SQLite (bert4rec/db.py).
- spec_default_fp32, spec_default_amp: the original design's default training (train_model.py's
  defaults: batch 64, hidden 256, 2 layers, 4 heads, length 200) for a few epochs without and
  with --amp.
- ml1m_epoch_time: --preset ml1m for two epochs on the --ml1m-db store (bench/movielens.py).
- torchrun_nccl: `torchrun --nproc_per_node=1` (torch.distributed.run) of train_model.py for
  one epoch, NCCL_DEBUG=INFO so that the log shows NCCL was used.
- recommend_all_users: recommendations for every stored user with spec_default_fp32's model, on
  the GPU and on the CPU: users/s, and the share of users whose top 10 are the same titles in the
  same order (where they differ: whether only near-equal scores swapped places); then
  recommend.py --all-users itself on the GPU, checked against the library's top 10.
- ml1m_precision: the preset for --ml1m-epochs epochs in float32 and in mixed precision (bf16
  on Ampere and newer): validation and test NDCG@10 of each, and their difference.

Figures per training part: seconds per epoch as the trainer records them (history.epoch_seconds:
the training pass and the validation pass, which for leave-one-out is the next-title ranking; the
user split's ranking is not in it), training sequences per second, the wall time of the whole
call (data loading, setup and file writing included) and peak GPU memory
(torch.cuda.max_memory_allocated, in-process parts only). The first epoch includes CUDA's
warm-up; `steady_epoch_seconds` is the median of the others.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import importlib
import itertools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bert4rec import anilist, checkpoint, commands, db, devices, files, plots, tuning
from bert4rec import config as config_module
from bert4rec import recommender as recommending
from bert4rec import train as training
from bert4rec.config import TrainConfig
from bert4rec.metrics import TrainingHistory
from bert4rec.synthetic import generate_world

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gpu_check.json"
DEFAULT_BUDGET_S = 450.0
TOP_K = 10  # the top 10 compared between the GPU and the CPU
SCORED_K = 20  # scores kept per user, to look up the CPU's score of a title the GPU ranked
TIE_TOLERANCE = 1e-4  # relative difference of two probabilities below which they are "equal"
MIN_ANIME = 20  # load_users.py's default: smaller lists are stored as too_few
TORCHRUN_TIMEOUT_S = 300
PACKAGES = ("numpy", "tqdm", "matplotlib", "requests")


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: the real check, or --quick (seconds on a CPU)."""

    media: int = 3000
    users: int = 3900  # about 3,200 kept: 2,880 training users, 45 steps of 64
    spec_epochs: int = 3
    ml1m_speed_epochs: int = 2
    model: dict = field(default_factory=dict)  # over train_model.py's defaults (none: the design's)


FULL = Sizes()
QUICK = Sizes(
    media=120,
    users=120,
    spec_epochs=1,
    ml1m_speed_epochs=1,
    model={"hidden": 32, "heads": 2, "layers": 1, "max_seq_len": 30, "batch_size": 32},
)


WHAT = {
    "environment": "the machine: GPU, memory, torch, CUDA, cuDNN, NCCL, what --amp picks",
    "synthetic_store": "a store of the original design's size from the simulator's world "
    "(bert4rec/synthetic.py)",
    "spec_default_fp32": "the original design's default training on the synthetic store, --no-amp",
    "spec_default_amp": "the same with --amp (bf16 on Ampere and newer, fp16 on Volta/Turing)",
    "ml1m_epoch_time": "--preset ml1m on the --ml1m-db store: seconds per epoch",
    "torchrun_nccl": "torchrun --nproc_per_node=1 train_model.py for one epoch (NCCL on CUDA)",
    "recommend_all_users": "recommendations for every user on the device and on the CPU",
    "ml1m_precision": "--preset ml1m in float32 and in mixed precision: NDCG@10 of each",
}


class Skipped(Exception):
    """The part cannot run here; the message says why."""


# --- the parts' shared state -------------------------------------------------------------------


class Check:
    """The run: arguments, the clock, the work folder and the JSON written after every part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.device = torch.device(args.device)
        self.started = time.perf_counter()
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.store = self.work / "synthetic.db"
        self.unusable = device_unusable(self.device)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.results: dict[str, Any] = {
            "script": "bench/gpu_check.py",
            "argv": args.argv,
            "started_utc": now.isoformat(timespec="seconds"),
            "device": args.device,
            "quick": args.quick,
            "budget_seconds": args.budget_seconds,
            "sizes": asdict(self.sizes),
            "parts": {},
        }

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def remaining(self) -> float:
        return self.args.budget_seconds - self.elapsed

    def part(
        self,
        name: str,
        body: Callable[[], dict],
        *,
        needs_device: bool = True,
        cuda_only: bool = False,
        estimate_s: float | None = None,
    ) -> dict:
        """Run one part unless it cannot run here or would outrun the budget (estimate_s set:
        the part is optional); record its figures, its reason to skip or its error."""
        print(f"\n=== {name} ===", flush=True)
        reason = None
        if needs_device and self.unusable:
            reason = f"needs --device {self.device.type}, and there is {self.unusable}"
        elif cuda_only and self.device.type != "cuda":
            reason = f"needs CUDA; this run is on --device {self.device.type}"
        elif estimate_s is not None and estimate_s > self.remaining:
            reason = (
                f"budget: {max(0.0, self.remaining):.0f} s of --budget-seconds "
                f"{self.args.budget_seconds:.0f} left, this part needs about {estimate_s:.0f} s"
            )
        entry = {"status": "skipped", "reason": reason} if reason else self._run(body)
        entry = {"what": WHAT[name], **entry}
        self.results["parts"][name] = entry
        self.write()
        print(f"--- {name}: {entry['status']} {entry.get('reason', '')}".rstrip())
        if entry["status"] == "error":
            print(entry["traceback"], file=sys.stderr)
        return entry

    def _run(self, body: Callable[[], dict]) -> dict:
        release_gpu_memory()
        started = time.perf_counter()
        try:
            entry = {"status": "ok", **body()}
        except Skipped as exc:
            entry = {"status": "skipped", "reason": str(exc)}
        except training.TrainingInterrupted:
            raise KeyboardInterrupt from None  # Ctrl-C in a training: stop the whole check
        except Exception as exc:  # any failure: recorded, and the next part runs
            entry = {
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
            }
        entry["seconds"] = round(time.perf_counter() - started, 2)
        entry.update(peak_gpu_memory())
        return entry

    def ok(self, name: str) -> dict | None:
        entry = self.results["parts"].get(name)
        return entry if entry and entry["status"] == "ok" else None

    def write(self) -> None:
        self.results["total_seconds"] = round(self.elapsed, 1)
        files.write_json(self.args.out, finite_json(self.results))

    def device_settings(self) -> dict:
        """TrainConfig fields that put training on this run's device."""
        return {"gpu": True} if self.device.type == "cuda" else {"device": self.device.type}


def finite_json(value: Any) -> Any:
    """`value` with each float that JSON cannot hold (a NaN loss of a diverged mixed-precision
    run, an infinite gap) written as text, "nan" or "inf": files.write_json refuses them, and
    the figures of the other parts must still be written."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def device_unusable(device: torch.device) -> str | None:
    """Why the parts cannot run on `device`, or None."""
    if device.type != "cuda":
        return None
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"no CUDA: this PyTorch ({torch.__version__}) is a CPU-only build"
    return "no CUDA device visible (torch.cuda.is_available() is False; check nvidia-smi)"


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def release_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory() -> dict:
    """Peak GPU memory of this process since the part began (none before CUDA was used)."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    return {
        "peak_gpu_memory_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "peak_gpu_memory_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1),
    }


# --- environment -------------------------------------------------------------------------------


def environment(check: Check) -> dict:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "packages": {name: package_version(name) for name in PACKAGES},
    }
    if not torch.cuda.is_available():
        info["cuda_unavailable"] = device_unusable(torch.device("cuda"))
        return info
    properties = torch.cuda.get_device_properties(0)
    amp = devices.autocast_dtype(TrainConfig(), torch.device("cuda", 0))
    info.update(
        {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_count": torch.cuda.device_count(),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
            "multiprocessors": properties.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
            "nccl": nccl_version(),
            "nccl_available": torch.distributed.is_nccl_available(),
            "driver": nvidia_smi("driver_version"),
            "amp_dtype": str(amp).replace("torch.", "") if amp else None,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    )
    return info


def nccl_version() -> str | None:
    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def package_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "missing"
    return str(getattr(module, "__version__", "installed"))


def nvidia_smi(query: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


# --- the synthetic store -----------------------------------------------------------------------


def build_synthetic_store(
    path: Path, media: int, users: int, seed: int = 42, list_size_log_mean: float | None = None
) -> dict:
    """The simulator's world, stored as the data stages would store it: the catalogue ranked by
    popularity, every public user's list, those with fewer than MIN_ANIME watched titles as
    too_few (load_users.py's default). list_size_log_mean: synthetic.generate_world's."""
    sizes = {} if list_size_log_mean is None else {"list_size_log_mean": list_size_log_mean}
    world = generate_world(media, users, seed=seed, **sizes)
    if path.exists():
        path.unlink()
    conn = db.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a scratch store, rebuilt on every run
        ranked = [
            anilist.anime_from_media(m, rank) for rank, m in enumerate(world.by_popularity, 1)
        ]
        db.upsert_anime(conn, ranked)
        loaded = 0
        for user in world.users:
            if user.private:
                continue
            entries = [anilist.entry_from_list_item(e) for e in user.entries]
            watched = sum(1 for e in entries if e.watched)
            state = "loaded" if watched >= MIN_ANIME else "too_few"
            db.store_user_list(conn, user.name, user.id, entries, state=state)
            loaded += state == "loaded"
        entries = conn.execute("SELECT COUNT(*) FROM bert_user_anime_list").fetchone()[0]
    finally:
        conn.close()
    return {
        "titles": len(ranked),
        "users_generated": users,
        "users_loaded": loaded,
        "list_entries": entries,
    }


# --- training parts ----------------------------------------------------------------------------


def train_and_measure(config: TrainConfig) -> dict:
    """Train through bert4rec.train.train and report its timing and quality figures."""
    device = training.select_device(config)
    dtype = devices.training_autocast_dtype(config, device)
    tuning.tune_for_training(config)  # as train_model.py does: this process is the bench's
    started = time.perf_counter()
    history = training.train(config)
    synchronize()
    wall = time.perf_counter() - started
    plots_dir = checkpoint.OutputPaths(Path(config.output)).plots
    report = json.loads((plots_dir / plots.METRICS_FILE).read_text("utf-8"))
    figures = {
        "settings": changed_settings(config),
        "precision": str(dtype).replace("torch.", "") if dtype else "float32",
        "data": report.get("data"),
        **epoch_figures(history, wall),
        "last_val_loss": round(history.val_losses[-1], 4),
        "last_val_ndcg10": round(history.val_ranking["NDCG@10"][-1], 4),
        "best_val_ndcg10": round(max(history.val_ranking["NDCG@10"]), 4),
    }
    if history.test_ranking:  # leave-one-out: best_model.pth on the test targets
        figures["best_epoch"] = history.test_epoch
        figures["test_ndcg10_of_best"] = round(history.test_ranking["NDCG@10"], 4)
        figures["test_hr10_of_best"] = round(history.test_ranking["HR@10"], 4)
    return figures


def epoch_figures(history: TrainingHistory, wall: float) -> dict:
    seconds = history.epoch_seconds
    later = seconds[1:] or seconds
    speeds = history.train_sequences_per_second
    return {
        "epochs": history.epochs_done,
        "epoch_seconds": [round(s, 3) for s in seconds],
        "steady_epoch_seconds": round(statistics.median(later), 3),
        "train_sequences_per_second": [round(s, 1) for s in speeds],
        "steady_train_sequences_per_second": round(statistics.median(speeds[1:] or speeds), 1),
        "wall_seconds": round(wall, 2),
        "setup_seconds": round(wall - sum(seconds), 2),  # data, model, files: not in epochs
    }


def changed_settings(config: TrainConfig) -> dict:
    """The settings that differ from train_model.py's defaults (the rest are the original
    design's)."""
    defaults = asdict(TrainConfig())
    skip = ("db", "output")
    return {k: v for k, v in asdict(config).items() if v != defaults[k] and k not in skip}


def spec_config(check: Check, name: str, **over: Any) -> TrainConfig:
    values = {
        "db": str(check.store),
        "output": str(check.work / name),
        "epochs": check.sizes.spec_epochs,
        **check.sizes.model,
        **check.device_settings(),
        **over,
    }
    return config_module.from_dict(values)


def needs_store(check: Check) -> None:
    if not check.ok("synthetic_store"):
        raise Skipped("needs the synthetic store, which synthetic_store did not build")


def spec_default(check: Check, name: str, amp: bool) -> dict:
    needs_store(check)
    # cpu_bf16 too: on a CPU with native bf16 the fp32 part would otherwise train in bf16
    return train_and_measure(spec_config(check, name, amp=amp, cpu_bf16=amp))


def ml1m_config(check: Check, name: str, epochs: int, **over: Any) -> TrainConfig:
    values = {
        **config_module.PRESETS["ml1m"],
        "db": check.args.ml1m_db,
        "output": str(check.work / name),
        "epochs": epochs,
        **check.device_settings(),
        **over,
    }
    return config_module.from_dict(values)


def needs_ml1m(check: Check) -> None:
    path = check.args.ml1m_db
    if not path:
        raise Skipped(
            "no ML-1M store: bench/gpu_check.sh finds one (data/ml1m.db, bench/.cache/ml1m.db.gz "
            "from `bench/gpu_check.sh --pack`, or $ML1M_INTER, a copy of ml-1m.inter), or pass "
            f"--ml1m-db PATH (`{commands.python('bench/movielens.py')}` builds it)"
        )
    if not Path(path).is_file():
        raise Skipped(
            f"--ml1m-db {path} does not exist (`{commands.python('bench/movielens.py')}` builds it)"
        )


def ml1m_epoch_time(check: Check) -> dict:
    needs_ml1m(check)
    config = ml1m_config(check, "ml1m_epoch_time", check.sizes.ml1m_speed_epochs)
    figures = train_and_measure(config)
    steady, epochs = figures["steady_epoch_seconds"], config_module.PRESETS["ml1m"]["epochs"]
    figures["estimate_preset_minutes"] = {
        "epochs": epochs,
        "minutes": round((figures["setup_seconds"] + epochs * steady) / 60, 1),
        "formula": f"(setup_seconds + {epochs} x steady_epoch_seconds) / 60, from this run",
    }
    return figures


def ml1m_precision(check: Check) -> dict:
    needs_ml1m(check)
    epochs = check.args.ml1m_epochs
    runs = {}
    for label, over in (
        ("float32", {"amp": False, "cpu_bf16": False}),
        ("mixed", {"amp": True, "cpu_bf16": True}),
    ):
        release_gpu_memory()
        runs[label] = train_and_measure(ml1m_config(check, f"ml1m_{label}", epochs, **over))
        runs[label].update(peak_gpu_memory())
    mixed, full = runs["mixed"], runs["float32"]
    result = {
        "protocol": training.LEAVE_ONE_OUT_PROTOCOL,
        "epochs": epochs,
        "runs": runs,
        "mixed_minus_float32": {
            "precision": mixed["precision"],
            "last_val_ndcg10": round(mixed["last_val_ndcg10"] - full["last_val_ndcg10"], 4),
            "test_ndcg10_of_best": round(
                mixed["test_ndcg10_of_best"] - full["test_ndcg10_of_best"], 4
            ),
        },
    }
    short = check.ok("ml1m_epoch_time")
    if short and short["epochs"] < epochs and short["precision"] == mixed["precision"]:
        result["estimate_preset_minutes"] = preset_estimate(short, mixed)
    return result


def preset_estimate(short: dict, long: dict) -> dict:
    """The preset's whole run, from a line through two runs' wall times against their epochs:
    wall = fixed + epochs x per_epoch, which counts what every epoch adds besides
    epoch_seconds (best_model.pth, training_metrics.json) and what a run costs once."""
    per_epoch = (long["wall_seconds"] - short["wall_seconds"]) / (long["epochs"] - short["epochs"])
    fixed = short["wall_seconds"] - short["epochs"] * per_epoch
    epochs = config_module.PRESETS["ml1m"]["epochs"]
    return {
        "epochs": epochs,
        "minutes": round((fixed + epochs * per_epoch) / 60, 1),
        "per_epoch_seconds": round(per_epoch, 3),
        "fixed_seconds": round(fixed, 1),
        "formula": "wall = fixed + epochs x per_epoch through ml1m_epoch_time's and the mixed "
        f"run's wall times, at {epochs} epochs",
    }


def ml1m_precision_estimate(check: Check) -> float:
    """Seconds for both runs, from ml1m_epoch_time's figures (or a guess without them)."""
    measured = check.ok("ml1m_epoch_time")
    setup, epoch = (
        (measured["setup_seconds"], measured["steady_epoch_seconds"]) if measured else (30.0, 3.0)
    )
    return 2 * (setup + check.args.ml1m_epochs * epoch) * 1.2


# --- torchrun ----------------------------------------------------------------------------------


def torchrun_one_epoch(check: Check) -> dict:
    needs_store(check)
    output = check.work / "torchrun"
    settings = spec_config(check, "torchrun", epochs=1)
    flags = ["--db", settings.db, "--output", str(output), "--epochs", "1"]
    for name, value in check.sizes.model.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    flags += ["--gpu"] if check.device.type == "cuda" else ["--device", check.device.type]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=1", str(ROOT / "train_model.py"), *flags]
    env = project_env(NCCL_DEBUG="INFO", OMP_NUM_THREADS="4")
    started = time.perf_counter()
    returncode, log = run_in_own_group(
        command, env, max(60.0, min(TORCHRUN_TIMEOUT_S, check.remaining))
    )
    wall = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"torchrun exited {returncode}:\n{log[-3000:]}")
    plots_dir = checkpoint.OutputPaths(output).plots
    report = json.loads((plots_dir / plots.METRICS_FILE).read_text("utf-8"))
    nccl_lines = [line for line in log.splitlines() if "NCCL INFO" in line]
    # The same settings in this process: --amp is on by default, and does nothing off CUDA.
    alone = check.ok("spec_default_amp" if check.device.type == "cuda" else "spec_default_fp32")
    return {
        "command": " ".join(["torchrun", *command[3:]]),
        "backend": "nccl" if nccl_lines else "gloo" if check.device.type == "cpu" else "unknown",
        "nccl_info_lines": len(nccl_lines),
        "nccl_version_line": next((ln for ln in nccl_lines if "NCCL version" in ln), None),
        "processes": report.get("processes"),
        "device": report.get("device"),
        "epoch_seconds": [round(s, 3) for s in report["epoch_seconds"]],
        "train_sequences_per_second": [round(s, 1) for s in report["train_sequences_per_second"]],
        "wall_seconds": round(wall, 2),
        "one_process_first_epoch_seconds": alone["epoch_seconds"][0] if alone else None,
        "note": "a process of its own: its GPU memory is not in this process's peak",
    }


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that runs the project's scripts: the repository root
    first on PYTHONPATH, so that they find bert4rec with the project not installed, and what
    PYTHONPATH held kept behind it (this Python may find its packages through it)."""
    inherited = os.environ.get("PYTHONPATH")
    path = os.pathsep.join([str(ROOT), inherited] if inherited else [str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_in_own_group(command: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """(exit status, stdout and stderr) of `command`; past `timeout` its whole process group is
    killed, so that no worker torchrun started lingers on the GPU."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # Windows: no process groups of this kind
            process.kill()
        output, _ = process.communicate()
        raise RuntimeError(f"gave up after {timeout:.0f} s:\n{output[-3000:]}") from None
    return process.returncode, output


# --- recommendations ---------------------------------------------------------------------------


def recommend_all_users(check: Check) -> dict:
    needs_store(check)
    model_dir = checkpoint.OutputPaths(check.work / "spec_default_fp32").models
    if not (model_dir / checkpoint.BEST_MODEL_FILE).is_file():
        raise Skipped("needs the model spec_default_fp32 trains, which is missing")
    conn = db.connect(check.store, create=False)
    try:
        catalogue = db.load_catalogue(conn)
        timed = {}
        for device in dict.fromkeys((check.device, torch.device("cpu"))):  # once when cpu
            opened = recommending.open_model(model_dir, device, print)
            recommender = recommending.Recommender.from_model(opened, catalogue, device=device)
            first_title = opened.loaded.mapping.anime_ids[0]
            recommender.recommend(recommending.WatchedTitles((first_title,)))  # warm-up
            synchronize()
            started = time.perf_counter()
            rows = recommending.recommend_all_users(recommender, conn, top_k=SCORED_K)
            synchronize()
            timed[device.type] = (rows, time.perf_counter() - started)
    finally:
        conn.close()
    cpu_rows, cpu_s = timed["cpu"]
    gpu_rows, gpu_s = timed[check.device.type]
    result = {
        "model": "spec_default_fp32's best_model.pth",
        "compared": f"{check.device.type} against cpu",
        "users": len(gpu_rows),
        "batch_size": recommending.DEFAULT_BATCH_SIZE,
        f"{check.device.type}_users_per_second": round(len(gpu_rows) / gpu_s, 1),
        "cpu_users_per_second": round(len(cpu_rows) / cpu_s, 1),
        "top10_against_cpu": compare_top(cpu_rows, gpu_rows),
    }
    result["cli"] = recommend_cli(check, model_dir, gpu_rows)
    return result


def top_ids(result: recommending.Recommendations, k: int = TOP_K) -> list[int]:
    return [item.anime.anime_id for item in result.items[:k]]


def compare_top(cpu_rows: list, gpu_rows: list) -> dict:
    """The share of users with the same top 10 in the same order; for the others, whether each
    place where they differ holds two titles whose CPU probabilities are equal within
    TIE_TOLERANCE (relative), i.e. nearly tied titles that swapped places."""
    identical = ties = 0
    largest_gap = 0.0
    examples = []
    for (cpu_user, cpu), (gpu_user, gpu) in zip(cpu_rows, gpu_rows):
        if cpu_user.user_id != gpu_user.user_id:
            raise RuntimeError("the CPU and the GPU runs listed different users")
        ours, theirs = top_ids(cpu), top_ids(gpu)
        if ours == theirs:
            identical += 1
            continue
        cpu_probability = {item.anime.anime_id: item.probability for item in cpu.items}
        gap = 0.0
        for a, b in itertools.zip_longest(ours, theirs):
            if a == b:
                continue
            if a is None or b is None or b not in cpu_probability:
                gap = float("inf")
                break
            gap = max(gap, abs(cpu_probability[a] - cpu_probability[b]) / cpu_probability[a])
        ties += gap <= TIE_TOLERANCE
        largest_gap = max(largest_gap, gap)
        if len(examples) < 3:
            examples.append(
                {
                    "user_id": cpu_user.user_id,
                    "cpu": [[i, round(cpu_probability[i], 8)] for i in ours],
                    "gpu": [[g.anime.anime_id, round(g.probability, 8)] for g in gpu.items[:TOP_K]],
                }
            )
    users = len(cpu_rows)
    differing = users - identical
    return {
        "users": users,
        "identical": identical,
        "identical_share": round(identical / users, 4) if users else None,
        "differing": differing,
        "differing_only_by_near_ties": ties,
        "tie_tolerance_relative": TIE_TOLERANCE,
        "largest_relative_gap": None if not differing else largest_gap,
        "examples": examples,
    }


def recommend_cli(check: Check, model_dir: Path, library_rows: list) -> dict:
    """recommend.py --all-users on this run's device, checked against the library's top 10."""
    out = check.work / f"recommendations_{check.device.type}.csv"
    command = [sys.executable, str(ROOT / "recommend.py"), "--all-users", "--out", str(out)]
    command += ["--model", str(model_dir), "--db", str(check.store), "--top", str(TOP_K)]
    command += ["--device", check.device.type]
    env = project_env(PYTHONIOENCODING="utf-8")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"recommend.py exited {done.returncode}:\n{done.stderr[-3000:]}")
    by_user: dict[int, list[int]] = {}
    with open(out, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            by_user.setdefault(int(row["user_id"]), []).append(int(row["anime_id"]))
    same = sum(by_user.get(user.user_id) == top_ids(result) for user, result in library_rows)
    return {
        "command": "recommend.py --all-users --device " + check.device.type,
        "wall_seconds": round(wall, 2),
        "users_written": len(by_user),
        "same_top10_as_library": same,
    }


# --- the run -----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> dict:
    check = Check(args)
    print(f"GPU check: device {args.device}, work folder {check.work}, JSON {args.out}")
    if check.unusable:
        print(
            f"No {args.device} here ({check.unusable}): every part but environment is skipped. "
            "`bench/gpu_check.sh --quick --device cpu` rehearses the others on the CPU."
        )
    try:
        check.part("environment", lambda: environment(check), needs_device=False)
        sizes = check.sizes
        check.part(
            "synthetic_store",
            lambda: build_synthetic_store(check.store, sizes.media, sizes.users),
        )
        check.part("spec_default_fp32", lambda: spec_default(check, "spec_default_fp32", False))
        fp32 = check.ok("spec_default_fp32")
        check.part(
            "spec_default_amp",
            lambda: spec_default(check, "spec_default_amp", True),
            cuda_only=True,
            estimate_s=fp32["seconds"] if fp32 else 60.0,
        )
        check.part("ml1m_epoch_time", lambda: ml1m_epoch_time(check), estimate_s=60.0)
        check.part("torchrun_nccl", lambda: torchrun_one_epoch(check), estimate_s=60.0)
        check.part("recommend_all_users", lambda: recommend_all_users(check), estimate_s=40.0)
        check.part(
            "ml1m_precision",
            lambda: ml1m_precision(check),
            estimate_s=ml1m_precision_estimate(check),
        )
    finally:
        check.write()
        if not args.work and not args.keep_work:
            shutil.rmtree(check.work, ignore_errors=True)
    print_summary(check.results)
    print(f"\nWritten: {args.out}")
    return check.results


def headline(name: str, entry: dict) -> str:
    """The one figure of a part worth a line."""
    if entry["status"] != "ok":
        return entry.get("reason") or entry.get("error", "")
    if "steady_epoch_seconds" in entry:
        return (
            f"{entry['steady_epoch_seconds']:.2f} s/epoch, "
            f"{entry['steady_train_sequences_per_second']:.0f} sequences/s ({entry['precision']})"
        )
    if name == "environment":
        return f"{entry.get('gpu', 'no GPU')}, torch {entry['torch']}, CUDA {entry['cuda_build']}"
    if name == "torchrun_nccl":
        return f"{entry['epoch_seconds'][0]:.2f} s for the epoch, backend {entry['backend']}"
    if name == "recommend_all_users":
        top = entry["top10_against_cpu"]
        return f"top 10 identical to the CPU's for {top['identical']}/{top['users']} users"
    if name == "ml1m_precision":
        diff = entry["mixed_minus_float32"]
        return f"val NDCG@10 {diff['precision']} - float32: {diff['last_val_ndcg10']:+.4f}"
    return ""


def print_summary(results: dict) -> None:
    print("\nGPU check summary")
    for name, entry in results["parts"].items():
        print(f"  {name:<20} {entry['status']:<8} {headline(name, entry)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="JSON file (default: %(default)s)"
    )
    parser.add_argument(
        "--ml1m-db",
        metavar="PATH",
        help="a MovieLens-1M store built by bench/movielens.py; its parts are skipped without it",
    )
    parser.add_argument(
        "--ml1m-epochs",
        type=int,
        default=30,
        help="epochs of each ml1m_precision run (default: %(default)s)",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="skip the later optional parts that would end after this (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cuda (default); cpu rehearses the parts that can run on a CPU",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for testing on a CPU")
    parser.add_argument("--work", help="keep stores and outputs here (default: a temporary folder)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.quick and args.ml1m_epochs == parser.get_default("ml1m_epochs"):
        args.ml1m_epochs = 2
    if args.ml1m_epochs < 1:
        parser.error("--ml1m-epochs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run_check(args)
    except KeyboardInterrupt:
        print(f"\nInterrupted; the figures measured so far are in {args.out}", file=sys.stderr)
        return 130
    failed = [name for name, entry in results["parts"].items() if entry["status"] == "error"]
    if failed:
        print(f"Parts that failed: {', '.join(failed)} (their errors are in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
