"""The MLflow layout's names: tags, run kinds, logged metrics and end states (docs/contracts.md, "MLflow").

Other tools (the report, the tests, a notebook) read runs back by these names, so they live apart from the
callback that writes them.
"""

from __future__ import annotations

from sweep.core.status import DIVERGED, ERROR, FINISHED, PRUNED, RUNNING

# Tag names: the public layout other tools (leaderboard, tests, notebooks) read back.
TAG_SWEEP = "schedsweep.sweep"
TAG_SWEEP_ID = "schedsweep.sweep_id"
TAG_KIND = "schedsweep.kind"
TAG_GROUP = "schedsweep.group"
TAG_SEED = "schedsweep.seed"
TAG_STATUS = "schedsweep.status"
TAG_LABEL = "schedsweep.label"
TAG_LAST_STEP = "schedsweep.last_step"
TAG_TRAIN_RUN = "schedsweep.train_run"
TAG_PARENT = "mlflow.parentRunId"
TAG_STAGE = "schedsweep.stage"  # on a stage's sweep run, e.g. "confirm-2x" (sweep.confirm)
TAG_PARENT_SWEEP = "schedsweep.parent_sweep"  # ... and the name of the sweep it confirms
KIND_SWEEP, KIND_GROUP, KIND_SEED = "sweep", "group", "seed"
# MLflow 3's UI opens an experiment by its kind: without this tag it may infer "GenAI" and open on traces;
# "custom_model_development" opens the runs table, where a sweep's groups and seeds are.
TAG_EXPERIMENT_KIND, TRAINING_EXPERIMENT = "mlflow.experimentKind", "custom_model_development"

SEED_METRICS = ("train_loss", "val_loss", "val_bpb", "lr", "tokens_per_s", "mfu", "val_loss_cooldown", "probe_steps_run",
                "seed_read", "schedule_read")
GROUP_METRICS = ("train_loss", "val_loss", "val_bpb", "lr", "lr_multiplier", "tokens_per_s", "mfu", "tokens",
                 "rung_loss")

# MLflow terminal run states for each group state.
# STOPPED: a seed that was fine but ended because another seed of its group diverged.
STOPPED = "stopped"
RUN_STATE = {FINISHED: "FINISHED", PRUNED: "KILLED", DIVERGED: "FAILED", ERROR: "FAILED", RUNNING: "KILLED",
              STOPPED: "KILLED"}


def seed_status(group_status: str, reported: str | None) -> str:
    """A seed run's end state, from its group's state and the seed's own last `status`."""
    if group_status == DIVERGED:
        return DIVERGED if reported == DIVERGED else STOPPED
    return group_status
