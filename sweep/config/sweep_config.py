"""The sweep config: one YAML file, validated in full before anything is created.

Every bad value raises `ConfigError` naming the dotted field (`seeds[1]`, `scheduler.reduction_factor`,
`trainer.optimizer.lr`), so `sweep run` prints one line and exits 2 with no folder, Ray cluster or MLflow
run made. The `trainer:` section is a `trainable.config.TrainConfig` minus what the sweep itself sets per
run (`schedule`, `seed`, `data_seed`, `checkpoint.dir`).

    name: demo
    trainer: {model: tiny, horizon: {steps: 60}, eval: {interval: 10}, ...}
    # ... or, instead of trainer:, one of
    #   simulator: {law: mpl_25m, total_steps: 24000, ...}   (trainable.simulator.SimulatorConfig)
    #   script: {path: train.py, horizon_steps: 400, ...}     (sweep.config.script.ScriptSection)
    search_space: wsd                   # a named space from search_spaces, or inline (see below)
    baselines: [nanogpt_cosine, {preset: wsd_sqrt, cooldown_frac: 0.2}]
    seeds: [0, 1]
    budget: 4                           # shapes proposed by TPE, on top of the baselines
    scheduler: {grace_period: 20, reduction_factor: 2, rung_metric: raw, cooldown_frac: 0.2}
    resources: {workers: 2, use_gpu: false, cpus_per_worker: 0.5, max_failures: 2}
    max_concurrent_trials: 1
    storage: ./sweeps                   # a folder, a shared mount, s3://bucket/x or gs://bucket/x
    mlflow: {tracking_uri: null, experiment: null}   # default: sqlite in <storage>/<name>/mlflow.db
    optuna: {storage: null, seed: 0}    # e.g. sqlite:///study.db to watch it in optuna-dashboard
    divergence_penalty: null            # null: a diverged group is FAIL in Optuna; a number (>= ln vocab):
                                        # told as that, raised at run time above the worst finished group
    verdict: {effect: 0.003, seed_std: 0.002, alpha: 0.01, power: 0.8, correction: holm}   # family-wise verdicts
    confirm: {top: 2, horizons: [1x, 2x, 4x], seeds: 5}                   # defaults for `sweep confirm NAME`

An inline search space maps Shape parameters to a range `[low, high]` (two numbers), a list of choices
(strings), `{choices: [...]}` (any values), or a fixed value:
`search_space: {warmup_frac: [0.0, 0.1], shape: [cosine, linear], floor: {choices: [0.0, 0.1]}, hold_frac: 0.5}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import schedule_from_dict
from search_spaces.errors import ConfigError
from search_spaces.validation import MAX_SEED, check_int, check_number, check_section
from sweep.config.backends import BACKENDS, DEFAULT_BACKEND, Backend, ScriptBackend, SimulatorBackend, TrainerBackend
from sweep.config.confirm_settings import ConfirmSettings
from sweep.config.script import ScriptSection
from sweep.config.sections import MlflowSection, OptunaSection, ResourcesSection, SchedulerSection, VerdictSection
from sweep.config.space import parse_search_space
from sweep.core import layout, storage
from sweep.core.layout import check_sweep_name
from sweep.core.storage import REMOTE_SCHEMES, is_remote
from trainable.config import TrainConfig, load_yaml
from trainable.yaml_input import parse_yaml

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")

MAX_BUDGET = 100_000  # searched shapes per sweep: far past what TPE or a cluster would make use of


def _check_penalty(penalty: float, runner: Backend) -> float:
    # A penalty below what finished runs reach would make TPE prefer shapes that diverge.
    floor = runner.penalty_floor()
    if floor is not None and penalty < floor[0]:
        raise ConfigError("divergence_penalty", f"must be >= {floor[0]:.4g} ({floor[1]}), so a diverged group never "
                                                f"looks better than one that finishes; got {penalty:g}")
    return penalty


def _parse_baselines(value: Any, path: str = "baselines") -> tuple[dict, ...]:
    """Each baseline is a preset name or `{preset: NAME, ...args}`; returned as schedule dicts."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of preset names, got {value!r}")
    out: list[dict] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        d = {"preset": item} if isinstance(item, str) else item
        if not isinstance(d, dict) or "preset" not in d:
            raise ConfigError(where, f"expected a preset name or a mapping with `preset:`, got {item!r}")
        try:
            schedule = schedule_from_dict(dict(d))
        except ConfigError as err:
            raise err.prefixed(where) from None
        out.append(schedule.to_dict())
    labels = [baseline_label(d) for d in out]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise ConfigError(f"{path}[{i}]", f"baseline {label!r} appears twice")
    return tuple(out)


