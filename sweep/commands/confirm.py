"""``sweep confirm NAME --top K --horizons 1x,2x,4x --seeds N``: the confirmation stage of a finished sweep.

    sweep confirm demo --top 2 --horizons 1x,2x,4x --seeds 5                 # real lm-eval tasks (hub)
    sweep confirm demo --top 1 --horizons 1x,2x --seeds 3 --lm-eval-tasks local   # offline test tasks
    sweep confirm demo ... --lm-eval-tasks none                               # no downstream evaluation
    sweep confirm demo --config confirm.yaml       # a `confirm:` block gives the defaults; flags win
    sweep confirm demo --reuse-sweep-seeds         # the sweep's own seeds first (biased: see sweep.confirm)

Runs the K best finished shapes of sweep NAME plus its baselines at every horizon over N fresh seeds, disjoint
from the sweep's (one stage sweep
`NAME.confirm-<f>x` per horizon, see `sweep.confirm`), evaluates the final checkpoints of the longest horizon
with lm-eval (trainer backend only), then writes `<storage>/NAME/confirm/report.md`, `deltas.png` and
`deltas.json` and logs them on the sweep's MLflow run. Run it again to resume an interrupted confirmation:
finished stages are kept, the interrupted one continues from its checkpoints (as `sweep resume` does).
"""

from __future__ import annotations

import argparse
import sys
from search_spaces.errors import ConfigError

_TASK_SETS = ("default", "local", "none")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("confirm", help="re-run a sweep's finalists and baselines at longer horizons "
                                   "and on more seeds, then report and evaluate downstream")
    parser.add_argument("name", help="the finished sweep to confirm")
    parser.add_argument("--config", default=None,
                        help="a YAML file whose `confirm:` block sets the defaults of the flags below")
    parser.add_argument("--top", type=int, default=None, help="finalists: the K best finished shapes (default 2)")
    parser.add_argument("--horizons", default=None, help="factors of the sweep's horizon (default 1x,2x,4x)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per group, the same for all (default 5); fresh: none of the sweep's own seeds")
    parser.add_argument("--reuse-sweep-seeds", action="store_true", default=None,
                        help="run the sweep's own seeds first: comparable with the search, but the finalists were "
                             "chosen on them, so their verdicts are biased towards the finalists")
    parser.add_argument("--storage", default="./sweeps", help="the sweep's storage (default ./sweeps)")
    parser.add_argument("--overwrite", action="store_true", help="delete existing stages of this confirmation first")
    parser.add_argument("--lm-eval-tasks", default=None,
                        help="default (wikitext, lambada_openai, arc_easy, hellaswag, piqa, winogrande; needs the "
                             "Hugging Face hub), local (small offline tasks in the repo), none, or a comma list")
    parser.add_argument("--lm-eval-limit", type=int, default=None, help="at most this many items per task")
    parser.add_argument("--lm-eval-device", default="cpu", help="torch device for lm-eval (default cpu)")
    parser.set_defaults(func=run)


def lm_eval_tasks(value: str) -> list[str]:
    """The task list an --lm-eval-tasks value names (import-free for `none`)."""
    value = value.strip()
    if value == "none":
        return []
    if value in ("default", "local"):
        from trainable.lm_eval_adapter import DEFAULT_TASKS, LOCAL_TASKS

        return list(DEFAULT_TASKS if value == "default" else LOCAL_TASKS)
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--lm-eval-tasks", f"expected {', '.join(_TASK_SETS)} or a comma list, got {value!r}")
    return tasks


def settings(args: argparse.Namespace, storage: str | None = None):
    """The `confirm:` block of --config (else of the sweep's own saved config, when it has one) with the
    command-line flags laid over it."""
    from sweep.config import load_saved_config
    from sweep.config.confirm_settings import ConfirmSettings, parse_horizons
    from sweep.core.layout import sweep_exists

    block = None
    if args.config is not None:
        from trainable.config import load_yaml

        raw = load_yaml(args.config)
        block = raw.get("confirm") if isinstance(raw, dict) else None
    elif storage is not None:
        if sweep_exists(storage, args.name):
            block = load_saved_config(storage, args.name).confirm
    base = ConfirmSettings.parse(block)
    return ConfirmSettings(
        top=base.top if args.top is None else args.top,
        horizons=base.horizons if args.horizons is None else parse_horizons(args.horizons),
        seeds=base.seeds if args.seeds is None else args.seeds,
        lm_eval_tasks=base.lm_eval_tasks if args.lm_eval_tasks is None else args.lm_eval_tasks,
        lm_eval_limit=base.lm_eval_limit if args.lm_eval_limit is None else args.lm_eval_limit,
        reuse_sweep_seeds=base.reuse_sweep_seeds if args.reuse_sweep_seeds is None else args.reuse_sweep_seeds,
    )


def run(args: argparse.Namespace) -> int:
    from sweep.config import parse_storage
    from sweep.confirm.workflow import confirm

    storage = parse_storage(args.storage, "--storage")
    chosen = settings(args, storage)
    tasks = lm_eval_tasks(chosen.lm_eval_tasks)
    if chosen.lm_eval_limit is not None and chosen.lm_eval_limit < 1:
        raise ConfigError("--lm-eval-limit", f"must be >= 1, got {chosen.lm_eval_limit}")
    done = confirm(storage, args.name, chosen, tasks, overwrite=args.overwrite, lm_eval_device=args.lm_eval_device)
    if done.cut_short:
        print(f"confirmation of {args.name!r} was cut short; continue it with the same command", file=sys.stderr)
        return 130
    print(f"\nconfirmation of {args.name!r}: report {done.paths['report']}\n  plot   {done.paths['plot']}", flush=True)
    return 1 if done.lm_eval_failed or done.errored else 0
