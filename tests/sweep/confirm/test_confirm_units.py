"""The confirmation stage's pieces without Ray: horizons, seeds, stage configs, finalists, the fixed searcher,
paired deltas and the words of the report, and the CLI's refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from ray.tune.search import Searcher

from search_spaces.errors import ConfigError
from sweep.cli import main
from sweep.config import SweepConfig
from sweep.config.confirm_settings import parse_horizons
from sweep.confirm.plan import confirm_seeds, select_finalists, stage_config, stage_groups, stage_name
from sweep.confirm.report import DeltaPoint, delta_points, render_markdown, trend_words
from sweep.core.outcome import GroupOutcome
from sweep.core.status import FINISHED, PRUNED
from sweep.engine.searcher import FixedGroupSearcher


def sim_sweep(tmp_path: Path, **over) -> SweepConfig:
    d = {"name": "s", "simulator": {"total_steps": 1000, "eval_interval": 250}, "search_space": "wsd",
         "baselines": ["nanogpt_cosine", {"preset": "wsd_sqrt", "cooldown_frac": 0.2}], "seeds": [3, 7],
         "budget": 4, "storage": str(tmp_path / "sweeps"), **over}
    return SweepConfig.from_dict(d)


def group(gid: str, losses: dict[str, float], status: str = FINISHED, baseline: str | None = None,
          **config) -> GroupOutcome:
    cfg = {"schedule": {"preset": "constant"}, "baseline": baseline, "seeds": [int(s) for s in losses], **config}
    return GroupOutcome(gid, baseline or "search", status, 100, losses, {}, config=cfg)


def test_horizons_parse_sorted_and_refuse_nonsense() -> None:
    assert parse_horizons("1x,2x,4x") == (1.0, 2.0, 4.0)
    assert parse_horizons("4x, 0.5x,2") == (0.5, 2.0, 4.0)
    for bad in ("0x", "x", "2x,2x", "-1x", "two"):
        with pytest.raises(ConfigError) as err:
            parse_horizons(bad)
        assert err.value.field == "--horizons"


def test_seeds_are_fresh_by_default_and_reuse_the_sweeps_only_on_request() -> None:
    # Fresh: the smallest integers the sweep never ran (a seed fixes init and data order alike).
    assert confirm_seeds([3, 7], 4) == (0, 1, 2, 4)
    assert confirm_seeds([0, 1, 2], 2) == (3, 4)
    assert confirm_seeds([0, 1, 2, 3, 4], 5) == (5, 6, 7, 8, 9)  # a 5-seed sweep still gets 5 new seeds
    assert not set(confirm_seeds([1], 3)) & {1}
    # On request, the old behaviour: the sweep's own first, then unused ones.
    assert confirm_seeds([3, 7], 4, reuse_sweep_seeds=True) == (3, 7, 0, 1)
    assert confirm_seeds([0, 1, 2], 2, reuse_sweep_seeds=True) == (0, 1)
    assert confirm_seeds([1], 3, reuse_sweep_seeds=True) == (1, 0, 2)
    with pytest.raises(ConfigError):
        confirm_seeds([0], 0)


def test_stage_config_scales_the_horizon_turns_asha_off_and_shares_mlflow(tmp_path: Path) -> None:
    cfg = sim_sweep(tmp_path)
    stage = stage_config(cfg, 2.0, (3, 7, 0), n_finalists=2)
    assert stage.name == stage_name("s", 2.0) == "s.confirm-2x"
    assert stage.simulator.total_steps == 2000 and stage.simulator.eval_interval == 250
    assert not stage.scheduler.enabled and stage.seeds == (3, 7, 0) and stage.budget == 2
    assert stage.baselines == cfg.baselines and stage.storage == cfg.storage
    assert stage.tracking_uri == cfg.tracking_uri and stage.experiment == cfg.experiment
    assert stage.optuna.storage is None
    # What `sweep resume s.confirm-2x` reads back is the same config.
    assert SweepConfig.from_dict(stage.to_dict()) == stage

    trainer = SweepConfig.from_dict({
        "name": "t", "trainer": {"model": "tiny", "horizon": {"tokens": 10_000}, "batch": {"seq_len": 32}},
        "search_space": "wsd", "baselines": ["constant"], "storage": str(tmp_path / "sweeps")})
    assert stage_config(trainer, 4.0, (0,), 1).trainer.horizon.tokens == 40_000
    assert stage_config(trainer, 0.5, (0,), 1).trainer.horizon.tokens == 5_000


def test_finalists_are_the_best_finished_searched_groups() -> None:
    groups = [
        group("a", {"0": 3.0, "1": 3.2}),
        group("b", {"0": 2.9, "1": 3.0}),
        group("base", {"0": 2.0, "1": 2.0}, baseline="constant"),  # a baseline is never a finalist
        group("p", {"0": 1.0, "1": 1.0}, status=PRUNED),  # stopped early: not comparable
        group("c", {"0": 3.5, "1": 3.5}),
    ]
    assert [g.group_id for g in select_finalists(groups, 2)] == ["b", "a"]
    assert [g.group_id for g in select_finalists(groups, 10)] == ["b", "a", "c"]


def test_stage_groups_are_baselines_then_ranked_finalists(tmp_path: Path) -> None:
    cfg = sim_sweep(tmp_path)
    fins = [group("b", {"0": 1.0}, schedule={"preset": "wsd_sqrt"}), group("a", {"0": 2.0})]
    groups = stage_groups(fins, cfg.baselines)
    assert [g["baseline"] for g in groups] == ["nanogpt_cosine", "wsd_sqrt(cooldown_frac=0.2)", None, None]
    assert [g.get("source_group") for g in groups] == [None, None, "b", "a"]
    assert groups[2]["schedule"] == {"preset": "wsd_sqrt"} and groups[2]["finalist_rank"] == 1


def test_fixed_searcher_emits_each_group_once_and_survives_save_restore(tmp_path: Path) -> None:
    groups = [{"schedule": {"preset": "constant"}, "baseline": "constant"},
              {"schedule": {"preset": "wsd_sqrt"}, "baseline": None, "source_group": "g1"},
              {"schedule": {"preset": "linear_to_zero"}, "baseline": None, "source_group": "g2"}]
    s = FixedGroupSearcher(groups, seeds=[0, 1, 2], fixed={"backend": "simulator"})
    first = s.suggest("t1")
    assert first == {"backend": "simulator", "schedule": {"preset": "constant"}, "baseline": "constant",
                     "seeds": [0, 1, 2]}
    assert s.suggest("t1") == first  # asked again for the same trial: the same group, not the next one
    assert s.suggest("t2")["source_group"] == "g1"
    s.save(str(tmp_path / "state.pkl"))

    restored = FixedGroupSearcher([], seeds=[])
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.suggest("t2")["source_group"] == "g1"
    assert restored.suggest("t3")["source_group"] == "g2"
    assert restored.suggest("t4") == Searcher.FINISHED and restored.groups_left == 0


def test_paired_deltas_match_a_hand_computation() -> None:
    stage = [group("x", {"0": 3.10, "1": 3.20, "2": 3.05}, source_group="f1"),
             group("y", {"0": 3.00, "1": 3.25, "2": 3.00}, baseline="cosine")]
    points = delta_points({"1x": stage}, {"1x": 1.0}, {"1x": 100}, ["f1"], ["cosine"])
    assert len(points) == 1
    p = points[0]
    diffs = [0.10, -0.05, 0.05]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 9.924843200918284 * sd / math.sqrt(3)  # t(0.995, df=2): a family of one at alpha 0.01
    assert p.mean == pytest.approx(mean) and p.n == 3 and p.family_size == 1
    assert (p.ci_low, p.ci_high) == pytest.approx((mean - half, mean + half))
    assert p.confidence == pytest.approx(0.99) and p.verdict == "no detectable difference"
    # A group that did not finish is left out rather than compared on a partial loss.
    stage[1] = group("y", {"0": 3.0, "1": 3.0, "2": 3.0}, status=PRUNED, baseline="cosine")
    assert delta_points({"1x": stage}, {"1x": 1.0}, {"1x": 100}, ["f1"], ["cosine"]) == []


def _pt(horizon: str, factor: float, mean: float, half: float) -> DeltaPoint:
    """A point whose verdict is what its interval says (as family_verdicts guarantees)."""
    called = "better" if mean + half < 0 else "worse" if mean - half > 0 else "no detectable difference"
    return DeltaPoint("f", "b", horizon, factor, int(100 * factor), 3, mean, mean - half, mean + half, 0.99,
                      0.001, 0.002 if called != "no detectable difference" else 0.5, called, "", 2, "holm")


def test_trend_words_come_from_the_corrected_verdicts() -> None:
    flips = trend_words([_pt("1x", 1, -0.05, 0.01), _pt("2x", 2, 0.03, 0.01)])
    assert "flips" in flips and "better at 1x" in flips and "worse at 2x (the baseline wins" in flips
    assert "shrinks" in trend_words([_pt("1x", 1, -0.05, 0.005), _pt("4x", 4, -0.01, 0.005)])
    assert "grows" in trend_words([_pt("1x", 1, -0.01, 0.002), _pt("2x", 2, -0.03, 0.002)])
    # A change inside the combined noise of the two horizons holds.
    holds = trend_words([_pt("1x", 1, -0.05, 0.02), _pt("2x", 2, -0.04, 0.02)])
    assert "holds" in holds and "better at 2x" in holds
    # A sign change of the means is no flip unless both ends were called: resolved at neither end.
    loose = trend_words([_pt("1x", 1, -0.005, 0.01), _pt("2x", 2, 0.004, 0.01)])
    assert "flips" not in loose and "no resolved gap at any horizon" in loose
    assert "fades" in trend_words([_pt("1x", 1, -0.05, 0.02), _pt("2x", 2, -0.01, 0.02)])
    assert "appears" in trend_words([_pt("1x", 1, -0.01, 0.02), _pt("2x", 2, -0.05, 0.02)])
    # No verdict possible (one seed): said as such, never a trend.
    nan = float("nan")
    single = [DeltaPoint("f", "b", "1x", 1, 100, 1, -0.04, nan, nan, reason="1 seed"),
              DeltaPoint("f", "b", "2x", 2, 200, 1, -0.01, nan, nan, reason="1 seed")]
    assert "no resolved gap at any horizon" in trend_words(single)


def test_confirm_family_spans_finalists_baselines_and_horizons() -> None:
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(11)
    stages, raw = {}, []
    for label in ("1x", "2x"):
        base = {str(s): 3.0 + rng.normal(0, 0.01) for s in range(5)}
        f1 = {s: v - 0.02 + rng.normal(0, 0.002) for s, v in base.items()}  # clearly better
        f2 = {s: v + rng.normal(0, 0.002) for s, v in base.items()}  # no true difference
        stages[label] = [group("a", f1, source_group="f1"), group("c", f2, source_group="f2"),
                         group("b", base, baseline="cosine")]
    points = delta_points(stages, {"1x": 1.0, "2x": 2.0}, {"1x": 100, "2x": 200}, ["f1", "f2"], ["cosine"],
                          alpha=0.01, correction="holm")
    assert len(points) == 4 and {p.family_size for p in points} == {4} and {p.correction for p in points} == {"holm"}
    _, adjusted, _, _ = multipletests([p.p_value for p in points], alpha=0.01, method="holm")
    assert [p.adjusted_p for p in points] == pytest.approx(list(adjusted))
    assert [p.verdict for p in points if p.finalist == "f1"] == ["better", "better"]


def test_markdown_has_the_delta_table_plot_and_downstream_means() -> None:
    points = [_pt("1x", 1, -0.05, 0.01), _pt("2x", 2, -0.02, 0.01)]
    md = render_markdown("s", points, {"f": "`shape`"}, ["1x", "2x"], {"1x": 100, "2x": 200}, [3, 4, 5],
                         {"1x": {"f": [3.0, 3.1, 3.2], "b": [3.1, 3.2, 3.3]}, "2x": {"f": [2.9, 3.0, 3.1]}},
                         {"f": {"lm_eval.t.acc": [0.25, 0.5, 0.75]}}, "2x", sweep_seeds=[0, 1, 2])
    assert ("| f | b | -0.0500 [-0.0600, -0.0400] (99 %), adj. p 0.002, **better** | "
            "-0.0200 [-0.0300, -0.0100] (99 %), adj. p 0.002, **better** |") in md
    assert "3, 4, 5, fresh: disjoint from the sweep's own (0, 1, 2)" in md
    assert "the 2 comparisons (finalists x baselines x horizons) are one family, adjusted by Holm" in md
    reused = render_markdown("s", points, {"f": "`shape`"}, ["1x", "2x"], {"1x": 100, "2x": 200}, [0, 1, 3],
                             {}, sweep_seeds=[0, 1, 2])
    assert "**2 of them (0, 1) are the sweep's own**" in reused
    assert "![delta against horizon](deltas.png)" in md and "- f vs b: the gap shrinks" in md
    assert "| f | 0.5000 ± 0.6210 (n=3) |" in md  # t(0.975, 2) * 0.25 / sqrt(3)
    assert "| b | 3.2000 ± 0.2484 (n=3) | - |" in md


def test_cli_refuses_bad_arguments_with_one_line_and_creates_nothing(tmp_path: Path, capsys) -> None:
    storage = tmp_path / "sweeps"
    assert main(["confirm", "nosuch", "--storage", str(storage)]) == 2
    assert main(["confirm", "nosuch", "--storage", str(storage), "--horizons", "0x"]) == 2
    assert main(["confirm", "nosuch", "--storage", str(storage), "--lm-eval-limit", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("sweep: error: name: no sweep 'nosuch'")
    assert err[1].startswith("sweep: error: --horizons:") and err[2].startswith("sweep: error: --lm-eval-limit:")
    assert not storage.exists()


def test_confirm_block_gives_defaults_flags_win_and_bad_fields_are_named(tmp_path: Path, capsys) -> None:
    from sweep.cli import build_parser
    from sweep.commands.confirm import settings
    from sweep.config.confirm_settings import ConfirmSettings

    path = tmp_path / "c.yaml"
    path.write_text("confirm: {top: 3, horizons: [1x, 4x], seeds: 4, lm_eval_tasks: [schedsweep_mc]}\n")
    args = build_parser().parse_args(["confirm", "s", "--config", str(path), "--seeds", "6"])
    assert settings(args) == ConfirmSettings(top=3, horizons=(1.0, 4.0), seeds=6, lm_eval_tasks="schedsweep_mc")
    assert settings(build_parser().parse_args(["confirm", "s"])) == ConfirmSettings()
    assert not ConfirmSettings().reuse_sweep_seeds  # fresh seeds unless asked
    reuse = build_parser().parse_args(["confirm", "s", "--config", str(path), "--reuse-sweep-seeds"])
    assert settings(reuse).reuse_sweep_seeds
    path.write_text("confirm: {reuse_sweep_seeds: true}\n")
    assert settings(build_parser().parse_args(["confirm", "s", "--config", str(path)])).reuse_sweep_seeds
    for block, field in (("{top: 0}", "confirm.top"), ("{horizons: [1x, 0x]}", "confirm.horizons"),
                         ("{seed: 3}", "confirm.seed"), ("{reuse_sweep_seeds: 1}", "confirm.reuse_sweep_seeds")):
        path.write_text(f"confirm: {block}\n")
        assert main(["confirm", "s", "--config", str(path), "--storage", str(tmp_path / "sweeps")]) == 2
        assert capsys.readouterr().err.startswith(f"sweep: error: {field}")
