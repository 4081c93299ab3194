"""`sweep train`: one training run under torchrun, outside any sweep.

    sweep train [--config X.yaml] [--nproc N] [--set KEY=VALUE ...] [--resume-from DIR]

Without `--config` it runs the tiny default shipped in the package (bundled offline corpus, 2 processes on
CPU, about a minute). The config is validated here first: a bad field is one message and exit code 2,
with nothing launched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from trainable.config import TrainConfig, apply_overrides, check_runs_here, load_yaml

DEFAULT_CONFIG = "tiny.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="run one training job under torchrun (default: tiny GPT on CPU)")
    p.add_argument("--config", default=None, help="trainer YAML (default: the packaged tiny config)")
    p.add_argument("--nproc", type=int, default=2, help="processes (DDP ranks) on this machine (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optimizer.lr=1e-3 (repeatable)")
    p.add_argument("--resume-from", default=None, help="checkpoint folder (step_*) to continue from")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search_spaces.errors import ConfigError

    if args.nproc < 1:
        raise ConfigError("--nproc", f"must be >= 1, got {args.nproc}")
    if args.resume_from is not None and not Path(args.resume_from).is_dir():
        raise ConfigError("--resume-from", f"{args.resume_from} is not a folder")
    with resources.as_file(resources.files("trainable.configs") / DEFAULT_CONFIG) as default_path:
        config_path = Path(args.config) if args.config else default_path
        # Validate in the parent: a bad config must not start any process.
        cfg = TrainConfig.from_dict(apply_overrides(load_yaml(config_path), args.overrides))
        check_runs_here(cfg, args.nproc, where="")
        if cfg.data.bundled:
            # Prepare the bundled corpus once here rather than racing to it from every rank.
            print("sweep train: preparing the bundled corpus (once) ...", flush=True)
            cfg.data.resolve_dir()
        cmd = [
            sys.executable, "-m", "torch.distributed.run",
            "--standalone",  # a free rendezvous port, so concurrent runs on one machine do not collide
            "--nproc-per-node", str(args.nproc),
            "-m", "trainable.train", "--config", str(config_path),
        ]
        for item in args.overrides:
            cmd += ["--set", item]
        if args.resume_from:
            cmd += ["--resume-from", str(args.resume_from)]
        print(f"sweep train: {args.nproc} process(es), {cfg.total_steps(args.nproc)} steps, model "
              f"{cfg.model.name or 'custom'}, config {config_path}", flush=True)
        return subprocess.run(cmd, env=_child_env()).returncode


def _child_env() -> dict[str, str]:
    """The environment for torchrun: make sure the children import this very checkout of the packages."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
