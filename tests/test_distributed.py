"""Training on two processes with torchrun (gloo, on the CPU) against one process, and the
pieces of bert4rec/distributed.py on their own.

Agreement: with --dropout 0 two ranks train on the same batches with the same gradients as one
process (distributed.py), so the figures agree up to floating-point rounding. Measured after two
epochs: losses within 4e-7, every accuracy and ranking figure identical, weights within 1.3e-5
(Adam divides by the root of small second moments, which magnifies rounding). The tests allow
TOLERANCE and WEIGHT_TOLERANCE.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing
from conftest import ROOT
from planted import make_store
from test_train import flags, read_metrics, reproducible

from bert4rec import checkpoint, distributed, metrics
from bert4rec import train as training
from bert4rec.config import TrainConfig
from bert4rec.data import BERT4RecDataset, MaskedBatch, NextItemCases

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4
MASK = 1000
SETTINGS = {
    "hidden": 64,
    "heads": 2,
    "layers": 1,
    "max_seq_len": 20,
    "batch_size": 8,  # 161 training users: the last batch has one user, rank 1 none
    "lr": 2e-3,
    "val_fraction": 0.2,
    "dropout": 0.0,  # dropout noise is drawn per rank; without it the runs agree closely
    "threads": 1,
    "cpu_bf16": False,  # bf16 rounds a half batch differently from a whole one
    "epochs": 2,
    "checkpoint_every": 1,
}


def torchrun_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port of its own: no clash with other runs
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "ddp_worker.py"),
        *args,
    ]


def torchrun_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "PYTHONIOENCODING": "utf-8",
        **extra,
    }


def run_torchrun(*args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun_command(*args),
        env=torchrun_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def output_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # 43 validation users, 11 test users (ranked on rank 0 alone) and 161 training users
    return make_store(tmp_path_factory.mktemp("store") / "bert.db", users=215)


@pytest.fixture(scope="module")
def one_process(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    config = replace(TrainConfig(), db=str(store), output=str(out), **SETTINGS)
    return out, training.train(config)


@pytest.fixture(scope="module")
def two_ranks(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    writes = tmp_path_factory.mktemp("writes")
    args = ("--db", str(store), "--output", str(out), *flags(SETTINGS))
    result = run_torchrun(*args, WRITES_DIR=str(writes))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result, writes


def test_two_ranks_write_every_output_once(two_ranks, one_process):
    out, result, writes = two_ranks
    assert output_files(out) == output_files(one_process[0])
    assert "checkpoints/checkpoint_epoch_2.pth" in output_files(out)
    assert not list(out.rglob("*.tmp"))
    # Rank 0 wrote every file; rank 1 wrote nothing and opened no log.
    assert not (writes / "rank1.txt").exists()
    written = {
        Path(p).relative_to(out).as_posix() for p in (writes / "rank0.txt").read_text().split()
    }
    assert written == output_files(out)
    log = (out / "logs/training.log").read_text(encoding="utf-8")
    for text in (log, result.stdout):
        assert text.count("Epoch 1/2\n") == 1 and text.count("Epoch 2/2\n") == 1
        assert text.count("Train loss: ") == 2 and text.count("Val loss: ") == 2
    assert "Distributed: 2 processes share each batch of 8 users" in result.stdout
    # One bar per epoch, rank 0's: each bar starts once at 0% (under load tqdm may redraw its
    # last state, so the 100% line can appear twice for one bar).
    assert result.stderr.count("Training:   0%|") == 2
    assert "Training: 100%|##########| 21/21" in result.stderr
    assert read_metrics(out)["processes"] == 2
    assert read_metrics(out)["data"]["train_users"] == 161  # so one rank's last share is empty


def test_two_ranks_agree_with_one_process(two_ranks, one_process):
    two, one = read_metrics(two_ranks[0]), one_process[1].to_dict()
    assert reproducible(two) == pytest.approx(reproducible(one), abs=TOLERANCE)
    saved = checkpoint.load(two_ranks[0] / "checkpoints/checkpoint_epoch_2.pth", kind="training")
    weights = checkpoint.load(one_process[0] / "checkpoints/checkpoint_epoch_2.pth")
    for name, tensor in saved["model_state"].items():  # the unwrapped module's names
        assert torch.allclose(tensor, weights["model_state"][name], atol=WEIGHT_TOLERANCE), name


def test_a_two_rank_checkpoint_resumes_in_one_process(two_ranks, tmp_path):
    out = two_ranks[0]
    ckpt = out / "checkpoints/checkpoint_epoch_1.pth"
    config = training.config_for_resume(str(ckpt), {"output": str(tmp_path)})
    resumed = training.train(config)
    assert resumed.epochs_done == 2
    # Epoch 1 comes from the checkpoint, epoch 2 is trained here: together the two-rank run.
    assert reproducible(resumed.to_dict()) == pytest.approx(
        reproducible(read_metrics(out)), abs=TOLERANCE
    )


def test_a_one_process_checkpoint_resumes_on_two_ranks(one_process, tmp_path):
    out, history = one_process
    ckpt = out / "checkpoints/checkpoint_epoch_1.pth"
    result = run_torchrun("--resume", str(ckpt), "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch 2/2" in result.stdout and "Epoch 1/2" not in result.stdout
    resumed = read_metrics(tmp_path)
    assert reproducible(resumed) == pytest.approx(reproducible(history.to_dict()), abs=TOLERANCE)


def test_an_error_on_one_rank_ends_the_whole_run(store, tmp_path):
    started = time.monotonic()
    args = ("--db", str(store), "--output", str(tmp_path), *flags({**SETTINGS, "epochs": 50}))
    result = run_torchrun(*args, timeout=120, FAIL_RANK="1")
    assert result.returncode != 0
    assert "planted failure on rank 1" in result.stderr
    assert "Training finished" not in result.stdout
    assert time.monotonic() - started < 90  # rank 0 was stopped, not left waiting


@pytest.mark.skipif(os.name == "nt", reason="POSIX signal")
def test_ctrl_c_under_torchrun_saves_the_last_finished_epoch(store, tmp_path):
    settings = {**SETTINGS, "epochs": 1000, "checkpoint_every": 0}
    args = ("--db", str(store), "--output", str(tmp_path), *flags(settings))
    proc = subprocess.Popen(
        torchrun_command(*args),
        env=torchrun_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    for line in proc.stdout:
        if line.startswith("Epoch 3/"):
            # What Ctrl-C in the terminal does: torchrun passes it on to every rank.
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=60)
    assert "Saved the state after epoch" in stdout, stderr[-3000:]
    saved = sorted(tmp_path.glob("checkpoints/checkpoint_epoch_*.pth"))
    assert len(saved) == 1 and checkpoint.load(saved[0], kind="training")["epoch"] >= 2
    assert "[rank0]" not in stderr and "[rank1]" not in stderr  # no worker tracebacks


# --- the pieces --------------------------------------------------------------------------------


def batches(shuffle: bool = True) -> BERT4RecDataset:
    """Ten users in batches of 4, 4 and 2 (with three ranks, the last share of rank 2 is empty)."""
    sequences = [np.arange(1, 4 + i) + 10 * i for i in range(10)]
    return BERT4RecDataset(
        sequences,
        max_seq_len=10,
        batch_size=4,
        mask_prob=0.3,
        last_item_mask_prob=0.1,
        mask_index=MASK,
        seed=3,
        shuffle=shuffle,
    )


def rows(batch: MaskedBatch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each row with something masked, as (inputs, labels) without its padding."""
    found = []
    for inputs, labels in zip(batch.inputs.tolist(), batch.labels.tolist()):
        width = sum(1 for item in inputs if item != 0)
        if any(labels):
            found.append((tuple(inputs[-width:]), tuple(labels[-width:])))
    return found


