"""Leaderboard ranking and the live progress callback's output (no Ray cluster needed)."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

from sweep.core.outcome import GroupOutcome, group_status, outcome_from_result
from sweep.tracking.progress import SweepProgress, leaderboard


def _group(gid, status, losses, label="search", step=100):
    schedule = {"preset": label} if label != "search" else {"warmup_frac": 0.02, "hold_frac": 0.7, "floor": 0.1}
    return GroupOutcome(gid, label, status, step, {str(i): v for i, v in enumerate(losses)},
                        {str(i): v / 4 for i, v in enumerate(losses)}, config={"schedule": schedule})


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_finished_groups_ranked_by_mean_and_others_listed_unranked():
    groups = [
        _group("g-a", "finished", [3.30, 3.32, 3.31]),            # mean 3.31
        _group("g-b", "finished", [3.20, 3.25, 3.30], "wsd_sqrt"),  # mean 3.25: best
        _group("g-c", "pruned", [3.00, 3.01, 3.02], step=40),       # lowest loss, but stopped early
        _group("g-d", "diverged", [20.0, 3.1, 3.1], step=20),
        _group("g-e", "error", []),
    ]
    text = leaderboard(groups)
    rows = _rows(text)
    ranked = [r for r in rows if r[0].isdigit()]
    assert [(r[0], r[1]) for r in ranked] == [("1", "g-b"), ("2", "g-a")]
    assert ranked[0][2] == "3" and ranked[0][-1] == "wsd_sqrt"
    assert ranked[0][3] == "3.2500"
    # std of 3.20, 3.25, 3.30 is 0.05; 95 % CI half-width 4.303 * 0.05 / sqrt(3) = 0.1242
    assert ranked[0][4] == "0.0500"
    assert " ".join(ranked[0][5:7]) == "[3.1258, 3.3742]"
    assert ranked[0][7] == "0.8125"  # val_bpb mean = 3.25 / 4
    # A searched shape is named in words, not as "search".
    assert text.splitlines()[3].endswith("  wsd: warmup 2% lin, hold 68%, cos -> 0.1")
    unranked = [r for r in rows if r[0] == "-"]
    assert [(r[1], r[2]) for r in unranked] == [("g-c", "pruned"), ("g-d", "diverged"), ("g-e", "error")]
    assert "2 finished of 5 groups" in text
    assert unranked[2][8] == "n/a"  # an errored group with no values shows none


def test_no_finished_group():
    text = leaderboard([_group("g-x", "pruned", [3.0])])
    assert "(no finished group)" in text and "0 finished of 1 groups" in text


def test_single_seed_group_shows_na_spread():
    rows = _rows(leaderboard([_group("g-1", "finished", [3.5])]))
    ranked = [r for r in rows if r[0].isdigit()]
    assert ranked[0][3:6] == ["3.5000", "n/a", "n/a"]


def test_group_status_from_last_result():
    assert group_status({"status": "finished"}, errored=False, ended=True) == "finished"
    assert group_status({"status": "diverged"}, errored=False, ended=True) == "diverged"
    assert group_status({"status": "running"}, errored=False, ended=True) == "pruned"
    assert group_status({"status": "running"}, errored=True, ended=True) == "error"
    assert group_status({"status": "running"}, errored=False, ended=False) == "running"
    assert group_status(None, errored=False, ended=True) == "pruned"


def test_outcome_from_contract_result():
    result = {"step": 30, "status": "running", "val_loss": 3.5,
              "per_seed": {"0": {"val_loss": 3.4, "val_bpb": 1.1}, "1": {"val_loss": 3.6, "val_bpb": 1.2}}}
    o = outcome_from_result("g-7", {"baseline": "nanogpt_cosine", "seeds": [0, 1]}, result, errored=False, ended=True)
    assert (o.group_id, o.label, o.status, o.step) == ("g-7", "nanogpt_cosine", "pruned", 30)
    assert o.stats("val_loss").mean == 3.5
    assert o.stats("val_bpb").n == 2


def _trial(tid, status, config, last_result):
    return SimpleNamespace(trial_id=tid, status=status, config=config, last_result=last_result, local_path=None)


def test_progress_prints_starts_table_ends_and_leaderboard():
    out = io.StringIO()
    progress = SweepProgress(total_steps=40, interval_s=0.0, stream=out)
    progress.setup()
    cfg = {"baseline": None, "seeds": [0, 1], "schedule": {"hold_frac": 0.8, "shape": "sqrt"}}
    running = _trial("g-1", "RUNNING", cfg, {})
    progress.on_trial_start(iteration=1, trials=[running], trial=running)
    result = {"step": 20, "val_loss": 3.456789, "tokens_per_s": 2048.0, "status": "running",
              "per_seed": {"0": {"val_loss": 3.4}, "1": {"val_loss": 3.5}}}
    progress.on_trial_result(iteration=2, trials=[running], trial=running, result=result)
    done = _trial("g-1", "TERMINATED", cfg, {**result, "step": 40, "status": "finished"})
    progress.on_trial_complete(iteration=3, trials=[done], trial=done)
    progress.on_experiment_end(trials=[done])
    text = out.getvalue()
    assert "start  g-1 (wsd: hold 80%, 1-sqrt -> 0) seeds [0, 1]" in text
    assert "g-1" in text and "step 20/40" in text and "val_loss 3.4568" in text and "tok/s 2048" in text
    assert "end    g-1 (wsd: hold 80%, 1-sqrt -> 0) finished at step 40 val_loss 3.4500 ± 0.0707 (std, 2 seeds)" in text
    assert "1 finished of 1 groups" in text
    assert all(line.startswith("[sweep ") for line in text.splitlines())


def test_progress_table_is_throttled():
    out = io.StringIO()
    progress = SweepProgress(interval_s=3600.0, stream=out)
    progress.setup()
    t = _trial("g-1", "RUNNING", {"seeds": [0]}, {})
    for step in range(10):
        progress.on_trial_result(iteration=step, trials=[t], trial=t, result={"step": step, "val_loss": 3.0})
    assert out.getvalue() == ""  # within the interval: quiet, for CI logs


def test_progress_pickles_without_its_stream():
    progress = SweepProgress(stream=io.StringIO())
    clone = pickle.loads(pickle.dumps(progress))
    assert clone._stream is None
