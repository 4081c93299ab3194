"""``sweep run [CONFIG]``: validate a sweep config and run the sweep (the embedded demo without CONFIG).

    sweep run                        # the packaged demo: tiny GPT, bundled corpus, local Ray, sqlite MLflow
    sweep run my_sweep.yaml          # refuses an existing sweep name ...
    sweep run my_sweep.yaml --resume     # ... unless told to continue it
    sweep run my_sweep.yaml --overwrite  # ... or to start it again from scratch

Under ``ray job submit`` (RAY_ADDRESS set) the driver attaches to that cluster; otherwise it starts a local
Ray. The whole config is validated before anything is created: a bad field is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from sweep.config import DEMO_CONFIG, SweepConfig
from trainable.config import load_yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a sweep (the embedded demo sweep without CONFIG)")
    parser.add_argument("config", nargs="?", default=None,
                        help=f"sweep YAML (default: the packaged demo, {DEMO_CONFIG.name})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the sweep of this name if it exists")
    mode.add_argument("--overwrite", action="store_true", help="delete the sweep of this name and start again")
    parser.add_argument("--storage", default=None, help="override the config's storage (folder or s3://, gs://)")
    parser.add_argument("--name", default=None, help="override the config's sweep name")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Ray's, Tune's and the workers' own output (by default in <sweep folder>/sweep.log)")
    parser.set_defaults(func=run)


def load(args: argparse.Namespace) -> SweepConfig:
    """The validated config from CONFIG (or the demo) with the command-line overrides applied."""
    raw = load_yaml(args.config or DEMO_CONFIG)
    if args.storage is not None:
        raw["storage"] = args.storage
    if args.name is not None:
        raw["name"] = args.name
    return SweepConfig.from_dict(raw)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    return execute(cfg, mode, verbose=args.verbose)


def execute(cfg: SweepConfig, mode: str, verbose: bool = False) -> int:
    """Run the sweep and print where its results are; exit code 1 when a group errored, 130 when cut short.
    Without `verbose`, Ray's and Tune's own output goes to the sweep's log file, named at the end."""
    from sweep.engine.ray_session import logs_to_file
    from sweep.engine.tuner import log_file, sweep

    warning = verdict_warning(cfg)
    if warning:
        print(f"sweep: warning: {warning}", file=sys.stderr, flush=True)
    end = sweep(cfg, mode, verbose=verbose)
    if not end.cut_short:
        # The report reads MLflow, whose warnings belong with Ray's in the log file.
        with contextlib.nullcontext() if verbose else logs_to_file(log_file(cfg)):
            print_verdicts(cfg)
    print(summary(cfg, end.groups, end.errored, None if verbose else log_file(cfg)), flush=True)
    if end.cut_short:
        print(f"sweep {cfg.name!r} stopped after {end.ended} of {end.planned} groups; "
              f"continue it with: sweep resume {cfg.name} --storage {cfg.storage}", file=sys.stderr, flush=True)
        return 130
    return 1 if end.errored else 0


def print_verdicts(cfg: SweepConfig) -> None:
    """Write the sweep's report and print its verdicts: the answer, not only a ranking. A report that cannot
    be built is said on stderr; the sweep itself has succeeded, so it does not change the exit code."""
    from sweep.analysis.report import REPORT_FILE, build_report

    try:
        report = build_report(cfg.name, cfg.storage, cfg.tracking_uri, experiment=cfg.experiment)
    except Exception as err:  # noqa: BLE001 - any failure here must not hide the sweep's own result
        print(f"sweep: the report could not be built ({type(err).__name__}: {err}); "
              f"try: sweep report {cfg.name} --storage {cfg.storage}", file=sys.stderr, flush=True)
        return
    print("\n" + "\n".join(report.verdicts), flush=True)
    print(f"  report       : {Path(cfg.sweep_dir) / REPORT_FILE} (plots next to it, and in MLflow)", flush=True)


def verdict_warning(cfg: SweepConfig) -> str | None:
    """A warning when `verdict.effect` is set and the sweep's seeds cannot resolve it, else None.

    `verdict.seed_std` is read as the std of paired per-seed differences, like `sweep plan-seeds --std`.
    A warning, not an error: a sweep that cannot call small effects still ranks shapes.
    """
    if cfg.verdict.effect is None:
        return None
    from sweep.stats.planning import seed_warning

    v = cfg.verdict
    message = seed_warning(len(cfg.seeds), v.effect, v.seed_std, v.alpha, v.power, cfg.verdict_family_size(),
                           v.correction)
    if message is None:
        return None
    return (f"verdict: {message}; report verdicts on effects that small will mostly be "
            f"\"no detectable difference\" (see sweep plan-seeds)")


def summary(cfg: SweepConfig, n_groups: int, n_errors: int, log: str | None = None) -> str:
    """Where to look after a sweep (URIs without their credentials); `log`: the file Ray's output went to."""
    from sweep.core.secrets import redact_uri

    lines = [
        "",
        f"sweep {cfg.name!r}: {n_groups} groups ({n_errors} errored)",
        f"  sweep folder : {cfg.sweep_dir}",
        f"  MLflow       : mlflow ui --backend-store-uri {redact_uri(cfg.tracking_uri)}   (experiment {cfg.experiment!r})",
        f"  resume       : sweep resume {cfg.name} --storage {cfg.storage}",
    ]
    if log:
        lines.append(f"  Ray and Tune : {log}   (their log lines; --verbose shows them here)")
    if cfg.optuna.storage:
        lines.append(f"  Optuna       : optuna-dashboard {redact_uri(cfg.optuna.storage)}   (study {cfg.name!r})")
    return "\n".join(lines)