def user_of(row: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[int, ...]:
    inputs, labels = row
    return tuple(label if item == MASK else item for item, label in zip(inputs, labels))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_the_shares_of_a_batch_are_disjoint_and_together_are_the_batch(world_size):
    dataset = batches()
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        users = []
        for b in range(len(dataset)):
            whole = dataset[b]
            shares = [distributed.share_of_batch(whole, r, world_size) for r in range(world_size)]
            # Same users, same masks, each row in exactly one share.
            assert Counter(row for s in shares for row in rows(s)) == Counter(rows(whole))
            users += [user_of(row) for s in shares for row in rows(s)]
        assert sorted(users) == sorted(tuple(s.tolist()) for s in dataset.sequences)


def test_the_shares_depend_only_on_the_epoch():
    first, again = batches(), batches()
    first.set_epoch(4)
    again.set_epoch(4)
    shares = [distributed.RankShare(d, 1, 2) for d in (first, again)]
    for b in range(len(first)):
        assert rows(shares[0][b]) == rows(shares[1][b])
    again.set_epoch(5)
    assert [rows(shares[0][b]) for b in range(3)] != [rows(shares[1][b]) for b in range(3)]


def test_an_empty_share_is_one_row_with_nothing_masked():
    dataset = batches(shuffle=False)
    last = dataset[len(dataset) - 1]  # two users
    placeholder = distributed.share_of_batch(last, 2, 3)
    assert placeholder.inputs.shape[0] == 1 and not placeholder.labels.any()
    assert distributed.shared_rows(placeholder.labels) == 0
    assert distributed.shared_rows(last.labels) == 2
    logits = torch.zeros(0, 8, requires_grad=True)
    loss = distributed.summed_loss(logits, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    # A share is padded to its own longest row only.
    share = distributed.share_of_batch(last, 1, 3)
    assert share.inputs.shape[1] == int((share.inputs != 0).sum())


def test_in_one_process_every_helper_hands_back_its_input():
    assert not distributed.launched_by_torchrun()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (
        0,
        1,
        True,
    )
    dataset = batches()
    assert distributed.share(dataset) is dataset
    accuracy = metrics.TopKAccuracy((1, 5))
    loss_sum = torch.tensor(3.0)
    assert distributed.sum_phase(loss_sum, accuracy, 7) == (loss_sum, accuracy, 7)
    assert distributed.mean_over_ranks(torch.tensor(6.0), 4).item() == 1.5
    cases = NextItemCases([np.array([1])], np.array([2]))
    assert distributed.rank_in_shares(cases, lambda c: torch.tensor([9])).tolist() == [9]
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    with distributed.process_group():
        assert not dist.is_initialized()
    assert distributed.leave(3) == 3  # only torchrun's processes end there


def reduce_on_two_ranks(rank: int, init_file: str) -> None:
    """Run in each of two spawned processes (test below)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        assert distributed.all_reduce_sum(torch.tensor([rank + 1.0, 10.0])).tolist() == [3, 20]

        accuracy = metrics.TopKAccuracy((1, 5))
        accuracy.hits, accuracy.positions = torch.tensor([rank, 2]), 3 + rank
        loss_sum, summed, sequences = distributed.sum_phase(
            torch.tensor(1.5 * (rank + 1)), accuracy, 4 + rank
        )
        assert loss_sum.item() == 4.5 and sequences == 9
        assert summed.hits.tolist() == [1, 4] and summed.positions == 7
        assert summed.result() == {1: 1 / 7, 5: 4 / 7}

        # Each rank backpropagates its sum x 2 / all positions: DDP's average is the mean.
        shares = distributed.mean_over_ranks(torch.tensor(6.0 * (rank + 1)), 2 + rank)
        both = distributed.all_reduce_sum(shares.view(1)) / 2
        assert both.item() == pytest.approx((6.0 + 12.0) / 5)

        cases = NextItemCases([np.array([i]) for i in range(5)], np.arange(5) + 10)
        seen = []

        def rank_cases(shared: NextItemCases) -> torch.Tensor:
            seen.extend(shared.targets.tolist())
            return torch.as_tensor(shared.targets) * 2

        assert distributed.rank_in_shares(cases, rank_cases).tolist() == [20, 22, 24, 26, 28]
        assert seen == ([10, 12, 14] if rank == 0 else [11, 13])

        distributed.seed_dropout(seed=1, epoch=1)
        draws = [torch.zeros(2) for _ in range(2)]
        dist.all_gather(draws, torch.rand(2))
        assert not torch.equal(draws[0], draws[1])  # each rank its own dropout noise
    finally:
        dist.destroy_process_group()


def test_the_reductions_over_two_processes(tmp_path):
    torch.multiprocessing.spawn(reduce_on_two_ranks, args=(str(tmp_path / "init"),), nprocs=2)
