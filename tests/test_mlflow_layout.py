"""`check_sweep_layout`: the MLflow layout checks any real-sweep test can run (no tests of its own here).

After a sweep (fresh or resumed), its MLflow store must hold exactly one sweep run, one group run per group
and one seed run per (group, seed), correctly nested; every seed run's val_loss logged once per step, in
increasing steps (a resume neither restarts at step 1 nor logs a step twice); end states that match each
group's status tag; and group statistics that match the seeds' final values.
"""

from __future__ import annotations

import statistics
from typing import Iterable

from mlflow.tracking import MlflowClient

from sweep.tracking.tags import TAG_GROUP, TAG_KIND, TAG_PARENT, TAG_SEED, TAG_STATUS, TAG_SWEEP, TAG_SWEEP_ID

# Group status tag -> MLflow run status (the sweep's contract, docs/contracts.md).
RUN_STATUS = {"finished": "FINISHED", "pruned": "KILLED", "diverged": "FAILED", "error": "FAILED"}


def check_sweep_layout(tracking_uri: str, experiment: str, sweep_name: str, seeds: Iterable[int],
                       groups: Iterable[str] | None = None, eval_every: int | None = None) -> dict[str, list]:
    """Assert the layout of the latest sweep named `sweep_name`; return its runs by kind.

    `groups`: the expected group (Tune trial) ids, when the caller knows them. `eval_every`: the eval
    interval, when every eval step (a multiple of it, from the first on) must be in every seed run, none lost.
    """
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    named = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{sweep_name}'",
                               max_results=5000, order_by=["attributes.start_time ASC"])
    sweep_runs = [r for r in named if r.data.tags[TAG_KIND] == "sweep"]
    assert sweep_runs, f"no sweep run named {sweep_name!r}"
    sweep_id = sweep_runs[-1].data.tags[TAG_SWEEP_ID]
    runs = [r for r in named if r.data.tags.get(TAG_SWEEP_ID) == sweep_id]
    kinds = {k: [r for r in runs if r.data.tags[TAG_KIND] == k] for k in ("sweep", "group", "seed")}

    assert len(kinds["sweep"]) == 1, "one sweep run per sweep, also after a resume"
    sweep_run = kinds["sweep"][0]
    assert sweep_run.info.status == "FINISHED", sweep_run.info.status
    group_runs = {}
    for g in kinds["group"]:
        gid = g.data.tags[TAG_GROUP]
        assert gid not in group_runs, f"two group runs for {gid}"
        group_runs[gid] = g
    if groups is not None:
        assert set(group_runs) == set(groups)
    expected_seeds = sorted(str(s) for s in seeds)

    for gid, group in group_runs.items():
        assert group.data.tags[TAG_PARENT] == sweep_run.info.run_id
        state = group.data.tags[TAG_STATUS]
        assert RUN_STATUS.get(state) == group.info.status, (gid, state, group.info.status)
        seed_runs = [r for r in kinds["seed"] if r.data.tags[TAG_GROUP] == gid]
        assert sorted(r.data.tags[TAG_SEED] for r in seed_runs) == expected_seeds, f"seed runs of {gid}"
        finals = []
        for srun in seed_runs:
            assert srun.data.tags[TAG_PARENT] == group.info.run_id
            steps = [m.step for m in client.get_metric_history(srun.info.run_id, "val_loss")]
            assert steps, f"no val_loss in {gid} seed {srun.data.tags[TAG_SEED]}"
            assert steps == sorted(set(steps)) and steps[0] > 0, f"steps logged twice or restarted: {steps}"
            if eval_every is not None:
                assert steps == list(range(eval_every, steps[-1] + 1, eval_every)), f"steps lost: {steps}"
            if state != "diverged":
                assert srun.info.status == group.info.status, (gid, srun.info.status, group.info.status)
            finals.append(srun.data.metrics["val_loss"])
        if state != "diverged":  # a diverged seed's penalty may replace its loss
            assert abs(group.data.metrics["final_val_loss_mean"] - statistics.fmean(finals)) < 1e-9
            if len(finals) > 1:
                assert abs(group.data.metrics["final_val_loss_std"] - statistics.stdev(finals)) < 1e-9
    return kinds
