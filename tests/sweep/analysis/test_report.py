"""`sweep report` on MLflow data with known values, written by the real MLflowSweepCallback (sqlite store).

The sweep is fed hook by hook as in test_mlflow_callback.py (no Ray cluster: fast): two baselines, three
searched shapes (clearly better, clearly worse, within noise), and a pruned, a diverged and an errored
group. Expected numbers come from scipy's own t-interval, paired t-test and Wilcoxon test on the values fed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats

from search_spaces import get_preset, list_presets, schedule_from_dict
from sweep.analysis.plots import mean_band
from sweep.analysis.report import build_report
from sweep.cli import main
from sweep.config import DEMO_CONFIG, SweepConfig
from sweep.stats.planning import required_seeds
from sweep.tracking.callback import MLflowSweepCallback
from sweep.tracking.params import schedule_from_params
from trainable.config import load_yaml

STEPS = (10, 20, 30, 40)
SHAPE = {"warmup_frac": 0.05, "hold_frac": 0.6, "shape": "cosine", "floor": 0.1}
WORDS = "wsd: warmup 5% lin, hold 55%, cos -> 0.1"  # SHAPE in words: how the report names such a group
# A seed moves every shape the same way (init, data order): the pairing removes this.
OFFSETS = [0.02, -0.01, 0.015, -0.005, 0.0, 0.01, -0.02, 0.005]


@dataclass
class Group:
    """A group to feed: its final val_loss per seed, and how it ends."""

    gid: str
    finals: list[float]
    baseline: str | None = None
    schedule: dict = field(default_factory=lambda: dict(SHAPE))
    end: str = "finished"  # finished | pruned | diverged | error
    last_step: int = 40

    @property
    def config(self) -> dict:
        return {"schedule": self.schedule, "baseline": self.baseline, "seeds": list(range(len(self.finals)))}


def _result(g: Group, step: int, status: str) -> dict:
    per_seed = {}
    for seed, final in enumerate(g.finals):
        loss = final + 0.01 * (40 - step)  # a falling curve that ends at `final`
        if status == "diverged" and seed == 0:
            loss = float("nan")
        per_seed[str(seed)] = {"val_loss": loss, "val_bpb": 0.36 * loss, "train_loss": loss, "lr": 1e-3,
                               "tokens_per_s": 10.0, "step": step, "status": status, "train_run": f"{g.gid}-seed{seed}"}
    losses = [v["val_loss"] for v in per_seed.values()]
    return {"step": step, "val_loss": sum(losses) / len(losses), "val_bpb": 1.0, "status": status,
            "per_seed": per_seed}


def write_sweep(storage: Path, name: str, groups: list[Group], seeds: int, **config) -> str:
    """A sweep folder with sweep.yaml and an sqlite MLflow store filled through the real callback."""
    raw = load_yaml(DEMO_CONFIG)
    raw.update(name=name, storage=str(storage), seeds=list(range(seeds)), **config)
    cfg = SweepConfig.from_dict(raw)
    Path(cfg.sweep_dir).mkdir(parents=True)
    Path(cfg.sweep_dir, "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    cb = MLflowSweepCallback(cfg.tracking_uri, cfg.experiment, name, cfg.to_dict(), total_steps=40,
                             seeds=list(range(seeds)), strict=True)
    cb.setup()
    ended = []
    for g in groups:
        trial = SimpleNamespace(trial_id=g.gid, config=g.config, status="RUNNING", last_result={}, local_path=None)
        cb.on_trial_start(iteration=0, trials=[trial], trial=trial)
        last = {}
        for step in (s for s in STEPS if s <= g.last_step):
            final = step == g.last_step
            status = {"finished": "finished", "diverged": "diverged"}.get(g.end, "running") if final else "running"
            last = _result(g, step, status)
            cb.on_trial_result(iteration=step, trials=[trial], trial=trial, result=last)
        done = SimpleNamespace(trial_id=g.gid, config=g.config, status="ERROR" if g.end == "error" else "TERMINATED",
                               last_result=last, local_path=None)
        hook = cb.on_trial_error if g.end == "error" else cb.on_trial_complete
        hook(iteration=99, trials=[done], trial=done)
        ended.append(done)
    cb.on_experiment_end(trials=ended)
    return cfg.tracking_uri


def _noise(scale: float, seed: int, n: int) -> list[float]:
    return list(np.random.default_rng(seed).normal(0.0, scale, n))


def standard_groups(n: int = 8) -> list[Group]:
    off = (OFFSETS * 2)[:n]
    base = [3.30 + o for o in off]
    return [
        Group("b1", base, baseline="nanogpt_cosine", schedule={"preset": "nanogpt_cosine"}),
        Group("b2", [b + 0.0005 + e for b, e in zip(base, _noise(0.0003, 1, n))], baseline="wsd_sqrt",
              schedule={"preset": "wsd_sqrt"}),
        Group("good", [b - 0.01 + e for b, e in zip(base, _noise(0.0005, 2, n))],
              schedule={**SHAPE, "hold_frac": 0.8}),
        Group("bad", [b + 0.01 + e for b, e in zip(base, _noise(0.0005, 3, n))], schedule={**SHAPE, "floor": 0.5}),
        Group("same", [b + 0.0002 + e for b, e in zip(base, [0.001, -0.001] * (n // 2) + [0.0] * (n % 2))]),
        Group("stopped", [3.0] * n, end="pruned", last_step=20),
        Group("blewup", [3.5] * n, end="diverged", last_step=30),
        Group("crashed", [3.4] * n, end="error", last_step=10),
    ]


@pytest.fixture(scope="module")
def sweep8(tmp_path_factory):
    storage = tmp_path_factory.mktemp("sweeps")
    groups = standard_groups(8)
    uri = write_sweep(storage, "rep", groups, 8)
    report = build_report("rep", str(storage))
    return SimpleNamespace(storage=storage, groups={g.gid: g for g in groups}, uri=uri, report=report)


def _rows(markdown: str, section: str) -> list[list[str]]:
    """The data rows of the Markdown table under the heading starting with `section`."""
    lines = markdown.split("## " + section, 1)[1].split("\n## ", 1)[0].splitlines()
    table = [line for line in lines if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table]


def _ci(values: list[float]) -> str:
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return f"[{lo:.4f}, {hi:.4f}]"


def test_ranking_holds_finished_groups_by_mean_with_std_and_ci(sweep8):
    rows = _rows(sweep8.report.markdown, "Ranking")
    finished = [g for g in sweep8.groups.values() if g.end == "finished"]
    expected = sorted(finished, key=lambda g: math.fsum(g.finals) / len(g.finals))
    assert [r[1].split("(")[-1].rstrip(")") for r in rows] == [g.gid for g in expected]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    for row, g in zip(rows, expected):
        bpb = [0.36 * v for v in g.finals]
        assert row[2:] == ["8", f"{np.mean(g.finals):.4f}", f"{np.std(g.finals, ddof=1):.4f}", _ci(g.finals),
                           f"{np.mean(bpb):.4f}", f"{np.std(bpb, ddof=1):.4f}", _ci(bpb)]
    assert rows[0][1] == "wsd: warmup 5% lin, hold 75%, cos -> 0.1 (good)"  # the clearly better shape leads


def test_pruned_diverged_and_errored_groups_are_listed_never_ranked(sweep8):
    md = sweep8.report.markdown
    ranked = {r[1] for r in _rows(md, "Ranking")}
    unranked = _rows(md, "Not ranked")
    assert [(r[0], r[1], r[2]) for r in unranked] == [
        (f"{WORDS} (stopped)", "pruned", "20"), (f"{WORDS} (blewup)", "diverged", "30"), (f"{WORDS} (crashed)", "error", "10")]
    assert not ranked & {r[0] for r in unranked}
    # The pruned group's last loss (3.0 + 0.2 at step 20) is lower than every finished group's: still not ranked.
    assert unranked[0][3] == "3.2000"


def test_paired_differences_p_values_and_verdicts(sweep8):
    from statsmodels.stats.multitest import multipletests

    rows = {(r[0], r[1]): r for r in _rows(sweep8.report.markdown, "Paired differences")}
    g = sweep8.groups
    # The two baselines are compared too (wsd_sqrt vs nanogpt_cosine), and nothing else is.
    assert ("wsd_sqrt (b2)", "nanogpt_cosine (b1)") in rows
    assert len(rows) == 3 * 2 + 1
    pairs = {key: (np.array(g[key[0].split("(")[-1].rstrip(")")].finals), np.array(g[key[1].split("(")[-1].rstrip(")")].finals))
             for key in rows}
    raw = {key: stats.ttest_rel(a, b).pvalue for key, (a, b) in pairs.items()}
    keys = list(raw)
    _, holm, _, _ = multipletests([raw[k] for k in keys], alpha=0.01, method="holm")
    adjusted = dict(zip(keys, holm))
    fmt = lambda p: f"{p:.2g}" if p < 1e-3 else f"{p:.3f}"  # noqa: E731
    expected_verdicts = {"good": "better", "bad": "worse", "same": "no detectable difference"}
    for shape, verdict in expected_verdicts.items():
        for base, label in (("b1", "nanogpt_cosine"), ("b2", "wsd_sqrt")):
            key = (f"{schedule_from_dict(g[shape].schedule).describe()} ({shape})", f"{label} ({base})")
            row = rows[key]
            a, b = pairs[key]
            diffs = a - b
            w_p = stats.wilcoxon(a, b).pvalue
            assert row[2:4] == ["8", f"{diffs.mean():+.4f}"]
            assert row[5:] == [fmt(raw[key]), fmt(adjusted[key]), fmt(w_p), f"**{verdict}**"]
            assert (adjusted[key] <= 0.01) == (verdict != "no detectable difference")
            # The interval is at the level of its own test (Holm's step), and excludes 0 iff a verdict is called.
            ci, level = re.match(r"(\[.*\]) \(([0-9.]+) %\)", row[4]).groups()
            lo, hi = stats.t.interval(float(level) / 100, 7, loc=diffs.mean(), scale=stats.sem(diffs))
            assert ci == f"[{lo:+.4f}, {hi:+.4f}]"
            assert float(level) > 99.0  # stricter than the 1 - alpha of a comparison on its own
            assert (hi < 0 or lo > 0) == (verdict != "no detectable difference")


def test_report_names_the_family_and_marks_the_ranking_exploratory(sweep8):
    md = sweep8.report.markdown
    section = md.split("## Paired differences", 1)[1].split("\n## ", 1)[0]
    assert "The 7 tested comparisons of this report are one family, adjusted by Holm step-down" in section
    assert "the chance that this report holds any false \"better\" or \"worse\" is at most 0.01" in section
    assert "exploratory" in section and "`sweep confirm`" in section and "fresh seeds" in section
    assert "holm, alpha 0.01" in md.split("## Ranking", 1)[0]


def test_resolution_words_and_noise(sweep8):
    md = sweep8.report.markdown
    words = md.split("## Can the seeds resolve these differences?", 1)[1].split("\n## ", 1)[0]
    assert ("With 8 seeds, a paired t-test at the per-comparison level this family imposes (0.0014) detects a "
            "difference with 80% power only from about") in words
    # Only the within-noise shape's two comparisons are below what 8 seeds resolve at their own paired std,
    # planned at the family's per-comparison level alpha / 7.
    g = sweep8.groups
    same = [np.array(g["same"].finals) - np.array(g[b].finals) for b in ("b1", "b2")]
    need = sorted(required_seeds(abs(d.mean()), d.std(ddof=1), 0.01 / 7) for d in same)
    sizes = sorted(abs(d.mean()) for d in same)
    assert (f'2 of 7 tested comparisons found "no detectable difference" for differences ({sizes[0]:.4f} to '
            f'{sizes[1]:.4f} nats) smaller than what 8 seeds can resolve') in words
    assert f"would take {need[0]} to {need[1]} seeds" in words and need[0] > 8
    noise = md.split("## Seed noise", 1)[1].split("\n## ", 1)[0]
    b1, b2 = np.array(sweep8.groups["b1"].finals), np.array(sweep8.groups["b2"].finals)
    pooled = math.sqrt((np.var(b1, ddof=1) + np.var(b2, ddof=1)) / 2)
    assert f"{pooled:.4f} nats (14 degrees of freedom)" in noise
    assert f"{np.std(b2 - b1, ddof=1):.4f} nats (7 degrees of freedom)" in noise


def test_files_written_and_logged_to_the_parent_run(sweep8):
    names = sorted(p.name for p in sweep8.report.files)
    assert names == ["report.md", "report_schedules.png", "report_val_loss.png", "report_val_loss_groups.png"]
    sweep_dir = sweep8.storage / "rep"
    for name in names:
        path = sweep_dir / name
        assert path.is_file() and path.stat().st_size > 1000 or name == "report.md"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({name})" in sweep8.report.markdown
    client = MlflowClient(sweep8.uri)
    run = client.get_run(sweep8.report.run_id)
    assert run.data.tags["schedsweep.kind"] == "sweep" and run.data.tags["schedsweep.sweep"] == "rep"
    logged = sorted(Path(a.path).name for a in client.list_artifacts(sweep8.report.run_id, "report"))
    assert logged == names
    text = Path(client.download_artifacts(sweep8.report.run_id, "report/report.md")).read_text()
    assert text == (sweep_dir / "report.md").read_text() == sweep8.report.markdown


def test_three_seeds_cannot_use_wilcoxon_and_say_so(tmp_path):
    groups = standard_groups(3)
    write_sweep(tmp_path, "small", [groups[0], groups[1], groups[4]], 3)  # the baselines and the within-noise shape
    out = tmp_path / "elsewhere"
    report = build_report("small", str(tmp_path), out=str(out))
    assert (out / "report.md").is_file() and not (tmp_path / "small" / "report.md").exists()
    rows = _rows(report.markdown, "Paired differences")
    assert all(r[7] == "n < 8" for r in rows)
    assert "With 3 seeds" in report.markdown and "smaller than what 3 seeds can resolve" in report.markdown


def test_cli_prints_the_report(sweep8, capsys, tmp_path):
    assert main(["report", "rep", "--storage", str(sweep8.storage), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Sweep report: rep") and "report written:" in out and "under report/" in out
    assert (tmp_path / "report.md").read_text() == sweep8.report.markdown


@pytest.mark.parametrize("argv, field", [
    (["report", "nosuch"], "name"),
    (["report", "../etc"], "name"),
    (["report", "rep", "--tracking-uri", "sqlite:///{tmp}/missing.db"], "--tracking-uri"),
    (["report", "other", "--tracking-uri", "{uri}"], "name"),
    (["report", "rep", "--experiment", "nope"], "name"),
])
def test_cli_bad_name_or_missing_sweep_exits_2_creating_nothing(sweep8, tmp_path, capsys, argv, field):
    argv = [a.format(tmp=tmp_path, uri=sweep8.uri) for a in argv]
    before = sorted(p.name for p in (sweep8.storage / "rep").iterdir())
    assert main([*argv, "--storage", str(sweep8.storage), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sweep: error: {field}: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "missing.db").exists()
    assert sorted(p.name for p in (sweep8.storage / "rep").iterdir()) == before


def test_schedules_come_back_from_group_params():
    candidates = [get_preset(n) for n in list_presets()] + [
        schedule_from_dict({**SHAPE, "shape": "polynomial", "tail_exponent": 2.0}),
        schedule_from_dict({"start": 0.1, "segments": [{"duration": 0.1, "end": 1.0, "curve": "linear"},
                                                       {"duration": 0.9, "end": 0.0, "curve": "cosine"}]}),
        schedule_from_dict({"preset": "wsd_sqrt", "cooldown_frac": 0.3}),
    ]
    for schedule in candidates:
        params = {k: str(v) for k, v in schedule.flat_params().items()}
        params.update(group_id="g", baseline="", seeds="0,1")  # what the group run adds
        back = schedule_from_params(params)
        assert back is not None, params
        for total in (7, 40, 1000):
            np.testing.assert_array_equal(back.multipliers(total), schedule.multipliers(total))
    assert schedule_from_params({"kind": "shape", "shape": "no-such"}) is None


def test_terminal_verdicts_list_the_called_ones_and_count_the_rest(sweep8):
    lines = sweep8.report.verdicts
    assert lines[0].startswith("Verdicts (") and "holm over 7 comparisons, alpha 0.01" in lines[0]
    called = lines[1:-1]
    good = schedule_from_dict(sweep8.groups["good"].schedule).describe()
    bad = schedule_from_dict(sweep8.groups["bad"].schedule).describe()
    # The Markdown table's called verdicts, and only those, each on one line.
    table = {(r[0], r[1]): r[-1].strip("*") for r in _rows(sweep8.report.markdown, "Paired differences")}
    expected = {pair: v for pair, v in table.items() if v in ("better", "worse")}
    assert len(expected) >= 4  # good and bad against both baselines at least
    assert {tuple(line.rsplit(": ", 2)[0].strip().split(" vs ")): line.rsplit(": ", 1)[1].lower()
            for line in called} == expected
    assert any(line.startswith(f"  {good} (good) vs wsd_sqrt (b2): ") and line.endswith("BETTER") for line in called)
    assert any(line.startswith(f"  {bad} (bad) vs wsd_sqrt (b2): ") and line.endswith("WORSE") for line in called)
    rest = len(table) - len(expected)
    assert lines[-1] == f"  the other {rest} comparisons: {rest} no detectable difference (the report lists each)"
    # The same lines are the sweep run's description in MLflow, as a Markdown list.
    note = MlflowClient(sweep8.uri).get_run(sweep8.report.run_id).data.tags["mlflow.note.content"]
    assert note.startswith(lines[0]) and all(f"- {line.strip()}" in note for line in lines[1:])


def test_mean_band_uses_only_steps_every_seed_reached():
    steps, mean, low, high = mean_band({"0": [(10, 3.0), (20, 2.0), (30, 1.0)], "1": [(10, 4.0), (20, 2.5)]})
    assert steps.tolist() == [10, 20]
    assert mean.tolist() == [3.5, 2.25] and low.tolist() == [3.0, 2.0] and high.tolist() == [4.0, 2.5]


def _verdicts(markdown: str) -> list[str]:
    return [r[-1] for r in _rows(markdown, "Paired differences")]


def test_a_trainer_that_ignores_its_seed_is_named_and_gets_no_verdict(tmp_path):
    # nanoGPT's train.py hard-codes its seed: every seed of a group ends bit-identically (and prints 3 decimals).
    groups = [Group("b1", [2.619] * 3, baseline="nanogpt_cosine", schedule={"preset": "nanogpt_cosine"}),
              Group("b2", [2.655] * 3, baseline="wsd_sqrt", schedule={"preset": "wsd_sqrt"}),
              Group("s", [2.571] * 3)]
    write_sweep(tmp_path, "seedless", groups, 3)
    md = build_report("seedless", str(tmp_path)).markdown
    warnings = md.split("## Warnings: the trainer ignored an input", 1)[1].split("\n## ", 1)[0]
    for name in ("nanogpt_cosine (b1)", "wsd_sqrt (b2)", f"{WORDS} (s)"):
        assert f"**{name}** its 3 seeds ended at exactly the same val_loss" in warnings
    assert "the trainer ignores its seed" in warnings
    verdicts = _verdicts(md)
    assert verdicts and all(v.startswith("**no verdict**") for v in verdicts), verdicts
    assert "better" not in " ".join(verdicts) and "worse" not in " ".join(verdicts)
    assert "the verdicts are exact" not in md


def test_a_trainer_that_ignores_the_schedule_is_named_and_gets_no_verdict(tmp_path):
    # Every group ends exactly where every other does on each seed: the schedule never reached the trainer.
    finals = [2.6186, 2.6251, 2.6122]
    groups = [Group("b1", finals, baseline="nanogpt_cosine", schedule={"preset": "nanogpt_cosine"}),
              Group("b2", finals, baseline="wsd_sqrt", schedule={"preset": "wsd_sqrt"}), Group("s", finals)]
    write_sweep(tmp_path, "shapeless", groups, 3)
    md = build_report("shapeless", str(tmp_path)).markdown
    assert "although its schedule differs: the trainer ignores the schedule" in md
    assert all(v.startswith("**no verdict**") for v in _verdicts(md))
    assert "No comparison could be tested, so no verdict is called" in md


def test_differences_within_the_printed_precision_get_no_verdict(tmp_path):
    # Values printed with 3 decimals: a shape 0.001-0.002 below a baseline on every seed looks significant,
    # but its spread is one rounding step (the resolution is inferred from the values).
    base = [3.100, 3.110, 3.120, 3.130, 3.140]
    groups = [Group("b1", base, baseline="nanogpt_cosine", schedule={"preset": "nanogpt_cosine"}),
              Group("s", [b - d for b, d in zip(base, (0.001, 0.002, 0.001, 0.001, 0.001))])]
    write_sweep(tmp_path, "rounded", groups, 5)
    md = build_report("rounded", str(tmp_path)).markdown
    (verdict,) = _verdicts(md)
    assert verdict.startswith("**no verdict**") and "below the metric's resolution 0.001" in verdict
