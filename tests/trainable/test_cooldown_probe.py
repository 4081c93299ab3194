"""The cooldown probe: its LR sequence and plan, and on 2 real gloo ranks that it leaves the main run
bit-identical, steps like a real step (one gradient all-reduce per step under accumulation), survives
resume, and finds a lower loss than the raw one while the run still holds its peak LR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search_spaces.errors import ConfigError
from test_train_helpers import make_markov_shards, run_ranks, tiny_config_dict
from trainable.config import TrainConfig
from trainable.cooldown_probe import plan_probes, probe_length, probe_multipliers

# -- the probe's shape and plan (no training) ---------------------------------------------------------------


def test_probe_multipliers_follow_one_minus_sqrt_to_the_floor():
    out = probe_multipliers(0.8, 0.1, 4)
    assert out.dtype == np.float64 and len(out) == 4
    for i, m in enumerate(out):
        assert m == pytest.approx(0.1 + 0.7 * (1.0 - np.sqrt((i + 1) / 4)), rel=1e-14)
    assert out[-1] == 0.1  # ends exactly at the floor
    assert np.all(np.diff(out) < 0) and out[0] < 0.8  # the first probe step already anneals
    assert list(probe_multipliers(1.0, 0.0, 1)) == [0.0]
    with pytest.raises(ValueError):
        probe_multipliers(1.0, 0.0, 0)


def test_probe_length_is_a_fraction_of_the_steps_so_far():
    assert probe_length(40, 0.2) == 8
    assert probe_length(3, 0.2) == 1  # round(0.6) -> 1
    assert probe_length(2, 0.2) == 1  # never zero
    assert probe_length(100, 1.0) == 100


def test_plan_maps_probe_steps_to_the_first_eval_at_or_after_them():
    # evals at 4, 8, 12 (= T); 3 and 4 share the eval at 4; 9 lands on T (no steps to run); 13 is past T.
    assert plan_probes((3, 4, 5, 9, 13), interval=4, total_steps=12, frac=0.5) == {4: 2, 8: 4, 12: 0}
    assert plan_probes((), interval=4, total_steps=12, frac=0.5) == {}
    # A horizon that is not a multiple of the interval still has its final eval.
    assert plan_probes((10,), interval=4, total_steps=10, frac=0.5) == {10: 0}


@pytest.mark.parametrize("eval_section, field", [
    ({"probe_steps": 40}, "eval.probe_steps"),
    ({"probe_steps": [40, 0]}, "eval.probe_steps[1]"),
    ({"probe_steps": [True]}, "eval.probe_steps[0]"),
    ({"probe_steps": ["40"]}, "eval.probe_steps[0]"),
    ({"probe_frac": 0}, "eval.probe_frac"),
    ({"probe_frac": 1.5}, "eval.probe_frac"),
    ({"probe_frac": "a fifth"}, "eval.probe_frac"),
    ({"probe_fraction": 0.2}, "eval.probe_fraction"),
])
def test_config_errors_name_the_field(eval_section, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"eval": eval_section})
    assert err.value.field == field


def test_config_round_trip_keeps_probe_fields():
    cfg = TrainConfig.from_dict({"eval": {"probe_steps": [40, 20, 20], "probe_frac": 0.25}})
    assert cfg.eval.probe_steps == (20, 40) and cfg.eval.probe_frac == 0.25
    assert cfg.to_dict()["eval"]["probe_steps"] == [20, 40]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({}).eval.probe_steps == ()


# -- on 2 gloo ranks ------------------------------------------------------------------------------------------

T, INTERVAL = 12, 4
# Peak from 20 % to 75 % of the run, then linear to 0: the probes at steps 4 and 8 fork from the peak.
SCHEDULE = {"warmup_frac": 0.2, "warmup_curve": "linear", "hold_frac": 0.75, "shape": "linear", "floor": 0.0}
PROBES = {"probe_steps": [3, 8], "probe_frac": 0.5}  # -> probes of 2 steps at eval 4, 4 steps at eval 8


def _cfg(data: str, probes: bool, ckpt: str | None = None) -> dict:
    ev = {"interval": INTERVAL, "max_tokens": 1024, **(PROBES if probes else {})}
    extra = {"checkpoint": {"dir": ckpt, "keep": 5}} if ckpt else {}
    return tiny_config_dict(Path(data), schedule=SCHEDULE, horizon={"steps": T}, eval=ev, **extra)


class _Stop(Exception):
    pass


class _Keep:
    def __init__(self, stop_at: int | None = None):
        self.reports, self.stop_at = [], stop_at

    def on_report(self, report) -> None:
        self.reports.append({"step": report.step, "ckpt": report.checkpoint_dir, **report.metrics})
        if self.stop_at is not None and report.step >= self.stop_at:
            raise _Stop()


def _run(cfg_dict: dict, stop_at: int | None = None, resume_from: str | None = None) -> dict:
    """One run on this process group, with the DDP gradient all-reduces counted."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from trainable.distributed import setup_distributed
    from trainable.train import Trainer

    hooks = _Keep(stop_at)
    trainer = Trainer(TrainConfig.from_dict(cfg_dict), setup_distributed("cpu"), hooks)
    calls = []

    def counting_hook(state, bucket):
        calls.append(bucket.index())
        return allreduce_hook(state, bucket)

    trainer.ddp.register_comm_hook(None, counting_hook)
    out = {"lrs": [], "train_losses": []}
    try:
        result = trainer.run(resume_from)
        out.update(lrs=result.lrs, train_losses=result.train_losses)
    except _Stop:
        pass
    out.update(reports=hooks.reports, allreduces=len(calls), multipliers=trainer.multipliers.tolist(),
               probes=[{"step": p.step, "steps": p.steps, "lrs": p.lrs} for p in trainer.probes])
    return out


