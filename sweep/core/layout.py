"""A sweep's folder in its storage: the names of its files, and the one rule for a sweep's name.

    <storage>/<name>/
        sweep.yaml               the validated sweep config (what `sweep resume NAME` reads back)
        asha_state.json          ASHA's rungs and stop decisions (stock Ray does not restore them)
        mlflow_pending.json      MLflow writes held back while the tracking server did not answer
        train/<trial>-seed<k>/   each seed run's Ray Train run and checkpoints
        mlflow.db                the default MLflow store
        mlartifacts/             MLflow artifacts when the store is not a tracking server
        tune/                    Tune's experiment folder (tuner.pkl, experiment and searcher state, trials)
        confirm/                 the confirmation report of `sweep confirm`
        sweep.log                Ray's, Tune's and the libraries' log lines (on screen only with --verbose)

Tune's folder is a subfolder on purpose: on restore Tune copies every .json/.pkl file under its experiment
folder into a driver staging folder and from then on uploads that staging copy over the experiment folder at
every experiment checkpoint. Files of ours inside it (ASHA's rungs, Train V2's checkpoint-manager snapshots)
would be overwritten with their stale pre-restore copies.
"""

from __future__ import annotations

import re
from typing import Any

from search_spaces.errors import ConfigError
from sweep.core import storage

SWEEP_FILE = "sweep.yaml"
ASHA_FILE = "asha_state.json"
PENDING_MLFLOW_FILE = "mlflow_pending.json"  # MLflow writes held back during an outage (sweep.tracking.pending)
TUNE_DIR = "tune"
TUNER_FILE = "tuner.pkl"  # Tune's own file: its presence means a sweep of this name was started here
TRAIN_DIR = "train"
ARTIFACTS_DIR = "mlartifacts"
CONFIRM_DIR = "confirm"
LOG_FILE = "sweep.log"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_sweep_name(name: Any, field: str = "name") -> str:
    """`name` if it can name a sweep folder, else a ConfigError on `field`: the one rule for every command
    that takes a sweep name, so none reads or writes outside its storage (no `/`, no leading `.`)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(field, f"expected 1-100 letters, digits, '_', '-' or '.' (not starting with '.'), got "
                                 f"{name!r}")
    return name


def sweep_dir(storage_path: str, name: str) -> str:
    """`<storage>/<name>`, the name checked first."""
    return storage.join(storage_path, check_sweep_name(name))


def sweep_exists(storage_path: str, name: str) -> bool:
    """Whether `<storage>/<name>` holds a started sweep (`name` checked first: nothing outside the storage)."""
    base = sweep_dir(storage_path, name)
    return storage.exists(storage.join(base, TUNE_DIR, TUNER_FILE)) or storage.exists(storage.join(base, SWEEP_FILE))


def tune_state_saved(sweep_folder: str) -> bool:
    """Whether Tune saved an experiment state in this sweep folder (what `Tuner.restore` needs to bring trials
    back, and what reading a sweep's groups from Tune needs).

    `tuner.pkl` is written when the Tuner is built, the first experiment state only once `fit` has started
    its loop: a driver killed in between (Ray's start can take half a minute) leaves a tuner.pkl that Tune
    cannot restore any trial from, and its restore then runs a single fresh trial."""
    return any(n.startswith("experiment_state") for n in storage.names(storage.join(sweep_folder, TUNE_DIR)))
