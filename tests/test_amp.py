"""--amp: which precision each kind of GPU gets (the CUDA paths themselves need a GPU)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bert4rec import devices
from bert4rec.config import TrainConfig

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((6, 1), None),  # Pascal (GTX 1060): fp16 is far slower than fp32 there
        ((7, 5), torch.float16),  # Turing: tensor cores, fp16 with loss scaling
        ((8, 6), torch.bfloat16),  # Ampere: native bf16, no scaling needed
        ((9, 0), torch.bfloat16),
    ],
)
def test_mixed_precision_where_the_gpu_runs_it_fast(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert devices.autocast_dtype(TrainConfig(), CUDA) == expected
    assert devices.autocast_dtype(replace(TrainConfig(), amp=False), CUDA) is None


def test_no_mixed_precision_off_cuda():
    for device in ("cpu", "mps"):
        assert devices.autocast_dtype(TrainConfig(), torch.device(device)) is None
