"""`sweep plan-seeds --from-sweep`: the seed std measured on a finished sweep's baselines (MLflow data written
by the real callback, see test_report.py), and the `sweep run` warning when the seeds cannot resolve
`verdict.effect`."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import yaml

from sweep.cli import main
from sweep.config import DEMO_CONFIG, SweepConfig
from sweep.stats.planning import family_alpha, required_seeds
from test_report import Group, write_sweep
from trainable.config import load_yaml

SEEDS = 5
B1 = [3.30, 3.31, 3.29, 3.305, 3.295]
B2 = [3.302, 3.309, 3.293, 3.3052, 3.2961]  # b2 - b1 = 0.002, -0.001, 0.003, 0.0002, 0.0011


def _groups(b2_end: str = "finished") -> list[Group]:
    return [Group("b1", B1, baseline="nanogpt_cosine", schedule={"preset": "nanogpt_cosine"}),
            Group("b2", B2, baseline="wsd_sqrt", schedule={"preset": "wsd_sqrt"}, end=b2_end,
                  last_step=40 if b2_end == "finished" else 20),
            # A searched shape with a huge spread: it must not enter the baseline noise.
            Group("s", [3.0, 3.5, 3.2, 3.1, 3.4])]


def _number(out: str, label: str) -> float:
    return float(re.search(re.escape(label) + r"\s*([0-9.]+)", out).group(1))


def test_std_of_paired_baseline_differences_is_measured_and_planned_with(tmp_path, capsys):
    write_sweep(tmp_path, "ps", _groups(), SEEDS)
    code = main(["plan-seeds", "--from-sweep", "ps", "--storage", str(tmp_path), "--effect", "0.002"])
    out = capsys.readouterr().out
    pooled = math.sqrt((np.var(B1, ddof=1) + np.var(B2, ddof=1)) / 2)
    paired = float(np.std(np.subtract(B2, B1), ddof=1))
    assert _number(out, "pooled within-group std of final val_loss:") == pytest.approx(pooled, abs=5e-6)
    assert _number(out, "std of paired differences between baselines:") == pytest.approx(paired, abs=5e-6)
    assert "(8 df)" in out and "(4 df)" in out
    assert _number(out, "planning with") == pytest.approx(paired, abs=5e-6)
    # Planned for the family the sweep's report tests: every searched shape x every baseline + baseline pairs.
    m = SweepConfig.from_dict({**load_yaml(DEMO_CONFIG), "seeds": list(range(SEEDS))}).verdict_family_size()
    assert m > 1 and f"in a family of {m} comparisons (holm)" in out
    need = required_seeds(0.002, paired, family_alpha(0.01, m))
    assert need > required_seeds(0.002, paired)  # a family needs more seeds than one comparison alone
    assert code == 0 and f"{need} seeds needed for power 0.8 at alpha {0.01 / m:.3g} per comparison" in out
    # The same plan as typing the measured std and the family size in.
    assert main(["plan-seeds", "--effect", "0.002", "--std", repr(paired), "--comparisons", str(m)]) == 0
    typed = capsys.readouterr().out
    assert out.split("paired two-sided t-test", 1)[1].splitlines()[1:] == \
        typed.split("paired two-sided t-test", 1)[1].splitlines()[1:]


def test_one_finished_baseline_falls_back_to_the_independent_seeds_bound(tmp_path, capsys):
    write_sweep(tmp_path, "one", _groups(b2_end="pruned"), SEEDS, verdict={"effect": 0.01})
    assert main(["plan-seeds", "--from-sweep", "one", "--storage", str(tmp_path)]) == 0  # effect from the config
    out = capsys.readouterr().out
    assert "std of paired differences between baselines" not in out
    bound = math.sqrt(2) * float(np.std(B1, ddof=1))
    assert _number(out, "planning with") == pytest.approx(bound, abs=5e-6) and "independent-seeds bound" in out
    assert "effect 0.01 nats" in out


def test_from_sweep_errors_exit_2(tmp_path, capsys):
    write_sweep(tmp_path, "none", [Group("s", [3.0, 3.1])], 2)
    capsys.readouterr()  # MLflow's own log lines from creating the store
    cases = [
        (["--from-sweep", "none", "--effect", "0.002"], "--from-sweep"),  # no baseline finished
        (["--from-sweep", "none"], "--effect"),  # the demo config sets no verdict.effect
        (["--from-sweep", "missing", "--effect", "0.002"], "name"),
        (["--effect", "0.002", "--std", "0.001", "--storage", str(tmp_path)], "--storage"),
    ]
    for argv, option in cases:
        assert main(["plan-seeds", *argv, *(["--storage", str(tmp_path)] if "--from-sweep" in argv else [])]) == 2
        assert capsys.readouterr().err.startswith(f"sweep: error: {option}: ")
    with pytest.raises(SystemExit) as exc:  # argparse: --std and --from-sweep exclude each other
        main(["plan-seeds", "--effect", "0.002", "--std", "0.001", "--from-sweep", "none"])
    assert exc.value.code == 2


def _config(tmp_path, seeds: list[int]) -> str:
    raw = load_yaml(DEMO_CONFIG)
    raw.update(name="warned", storage=str(tmp_path), seeds=seeds,
               verdict={"effect": 0.003, "seed_std": 0.0015, "alpha": 0.01, "power": 0.8})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "warned").mkdir(exist_ok=True)
    (tmp_path / "warned" / "sweep.yaml").write_text("name: warned\n")  # the name is taken: run stops there
    return str(path)


def test_sweep_run_warns_when_seeds_cannot_resolve_the_verdict_effect(tmp_path, capsys):
    assert main(["run", _config(tmp_path, [0, 1])]) == 2
    err = capsys.readouterr().err.splitlines()
    m = SweepConfig.from_yaml(_config(tmp_path, [0, 1])).verdict_family_size()
    need = required_seeds(0.003, 0.0015, family_alpha(0.01, m))  # the report tests a family of m comparisons
    assert err[0].startswith("sweep: warning: verdict: 2 seeds give a paired comparison only ")
    assert f"(family of {m} comparisons, holm: " in err[0]
    assert f"{need} seeds are needed for 80% power" in err[0]
    assert err[1].startswith("sweep: error: name: ")
    assert main(["run", _config(tmp_path, list(range(need)))]) == 2
    assert "warning" not in capsys.readouterr().err
