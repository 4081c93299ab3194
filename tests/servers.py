"""Test helpers that start real servers on free 127.0.0.1 ports and always stop them.

- `mlflow_server(root)`: a lean `mlflow server` (one uvicorn worker, no job runner) on an sqlite store.
- `ray_head(root)`: `ray start --head` with the dashboard (needed for the Jobs API), its own temp dir,
  HOME and token auth set deliberately so nothing depends on what an earlier Ray left in ~/.ray.

Each server runs in its own session (process group), so stopping it ends its helper processes too,
without touching any process the test did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_tmp() -> str:
    """A new folder under /tmp with a short name, for RAY_TMPDIR.

    Ray puts unix sockets under it, and a socket path may not exceed 107 bytes: pytest's tmp_path is
    too deep for that.
    """
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp")


def venv_bin(name: str) -> str:
    """The console script `name` next to the running interpreter (the project venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def _wait_http_ok(url: str, proc: subprocess.Popen, timeout_s: float, log: Path,
                  headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    # Also when the leader exited in time: helpers of its group (uvicorn workers, raylet) may linger.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace_s)


@contextlib.contextmanager
def mlflow_server(root: Path, timeout_s: float = 60.0, port: int | None = None) -> Iterator[str]:
    """Run `mlflow server` on `port` (default: a free one) with its store under `root`; yields its http:// URI.

    Artifacts are proxied (`--artifacts-destination`), so clients upload through the server and need
    no access to the folder, as with a remote tracking server. The same root and port again: the same server
    started again, as after an outage.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = root / "mlflow-server.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [
        venv_bin("mlflow"), "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_http_ok(f"{uri}/health", proc, timeout_s, log)
        yield uri
    finally:
        _stop_group(proc)


@dataclass
class RayHead:
    """A running `ray start --head`: where to reach it and the env a client needs to talk to it."""

    gcs_address: str
    dashboard_url: str
    env: dict[str, str] = field(repr=False)
    log: Path


def ray_head_env(root: Path) -> dict[str, str]:
    """Environment for the head and its clients: own HOME, temp dirs and an explicit auth token.

    Token auth is on with a token made here, for both sides: a leftover ~/.ray/auth_token from an
    earlier bare `ray.init()` can therefore neither lock the client out nor let it in by accident.
    """
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    tmp = short_tmp()
    env = dict(os.environ)
    # A Ray address from the caller's environment would point the client at another cluster.
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    env.update(
        HOME=str(home),
        RAY_TMPDIR=str(tmp),
        TMPDIR=str(tmp),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=uuid.uuid4().hex,
        # Ray's usage-stats prompt and upload are pointless here (and there is no internet).
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def pids_with_env(key: str, value: str) -> list[int]:
    """Pids of this user's processes whose environment holds `key=value` (Linux /proc).

    The value is the test's own temp dir, so only processes that the test's head started match.
    """
    marker = f"{key}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's process
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def ray_head(root: Path, num_cpus: int = 2, timeout_s: float = 90.0) -> Iterator[RayHead]:
    """Start a Ray head with the dashboard on free ports; stop it afterwards, even on failure.

    Why not `ray stop`: it kills every Ray process of the machine by name, including other tests'
    clusters running at the same time. Instead the head runs with `--block` in its own session, and
    stopping it ends that process group plus any Ray process (workers, job drivers) that inherited this
    head's unique RAY_TMPDIR.
    """
    env = ray_head_env(root)
    port, dash_port = free_port(), free_port()
    log = root / "ray-head.log"
    # Every listening port picked free: Ray's fixed defaults (dashboard agent 52365, client server 10001,
    # metrics) collide with any other Ray on the machine, e.g. another test's local cluster; the agent
    # then runs without its HTTP server and every job submission fails with "No available agent".
    extra_ports = {name: free_port() for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port")}
    cmd = [
        venv_bin("ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}", "--include-dashboard=true",
        f"--port={port}", f"--dashboard-port={dash_port}", "--dashboard-host=127.0.0.1",
        "--node-ip-address=127.0.0.1", "--disable-usage-stats",
        *(f"--{name}={p}" for name, p in extra_ports.items()),
    ]
    head = RayHead(gcs_address=f"127.0.0.1:{port}", dashboard_url=f"http://127.0.0.1:{dash_port}", env=env, log=log)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        # With token auth on, the dashboard answers 401 without the token: a 200 also proves the token works.
        _wait_http_ok(f"{head.dashboard_url}/api/version", proc, timeout_s, log,
                      headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
        yield head
    finally:
        # A short grace: the cluster is thrown away, and whatever outlives the group is killed below.
        _stop_group(proc, grace_s=5.0)
        for pid in pids_with_env("RAY_TMPDIR", env["RAY_TMPDIR"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
