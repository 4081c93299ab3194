"""A sweep's config: the YAML file validated in full before anything starts (`SweepConfig`), its sections,
its search space, its backend, and the typed trial spec every group runs from."""

from sweep.config.backends import BACKENDS, Backend, ScriptBackend, SimulatorBackend, TrainerBackend
from sweep.config.sections import (RUNG_METRICS, MlflowSection, OptunaSection, ResourcesSection, SchedulerSection,
                                   VerdictSection)
from sweep.config.space import InlineSpace, parse_search_space
from sweep.config.sweep_config import (DEMO_CONFIG, MAX_BUDGET, SweepConfig, baseline_label, load_saved_config,
                                       load_sweep_config, parse_saved_config, parse_storage)

__all__ = [
    "BACKENDS", "Backend", "ScriptBackend", "SimulatorBackend", "TrainerBackend", "DEMO_CONFIG", "MAX_BUDGET",
    "RUNG_METRICS", "InlineSpace", "MlflowSection", "OptunaSection",
    "ResourcesSection", "SchedulerSection", "SweepConfig", "VerdictSection", "baseline_label", "load_saved_config",
    "load_sweep_config", "parse_saved_config", "parse_search_space", "parse_storage",
]
