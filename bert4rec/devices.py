"""Where the network runs and in what precision: one policy for training and recommending."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .config import DEVICES, TrainConfig


class DeviceError(Exception):
    """The device asked for is not usable here. The message says what to do."""


def select_device(name: str = "auto", gpu: bool = False) -> torch.device:
    """auto picks cuda, then mps, then cpu; a device named (or gpu=True, which is cuda) must be
    usable, else DeviceError says why and what to do."""
    if gpu and name not in ("auto", "cuda"):
        raise DeviceError(f"--gpu asks for CUDA but --device asks for {name}; give one.")
    wanted = "cuda" if gpu else name
    if wanted not in DEVICES:
        raise DeviceError(f"--device must be one of {', '.join(DEVICES)} (got {name!r})")
    if wanted == "cuda" and not torch.cuda.is_available():
        why = (
            f"this PyTorch ({torch.__version__}) is a CPU-only build"
            if torch.version.cuda is None
            else "no CUDA device is visible (check the NVIDIA driver with nvidia-smi)"
        )
        raise DeviceError(
            f"no usable CUDA GPU: {why}. Install the CUDA build of PyTorch (run setup again on "
            "a machine with an NVIDIA GPU), or use the CPU (leave out --gpu, or --device cpu)."
        )
    mps_ok = torch.backends.mps.is_available()
    if wanted == "mps" and not mps_ok:
        raise DeviceError(
            "--device mps: Apple's Metal backend is not available here; use --device cpu."
        )
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    return torch.device(wanted)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA where it pays off: bf16 on GPUs that compute it natively (Ampere,
    compute capability 8, and newer), fp16 with loss scaling on Volta and Turing (7.x), whose
    tensor cores run it fast; none on older GPUs (a GTX 1060's fp16 is far slower than its
    fp32), nor on cpu or mps."""
    if not config.amp or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16 if major >= 7 else None


def training_autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The training steps' mixed precision: --amp's on CUDA; with --cpu-bf16, bf16 on a CPU that
    computes it natively (elsewhere it is emulated, and slower than float32). Evaluation keeps
    autocast_dtype, float32 on the CPU, so that rankings see no bf16 ties."""
    if device.type == "cpu" and config.cpu_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return autocast_dtype(config, device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