def _probe_worker(rank: int, data: str, ckpt: str) -> dict:
    return {
        "plain": _run(_cfg(data, probes=False)),
        "probed": _run(_cfg(data, probes=True)),
        "interrupted": _run(_cfg(data, probes=True, ckpt=ckpt), stop_at=4),
        "resumed": _run(_cfg(data, probes=True, ckpt=ckpt), resume_from=str(Path(ckpt, "step_00000004"))),
    }


MAIN_RUN_KEYS = ("step", "tokens", "lr", "lr_multiplier", "train_loss", "val_loss", "val_bpb")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("probe")
    data = make_markov_shards(tmp / "data")
    return run_ranks(_probe_worker, (str(data), str(tmp / "ckpt")), tmp / "out")


@pytest.mark.ddp
def test_main_run_is_bit_identical_with_and_without_probes(ranks):
    for r in ranks:
        plain, probed = r["plain"], r["probed"]
        assert probed["lrs"] == plain["lrs"] and len(plain["lrs"]) == T
        assert probed["train_losses"] == plain["train_losses"]
        assert [{k: x[k] for k in MAIN_RUN_KEYS} for x in probed["reports"]] == \
               [{k: x[k] for k in MAIN_RUN_KEYS} for x in plain["reports"]]
        assert not any("val_loss_cooldown" in x or "probe_steps_run" in x for x in plain["reports"])
    # Every rank reports the same probe values.
    strip = [[{k: v for k, v in x.items() if k not in ("tokens_per_s", "elapsed_s")} for x in r["probed"]["reports"]]
             for r in ranks]
    assert strip[0] == strip[1]


@pytest.mark.ddp
def test_probe_lrs_and_reports(ranks):
    probed = ranks[0]["probed"]
    mult, peak = np.array(probed["multipliers"]), 1e-2
    assert [(p["step"], p["steps"]) for p in probed["probes"]] == [(4, 2), (8, 4)]
    for p in probed["probes"]:
        expected = peak * probe_multipliers(mult[p["step"] - 1], mult[-1], p["steps"])
        assert p["lrs"] == pytest.approx(list(expected), rel=1e-12, abs=0)
    by_step = {x["step"]: x for x in probed["reports"]}
    assert [by_step[s]["probe_steps_run"] for s in (4, 8, 12)] == [2, 6, 6]
    assert "val_loss_cooldown" in by_step[4] and "val_bpb_cooldown" in by_step[8]
    assert "val_loss_cooldown" not in by_step[12]
    # Probe steps sync like real ones: one round of bucket all-reduces per optimizer step, none per
    # micro-step (grad_accum is 2 here), so 6 probe steps cost exactly 6 steps' worth.
    per_step = ranks[0]["plain"]["allreduces"] / T
    assert per_step == int(per_step) and per_step >= 1
    assert probed["allreduces"] == ranks[0]["plain"]["allreduces"] + 6 * per_step


@pytest.mark.ddp
def test_probe_beats_the_raw_loss_while_the_run_holds_its_peak(ranks):
    for x in ranks[0]["probed"]["reports"]:
        if "val_loss_cooldown" in x:
            assert x["lr_multiplier"] == 1.0
            assert x["val_loss_cooldown"] < x["val_loss"] - 0.01
            assert x["val_bpb_cooldown"] < x["val_bpb"]


@pytest.mark.ddp
def test_resume_continues_the_probed_run_exactly(ranks):
    for r in ranks:
        interrupted, resumed, probed = r["interrupted"], r["resumed"], r["probed"]
        assert [x["step"] for x in interrupted["reports"]] == [4]
        assert interrupted["reports"][0]["ckpt"].endswith("step_00000004")
        keys = (*MAIN_RUN_KEYS, "val_loss_cooldown", "val_bpb_cooldown", "probe_steps_run")
        want = [{k: x[k] for k in keys if k in x} for x in probed["reports"] if x["step"] > 4]
        got = [{k: x[k] for k in keys if k in x} for x in resumed["reports"]]
        assert got == want
        assert resumed["lrs"] == probed["lrs"][4:]
        assert [p["step"] for p in resumed["probes"]] == [8]