def baseline_label(schedule: dict) -> str:
    """The name a baseline group goes by: the preset name, plus its arguments when it has any."""
    args = {k: v for k, v in schedule.items() if k != "preset"}
    if not args:
        return str(schedule["preset"])
    return f"{schedule['preset']}(" + ",".join(f"{k}={v}" for k, v in sorted(args.items())) + ")"


def _parse_seeds(value: Any, path: str = "seeds") -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"expected a non-empty list of integers, got {value!r}")
    seeds = tuple(check_int(s, f"{path}[{i}]", 0, MAX_SEED) for i, s in enumerate(value))
    for i, s in enumerate(seeds):
        if seeds.index(s) != i:
            raise ConfigError(f"{path}[{i}]", f"seed {s} appears twice")
    return seeds


def _parse_confirm(value: Any, path: str = "confirm") -> dict | None:
    """Validate the `confirm:` block now (a bad value fails `sweep run`, not a later `sweep confirm`); keep it
    as given so the saved sweep.yaml carries it."""
    if value is None:
        return None
    ConfirmSettings.parse(value, path)
    return dict(value)


def parse_storage(value: Any, path: str = "storage") -> str:
    """A local folder (made absolute) or an object-store URI; ConfigError naming `path` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"expected a folder or a URI like s3://bucket/prefix, got {value!r}")
    if is_remote(value) or "://" in value:
        if not is_remote(value):
            raise ConfigError(path, f"unsupported scheme in {value!r}; use a folder or {', '.join(REMOTE_SCHEMES)}")
        return value.rstrip("/")
    resolved = Path(value).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise ConfigError(path, f"{resolved} exists and is not a folder")
    return str(resolved)


_TOP_KEYS = {
    "name", "trainer", "simulator", "script", "search_space", "baselines", "seeds", "budget", "scheduler",
    "resources", "max_concurrent_trials", "storage", "mlflow", "optuna", "divergence_penalty", "verdict", "confirm",
}


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. Build it with `from_dict` / `from_yaml`; `to_dict` gives back the YAML form."""

    name: str
    runner: Backend  # what one seed run is: exactly one of the `trainer`, `simulator`, `script` sections
    search_space: Any
    search_space_spec: Any
    baselines: tuple[dict, ...]
    seeds: tuple[int, ...]
    budget: int
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    max_concurrent_trials: int = 1
    storage: str = "./sweeps"
    mlflow: MlflowSection = field(default_factory=MlflowSection)
    optuna: OptunaSection = field(default_factory=OptunaSection)
    divergence_penalty: float | None = None
    verdict: VerdictSection = field(default_factory=VerdictSection)
    confirm: dict | None = None  # the `confirm:` block: defaults for `sweep confirm` (config.confirm_settings)

    @classmethod
    def from_dict(cls, d: Any) -> "SweepConfig":
        """Validate a YAML-shaped dict; the first problem found raises `ConfigError` naming its field."""
        d = check_section(d, _TOP_KEYS, "")
        name = check_sweep_name(d.get("name"))
        present = [b for b in BACKENDS if d.get(b) is not None]
        if len(present) > 1:
            raise ConfigError(present[1], f"give one of {', '.join(BACKENDS)}, not both {present[0]} and {present[1]}")
        backend = present[0] if present else DEFAULT_BACKEND
        runner = BACKENDS[backend].parse(d.get(backend))
        if "search_space" not in d:
            raise ConfigError("search_space", "required: a search space name (e.g. wsd) or an inline mapping")
        space = parse_search_space(d["search_space"])
        baselines = _parse_baselines(d.get("baselines"))
        seeds = _parse_seeds(d.get("seeds", [0, 1, 2]))
        budget = check_int(d.get("budget", 4), "budget", 0, MAX_BUDGET)
        if budget == 0 and not baselines:
            raise ConfigError("budget", "0 with no baselines: nothing to run")
        scheduler = SchedulerSection.parse(d.get("scheduler"))
        total = runner.known_horizon()
        if total is not None and scheduler.enabled and scheduler.grace_period > total:
            raise ConfigError("scheduler.grace_period", f"{scheduler.grace_period} is past the horizon ({total} steps)")
        if not runner.can_probe and "rung_metric" not in (d.get("scheduler") or {}):
            scheduler = dataclasses.replace(scheduler, rung_metric="raw")
        if scheduler.rung_metric == "cooldown" and not runner.can_probe:
            raise ConfigError("scheduler.rung_metric", f"cooldown needs a trainer that can fork a probe run "
                              f"(trainer or simulator); use raw or predicted with {runner.name}")
        resources = ResourcesSection.parse(d.get("resources"))
        trainer = runner.section if isinstance(runner, TrainerBackend) else None
        if resources.use_gpu and trainer is not None and trainer.device == "cpu":
            raise ConfigError("resources.use_gpu", "true while trainer.device is cpu")
        storage = parse_storage(d.get("storage", "./sweeps"))
        mlflow_section = MlflowSection.parse(d.get("mlflow"))
        if mlflow_section.tracking_uri is None and is_remote(storage):
            raise ConfigError("mlflow.tracking_uri", "required when storage is remote (no local sqlite file there)")
        penalty = d.get("divergence_penalty")
        if penalty is not None:
            penalty = _check_penalty(check_number(penalty, "divergence_penalty", lo=0.0, lo_open=True), runner)
        return cls(
            name=name,
            runner=runner,
            search_space=space,
            search_space_spec=d["search_space"],
            baselines=baselines,
            seeds=seeds,
            budget=budget,
            scheduler=scheduler,
            resources=resources,
            max_concurrent_trials=check_int(d.get("max_concurrent_trials", 1), "max_concurrent_trials", 1),
            storage=storage,
            mlflow=mlflow_section,
            optuna=OptunaSection.parse(d.get("optuna")),
            divergence_penalty=penalty,
            verdict=VerdictSection.parse(d.get("verdict")),
            confirm=_parse_confirm(d.get("confirm")),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SweepConfig":
        """Read and validate a sweep YAML file."""
        return cls.from_dict(load_yaml(path))

    # ------------------------------------------------------------------------------------------------------
    @property
    def sweep_dir(self) -> str:
        """Where this sweep lives: `<storage>/<name>` (Tune's experiment folder)."""
        return f"{self.storage}/{self.name}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI; by default an sqlite file inside the sweep folder."""
        return self.mlflow.tracking_uri or f"sqlite:///{self.sweep_dir}/mlflow.db"

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    def verdict_family_size(self) -> int:
        """How many comparisons this sweep's report tests as one family when every group finishes: every
        searched shape against every baseline, and every pair of baselines."""
        b = len(self.baselines)
        return max(1, self.budget * b + b * (b - 1) // 2)

    @property
    def backend(self) -> str:
        """What one seed run is: `trainer` (the built-in GPT), `simulator` (the loss law) or `script`."""
        return self.runner.name

    @property
    def trainer(self) -> TrainConfig | None:
        """The built-in GPT trainer's config (backend "trainer"), else None."""
        return self.runner.section if isinstance(self.runner, TrainerBackend) else None

    @property
    def simulator(self) -> Any:
        """The `trainable.simulator.SimulatorConfig` (backend "simulator"), else None."""
        return self.runner.section if isinstance(self.runner, SimulatorBackend) else None

    @property
    def script(self) -> ScriptSection | None:
        """The script section (backend "script"), else None."""
        return self.runner.section if isinstance(self.runner, ScriptBackend) else None

    @property
    def trainer_dict(self) -> dict:
        """The trainer section as a plain dict ({} for other backends); the group trial adds schedule, seeds
        and checkpoint dir."""
        return self.runner.section_dict() if isinstance(self.runner, TrainerBackend) else {}

    def max_step(self) -> int:
        """The last step a run reports (the horizon; a token horizon resolves with the configured world size)."""
        return self.runner.total_steps(self.resources.workers)

    def to_dict(self) -> dict:
        """The YAML form, as `from_dict` accepts it (the copy stored in the sweep folder for resume)."""
        return {
            "name": self.name,
            self.runner.name: self.runner.section_dict(),
            "search_space": self.search_space_spec,
            "baselines": [dict(b) for b in self.baselines],
            "seeds": list(self.seeds),
            "budget": self.budget,
            "scheduler": {
                "grace_period": self.scheduler.grace_period,
                "reduction_factor": self.scheduler.reduction_factor,
                "rung_metric": self.scheduler.rung_metric,
                "cooldown_frac": self.scheduler.cooldown_frac,
                "enabled": self.scheduler.enabled,
            },
            "resources": {
                "workers": self.resources.workers,
                "use_gpu": self.resources.use_gpu,
                "cpus_per_worker": self.resources.cpus_per_worker,
                "max_failures": self.resources.max_failures,
            },
            "max_concurrent_trials": self.max_concurrent_trials,
            "storage": self.storage,
            "mlflow": {"tracking_uri": self.mlflow.tracking_uri, "experiment": self.mlflow.experiment},
            "optuna": {"storage": self.optuna.storage, "seed": self.optuna.seed},
            "divergence_penalty": self.divergence_penalty,
            "confirm": self.confirm,
            "verdict": {"effect": self.verdict.effect, "seed_std": self.verdict.seed_std,
                        "alpha": self.verdict.alpha, "power": self.verdict.power,
                        "correction": self.verdict.correction},
        }


def load_sweep_config(path: str | Path | None = None) -> SweepConfig:
    """The sweep config at `path`, or the packaged demo config when `path` is None."""
    return SweepConfig.from_yaml(DEMO_CONFIG if path is None else path)


def parse_saved_config(text: str | bytes, source: str) -> SweepConfig:
    """The config saved in a sweep folder (`source`: its sweep.yaml, named in every message), validated. A file
    that is not a valid sweep config (edited or damaged by hand) is a ConfigError, never a traceback."""
    data = parse_yaml(text, source, "name")
    if not isinstance(data, dict):
        raise ConfigError("name", f"{source} does not hold a sweep config (a mapping), "
                                  f"but {'nothing' if data is None else 'a ' + type(data).__name__}")
    try:
        return SweepConfig.from_dict(data)
    except ConfigError as err:
        raise err.prefixed(source) from None


def load_saved_config(storage_path: str, name: str) -> SweepConfig:
    """The config a sweep was started with, read back from its folder (for `sweep resume NAME`)."""
    path = storage.join(layout.sweep_dir(storage_path, name), layout.SWEEP_FILE)
    data = storage.read_bytes(path)
    if data is None:
        raise ConfigError("name", f"no sweep {name!r} in {storage_path} (no {layout.SWEEP_FILE} there)")
    return parse_saved_config(data, path)
