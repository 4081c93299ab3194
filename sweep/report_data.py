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
from typing import Any, Mapping

from mlflow.tracking import MlflowClient

from search_spaces import Schedule, schedule_from_dict
from search_spaces.errors import ConfigError
from sweep import storage
from sweep.config import SweepConfig, check_sweep_name, parse_saved_config, parse_storage
from sweep.secrets import redact_uri
from sweep.store_uris import check_tracking_uri
from sweep.mlflow_tracking import (TAG_GROUP, TAG_LABEL, TAG_LAST_STEP, TAG_STATUS, TAG_SWEEP_ID, latest_sweep_run,
                                   sweep_group_runs)
from sweep.progress import FINISHED, RUNNING, GroupOutcome

_SERVER_TIMEOUT_S = 10.0  # how long a tracking server may take to answer its health check
SWEEP_FILE = "sweep.yaml"  # the same file `sweep.tuner` writes (not imported from there: it pulls in Ray)
# Group-run params that describe the group, not its schedule.
_GROUP_PARAMS = {"group_id", "baseline", "seeds", "seed"}


@dataclass(frozen=True)
class SweepLocation:
    """Where a sweep's records are: MLflow store and experiment, plus its folder and config when known."""

    name: str
    tracking_uri: str
    experiment: str
    sweep_dir: str | None
    config: SweepConfig | None


@dataclass(frozen=True)
class GroupRecord:
    """One seed group as MLflow holds it. `schedule` is None when its params could not be parsed back."""

    outcome: GroupOutcome
    run_id: str
    seed_runs: Mapping[str, str]
    schedule: Schedule | None

    @property
    def group_id(self) -> str:
        return self.outcome.group_id

    @property
    def label(self) -> str:
        return self.outcome.label

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def is_baseline(self) -> bool:
        """Baseline groups carry their preset's name as label; searched shapes carry "search"."""
        return self.outcome.label != "search"

    @property
    def name(self) -> str:
        """How tables and plots name the group: ``wsd_sqrt (a1b2c3)`` or ``search (d4e5f6)``."""
        return f"{self.label} ({self.group_id})"


@dataclass(frozen=True)
class SweepRecord:
    """A sweep read back from MLflow: its parent run, its groups (oldest first) and its horizon."""

    location: SweepLocation
    sweep_id: str
    run_id: str
    run_status: str
    groups: tuple[GroupRecord, ...]
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
    groups = tuple(_group_record(run, seed_runs[g]) for g, run in group_runs.items())
    total = location.config.max_step() if location.config is not None else None
    if total is None:
        total = max((g.outcome.step for g in groups), default=0) or None
    return SweepRecord(location=location, sweep_id=sweep_id, run_id=sweep_run.info.run_id,
                       run_status=sweep_run.info.status, groups=groups, total_steps=total)


def _group_record(run: Any, seeds: Mapping[str, Any]) -> GroupRecord:
    tags, metrics = run.data.tags, run.data.metrics
    # A seed run's latest val_loss is its last report: the final loss of a finished group.
    finals = {s: r.data.metrics for s, r in seeds.items()}
    outcome = GroupOutcome(
        group_id=tags[TAG_GROUP], label=tags.get(TAG_LABEL, "search"), status=tags.get(TAG_STATUS, RUNNING),
        step=int(metrics.get("final_step", int(tags.get(TAG_LAST_STEP, 0)))),
        final_val_loss={s: m["val_loss"] for s, m in finals.items() if "val_loss" in m},
        final_val_bpb={s: m["val_bpb"] for s, m in finals.items() if "val_bpb" in m},
    )
    return GroupRecord(outcome=outcome, run_id=run.info.run_id,
                       seed_runs={s: r.info.run_id for s, r in seeds.items()},
                       schedule=schedule_from_params(run.data.params))


def _scalar(text: str) -> Any:
    """An MLflow param (always a string) back to the int, float, bool, None or string it was logged from."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def schedule_from_params(params: Mapping[str, str]) -> Schedule | None:
    """The schedule behind a group run's params (its `flat_params()`, contract), or None if unparsable.

    ``kind`` says which of the three forms was flattened: a shape (its fields), a preset (name and resolved
    arguments) or segments (``start``, ``seg<i>.<key>``).
    """
    flat = {k: _scalar(v) for k, v in params.items() if k not in _GROUP_PARAMS}
    kind = flat.pop("kind", None)
    try:
        if kind == "shape":
            return schedule_from_dict(flat)
        if kind == "preset":
            return schedule_from_dict({k: v for k, v in flat.items() if v is not None})
        if kind == "segments":
            count = int(flat.pop("n_segments"))
            segments: list[dict[str, Any]] = [{} for _ in range(count)]
            for key, value in flat.items():
                if key.startswith("seg") and "." in key:
                    index, field = key[3:].split(".", 1)
                    segments[int(index)][field] = value
            return schedule_from_dict({"start": flat.get("start", 0.0), "segments": segments})
    except (ConfigError, ValueError, TypeError, KeyError, IndexError):
        return None
    return None


def metric_curves(record: SweepRecord, group: GroupRecord, metric: str = "val_loss") -> dict[str, list[tuple[int, float]]]:
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


def finished_finals(groups: tuple[GroupRecord, ...] | list[GroupRecord], metric: str = "val_loss",
                    baselines_only: bool = False) -> dict[str, dict[str, float]]:
    """Group name -> seed -> final `metric` of the finished groups (only baselines when asked)."""
    out = {}
    for g in groups:
        if g.status != FINISHED or (baselines_only and not g.is_baseline):
            continue
        source = g.outcome.final_val_loss if metric == "val_loss" else g.outcome.final_val_bpb
        values = {s: float(v) for s, v in source.items() if math.isfinite(float(v))}
        if values:
            out[g.name] = values
    return out
