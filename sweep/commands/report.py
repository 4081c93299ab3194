"""``sweep report NAME``: rank a sweep's seed groups, compare shapes with baselines, plot, log to MLflow.

    sweep report demo                              # reads ./sweeps/demo/sweep.yaml for the MLflow store
    sweep report demo --storage /mnt/sweeps --out /tmp/demo-report
    sweep report demo --tracking-uri http://mlflow:5000 --out ./demo-report

Writes report.md and PNGs into the sweep folder (or --out) and logs them under ``report/`` on the sweep's
parent MLflow run; prints the report. A bad NAME or a sweep that cannot be found: one line, exit 2.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a sweep's report (ranking, paired verdicts, plots) and log it to MLflow",
        description="Rank a sweep's finished seed groups, compare every shape with every baseline over the same "
                    "seeds (paired t-test, Wilcoxon where n allows), plot schedules and val-loss curves; write "
                    "report.md and PNGs and log them to the sweep's MLflow run.",
    )
    parser.add_argument("name", help="the sweep name")
    parser.add_argument("--storage", default=None,
                        help="the storage the sweep was run with (default ./sweeps); its sweep.yaml names the "
                             "MLflow store")
    parser.add_argument("--tracking-uri", default=None,
                        help="read the sweep from this MLflow store instead of the one in sweep.yaml")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default: the one in sweep.yaml, else the sweep name)")
    parser.add_argument("--out", default=None, help="folder for report.md and the PNGs (default: the sweep folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: MLflow, scipy and matplotlib would slow down every other `sweep` command's start-up.
    from sweep.analysis.report import build_report
    from sweep.analysis.read import quiet_store_logs

    quiet_store_logs()
    report = build_report(args.name, args.storage, args.tracking_uri, args.out, args.experiment)
    print(report.markdown)
    print(f"report written: {', '.join(str(p) for p in report.files)}")
    print(f"logged to MLflow run {report.run_id} under {report.artifact_dir}/")
    return 0
