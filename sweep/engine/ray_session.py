"""The Ray session of a sweep's driver: attach to a cluster or start a local one, with the environment
defaults that keep small sweeps responsive, and the clean stop on SIGINT / SIGTERM."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from sweep.engine.ray_prints import route_ray_prints, shutdown_ray_routed

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


def init_ray(log_to_driver: bool = True) -> None:
    """Attach to the cluster in RAY_ADDRESS (e.g. under `ray job submit`), else start a local Ray.

    `log_to_driver`: print what Ray's workers print (every rank's reports, checkpoints, restarts) in this
    process's output; off for `sweep run` without --verbose, where they stay in Ray's session logs.
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
        ray.init(log_to_driver=log_to_driver)
        _shutdown_at_exit()
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
    ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=log_to_driver)
    _shutdown_at_exit()


def _shutdown_at_exit() -> None:
    """Shut Ray down at exit with its last prints routed to the sweep's log (`ray_prints.shutdown_ray_routed`).
    Ray registers its own atexit shutdown when it is imported, so this one, registered later, runs first and
    leaves Ray's nothing to do. Registered once however often Ray is started in this process."""
    atexit.unregister(shutdown_ray_routed)
    atexit.register(shutdown_ray_routed)


# Loggers whose records leave the terminal for the log file: Ray's (Tune and Train included), Python
# warnings (Ray's deprecation and token-auth warnings) and the libraries a sweep drives.
_ROUTED_LOGGERS = ("ray", "py.warnings", "mlflow", "optuna", "alembic", "urllib3")


@contextlib.contextmanager
def logs_to_file(path: str) -> Iterator[str]:
    """While the block runs, write Ray's, Tune's and the libraries' log records to `path` instead of the
    terminal (Python warnings too); yields `path`. The sweep's own lines (its progress callback prints, it
    does not log) stay on screen. The loggers are put back as they were afterwards; what Ray's driver thread
    print()s goes to `path` from now on (`sweep.engine.ray_prints`).

    Ray attaches a stderr handler to its "ray" logger when it is imported and Tune logs through children of
    it; their stream handlers are taken off and one file handler takes their place, so an error Tune logs is
    still written, only elsewhere."""
    import logging

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in _ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers
                   if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        saved.append((logger, streams, logger.propagate))
        for old in streams:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    route_ray_prints(path)  # and what Ray's driver thread print()s (raylet warnings), which no logger carries
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for logger, streams, propagate in saved:
            logger.removeHandler(handler)
            for old in streams:
                logger.addHandler(old)
            logger.propagate = propagate
        handler.close()


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
