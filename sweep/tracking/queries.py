"""Reading a sweep back from MLflow: its runs by tag, and a group run as the one `GroupOutcome`.

The one reader of the layout the callback writes (`sweep.tracking.callback`); `sweep report`, the
confirmation's lm-eval step and the resume logic all go through it.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient

from sweep.core.notices import hook_notices
from sweep.core.outcome import SEARCH_LABEL, GroupOutcome
from sweep.core.status import GroupStatus
from sweep.tracking.params import schedule_from_params
from sweep.tracking.tags import (KIND_GROUP, KIND_SEED, KIND_SWEEP, TAG_GROUP, TAG_KIND, TAG_LABEL, TAG_LAST_STEP,
                                 TAG_SEED, TAG_STATUS, TAG_SWEEP, TAG_SWEEP_ID)


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    """Every run matching `filter_string`, oldest first, across result pages."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def latest_sweep_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Any | None:
    """The latest sweep run named `sweep_name` (a sweep started again with --overwrite has a newer one), or None."""
    sweeps = search_all(client, experiment_id,
                         f"tags.`{TAG_SWEEP}` = '{sweep_name}' AND tags.`{TAG_KIND}` = '{KIND_SWEEP}'")
    return sweeps[-1] if sweeps else None


def sweep_group_runs(client: MlflowClient, experiment_id: str, sweep_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The group runs of sweep `sweep_id` by group id, and each group's seed runs by seed."""
    runs = search_all(client, experiment_id, f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}'")
    groups = {r.data.tags[TAG_GROUP]: r for r in runs if r.data.tags.get(TAG_KIND) == KIND_GROUP}
    seeds: dict[str, dict[str, Any]] = {g: {} for g in groups}
    for r in runs:
        tags = r.data.tags
        if tags.get(TAG_KIND) == KIND_SEED and tags.get(TAG_GROUP) in seeds:
            seeds[tags[TAG_GROUP]][tags[TAG_SEED]] = r
    return groups, seeds


def find_sweep_run(tracking_uri: str, experiment_name: str, sweep_name: str) -> str | None:
    """The run id of the latest sweep run named `sweep_name` in the experiment, or None."""
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    sweep_run = None if exp is None else latest_sweep_run(client, exp.experiment_id, sweep_name)
    return sweep_run.info.run_id if sweep_run is not None else None


def sweep_id_of(tracking_uri: str, experiment_name: str, sweep_name: str) -> str | None:
    """The sweep id (resume key) of the latest sweep run named `sweep_name`, or None."""
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    run = None if exp is None else latest_sweep_run(client, exp.experiment_id, sweep_name)
    return None if run is None else run.data.tags.get(TAG_SWEEP_ID)


def groups_from_mlflow(tracking_uri: str, experiment_name: str, sweep_name: str) -> list[GroupOutcome]:
    """Read every group of a sweep back from the MLflow store, for `sweep.tracking.progress.leaderboard`.

    When several sweeps carried this name (one was started again with --overwrite), the latest is read.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    sweep_run = latest_sweep_run(client, exp.experiment_id, sweep_name)
    if sweep_run is None:
        return []
    groups, seed_runs = sweep_group_runs(client, exp.experiment_id, sweep_run.data.tags[TAG_SWEEP_ID])
    return [outcome_from_group_run(run, seed_runs[group]) for group, run in sorted(groups.items())]


def outcome_from_group_run(run: Any, seed_runs: dict[str, Any]) -> GroupOutcome:
    """A group run and its seed runs (by seed) as a `GroupOutcome`; a seed run's latest val_loss is its last
    report, the final loss of a finished group. The schedule is parsed back from the group run's params."""
    tags, metrics = run.data.tags, run.data.metrics
    finals = {s: r.data.metrics for s, r in seed_runs.items()}
    last_step = last_logged_step(run) or 0  # a running group's step
    return GroupOutcome(
        group_id=tags[TAG_GROUP], label=tags.get(TAG_LABEL, SEARCH_LABEL),
        status=GroupStatus.parse(tags.get(TAG_STATUS)),
        step=int(metrics.get("final_step", last_step)),
        final_val_loss={s: m["val_loss"] for s, m in finals.items() if "val_loss" in m},
        final_val_bpb={s: m["val_bpb"] for s, m in finals.items() if "val_bpb" in m},
        run_id=run.info.run_id, seed_runs={s: r.info.run_id for s, r in seed_runs.items()},
        schedule=schedule_from_params(run.data.params),
        notices=hook_notices({s: {"step": last_step or 1, **m} for s, m in finals.items()}),
    )


def last_logged_step(run: Any) -> int | None:
    """The last step logged to a run returned by `search_runs` (None: nothing yet): its latest metric steps,
    and the last-step tag that versions before 2026-12-07 wrote. The tag alone was never enough: the sqlite
    store commits a `log_batch`'s metrics and its tags in separate transactions, so it could lag the metrics."""
    tag = run.data.tags.get(TAG_LAST_STEP)
    steps = latest_metric_steps(run) + ([int(tag)] if tag is not None else [])
    return max(steps) if steps else None


def latest_metric_steps(run: Any) -> list[int]:
    """The step of each metric's latest value in a run returned by `search_runs`.

    MLflow's public `run.data.metrics` keeps only the values; the steps are in the private `_metric_objs`,
    and the public alternative (`get_metric_history`, one request per metric and run) would make a resume of a
    large sweep take minutes. Read here only, so an MLflow change breaks one function."""
    return [int(m.step) for m in getattr(run.data, "_metric_objs", ())]
