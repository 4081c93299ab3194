"""``sweep dashboard NAME``: the MLflow UI on a sweep's store, and optuna-dashboard on its study, until Ctrl-C.

    sweep dashboard demo                       # reads ./sweeps/demo/sweep.yaml for the stores
    sweep dashboard demo --storage /mnt/sweeps --host 0.0.0.0

Both servers listen on free ports of `--host` (127.0.0.1 by default: nothing is exposed unless asked) and
their URLs are printed once they answer. optuna-dashboard runs when the sweep's study has RDB storage
(`optuna.storage`, e.g. sqlite:///study.db) and the package is installed; otherwise the reason is printed.
Ctrl-C (or SIGTERM) stops both; if one of them dies, the other is stopped too and the exit code is 1.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Sequence

READY_TIMEOUT_S = 120.0  # the MLflow server migrates an old sqlite store on its first start


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the MLflow UI (and optuna-dashboard) for a sweep")
    parser.add_argument("name", help="the sweep name")
    parser.add_argument("--storage", default=None, help="the storage the sweep was run with (default ./sweeps)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.set_defaults(func=run)


def free_port(host: str) -> int:
    """A port the OS reports free on `host` now (the server binds it a moment later; a clash fails loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_answering(url: str, proc: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> bool:
    """Poll `url` until it answers HTTP (any status) or `proc` exits; False on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            time.sleep(0.3)
    return False


def _start(cmd: Sequence[str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C in the terminal reaches this process only, which stops the servers in order.
    return subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def runs_table_url(base: str, tracking_uri: str, experiment: str) -> str | None:
    """The MLflow UI page of the sweep's runs table. MLflow 3.17's UI opens any experiment on its GenAI
    overview (traces, token usage) unless the URL asks for the model-training view, whatever the
    experiment's kind tag says (measured in a browser: tests/sweep/analysis/test_browser_ui.py)."""
    from mlflow.tracking import MlflowClient

    try:
        exp = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a link is a convenience; the servers are what was asked for
        return None
    return None if exp is None else f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"


def run(args: argparse.Namespace) -> int:
    from sweep.analysis.read import locate_sweep
    from sweep.core.secrets import redact_uri

    location = locate_sweep(args.name, args.storage)  # ConfigError (exit 2) when there is no such sweep
    servers: list[tuple[str, list[str], str]] = []  # (what, command, URL to print)
    port = free_port(args.host)
    servers.append(("MLflow", [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               location.tracking_uri, "--host", args.host, "--port", str(port)],
                    f"http://{args.host}:{port}"))
    study = location.config.optuna.storage if location.config is not None else None
    if not study:
        print("optuna-dashboard: not started (the study has no RDB storage: set optuna.storage, e.g. "
              "sqlite:///study.db, to keep it)", flush=True)
    elif shutil.which("optuna-dashboard") is None:
        print("optuna-dashboard: not started (not installed: pip install optuna-dashboard)", flush=True)
    else:
        port = free_port(args.host)
        servers.append(("Optuna", ["optuna-dashboard", study, "--host", args.host, "--port", str(port)],
                        f"http://{args.host}:{port}"))

    stop = {"now": False}

    def on_signal(signum, frame) -> None:  # noqa: ARG001 - the signal handler signature
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs = [_start(cmd) for _, cmd, _ in servers]
    try:
        for (what, _, url), proc in zip(servers, procs):
            if not wait_until_answering(url, proc):
                err = (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")[-2000:]
                print(f"sweep: error: {what} server did not start at {url}: {err.strip() or 'no answer'}",
                      file=sys.stderr, flush=True)
                return 1
        print(f"sweep {args.name!r} (MLflow store {redact_uri(location.tracking_uri)}, "
              f"experiment {location.experiment!r}):", flush=True)
        for what, _, url in servers:
            print(f"  {what:<7}: {url}", flush=True)
        runs = runs_table_url(servers[0][2], location.tracking_uri, location.experiment)
        if runs:
            print(f"  runs   : {runs}", flush=True)
        print("Ctrl-C stops them.", flush=True)
        while not stop["now"]:
            for (what, _, _), proc in zip(servers, procs):
                if proc.poll() is not None:
                    print(f"sweep: error: the {what} server exited ({proc.returncode})", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop(procs)
