"""Assembling and running a sweep: Ray, the Tuner (group trials, GroupSearcher, PersistentASHA), callbacks.

`run_sweep(cfg, mode)` is what `sweep run` and `sweep resume` call. Layout of a sweep in its storage:

    <storage>/<name>/
        sweep.yaml               the validated sweep config (what `sweep resume NAME` reads back)
        asha_state.json          ASHA's rungs and stop decisions (stock Ray does not restore them)
        mlflow_pending.json      MLflow writes held back while the tracking server did not answer
        train/<trial>-seed<k>/   each seed run's Ray Train run and checkpoints
        mlflow.db                the default MLflow store
        tune/                    Tune's experiment folder (tuner.pkl, experiment and searcher state, trials)

Tune's folder is a subfolder on purpose: on restore Tune copies every .json/.pkl file under its experiment
folder into a driver staging folder and from then on uploads that staging copy over the experiment folder at
every experiment checkpoint. Files of ours inside it (ASHA's rungs, Train V2's checkpoint-manager snapshots)
would be overwritten with their stale pre-restore copies.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import yaml

from search_spaces.errors import ConfigError
from sweep import storage
from sweep.config import SweepConfig, check_sweep_name, is_remote, parse_saved_config
from sweep.store_uris import check_database_url, check_tracking_uri
from trainable.config import check_runs_here

SWEEP_FILE = "sweep.yaml"
ASHA_FILE = "asha_state.json"
PENDING_MLFLOW_FILE = "mlflow_pending.json"  # MLflow writes held back during an outage (sweep.mlflow_pending)
# Tune's own experiment-state file: its presence means a sweep of this name was started here.
TUNER_FILE = "tuner.pkl"
TUNE_DIR = "tune"

# Defaults that make small sweeps responsive; a user's environment wins.
_ENV_DEFAULTS = {
    # Ray Train polls workers this often; each report waits up to one interval (2 s by default).
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Save experiment + searcher state at least this often, so a killed driver loses little.
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
}


def apply_env_defaults() -> None:
    """Set the environment defaults above (before Ray starts, so every Ray process inherits them)."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


_OWN_ADDRESS: str | None = None  # RAY_ADDRESS as set by init_ray for a local cluster it started


# Ports Ray's own components take by default on a node (GCS, client server, dashboard, dashboard agent HTTP):
# a GCS port picked at random must not be one of them, or ray.init fails ("... is trying to use a port number
# 52365 that is used by other components"), as it once did in the chaos benchmark.
_RAY_DEFAULT_PORTS = frozenset({6379, 10001, 8265, 52365})


def _free_port() -> int:
    """A TCP port the OS just reported free, other than Ray's default ports."""
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            port = int(sock.getsockname()[1])
        if port not in _RAY_DEFAULT_PORTS:
            return port


def init_ray() -> None:
    """Attach to the cluster in RAY_ADDRESS (e.g. under `ray job submit`), else start a local Ray.

    The dashboard stays on: without it, Train workers' placement groups were not freed when Tune ended a
    trial on this Ray version (Ray 2.60, measured).
    """
    import ray

    global _OWN_ADDRESS
    if ray.is_initialized():
        return
    apply_env_defaults()
    if _OWN_ADDRESS is not None and os.environ.get("RAY_ADDRESS") == _OWN_ADDRESS:
        os.environ.pop("RAY_ADDRESS")  # ours, from a local cluster that has since been shut down
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    # Pin the new cluster's GCS port and tell every Ray process the address through RAY_ADDRESS, which they
    # inherit from this process. Ray Train's PlacementGroupCleaner looks the cluster up through the state
    # API; with no address it scans for running GCS processes, and when another Ray runs on the same machine
    # it fails ("Found multiple active Ray instances"), so the placement groups of a stopped group's seed
    # runs leaked and the next group waited for CPUs forever. address="local" makes ray.init start a new
    # cluster despite RAY_ADDRESS.
    port = _free_port()
    ip = ray.util.get_node_ip_address()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = _OWN_ADDRESS = f"{ip}:{port}"
    ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)


