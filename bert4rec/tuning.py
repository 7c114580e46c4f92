"""Process-wide tuning for training on a CPU, applied by the scripts that own their process
(train_model.py, the bench workers) and never by `train()`: a library call must not change the
allocator, the environment or the thread count of whoever called it (a notebook, a test)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import torch

from .config import TrainConfig
from .devices import DeviceError, select_device


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next allocation instead of handing it back.

    A training step allocates and frees the same large activations every time (attention
    weights and dropout masks of tens of MB). glibc serves blocks that large with mmap and
    unmaps them when freed, so every step faults in and zeroes fresh pages again: on the 2-core
    benchmark machine that was a third of a CPU training step (bench/bench_speed.py). Raising
    the mmap and trim thresholds keeps the memory in the heap for reuse. Linux with glibc only;
    True when applied."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30))


def bound_onednn_cache() -> None:
    """Keep oneDNN's primitive cache small. oneDNN (PyTorch's CPU kernels, bf16 ones among them)
    keeps a compiled primitive with its scratch memory for every input shape it meets, 1024 by
    default; length buckets and the varying count of masked positions bring new shapes every
    step, so the cache alone grew a long run by gigabytes (ML-1M, four epochs: peak RSS 3.5 GB
    with the default, 2.4 GB with 64, and no slower). oneDNN reads the variable at its first
    use; a value the user set wins."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


def tune_for_training(config: TrainConfig, *, keep_freed: bool = True) -> list[str]:
    """--threads, and on a CPU the two settings above (keep_freed=False leaves glibc alone, for
    the benchmark that measures what it brings). Call before the first tensor op. Returns what
    was applied, for the log. An unusable device is left for train() to report."""
    applied = []
    if config.threads:
        torch.set_num_threads(config.threads)
        applied.append(f"{config.threads} threads")
    try:
        on_cpu = select_device(config.device, config.gpu).type == "cpu"
    except DeviceError:  # train() reports it, with what to do
        return applied
    if on_cpu:
        bound_onednn_cache()
        applied.append("oneDNN cache 64")
        if keep_freed and keep_freed_memory():
            applied.append("glibc keeps freed memory")
    return applied
