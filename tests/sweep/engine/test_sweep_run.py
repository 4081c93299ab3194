"""The sweep driver's pieces that need no cluster: the demo default, concurrency sizing, trial configs, the
per-rank checkpoint staging of the Ray worker function. The full `sweep run` on real Ray is exercised by
tests/sweep/engine/test_seed_groups.py and tests/sweep/engine/test_resume.py."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from search_spaces.errors import ConfigError
from sweep.commands.run import load, summary
from sweep.config import ResourcesSection, SweepConfig, load_sweep_config
from sweep.config.trial import trial_spec
from sweep.core.layout import sweep_exists
from sweep.engine.group_trial import seed_trainer_config, train_run_name
from sweep.engine.resources import concurrency, group_resources
from trainable.config import TrainConfig
from trainable.ray_trainable import RayReportHooks
from trainable.report_history import HISTORY_FILE

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import tiny_sweep  # noqa: E402
from sweep.core.trial_spec import TrialSpec


def test_no_argument_runs_the_packaged_demo(tmp_path: Path) -> None:
    args = argparse.Namespace(config=None, storage=str(tmp_path), name="mine", resume=False, overwrite=False)
    cfg = load(args)
    assert cfg.name == "mine" and cfg.storage == str(tmp_path.resolve())
    assert cfg.trainer == load_sweep_config().trainer and cfg.trainer.data.bundled
    text = summary(cfg, 4, 0)
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mine/mlflow.db" in text
    assert "sweep resume mine --storage" in text


def test_concurrency_fits_the_cluster_and_refuses_what_never_fits(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path, max_concurrent_trials=4))
    assert group_resources(cfg).cpus == 2.0  # 2 seeds x 2 workers x 0.5
    assert concurrency(cfg, {"CPU": 2.0}) == 1
    assert concurrency(cfg, {"CPU": 5.0}) == 2
    assert concurrency(cfg, {"CPU": 64.0}) == 4  # the configured maximum
    gpu = replace(cfg, resources=ResourcesSection(workers=4, use_gpu=True, cpus_per_worker=1.0))
    assert concurrency(gpu, {"CPU": 96.0, "GPU": 8.0}) == 1  # 2 seeds x 4 GPUs fill an 8-GPU node
    with pytest.raises(ConfigError) as err:
        concurrency(cfg, {"CPU": 1.0})
    assert err.value.field == "resources"


def test_each_seed_run_gets_the_group_schedule_and_its_own_seed(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(tiny_sweep(tmp_path))
    trial = {**trial_spec(cfg).to_config(), "schedule": {"preset": "constant"}, "baseline": "constant", "seeds": [0, 1]}
    assert trial["train_storage"] == f"{cfg.sweep_dir}/train"
    for seed in (0, 1):
        tc = TrainConfig.from_dict(seed_trainer_config(TrialSpec.from_config(trial), seed))
        assert tc.seed == seed and tc.data_seed == seed and tc.schedule == {"preset": "constant"}
    assert train_run_name("abc123", 1) == "abc123-seed1"
    assert not sweep_exists(cfg.storage, cfg.name)


def test_each_rank_uploads_only_its_own_checkpoint_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints" / "step_00000008"
    ckpt.mkdir(parents=True)
    for name in ("model.pt", "optimizer.pt", "meta.json", "rank0.pt", "rank1.pt"):
        (ckpt / name).write_text(name)
    hooks0 = RayReportHooks(0, tmp_path)
    hooks0.history.add({"step": 4, "val_loss": 2.5})
    hooks0.history.add({"step": 8, "val_loss": 1.5})
    up0 = hooks0._stage(ckpt, {"step": 8, "val_loss": 1.5})
    up1 = RayReportHooks(1, tmp_path)._stage(ckpt, {"step": 8})
    assert sorted(p.name for p in up0.iterdir()) == sorted(["meta.json", "model.pt", "optimizer.pt", "rank0.pt",
                                                            HISTORY_FILE])
    assert sorted(p.name for p in up1.iterdir()) == ["rank1.pt"]
    # Rank 0's upload carries the run's whole report history (replayed after a restart).
    assert [r["step"] for r in json.loads((up0 / HISTORY_FILE).read_text())] == [4, 8]
    assert (up1 / "rank1.pt").read_text() == "rank1.pt"