_STOP_REQUESTED = threading.Event()


def stop_gracefully_on_signals() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM stop the sweep cleanly: Tune ends its trials, saves the experiment
    state one last time and returns, `sweep run` exits 130 with the resume command, and `sweep resume`
    continues from there. A second signal stops at once (KeyboardInterrupt).

    SIGTERM is what Kubernetes sends a pod it deletes and what `kill` sends; by default it ends Python on the
    spot. Tune's own graceful stop listens to SIGINT and SIGUSR1; its SIGINT handler is turned off here
    (TUNE_DISABLE_SIGINT_HANDLER) so that both signals go through one handler that records the request
    (`stop_requested`: the only reliable sign, since Tune reports interrupted trials as terminated) and then
    raises SIGUSR1 for Tune. Call it after Ray has started (ray.init installs a SIGTERM handler of its own),
    from the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        return
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

    def request_stop(signum: int, frame: Any) -> None:
        if _STOP_REQUESTED.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        _STOP_REQUESTED.set()
        print(f"sweep: {signal.Signals(signum).name} received: stopping cleanly (Tune saves its state); "
              "send it again to stop at once", file=sys.stderr, flush=True)
        signal.raise_signal(signal.SIGUSR1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)


def stop_requested() -> bool:
    """Whether a SIGINT or SIGTERM asked this process to stop the sweep (`stop_gracefully_on_signals`)."""
    return _STOP_REQUESTED.is_set()


def prepare_data(cfg: SweepConfig) -> None:
    """Prepare the bundled corpus once in the driver, before dozens of workers would each try."""
    if cfg.trainer is not None and cfg.trainer.data.bundled:
        cfg.trainer.data.resolve_dir()


# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupResources:
    """What one seed group holds while it runs: seeds x workers Train workers (the simulator: the trial's
    own process only)."""

    cpus: float
    gpus: float


def group_resources(cfg: SweepConfig) -> GroupResources:
    """What one group holds. A simulated group runs its seeds inside the trial (no Train workers), so it
    takes `resources.cpus_per_worker` CPUs once: a fraction of a CPU lets several groups run at once."""
    if cfg.backend == "simulator":
        return GroupResources(cpus=cfg.resources.cpus_per_worker, gpus=0.0)
    n = len(cfg.seeds) * cfg.resources.workers
    return GroupResources(cpus=n * cfg.resources.cpus_per_worker, gpus=float(n) if cfg.resources.use_gpu else 0.0)


def local_resources(count_gpus: bool) -> dict[str, float]:
    """What a local Ray started here would have at most: this machine's CPUs (and GPUs, counted only when asked:
    it imports torch)."""
    gpus = 0.0
    if count_gpus:
        import torch

        gpus = float(torch.cuda.device_count())
    return {"CPU": float(os.cpu_count() or 1), "GPU": gpus}


def concurrency(cfg: SweepConfig, cluster: dict[str, float], where: str = "the cluster") -> int:
    """How many groups may run at once: the configured maximum, lowered so that every running group's Train
    workers fit the cluster (otherwise a worker group waits and times out instead of queueing in Tune,
    because Train workers get placement groups outside Tune's)."""
    need = group_resources(cfg)
    fits = [cfg.max_concurrent_trials]
    if need.cpus > 0:
        fits.append(int(math.floor(cluster.get("CPU", 0.0) / need.cpus + 1e-9)))
    if need.gpus > 0:
        fits.append(int(math.floor(cluster.get("GPU", 0.0) / need.gpus + 1e-9)))
    n = min(fits)
    if n < 1:
        have = f"{cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs"
        why = (f"its {len(cfg.seeds)} simulated seeds run in one process" if cfg.backend == "simulator" else
               f"{len(cfg.seeds)} seeds x {cfg.resources.workers} workers")
        raise ConfigError(
            "resources",
            f"one group needs {need.cpus:g} CPUs and {need.gpus:g} GPUs ({why}) but {where} has {have}",
        )
    return n


