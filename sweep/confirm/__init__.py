"""The confirmation stage of a finished sweep: plan (`plan`), run through the engine (`stages`), report
(`report`), downstream evaluation (`lm_eval`), and the whole of it (`workflow.confirm`)."""

from sweep.config.confirm_settings import ConfirmSettings, horizon_label, parse_horizons
from sweep.confirm.plan import (STAGE, ConfirmPlan, confirm_seeds, group_key, plan_confirmation, read_groups,
                                scale_horizon, select_finalists, stage_config, stage_groups, stage_name)
from sweep.confirm.stages import run_confirmation, run_stage, stage_state

__all__ = [
    "STAGE", "ConfirmPlan", "ConfirmSettings", "confirm_seeds", "group_key", "horizon_label", "parse_horizons",
    "plan_confirmation", "read_groups", "run_confirmation", "run_stage", "scale_horizon", "select_finalists",
    "stage_config", "stage_groups", "stage_name", "stage_state",
]
