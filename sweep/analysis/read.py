"""Reading a finished (or interrupted) sweep back for `sweep report` and `sweep plan-seeds --from-sweep`.

The source of truth is MLflow (the layout in docs/contracts.md): the sweep run, its group runs (final
status, schedule params) and their seed runs (final and historical val_loss / val_bpb). The sweep folder
only tells where MLflow is: its `sweep.yaml` holds the tracking URI and experiment, unless the caller names
them. Nothing here writes anything; a missing sweep, store or experiment is a `ConfigError` (exit 2), and an
sqlite store that does not exist is refused *before* MLflow would create an empty one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.tracking import MlflowClient

from search_spaces.errors import ConfigError
from sweep.config import SweepConfig, parse_saved_config, parse_storage
from sweep.config.store_uris import check_tracking_uri
from sweep.core import storage
from sweep.core.layout import SWEEP_FILE, check_sweep_name
from sweep.core.outcome import GroupOutcome
from sweep.core.secrets import redact_uri
from sweep.core.status import FINISHED
from sweep.tracking.queries import latest_sweep_run, outcome_from_group_run, sweep_group_runs
from sweep.tracking.tags import TAG_SWEEP_ID

_SERVER_TIMEOUT_S = 10.0  # how long a tracking server may take to answer its health check


@dataclass(frozen=True)
class SweepLocation:
    """Where a sweep's records are: MLflow store and experiment, plus its folder and config when known."""

    name: str
    tracking_uri: str
    experiment: str
    sweep_dir: str | None
    config: SweepConfig | None


@dataclass(frozen=True)
class SweepRecord:
    """A sweep read back from MLflow: its parent run, its groups (oldest first) and its horizon."""

    location: SweepLocation
    sweep_id: str
    run_id: str
    run_status: str
    groups: tuple[GroupOutcome, ...]
    total_steps: int | None

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.location.tracking_uri)


def quiet_store_logs() -> None:
    """Silence MLflow's INFO lines about its sqlite schema ("Creating initial MLflow database tables..."),
    printed on stderr each time a process opens a store: a reading command's output and its one-line errors
    should be ours alone. For CLI commands; a library caller keeps its own logging setup."""
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def locate_sweep(name: str, storage_path: str | None = None, tracking_uri: str | None = None,
                 experiment: str | None = None) -> SweepLocation:
    """Resolve a sweep's MLflow store: `tracking_uri` when given, else the one in ``<storage>/<name>/sweep.yaml``.

    The storage given here wins over the one saved in sweep.yaml (as for `sweep resume`): the folder may have
    been moved. Raises ConfigError naming `name` or the option at fault.
    """
    check_sweep_name(name)
    base = parse_storage(storage_path or "./sweeps", "--storage")
    sweep_dir = storage.join(base, name)
    text = storage.read_bytes(storage.join(sweep_dir, SWEEP_FILE))
    config = None
    if text is not None:
        config = replace(parse_saved_config(text, f"{sweep_dir}/{SWEEP_FILE}"), storage=base)
    if tracking_uri is None:
        if config is None:
            raise ConfigError("name", f"no sweep {name!r} in {base} (no {SWEEP_FILE} there); "
                                      "give --storage, or --tracking-uri to read it from MLflow alone")
        tracking_uri = config.tracking_uri
    _check_store_exists(tracking_uri)
    if experiment is None:
        experiment = config.experiment if config is not None else name
    return SweepLocation(name=name, tracking_uri=tracking_uri, experiment=experiment,
                         sweep_dir=sweep_dir if config is not None else None, config=config)


def _check_store_exists(tracking_uri: str) -> None:
    """Refuse a store that reading would create, change or wait on: MlflowClient on a missing or empty sqlite
    file creates (migrates) a whole MLflow database, and on a server that does not answer it retries for
    minutes. A read-only command must leave every file as it was and answer at once."""
    check_tracking_uri(tracking_uri, "--tracking-uri", need_driver=True)
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError("--tracking-uri", f"no MLflow store at {path}")
        with open(path, "rb") as f:
            header = f.read(16)
        if header != b"SQLite format 3\x00":
            raise ConfigError("--tracking-uri", f"{path} is {'empty' if not header else 'not a SQLite database'}, "
                                                "not an MLflow store")
    elif tracking_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=_SERVER_TIMEOUT_S).close()
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise ConfigError("--tracking-uri", f"no MLflow server answers at {redact_uri(tracking_uri)} "
                                                f"({reason})") from None


def read_sweep(location: SweepLocation) -> SweepRecord:
    """The latest sweep named `location.name` in its experiment, with every group and its seed runs."""
    client = MlflowClient(tracking_uri=location.tracking_uri)
    exp = client.get_experiment_by_name(location.experiment)
    where = f"experiment {location.experiment!r} at {location.tracking_uri}"
    if exp is None:
        raise ConfigError("name", f"no sweep {location.name!r}: no {where}")
    sweep_run = latest_sweep_run(client, exp.experiment_id, location.name)
    if sweep_run is None:
        raise ConfigError("name", f"no sweep {location.name!r} in {where}")
    sweep_id = sweep_run.data.tags[TAG_SWEEP_ID]
    group_runs, seed_runs = sweep_group_runs(client, exp.experiment_id, sweep_id)
    groups = tuple(outcome_from_group_run(run, seed_runs[g]) for g, run in group_runs.items())
    total = location.config.max_step() if location.config is not None else None
    if total is None:
        total = max((g.step for g in groups), default=0) or None
    return SweepRecord(location=location, sweep_id=sweep_id, run_id=sweep_run.info.run_id,
                       run_status=sweep_run.info.status, groups=groups, total_steps=total)


def metric_curves(record: SweepRecord, group: GroupOutcome, metric: str = "val_loss") -> dict[str, list[tuple[int, float]]]:
    """Each seed's `metric` history as sorted (step, value) pairs (the callback logs every step once)."""
    client = record.client
    curves = {}
    for seed, run_id in sorted(group.seed_runs.items(), key=lambda item: (len(item[0]), item[0])):
        points: dict[int, float] = {}
        for m in client.get_metric_history(run_id, metric):
            if math.isfinite(m.value):
                points.setdefault(int(m.step), float(m.value))
        curves[seed] = sorted(points.items())
    return curves


def finished_finals(groups: tuple[GroupOutcome, ...] | list[GroupOutcome], metric: str = "val_loss",
                    baselines_only: bool = False) -> dict[str, dict[str, float]]:
    """Group name -> seed -> final `metric` of the finished groups (only baselines when asked)."""
    out = {}
    for g in groups:
        if g.status != FINISHED or (baselines_only and not g.is_baseline):
            continue
        source = g.final_val_loss if metric == "val_loss" else g.final_val_bpb
        values = {s: float(v) for s, v in source.items() if math.isfinite(float(v))}
        if values:
            out[g.name] = values
    return out
