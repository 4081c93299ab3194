"""Small pieces of the training loop: divergence rule, peak-FLOPs table and the throughput meter."""

from __future__ import annotations

import math
import time

import pytest
import torch

from trainable.config import TrainConfig
from trainable.throughput import ThroughputMeter, peak_flops, peak_flops_for_name
from trainable.train import diverged


def test_divergence_rule() -> None:
    cfg = TrainConfig.from_dict({"divergence": {"margin": 2.0, "max_loss": 20.0}})
    assert diverged(float("nan"), False, 10.0, cfg)
    assert diverged(float("inf"), False, 10.0, cfg)
    assert diverged(5.0, True, 10.0, cfg)  # another rank saw a non-finite loss
    assert diverged(12.5, False, 10.0, cfg)  # initial + margin exceeded
    assert not diverged(11.9, False, 10.0, cfg)
    loose = TrainConfig.from_dict({"divergence": {"margin": None, "max_loss": 20.0}})
    assert not diverged(19.0, False, 1.0, loose) and diverged(21.0, False, 1.0, loose)


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("Some Future GPU", None),
    ],
)
def test_peak_flops_table(name: str, peak: float | None) -> None:
    assert peak_flops_for_name(name) == peak


def test_cpu_has_no_peak_and_no_mfu() -> None:
    assert peak_flops(torch.device("cpu")) is None
    meter = ThroughputMeter(flops_per_token=1e6, world_size=2, peak=None)
    meter.resume()
    meter.add_tokens(1000)
    time.sleep(0.01)
    meter.pause()
    tps, mfu = meter.read_and_reset()
    assert mfu is None and 0 < tps < 1000 / 0.01


def test_meter_counts_only_unpaused_time_and_computes_mfu() -> None:
    meter = ThroughputMeter(flops_per_token=1e9, world_size=2, peak=1e12)
    t0 = time.perf_counter()
    meter.resume()
    time.sleep(0.05)
    meter.pause()
    t1 = time.perf_counter()
    time.sleep(0.2)  # e.g. an evaluation: not counted
    meter.add_tokens(100)
    tps, mfu = meter.read_and_reset()
    assert 100 / tps <= t1 - t0  # the paused 0.2 s is not in the denominator
    assert 100 / tps >= 0.05
    assert mfu == pytest.approx(1e9 * tps / (1e12 * 2))
    assert math.isnan(meter.read_and_reset()[0])  # reset
