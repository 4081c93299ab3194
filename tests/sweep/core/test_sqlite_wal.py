"""sqlite's write-ahead log for the sweep's sqlite stores: set where the file system is local, left alone
elsewhere, and held by MLflow's and Optuna's own connections afterwards."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from sweep.core.sqlite_wal import file_system_type, sqlite_path, use_write_ahead_log


def _mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA journal_mode").fetchone()[0]


def test_sqlite_path_reads_relative_absolute_and_other_urls():
    assert sqlite_path("sqlite:///sweeps/mlflow.db") == Path("sweeps/mlflow.db")
    assert sqlite_path("sqlite:////abs/optuna.db?timeout=5") == Path("/abs/optuna.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://127.0.0.1:5000") is None and sqlite_path("postgresql://h/db") is None


def test_file_system_type_takes_the_longest_mount_point_above_the_path(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\n"
                      "tmpfs /mnt/shared\\040x tmpfs rw 0 0\n")
    assert file_system_type(Path("/mnt/shared/sweeps/mlflow.db"), str(mounts)) == "nfs4"
    assert file_system_type(Path("/mnt/shared x/a.db"), str(mounts)) == "tmpfs"
    assert file_system_type(Path("/mnt/sharedfoo/a.db"), str(mounts)) == "ext4"
    assert file_system_type(Path("/x"), str(tmp_path / "missing")) is None


def test_mlflow_and_optuna_stores_switch_and_keep_working(tmp_path):
    if file_system_type(tmp_path) is None:  # no /proc/mounts (not Linux): the module leaves files alone
        assert not use_write_ahead_log(f"sqlite:///{tmp_path}/x.db")
        return
    ml = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(ml)
    run = client.create_run(client.create_experiment("e"))
    assert _mode(tmp_path / "mlflow.db") == "delete"
    assert use_write_ahead_log(ml) and _mode(tmp_path / "mlflow.db") == "wal"
    client.log_metric(run.info.run_id, "m", 1.0, step=1)  # MLflow's pooled connections go on writing
    assert [m.value for m in MlflowClient(ml).get_metric_history(run.info.run_id, "m")] == [1.0]

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=url, study_name="s")
    assert use_write_ahead_log(url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_files_that_are_missing_or_not_sqlite_are_left_alone(tmp_path):
    assert not use_write_ahead_log(f"sqlite:///{tmp_path}/missing.db")
    assert not (tmp_path / "missing.db").exists()
    assert not use_write_ahead_log("http://127.0.0.1:5000")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert not use_write_ahead_log(f"sqlite:///{junk}")
    assert junk.read_bytes() == b"not a database at all" * 100