def trial_fixed_config(cfg: SweepConfig, scratch_dir: str | None = None) -> dict[str, Any]:
    """The keys every group's trial config carries besides `schedule`, `baseline` and `seeds`."""
    return {
        "backend": cfg.backend,
        "trainer": cfg.trainer_dict,
        "simulator": cfg.simulator.to_dict() if cfg.simulator is not None else None,
        "script": cfg.script.to_dict() if cfg.script is not None else None,
        "rung_metric": cfg.scheduler.rung_metric,
        "cooldown_frac": cfg.scheduler.cooldown_frac,
        "probe_steps": cfg.scheduler.milestones(cfg.max_step()) if cfg.scheduler.enabled else [],
        "resources": {
            "workers": cfg.resources.workers,
            "use_gpu": cfg.resources.use_gpu,
            "cpus_per_worker": cfg.resources.cpus_per_worker,
            "max_failures": cfg.resources.max_failures,
        },
        "train_storage": storage.join(cfg.sweep_dir, "train"),
        "divergence_penalty": cfg.divergence_penalty,
        "scratch_dir": scratch_dir,
    }


def sweep_exists(storage_path: str, name: str) -> bool:
    """Whether `<storage>/<name>` holds a started sweep (`name` checked first: nothing outside the storage)."""
    base = storage.join(storage_path, check_sweep_name(name))
    return storage.exists(storage.join(base, TUNE_DIR, TUNER_FILE)) or storage.exists(storage.join(base, SWEEP_FILE))


def load_saved_config(storage_path: str, name: str) -> SweepConfig:
    """The config a sweep was started with, read back from its folder (for `sweep resume NAME`)."""
    path = storage.join(storage_path, check_sweep_name(name), SWEEP_FILE)
    data = storage.read_bytes(path)
    if data is None:
        raise ConfigError("name", f"no sweep {name!r} in {storage_path} (no {SWEEP_FILE} there)")
    return parse_saved_config(data, path)


# ---------------------------------------------------------------------------------------------------------
def _trainable(cfg: SweepConfig):
    from ray import tune

    if cfg.backend == "simulator":
        from sweep.sim_trial import sim_group_trial

        # The seeds run inside the trial: its resources are the group's, and Tune queues groups by them.
        return tune.with_resources(sim_group_trial, {"cpu": group_resources(cfg).cpus})
    from sweep.group_trial import group_trial

    # The trial itself only coordinates; its seeds' Train workers reserve the real resources. Tune refuses
    # an empty request, hence a token amount of memory.
    return tune.with_resources(group_trial, {"cpu": 0, "memory": 64 * 1024 * 1024})


def _callbacks(cfg: SweepConfig, sweep_id: str | None = None) -> list:
    callbacks: list = []
    if cfg.backend != "simulator":  # simulated seeds run inside the trial and end with it
        from sweep.group_trial import GroupStopper

        callbacks.append(GroupStopper())
    try:
        from sweep.progress import SweepProgress

        callbacks.append(SweepProgress(total_steps=cfg.max_step(), interval_s=15.0))
    except ImportError:
        pass
    try:
        from sweep.mlflow_tracking import MLflowSweepCallback

        callbacks.append(
            MLflowSweepCallback(
                tracking_uri=cfg.tracking_uri, experiment_name=cfg.experiment, sweep_name=cfg.name,
                sweep_config=cfg.to_dict(), total_steps=cfg.max_step(), seeds=list(cfg.seeds),
                search_space=getattr(cfg.search_space, "name", "inline"), sweep_id=sweep_id,
                # Without a tracking server, MLflow's default artifact root is ./mlruns of the driver's working
                # folder, which differs between a run and its resume (a new Ray job, a new head) and dies with
                # the head: keep artifacts in the sweep folder instead (tests/test_shared_storage.py).
                artifact_location=None if cfg.tracking_uri.startswith(("http://", "https://", "databricks"))
                else f"{cfg.sweep_dir}/mlartifacts",
                pending_path=storage.join(cfg.sweep_dir, PENDING_MLFLOW_FILE),
            )
        )
    except ImportError:
        pass
    return callbacks


