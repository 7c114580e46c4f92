"""Training on several processes with torchrun: DistributedDataParallel and what goes around it.

    torchrun --standalone --nproc_per_node 4 train_model.py --gpu ...

A plain `python train_model.py` has no process group; every function here then does what one
process needs (nothing, or hands its input back), so train.py calls them unconditionally.

How a run is split over W processes (ranks)
- --batch-size is global: that many users per optimiser step in all. The batches are the ones a
  single process would train on (which users and which masks depend only on seed, epoch and
  batch number; data.BERT4RecDataset), and rank r takes rows r, r + W, r + 2W ... of each. So
  the steps per epoch, the learning-rate schedule and what one step learns do not depend on W.
- Each rank backpropagates its summed loss divided by the masked positions of all ranks (times
  W, because DDP averages gradients): the gradient is the one of the whole batch in one process.
- A rank whose share of a batch is empty (the last batch of an epoch can have fewer users than
  there are ranks) runs one user of the batch with nothing masked: DDP needs every rank in every
  step, and the row adds nothing to the loss, the gradient or any count.
- Losses, Top-K hits, masked positions and sequence counts are summed over the ranks at the end
  of each phase, and the validation users are ranked in shares and their ranks gathered, so every
  rank holds the same TrainingHistory and takes the same decisions (best model, early stopping, a
  diverged loss) at the same step. Only rank 0 prints, logs and writes files.
- Dropout draws from torch's generator seeded from (seed, epoch, rank) at the start of each
  epoch, so a checkpoint needs no per-rank random state: resuming on the same number of ranks
  repeats the uninterrupted run exactly; on another number, the batches, masks, schedule,
  weights and optimiser state continue identically and only dropout noise differs (with
  --dropout 0 the runs agree up to floating-point rounding).
- Failures: torchrun stops every rank when one exits with an error, and each collective gives up
  after COLLECTIVE_TIMEOUT (a node lost in a multi-node run), so no rank waits forever; the
  process group is always destroyed on the way out, and a finished rank ends with os._exit
  (leave) rather than the interpreter's teardown, which sometimes aborted it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .data import BERT4RecDataset, MaskedBatch, NextItemCases
from .metrics import TopKAccuracy
from .model import masked_loss
from .vocab import PAD_INDEX

# Longer than any honest wait at a collective (rank 0 writing plots and checkpoints while the
# others wait for the next step), short enough that a lost node ends the run the same hour.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
DROPOUT_STREAM = 2  # data.py seeds [seed, epoch, 0] for the order and [seed, epoch, 1, b] masks


# --- the process group -------------------------------------------------------------------------


def launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.run) sets these for every process it starts."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join torchrun's process group for the block and always leave it. Outside torchrun, or
    when the caller already set one up, there is nothing to do."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    # CPU tensors travel over gloo, CUDA tensors over NCCL (one group, both backends).
    gpus = torch.cuda.is_available() and dist.is_nccl_available()
    dist.init_process_group("cpu:gloo,cuda:nccl" if gpus else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def leave(code: int) -> int:
    """The exit status for the command line; under torchrun, end the process here instead.

    Why: a gloo worker thread drops its reference to a collective's tensors a moment after the
    collective completes, and that needs the GIL. When the interpreter is already tearing down
    by then, the thread is stopped inside C++ and the rank aborts ("terminate called without an
    active exception": 5 of 473 two-rank runs in a loop, rank 1 just after its last
    validation), and torchrun then kills the ranks still writing. By this point every file is
    written and closed and the group destroyed; os._exit skips only that teardown."""
    if not launched_by_torchrun():
        return code
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0: the one process that prints, logs and writes files."""
    return rank() == 0


def local_rank() -> int:
    """This process's number on its machine (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def device_problem(device_type: str) -> str | None:
    """Why this process cannot train on `device_type` under torchrun, or None."""
    if not launched_by_torchrun():
        return None
    if device_type == "mps":
        return (
            "torchrun cannot share work over mps (it has no distributed backend); use --device cpu."
        )
    if device_type == "cuda" and local_rank() >= torch.cuda.device_count():
        return (
            f"torchrun started more processes on this machine than it has GPUs "
            f"({torch.cuda.device_count()}); give --nproc_per_node at most that."
        )
    return None


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun each process on a machine drives its own GPU: cuda:LOCAL_RANK."""
    if device.type != "cuda" or not dist.is_initialized():
        return device
    local = torch.device("cuda", local_rank())
    torch.cuda.set_device(local)
    return local


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the training steps call: DistributedDataParallel around `model` (which keeps
    the weights, and is what checkpoints save) under torchrun, else `model` itself."""
    if not dist.is_initialized():
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


@contextlib.contextmanager
def silenced(logger: logging.Logger) -> Iterator[None]:
    """`logger` prints and writes nothing in the block (the ranks other than 0)."""
    quiet = logging.NullHandler()
    logger.addHandler(quiet)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate


def seed_dropout(seed: int, epoch: int) -> None:
    """Seed torch's generator (dropout, on the CPU and every GPU) from (seed, epoch, rank)."""
    entropy = [seed, epoch, DROPOUT_STREAM, rank()]
    torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))


