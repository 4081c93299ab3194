"""Tokens per second and model FLOPs utilisation (MFU).

MFU = achieved model FLOPs per second per device / the device's peak dense bf16 FLOPs. The peak comes
from a table keyed by the device name that CUDA reports; an unknown device (or a CPU) has no peak, and then
MFU is None rather than a made-up number.
"""

from __future__ import annotations

import time

import torch

# Peak dense (no sparsity) bf16 tensor-core FLOP/s, from NVIDIA's data sheets. Order matters: the first
# pattern contained in the device name wins, so the specific variants come before the generic ones.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),  # note: "A100" is matched above, so this only sees A10
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def peak_flops(device: torch.device, dtype: torch.dtype | None = torch.bfloat16) -> float | None:
    """Peak FLOP/s of `device` for bf16 matmuls, or None when unknown (CPU, other dtypes, unlisted GPUs)."""
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def peak_flops_for_name(name: str) -> float | None:
    """Look up a CUDA device name (e.g. "NVIDIA H100 80GB HBM3") in the peak table."""
    upper = name.upper()
    for pattern, flops in PEAK_BF16_FLOPS:
        if pattern in upper:
            return flops
    return None


class ThroughputMeter:
    """Counts global tokens over training time only: evaluation and checkpointing are paused out."""

    def __init__(self, flops_per_token: float, world_size: int, peak: float | None):
        self.flops_per_token = flops_per_token
        self.world_size = world_size
        self.peak = peak
        self._tokens = 0
        self._seconds = 0.0
        self._started: float | None = None

    def resume(self) -> None:
        self._started = time.perf_counter()

    def pause(self) -> None:
        if self._started is not None:
            self._seconds += time.perf_counter() - self._started
            self._started = None

    def add_tokens(self, global_tokens: int) -> None:
        self._tokens += global_tokens

    def read_and_reset(self) -> tuple[float, float | None]:
        """(tokens per second across all ranks, MFU or None) since the last call."""
        tps = self._tokens / self._seconds if self._seconds > 0 else float("nan")
        mfu = None
        if self.peak is not None and self._seconds > 0:
            mfu = self.flops_per_token * tps / (self.peak * self.world_size)
        self._tokens, self._seconds = 0, 0.0
        return tps, mfu
