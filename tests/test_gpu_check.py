"""bench/gpu_check.py on the CPU: every part is in the JSON, the CUDA parts skipped with a reason;
a part that fails or would outrun the budget leaves the others' figures; the CPU rehearsal runs
each part that can run without CUDA through the project's trainer, torchrun and recommender.
bench/gpu_check.sh runs from a plain checkout with a Python that has the packages but not the
project installed, as a GPU machine's Python would."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import plain_checkout
from planted import make_store

from bench import gpu_check
from bert4rec import db
from bert4rec.config import PRESETS
from bert4rec.recommender import Recommendation, Recommendations

PRESET_EPOCHS = PRESETS["ml1m"]["epochs"]

PARTS = [
    "environment",
    "synthetic_store",
    "spec_default_fp32",
    "spec_default_amp",
    "ml1m_epoch_time",
    "torchrun_nccl",
    "recommend_all_users",
    "ml1m_precision",
]
PACKAGES = ("torch", "numpy", "requests", "tqdm", "matplotlib")

needs_bash = pytest.mark.skipif(
    os.name == "nt" or shutil.which("bash") is None, reason="bench/gpu_check.sh needs bash"
)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A Python with this interpreter's packages but not the project: a venv without pip whose
    .pth file names the folders that hold the packages. A folder named in a .pth file goes on
    sys.path, but the .pth files inside it are not read, so the editable install's finder
    (a .pth file in site-packages) is not there."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    folders = {str(Path(importlib.util.find_spec(n).origin).parent.parent) for n in PACKAGES}
    (Path(purelib) / "packages_only.pth").write_text("\n".join(sorted(folders)) + "\n")
    lacks = "import importlib.util as u, sys; sys.exit(u.find_spec('bert4rec') is not None)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if subprocess.run([str(python), "-c", lacks], cwd=venv, env=env).returncode != 0:
        pytest.skip("the project is installed into the packages' own folder (not editable)")
    return python


def run_sh(checkout: Path, python: Path, *flags: str, **env: str) -> subprocess.CompletedProcess:
    """bench/gpu_check.sh in `checkout` with `python`, PYTHONPATH unset as on a fresh machine."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        ["bash", str(checkout / "bench" / "gpu_check.sh"), *flags],
        env={**clean, "PYTHON": str(python), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_bash
@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the parts would run")
def test_from_a_plain_checkout_without_cuda_the_cuda_parts_are_skipped(tmp_path, bare_python):
    checkout = plain_checkout(tmp_path / "checkout")
    inter = tmp_path / "ml-1m.inter"  # a well-formed file that is not MovieLens-1M
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1m_1\tA\t5\t1\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    done = run_sh(checkout, bare_python, OUT=str(out), ML1M_INTER=str(inter))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # bench/movielens.py ran from the checkout, refused the file, and the check went on
    assert "not MovieLens-1M as expected" in done.stderr
    assert "ML-1M parts will be skipped" in done.stdout
    assert not (checkout / "data" / "ml1m.db").exists()
    assert "every part but environment is skipped" in done.stdout
    assert (out / "gpu_check.log").read_text(encoding="utf-8").endswith(done.stdout[-200:])
    record = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert list(record["parts"]) == PARTS
    environment = record["parts"]["environment"]
    assert environment["status"] == "ok" and environment["torch"] == torch.__version__
    assert environment["cuda_available"] is False and environment["cuda_unavailable"]
    for name in PARTS[1:]:
        part = record["parts"][name]
        assert part["status"] == "skipped", name
        assert "needs --device cuda" in part["reason"] and "CUDA" in part["reason"], name
        assert part["what"]
    assert record["device"] == "cuda" and record["quick"] is False


@needs_bash
def test_a_python_without_the_packages_is_refused_with_what_it_lacks(tmp_path):
    venv = tmp_path / "empty"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = run_sh(Path(gpu_check.ROOT), venv / "bin" / "python", OUT=str(tmp_path / "out"))
    assert done.returncode == 1
    lacks = done.stderr.partition(" lacks ")[2].partition(";")[0].split()
    assert sorted(lacks) == sorted(PACKAGES), done.stderr
    assert not (tmp_path / "out").exists()


def test_a_failing_part_is_recorded_and_a_part_past_the_budget_skipped(tmp_path):
    out = tmp_path / "g.json"
    flags = ["--device", "cpu", "--out", str(out), "--work", str(tmp_path / "w")]
    check = gpu_check.Check(gpu_check.parse_args([*flags, "--budget-seconds", "60"]))

    def broken() -> dict:
        raise RuntimeError("planted failure")

    check.part("spec_default_fp32", broken)
    written = json.loads(out.read_text(encoding="utf-8"))["parts"]["spec_default_fp32"]
    assert written["status"] == "error" and "planted failure" in written["error"]
    assert "RuntimeError" in written["traceback"]
    assert check.part("spec_default_amp", lambda: {"x": 1}, estimate_s=30)["x"] == 1
    late = check.part("torchrun_nccl", lambda: {"x": 2}, estimate_s=3600)
    assert late["status"] == "skipped" and late["reason"].startswith("budget:")
    amp = check.part("spec_default_amp", lambda: {"x": 3}, cuda_only=True)
    assert amp["status"] == "skipped" and "needs CUDA" in amp["reason"]
    parts = json.loads(out.read_text(encoding="utf-8"))["parts"]
    assert [parts[n]["status"] for n in ("spec_default_fp32", "torchrun_nccl")] == [
        "error",
        "skipped",
    ]


def test_a_figure_json_cannot_hold_is_written_as_text_and_the_others_kept(tmp_path):
    out = tmp_path / "g.json"
    args = gpu_check.parse_args(["--device", "cpu", "--out", str(out), "--work", str(tmp_path)])
    check = gpu_check.Check(args)
    check.part("spec_default_amp", lambda: {"last_val_loss": float("nan"), "gaps": [float("inf")]})
    check.part("torchrun_nccl", lambda: {"epoch_seconds": [1.5]})
    parts = json.loads(out.read_text(encoding="utf-8"))["parts"]
    assert parts["spec_default_amp"]["last_val_loss"] == "nan"
    assert parts["spec_default_amp"]["gaps"] == ["inf"]
    assert parts["torchrun_nccl"]["epoch_seconds"] == [1.5]


def rows(*tops: list[tuple[int, float]]) -> list:
    """(user, Recommendations) rows as recommend_all_users gives them, one per list of
    (anime_id, probability), users 1, 2, ..."""
    return [
        (
            db.StoredUserList(user, f"u{user}", ()),
            Recommendations(
                tuple(Recommendation(r, db.Anime(a), p) for r, (a, p) in enumerate(top, 1)),
                5,
                (),
            ),
        )
        for user, top in enumerate(tops, start=1)
    ]


def test_top10_comparison_tells_near_ties_from_real_differences():
    base = [(i, 0.5 / i) for i in range(1, 21)]
    tied = [*base[:4], (6, 0.1), (5, 0.1 + 1e-6), *base[6:]]  # 5 and 6 nearly tied
    base_tied = [*base[:4], (5, 0.1 + 1e-6), (6, 0.1), *base[6:]]
    swapped = [base[1], base[0], *base[2:]]  # 0.5 and 0.25: not a tie
    outsider = [*base[:9], (99, 0.01)]  # a title outside the CPU's top 20
    cpu = rows(base, base_tied, base, base)
    gpu = rows(base, tied, swapped, outsider)
    result = gpu_check.compare_top(cpu, gpu)
    assert result["users"] == 4 and result["identical"] == 1 and result["differing"] == 3
    assert result["identical_share"] == 0.25
    assert result["differing_only_by_near_ties"] == 1
    assert result["largest_relative_gap"] == float("inf")
    assert [e["user_id"] for e in result["examples"]] == [2, 3, 4]


@needs_bash
@pytest.mark.slow
def test_the_cpu_rehearsal_from_a_plain_checkout_runs_every_part_that_needs_no_cuda(
    tmp_path, bare_python
):
    """Every step the check runs (training here, torchrun train_model.py, recommend.py) finds
    the project's files with the project not installed."""
    checkout = plain_checkout(tmp_path / "checkout")
    ml1m = make_store(tmp_path / "ml1m.db", users=60)
    flags = ["--quick", "--device", "cpu", "--ml1m-db", str(ml1m), "--ml1m-epochs", "1"]
    done = run_sh(checkout, bare_python, *flags, OUT=str(tmp_path / "out"))
    record = json.loads((tmp_path / "out" / "gpu_check.json").read_text(encoding="utf-8"))
    errors = {n: p.get("error") for n, p in record["parts"].items() if "error" in p}
    assert done.returncode == 0, (errors, done.stdout[-2000:], done.stderr[-2000:])
    assert "ML-1M: from --ml1m-db as given" in done.stdout
    parts = record["parts"]
    assert list(parts) == PARTS
    assert {n: p["status"] for n, p in parts.items() if p["status"] != "ok"} == {
        "spec_default_amp": "skipped"
    }
    assert parts["synthetic_store"]["users_loaded"] > 0
    spec = parts["spec_default_fp32"]
    assert spec["precision"] == "float32" and spec["epochs"] == 1
    assert spec["steady_train_sequences_per_second"] > 0 and spec["epoch_seconds"][0] > 0
    assert spec["settings"]["device"] == "cpu" and spec["data"]["train_users"] > 0
    assert parts["ml1m_epoch_time"]["estimate_preset_minutes"]["epochs"] == PRESET_EPOCHS
    torchrun = parts["torchrun_nccl"]
    assert torchrun["backend"] == "gloo" and torchrun["processes"] == 1
    assert len(torchrun["epoch_seconds"]) == 1 and torchrun["one_process_first_epoch_seconds"] > 0
    recommended = parts["recommend_all_users"]
    users = recommended["users"]
    assert users > 0 and recommended["top10_against_cpu"]["identical_share"] == 1.0
    assert recommended["cli"]["same_top10_as_library"] == users
    precision = parts["ml1m_precision"]
    assert set(precision["runs"]) == {"float32", "mixed"}
    assert precision["runs"]["float32"]["settings"]["split"] == "leave-one-out"
    assert "test_ndcg10_of_best" in precision["runs"]["mixed"]
    assert "last_val_ndcg10" in precision["mixed_minus_float32"]


def test_the_preset_estimate_is_a_line_through_two_runs():
    short = {"wall_seconds": 10.0, "epochs": 2}
    long = {"wall_seconds": 38.0, "epochs": 30}
    estimate = gpu_check.preset_estimate(short, long)
    assert estimate["per_epoch_seconds"] == 1.0 and estimate["fixed_seconds"] == 8.0
    assert estimate["epochs"] == PRESET_EPOCHS
    assert estimate["minutes"] == round((8 + PRESET_EPOCHS) / 60, 1)


def test_a_subprocess_past_its_time_is_killed_with_its_children():
    sleeper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    sleeper += "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)"
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="gave up after 2 s") as failed:
        gpu_check.run_in_own_group([sys.executable, "-c", sleeper], dict(os.environ), 2)
    assert "started" in str(failed.value) and time.perf_counter() - started < 30
