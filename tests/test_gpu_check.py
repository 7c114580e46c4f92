"""bench/gpu_check.py on the CPU: every part is in the JSON, the CUDA parts skipped with a reason;
a part that fails or would outrun the budget leaves the others' figures; the CPU rehearsal runs
each part that can run without CUDA through the project's trainer, torchrun and recommender."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import torch
from planted import make_store

from bench import gpu_check
from bert4rec import db
from bert4rec.recommender import Recommendation, Recommendations

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


def run(tmp_path, *flags: str) -> tuple[int, dict]:
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--quick", "--out", str(out), "--work", str(tmp_path / "w"), *flags])
    return code, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the parts would run")
def test_without_cuda_every_part_is_recorded_and_the_cuda_ones_skipped_with_a_reason(tmp_path):
    code, record = run(tmp_path, "--ml1m-db", str(tmp_path / "absent.db"))
    assert code == 0
    assert list(record["parts"]) == PARTS
    environment = record["parts"]["environment"]
    assert environment["status"] == "ok" and environment["torch"] == torch.__version__
    assert environment["cuda_available"] is False and environment["cuda_unavailable"]
    for name in PARTS[1:]:
        part = record["parts"][name]
        assert part["status"] == "skipped", name
        assert "needs --device cuda" in part["reason"] and "CUDA" in part["reason"], name
        assert part["what"]
    assert record["device"] == "cuda" and record["quick"] is True


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


@pytest.mark.slow
def test_the_cpu_rehearsal_runs_every_part_that_needs_no_cuda(tmp_path):
    ml1m = make_store(tmp_path / "ml1m.db", users=60)
    code, record = run(tmp_path, "--device", "cpu", "--ml1m-db", str(ml1m), "--ml1m-epochs", "1")
    assert code == 0, {n: p.get("error") for n, p in record["parts"].items()}
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
    assert parts["ml1m_epoch_time"]["estimate_preset_minutes"]["epochs"] == 400
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
    assert estimate["epochs"] == 400 and estimate["minutes"] == round(408 / 60, 1)


def test_a_subprocess_past_its_time_is_killed_with_its_children():
    sleeper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    sleeper += "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)"
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="gave up after 2 s") as failed:
        gpu_check.run_in_own_group([sys.executable, "-c", sleeper], dict(os.environ), 2)
    assert "started" in str(failed.value) and time.perf_counter() - started < 30
