"""Sweep config validation: every bad file names its field, exits 2 through the CLI, and creates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from search_spaces.errors import ConfigError
from sweep.cli import main
from sweep.config import DEMO_CONFIG, InlineSpace, SweepConfig, load_sweep_config

REPO = Path(__file__).resolve().parents[3]


def base(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "cfgtest",
        "trainer": {"model": "tiny", "horizon": {"steps": 40}, "eval": {"interval": 10}, "device": "cpu"},
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine"],
        "seeds": [0, 1],
        "budget": 2,
        "storage": str(tmp_path / "store"),
    }


def test_demo_config_is_valid_and_the_packaged_copy_matches_configs() -> None:
    cfg = load_sweep_config()
    assert cfg.name == "demo" and cfg.seeds == (0, 1, 2, 3) and len(cfg.baselines) == 2
    assert cfg.trainer.model.name == "proving-ground" and cfg.resources.workers == 1 and not cfg.resources.use_gpu
    assert (REPO / "configs" / "demo.yaml").read_text() == DEMO_CONFIG.read_text()


def test_round_trip_and_defaults(tmp_path: Path) -> None:
    cfg = SweepConfig.from_dict(base(tmp_path))
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/store/cfgtest/mlflow.db"
    assert cfg.experiment == "cfgtest"
    assert cfg.scheduler.rung_metric == "cooldown"  # the benchmarked default (BENCHMARKS.md)
    assert cfg.baselines == ({"preset": "nanogpt_cosine"},)
    # What the sweep sets per run is not in the trainer section it hands on.
    assert not {"schedule", "seed", "data_seed"} & set(cfg.trainer_dict)


def test_inline_search_space_suggests_within_its_ranges(tmp_path: Path) -> None:
    import optuna

    d = base(tmp_path)
    d["search_space"] = {"warmup_frac": [0.0, 0.1], "hold_frac": [0.3, 0.8], "shape": ["cosine", "linear"],
                         "floor": 0.05}
    cfg = SweepConfig.from_dict(d)
    assert isinstance(cfg.search_space, InlineSpace)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        sched = cfg.search_space.suggest(trial).to_dict()
        assert 0.0 <= sched["warmup_frac"] <= 0.1 and 0.3 <= sched["hold_frac"] <= 0.8
        assert sched["shape"] in ("cosine", "linear") and sched["floor"] == 0.05
        study.tell(trial, 1.0)


def _set(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


BAD = [
    ("name", "has spaces", "name"),
    ("seeds", [0, 0], "seeds[1]"),
    ("seeds", [0, -1], "seeds[1]"),
    ("seeds", [], "seeds"),
    ("budget", -1, "budget"),
    ("search_space", "nope", "search_space"),
    ("search_space", {"warmup_frac": [0.5, 0.1]}, "search_space.warmup_frac"),
    ("search_space", {"shape": ["cosine", "wiggly"]}, "search_space.shape"),
    ("baselines", ["nanogpt_cosine", "not_a_preset"], "baselines[1].preset"),
    ("baselines", [{"preset": "wsd_sqrt", "cooldown_frac": 2.0}], "baselines[0].cooldown_frac"),
    ("trainer.optimizer.lr", -1.0, "trainer.optimizer.lr"),
    ("trainer.batch.seq_len", 0, "trainer.batch.seq_len"),
    ("trainer.modle", "tiny", "trainer.modle"),
    ("trainer.schedule", {"preset": "constant"}, "trainer.schedule"),
    ("trainer.checkpoint.dir", "/tmp/x", "trainer.checkpoint.dir"),
    ("scheduler.reduction_factor", 1.0, "scheduler.reduction_factor"),
    ("scheduler.grace_period", 0, "scheduler.grace_period"),
    ("scheduler.grace_period", 500, "scheduler.grace_period"),
    ("scheduler.rung_metric", "fancy", "scheduler.rung_metric"),
    ("resources.workers", 0, "resources.workers"),
    ("resources.cpus_per_worker", 0, "resources.cpus_per_worker"),
    ("resources.use_gpu", "yes", "resources.use_gpu"),
    ("max_concurrent_trials", 0, "max_concurrent_trials"),
    ("storage", "ftp://host/x", "storage"),
    ("storage", "s3://bucket/sweeps", "mlflow.tracking_uri"),
    ("optuna.storage", "study.db", "optuna.storage"),
    ("divergence_penalty", "high", "divergence_penalty"),
    ("divergence_penalty", 1.0, "divergence_penalty"),  # below ln(vocab): would reward diverging shapes
    ("unknown_key", 1, "unknown_key"),
]


@pytest.mark.parametrize("key,value,field", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_field_is_named(tmp_path: Path, key: str, value: Any, field: str) -> None:
    d = base(tmp_path)
    _set(d, key, value)
    with pytest.raises(ConfigError) as err:
        SweepConfig.from_dict(d)
    assert err.value.field == field, str(err.value)


@pytest.mark.parametrize("key,value,field", [BAD[1], BAD[5], BAD[8], BAD[10], BAD[15], BAD[24]])
def test_cli_exit_2_one_line_nothing_created(tmp_path: Path, capsys, key: str, value: Any, field: str) -> None:
    d = base(tmp_path)
    _set(d, key, value)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(d))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"sweep: error: {field}: ")
    assert not (tmp_path / "store").exists()


def test_cli_unreadable_config_and_missing_resume(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "sweep: error: config: cannot read" in capsys.readouterr().err
    assert main(["resume", "ghost", "--storage", str(tmp_path / "store")]) == 2
    assert "sweep: error: name: no sweep 'ghost'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_run_refuses_an_existing_sweep_name(tmp_path: Path, capsys) -> None:
    d = base(tmp_path)
    (tmp_path / "store" / "cfgtest" / "tune").mkdir(parents=True)
    (tmp_path / "store" / "cfgtest" / "tune" / "tuner.pkl").write_bytes(b"x")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(d))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--overwrite" in err


def test_backends_verdict_and_confirm_sections(tmp_path: Path) -> None:
    d = base(tmp_path)
    d["verdict"] = {"effect": 0.003, "seed_std": 0.002}
    d["confirm"] = {"top": 1, "horizons": ["1x", "2x"], "seeds": 3}
    cfg = SweepConfig.from_dict(d)
    assert cfg.backend == "trainer" and cfg.verdict.effect == 0.003
    again = SweepConfig.from_dict(cfg.to_dict())
    assert again.confirm == d["confirm"] and again.verdict == cfg.verdict
    # The simulator replaces the trainer; both at once is refused, naming the second.
    sim = {k: v for k, v in d.items() if k != "trainer"}
    sim["simulator"] = {"total_steps": 400, "eval_interval": 50}
    sim_cfg = SweepConfig.from_dict(sim)
    assert sim_cfg.backend == "simulator" and sim_cfg.max_step() == 400 and sim_cfg.trainer_dict == {}
    assert SweepConfig.from_dict(sim_cfg.to_dict()).simulator == sim_cfg.simulator
    with pytest.raises(ConfigError) as err:
        SweepConfig.from_dict({**sim, "trainer": d["trainer"]})
    assert err.value.field == "simulator"
    for key, value, field in [
        ("confirm", {"top": 0}, "confirm.top"),
        ("verdict", {"alpha": 0.7}, "verdict.alpha"),
        ("scheduler", {"rung_metric": "cooldown", "cooldown_frac": 1.5}, "scheduler.cooldown_frac"),
    ]:
        with pytest.raises(ConfigError) as err:
            SweepConfig.from_dict({**d, key: value})
        assert err.value.field == field


def test_confirm_takes_its_defaults_from_the_saved_sweep(tmp_path: Path) -> None:
    import argparse

    from sweep.commands.confirm import settings

    d = base(tmp_path)
    d["confirm"] = {"top": 3, "horizons": ["1x", "4x"], "seeds": 4}
    cfg = SweepConfig.from_dict(d)
    folder = Path(cfg.sweep_dir)
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    args = argparse.Namespace(name=cfg.name, config=None, top=None, horizons=None, seeds=5, lm_eval_tasks=None,
                              lm_eval_limit=None, reuse_sweep_seeds=None)
    chosen = settings(args, cfg.storage)
    assert (chosen.top, chosen.horizons, chosen.seeds) == (3, (1.0, 4.0), 5)  # the flag wins over the block


def test_a_script_sweep_defaults_to_raw_and_refuses_cooldown(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hello')\n")
    d = {k: v for k, v in base(tmp_path).items() if k != "trainer"}
    d["script"] = {"path": str(script), "horizon_steps": 40}
    assert SweepConfig.from_dict(d).scheduler.rung_metric == "raw"
    with pytest.raises(ConfigError) as err:
        SweepConfig.from_dict({**d, "scheduler": {"rung_metric": "cooldown"}})
    assert err.value.field == "scheduler.rung_metric"


def test_divergence_penalty_must_lie_above_any_loss_a_finished_run_can_have(tmp_path: Path) -> None:
    import math

    d = base(tmp_path)
    d["divergence_penalty"] = 10.0
    with pytest.raises(ConfigError) as err:
        SweepConfig.from_dict(d)
    vocab = SweepConfig.from_dict(base(tmp_path)).trainer.model.gpt.vocab_size
    assert err.value.field == "divergence_penalty" and f"ln {vocab}" in str(err.value)
    d["divergence_penalty"] = math.log(vocab)
    assert SweepConfig.from_dict(d).divergence_penalty == pytest.approx(math.log(vocab))
    sim = {"name": "s", "simulator": {"total_steps": 100, "eval_interval": 10, "initial_loss": 6.0},
           "search_space": "wsd", "storage": str(tmp_path), "divergence_penalty": 5.9}
    with pytest.raises(ConfigError, match="simulator.initial_loss"):
        SweepConfig.from_dict(sim)
    assert SweepConfig.from_dict({**sim, "divergence_penalty": 6.0}).divergence_penalty == 6.0