# --- sharing out the batches -------------------------------------------------------------------


def rows_of_rank(batch_rows: int, rank: int, world_size: int) -> slice:
    return slice(rank, batch_rows, world_size)


def share_of_batch(batch: MaskedBatch, rank: int, world_size: int) -> MaskedBatch:
    """Rows rank, rank + world_size, ... of a batch, padded only to their own longest row. An
    empty share becomes the batch's first row with nothing masked (module docstring)."""
    rows = rows_of_rank(len(batch.inputs), rank, world_size)
    inputs, labels = batch.inputs[rows], batch.labels[rows]
    if len(inputs) == 0:
        inputs, labels = batch.inputs[:1], torch.zeros_like(batch.labels[:1])
    width = int((inputs != PAD_INDEX).sum(dim=1).max())
    return MaskedBatch(inputs[:, -width:], labels[:, -width:])


class RankShare(torch.utils.data.Dataset):
    """This rank's share of every batch of a BERT4RecDataset; set_epoch goes to that dataset."""

    def __init__(self, batches: BERT4RecDataset, rank: int, world_size: int) -> None:
        self.batches = batches
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> MaskedBatch:
        return share_of_batch(self.batches[b], self.rank, self.world_size)


def share(batches: BERT4RecDataset) -> torch.utils.data.Dataset:
    """What this rank trains or validates on: its RankShare, or all of it in one process."""
    if world_size() == 1:
        return batches
    return RankShare(batches, rank(), world_size())


def shared_rows(labels: torch.Tensor) -> int:
    """Sequences in a (CPU) share: rows with a masked title; a placeholder row has none."""
    return int((labels != PAD_INDEX).any(dim=1).sum())


# --- adding up over the ranks ------------------------------------------------------------------


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over every rank (a new tensor, on the same device)."""
    if world_size() == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def summed_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss summed over this share's masked positions; a share with none gives 0, still
    connected to every weight (DDP expects a gradient for each in every step)."""
    if targets.numel() == 0:
        return logits.float().sum()
    return masked_loss(logits, targets) * targets.numel()


def mean_over_ranks(loss_sum: torch.Tensor, positions: int) -> torch.Tensor:
    """What this rank backpropagates so that DDP's average of the gradients is the gradient of
    the loss averaged over the masked positions of all ranks."""
    if world_size() == 1:
        return loss_sum / positions
    counted = torch.full((), float(positions), device=loss_sum.device)  # a fill: no GPU sync
    return loss_sum * world_size() / all_reduce_sum(counted)


def sum_phase(
    loss_sum: torch.Tensor, accuracy: TopKAccuracy, sequences: int
) -> tuple[torch.Tensor, TopKAccuracy, int]:
    """A phase's loss sum, Top-K hits, masked positions and sequences, added up over the ranks."""
    if world_size() == 1:
        return loss_sum, accuracy, sequences
    hits = torch.zeros(len(accuracy.ks), dtype=torch.float64, device=loss_sum.device)
    hits += torch.as_tensor(accuracy.hits, device=loss_sum.device)
    counts = torch.tensor([accuracy.positions, sequences], dtype=torch.float64)
    totals = all_reduce_sum(torch.cat([loss_sum.double().view(1), hits, counts.to(hits.device)]))
    summed = TopKAccuracy(accuracy.ks)
    summed.hits = totals[1:-2].round().long()
    summed.positions = int(totals[-2])
    return totals[0], summed, int(totals[-1])


def rank_in_shares(
    cases: NextItemCases, rank_cases: Callable[[NextItemCases], torch.Tensor]
) -> torch.Tensor:
    """[cases] ranks from rank_cases (metrics.rank_next_items), each rank ranking every W-th case
    and all of them gathered (exact: ranks are whole numbers)."""
    if world_size() == 1:
        return rank_cases(cases)
    mine = np.arange(rank(), len(cases.targets), world_size())
    ranks = torch.zeros(len(cases.targets), dtype=torch.long)
    ranks[torch.from_numpy(mine)] = rank_cases(
        NextItemCases([cases.histories[i] for i in mine], cases.targets[mine])
    ).long()
    return all_reduce_sum(ranks)
