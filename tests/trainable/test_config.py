"""TrainConfig: parsing, round trips, overrides, and a ConfigError naming the field for every bad input."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from search_spaces.errors import ConfigError
from sweep.cli import main as sweep_main
from trainable.config import TrainConfig, apply_overrides

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["tiny.yaml", "proving_ground_train.yaml", "gpt2-124m.yaml", "gpt2-350m.yaml"])
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = TrainConfig.from_yaml(REPO / "configs" / name)
    again = TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_packaged_default_is_the_user_tiny_config() -> None:
    packaged = resources.files("trainable.configs") / "tiny.yaml"
    assert TrainConfig.from_dict(yaml.safe_load(packaged.read_text())) == TrainConfig.from_yaml(
        REPO / "configs" / "tiny.yaml"
    )


def test_named_model_with_field_overrides_and_horizon_in_tokens() -> None:
    cfg = TrainConfig.from_dict({
        "model": {"name": "gpt2-124m", "n_layer": 4},
        "data": {"dir": "/somewhere"},
        "horizon": {"tokens": 1_000_001},
        "batch": {"micro_batch_size": 4, "seq_len": 128, "grad_accum": 2},
    })
    assert (cfg.model.gpt.n_layer, cfg.model.gpt.n_embd) == (4, 768)
    assert not cfg.data.bundled and cfg.data.dir == "/somewhere"
    assert cfg.tokens_per_step(world_size=2) == 4 * 128 * 2 * 2
    assert cfg.total_steps(world_size=2) == 489  # ceil(1_000_001 / 2048)
    assert TrainConfig.from_dict({"horizon": {"steps": 7}}).total_steps(world_size=8) == 7


def test_defaults_use_the_bundled_corpus_and_fp32_auto() -> None:
    cfg = TrainConfig.from_dict({})
    assert cfg.data.bundled and cfg.device == "auto" and cfg.dtype == "auto"
    assert cfg.train_loss.kind == "cross_entropy"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"optimizer": {"lr": -1e-3}}, "optimizer.lr"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr"),
        ({"optimizer": {"learning_rate": 1e-3}}, "optimizer.learning_rate"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, "optimizer.betas[1]"),
        ({"optimiser": {"lr": 1e-3}}, "optimiser"),
        ({"batch": {"seq_len": 0}}, "batch.seq_len"),
        ({"batch": {"seq_len": 128}}, "batch.seq_len"),  # longer than tiny's block_size 64
        ({"batch": {"micro_batch_size": 2.5}}, "batch.micro_batch_size"),
        ({"horizon": {"steps": 10, "tokens": 100}}, "horizon.steps"),
        ({"horizon": {"steps": True}}, "horizon.steps"),
        ({"data": {"dir": "/x", "bundled": True}}, "data.dir"),
        ({"data": {"bundled": False}}, "data.dir"),
        ({"model": "gpt5"}, "model.name"),
        ({"model": {"name": "tiny", "n_head": 3}}, "model.n_head"),
        ({"eval": {"interval": 0}}, "eval.interval"),
        ({"checkpoint": {"keep": 0}}, "checkpoint.keep"),
        ({"divergence": {"margin": -1}}, "divergence.margin"),
        ({"train_loss": {"kind": "mse"}}, "train_loss.kind"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "fp8"}, "dtype"),
        ({"compile": "yes"}, "compile"),
        ({"seed": -1}, "seed"),
        ({"schedule": {"warmup_frac": 0.1, "hold_frac": 0.1, "shape": "cosine", "floor": 1.5}}, "schedule.floor"),
        ({"schedule": "cosine"}, "schedule"),
    ],
)
def test_bad_fields_raise_config_error_naming_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(bad)
    assert err.value.field == field


def test_bad_yaml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    assert err.value.field == "config"
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


def test_overrides_parse_values_as_yaml_and_nest() -> None:
    d = apply_overrides({"model": "tiny", "optimizer": {"lr": 1.0}},
                        ["optimizer.lr=1.0e-3", "model.n_layer=3", "horizon.steps=5", "compile=false"])
    assert d == {"model": {"name": "tiny", "n_layer": 3}, "optimizer": {"lr": 1e-3},
                 "horizon": {"steps": 5}, "compile": False}
    cfg = TrainConfig.from_dict(d)
    assert cfg.optimizer.lr == 1e-3 and cfg.model.gpt.n_layer == 3
    # YAML 1.1 reads `1e-3` (no dot) as a string; a number written that way is still a number.
    assert TrainConfig.from_dict({"optimizer": {"lr": "2e-4"}}).optimizer.lr == 2e-4
    with pytest.raises(ConfigError) as err:
        apply_overrides({}, ["optimizer.lr"])
    assert err.value.field == "--set"
    with pytest.raises(ConfigError) as err:
        apply_overrides({"seed": 1}, ["seed.x=1"])
    assert err.value.field == "seed"


def test_sweep_train_rejects_a_bad_config_before_launching(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "ckpt"
    code = sweep_main(["train", "--set", "optimizer.lr=-1", "--set", f"checkpoint.dir={ckpt}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sweep: error: optimizer.lr: must be > 0, got -1"]
    assert not ckpt.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: {seq_len: 4096}\n")
    assert sweep_main(["train", "--config", str(bad)]) == 2
    assert "batch.seq_len" in capsys.readouterr().err