def build_tuner(cfg: SweepConfig, max_concurrent: int, scratch_dir: str | None = None, sweep_id: str | None = None,
                adopt_study: bool = False):
    """A new Tuner for `cfg` (the sweep folder must not hold another sweep). `sweep_id` and `adopt_study`:
    a start again after one that saved no Tune state goes on with its MLflow sweep run and Optuna trials."""
    from ray import tune

    from sweep.rung_metrics import RUNG_KEY
    from sweep.scheduler import PersistentASHA
    from sweep.searcher import MODE, GroupSearcher

    searcher = GroupSearcher(
        space=cfg.search_space, seeds=list(cfg.seeds), baselines=list(cfg.baselines), budget=cfg.budget,
        fixed=trial_fixed_config(cfg, scratch_dir), divergence_penalty=cfg.divergence_penalty,
        seed=cfg.optuna.seed, storage=cfg.optuna.storage, study_name=cfg.name, adopt_study=adopt_study,
    )
    scheduler = None
    if cfg.scheduler.enabled:
        # max_t above the last step: ASHA stopping a trial exactly at max_t killed the Train controller
        # mid-shutdown (seen on Ray 2.60); finished groups end on their own. ASHA compares `rung_loss`
        # (the configured rung metric, sweep.rung_metrics); Optuna still gets the final mean val_loss.
        scheduler = PersistentASHA(
            state_path=storage.join(cfg.sweep_dir, ASHA_FILE), time_attr="step", metric=RUNG_KEY, mode=MODE,
            max_t=cfg.max_step() + 1, grace_period=cfg.scheduler.grace_period,
            reduction_factor=cfg.scheduler.reduction_factor,
        )
    return tune.Tuner(
        _trainable(cfg),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=len(cfg.baselines) + cfg.budget,
            max_concurrent_trials=max_concurrent,
            # Simulated groups take milliseconds: a fresh actor per group (a process importing scipy) would
            # dominate. GPT groups keep fresh actors (their Train runs are owned by the trial's actor).
            reuse_actors=cfg.backend == "simulator",
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=cfg.sweep_dir, callbacks=_callbacks(cfg, sweep_id), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            # Only simulated groups checkpoint through Tune (a few bytes each). All are kept: with num_to_keep,
            # Tune deletes a checkpoint that its last saved experiment state may still name, and a driver killed
            # before the next save could not restore that group ("does not exist on storage anymore").
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def tune_state_saved(cfg: SweepConfig) -> bool:
    """Whether Tune saved an experiment state for this sweep (what `Tuner.restore` needs to bring trials back).

    `tuner.pkl` is written when the Tuner is built, the first experiment state only once `fit` has started
    its loop: a driver killed in between (Ray's start can take half a minute) leaves a tuner.pkl that Tune
    cannot restore any trial from, and its restore then runs a single fresh trial."""
    return any(n.startswith("experiment_state") for n in storage.names(storage.join(cfg.sweep_dir, TUNE_DIR)))


def discard_unsaved_start(cfg: SweepConfig) -> str | None:
    """Clear what a start that never saved Tune state left (Tune's folder, ASHA's rungs, seed-run folders) so
    the sweep starts again with its full budget; returns the sweep id of its MLflow sweep run to go on with
    (None when there is none). The Optuna study and the MLflow runs stay: the new start adopts them."""
    for part in (TUNE_DIR, ASHA_FILE, "train"):
        path = storage.join(cfg.sweep_dir, part)
        if part == ASHA_FILE:
            if storage.exists(path):
                storage.write_text(path, '{"rungs": [], "num_stopped": 0}')
        else:
            storage.remove_tree(path)
    from mlflow.tracking import MlflowClient

    from sweep.mlflow_tracking import TAG_SWEEP_ID, latest_sweep_run

    try:
        client = MlflowClient(tracking_uri=cfg.tracking_uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        run = None if exp is None else latest_sweep_run(client, exp.experiment_id, cfg.name)
    except Exception:  # an unreachable store: the callback's own setup reports it
        return None
    return None if run is None else run.data.tags.get(TAG_SWEEP_ID)


def restore_tuner(cfg: SweepConfig):
    """The Tuner of an interrupted sweep: finished groups kept, unfinished and errored ones continued."""
    from ray import tune

    return tune.Tuner.restore(
        storage.join(cfg.sweep_dir, TUNE_DIR), trainable=_trainable(cfg), resume_unfinished=True,
        resume_errored=True,
    )


def check_before_start(cfg: SweepConfig) -> None:
    """Everything about `cfg` that can be refused before Ray starts and before any file is written: the
    storage can hold the sweep folder, the stores' drivers are installed here, and, for a local Ray (no
    RAY_ADDRESS), that this machine can hold one group and run its trainer config."""
    import ray

    if (why := storage.unwritable(cfg.storage)) is not None:
        raise ConfigError("storage", f"cannot hold the sweep folder {cfg.sweep_dir}: {why}")
    # The stores this run opens: their database drivers must be installed where it runs.
    check_tracking_uri(cfg.tracking_uri, "mlflow.tracking_uri", need_driver=True)
    if cfg.optuna.storage is not None:
        check_database_url(cfg.optuna.storage, "optuna.storage", need_driver=True)
    if not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        # A local cluster is this machine: refuse a group it can never hold before spending Ray's start on it.
        concurrency(cfg, local_resources(cfg.resources.use_gpu), where="this machine (no RAY_ADDRESS: a local Ray)")
        if cfg.trainer is not None:
            check_runs_here(cfg.trainer, cfg.resources.workers, processes_field="resources.workers")


def run_sweep(cfg: SweepConfig, mode: str = "new", scratch_dir: str | None = None):
    """Run (`new`), continue (`resume`) or restart (`overwrite`) the sweep `cfg`; returns Tune's ResultGrid.

    `new` refuses a name that already holds a sweep: a second Tuner with the same name would overwrite the
    first one's tuner.pkl (ray #35812).
    """
    import ray

    if mode not in ("new", "resume", "overwrite"):
        raise ValueError(f"mode must be new, resume or overwrite, got {mode!r}")
    exists = sweep_exists(cfg.storage, cfg.name)
    if mode == "new" and exists:
        raise ConfigError(
            "name", f"a sweep named {cfg.name!r} already exists in {cfg.storage}; "
            "use --resume to continue it or --overwrite to start again",
        )
    if mode == "resume" and not exists:
        raise ConfigError("name", f"no sweep {cfg.name!r} to resume in {cfg.storage}")

    check_before_start(cfg)
    init_ray()
    max_concurrent = concurrency(cfg, ray.cluster_resources())
    if mode == "overwrite" and exists:
        storage.remove_tree(cfg.sweep_dir)
    if mode == "resume" and storage.exists(storage.join(cfg.sweep_dir, TUNE_DIR, TUNER_FILE)) \
            and tune_state_saved(cfg):
        tuner = restore_tuner(cfg)
    elif mode == "resume" and storage.exists(storage.join(cfg.sweep_dir, SWEEP_FILE)):
        # Started, but killed before Tune saved any state: start again, adopting the first start's MLflow
        # sweep run and Optuna trials (so nothing is asked or logged twice).
        sweep_id = discard_unsaved_start(cfg)
        tuner = build_tuner(cfg, max_concurrent, scratch_dir, sweep_id=sweep_id, adopt_study=True)
    else:
        if not is_remote(cfg.storage):
            os.makedirs(cfg.sweep_dir, exist_ok=True)
        storage.write_text(storage.join(cfg.sweep_dir, SWEEP_FILE), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        tuner = build_tuner(cfg, max_concurrent, scratch_dir)
    stop_gracefully_on_signals()
    return tuner.fit()
