"""A simulated sweep SIGKILLed at random moments and resumed after each kill, then checked layer by layer.

    python benchmarks/chaos_resume.py [--kills 10] [--seed 0] [--budget 24] [--workdir DIR]

Kill points are random in time and in progress: each start of the driver (`sweep run`, then `sweep resume`)
is killed either after a random delay from launch (0-40 s: during Ray's start, between tuner.pkl and the
first experiment state, mid-sweep) or after k new Tune results (k random in 1..12), whichever `--seed`
draws; the driver's whole process group goes with it (what its Ray started). After `--kills` kills the
sweep is resumed until it ends. The kill points are printed with their seed, so a failure can be replayed.

Then every layer is checked (`check_sweep`):
- Tune: every group present once (baselines + budget trial ids), each ended (finished or stopped by ASHA);
- every group's results identical to an uninterrupted in-process run of its config
  (`sweep.engine.sim_trial.SimulatedGroup`; a result reported before a kill may come again after it, identically);
- Optuna (sqlite): trials = budget, none RUNNING, no two with identical params, COMPLETE = the searched
  groups that finished;
- MLflow: one group run per group and one seed run per seed (no duplicate names), each group run's final
  status the group's.

Prints one JSON line per kill and a summary; exit code 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def chaos_config(folder: Path, name: str = "chaos", budget: int = 24) -> dict:
    """A simulated sweep: `budget` TPE shapes + 2 baselines, 3 seeds, 2,000 steps, ASHA on the cooldown rung
    metric, Optuna and MLflow on sqlite. The step delay (1 s per eval and seed) makes a group take ~25 s, so kills land in
    the middle of groups as well as between them."""
    return {
        "name": name,
        "simulator": {"law": "mpl_25m", "total_steps": 2000, "eval_interval": 250, "step_delay_s": 0.004},
        "search_space": "wsd",
        "baselines": ["nanogpt_cosine", "wsd_sqrt"],
        "seeds": [0, 1, 2],
        "budget": budget,
        "scheduler": {"grace_period": 250, "reduction_factor": 2, "rung_metric": "cooldown"},
        "resources": {"cpus_per_worker": 0.25},
        "max_concurrent_trials": 4,
        "storage": str(folder / "sweeps"),
        "optuna": {"storage": f"sqlite:///{folder}/optuna.db", "seed": 0},
    }


def driver_env(folder: Path) -> dict[str, str]:
    """The driver's environment: its own HOME and Ray temp folder (no clash with another Ray on the host)."""
    env = dict(os.environ)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    ray_tmp = Path("/tmp") / f"rc{os.getpid() % 100000}"
    ray_tmp.mkdir(exist_ok=True)
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp), TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)
    return env


def result_count(tune_dir: Path) -> int:
    """Tune results written so far (lines of every trial's result.json)."""
    total = 0
    for f in tune_dir.glob("*/result.json"):
        try:
            total += sum(1 for line in f.read_text().splitlines() if line.strip())
        except OSError:
            pass
    return total


def run_driver(args: list[str], folder: Path, log: Path, kill: dict | None, timeout_s: float = 900) -> dict:
    """Start `sweep ARGS`; SIGKILL it (and its process group) at the point `kill` names, or let it end.

    `kill`: {"after_s": t}, {"after_results": k} or {"at_file": path in the sweep folder, e.g. tune/tuner.pkl:
    the moment it appears}, optionally with "signal": "SIGINT" or "SIGTERM" (a clean stop: the driver is sent
    that signal and given `timeout_s` to exit on its own) instead of SIGKILL; None to run to the end.
    Returns what happened."""
    tune_dir = folder / "sweeps" / "chaos" / "tune"
    before = result_count(tune_dir)
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n==== sweep {' '.join(args)} (kill: {kill})\n")
        out.flush()
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", *args], cwd=folder, env=driver_env(folder),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killed = False
        saved = None
        try:
            while time.monotonic() - started < timeout_s:
                if driver.poll() is not None:
                    break
                if kill is not None:
                    if "after_s" in kill:
                        due = time.monotonic() - started >= kill["after_s"]
                    elif "at_file" in kill:
                        due = (tune_dir.parent / kill["at_file"]).exists()
                    else:
                        due = result_count(tune_dir) - before >= kill["after_results"]
                    if due:
                        os.kill(driver.pid, getattr(signal, kill.get("signal", "SIGKILL")))
                        driver.wait(timeout=timeout_s)
                        killed = True
                        saved = any(tune_dir.glob("experiment_state*.json"))
                        break
                time.sleep(0.01 if kill is not None and "at_file" in kill else 0.05)
            else:
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait()
                raise TimeoutError(f"sweep {' '.join(args)} ran past {timeout_s} s; see {log}")
        finally:
            time.sleep(0.5)
            try:
                os.killpg(driver.pid, signal.SIGKILL)  # whatever this driver's Ray started
            except ProcessLookupError:
                pass
    return {"args": args, "kill": kill, "killed": killed, "tune_state_at_kill": saved, "rc": driver.returncode,
            "seconds": round(time.monotonic() - started, 1), "new_results": result_count(tune_dir) - before}


def draw_kills(n: int, seed: int) -> list[dict]:
    """`n` kill points: half by time since launch (0-40 s), half by new results (1-12), shuffled."""
    rng = random.Random(seed)
    kills = [{"after_s": round(rng.uniform(0.0, 40.0), 1)} if rng.random() < 0.5
             else {"after_results": rng.randint(1, 12)} for _ in range(n)]
    return kills


def chaos(folder: Path, kills: list[dict], budget: int = 24, max_resumes: int = 6, log: Path | None = None) -> list[dict]:
    """Run the chaos sweep in `folder` with `kills`, then resume until it ends; returns one record per start."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "chaos.yaml"
    cfg_path.write_text(yaml.safe_dump(chaos_config(folder, budget=budget)))
    log = log or folder / "chaos.log"
    records = []
    storage = str(folder / "sweeps")
    for i, kill in enumerate(kills):
        # The very first start may die before it writes sweep.yaml: then it is started again, not resumed.
        started = (folder / "sweeps" / "chaos" / "sweep.yaml").exists()
        args = ["resume", "chaos", "--storage", storage] if started else ["run", str(cfg_path)]
        records.append(run_driver(args, folder, log, kill))
        print(json.dumps({"start": i, **records[-1]}), flush=True)
    for _ in range(max_resumes):
        started = (folder / "sweeps" / "chaos" / "sweep.yaml").exists()
        args = ["resume", "chaos", "--storage", storage] if started else ["run", str(cfg_path)]
        records.append(run_driver(args, folder, log, None))
        print(json.dumps({"start": "final", **records[-1]}), flush=True)
        if records[-1]["rc"] == 0:
            break
    return records


# ---- checks ------------------------------------------------------------------------------------------------
def read_trials(tune_dir: Path) -> list[dict]:
    """Every Tune trial folder: its config and every result it wrote (oldest first)."""
    trials = []
    for d in sorted(p for p in tune_dir.iterdir() if p.is_dir() and (p / "params.json").exists()):
        rows = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()] \
            if (d / "result.json").exists() else []
        trials.append({"dir": d.name, "config": json.loads((d / "params.json").read_text()), "results": rows,
                       "id": rows[0]["trial_id"] if rows else None})
    return trials


def _untimed(result: dict, keys) -> dict:
    """The result without wall-clock throughput (the only values allowed to differ between runs)."""
    out = {k: v for k, v in result.items() if k in keys and k != "tokens_per_s"}
    if "per_seed" in out:
        out["per_seed"] = {s: {k: v for k, v in p.items() if k != "tokens_per_s"} for s, p in out["per_seed"].items()}
    return out


def check_sweep(folder: Path, budget: int) -> list[str]:
    """Every invariant of the module docstring; returns the failures in words (empty: all hold)."""
    import mlflow
    import optuna

    from sweep.core.trial_spec import TrialSpec
    from sweep.engine.sim_trial import SimulatedGroup

    problems: list[str] = []
    sweep_dir = folder / "sweeps" / "chaos"
    trials = read_trials(sweep_dir / "tune")
    ids = [t["id"] for t in trials]
    if len(trials) != budget + 2 or len(set(ids)) != len(ids) or None in ids:
        problems.append(f"Tune: {len(trials)} trial folders, {len(set(ids))} distinct ids, expected {budget + 2}")
    finished_searched = 0
    for t in trials:
        rows = t["results"]
        if not rows:
            problems.append(f"Tune: trial {t['dir']} has no result")
            continue
        # The uninterrupted run, in this process and without the simulated step delay (it changes no value).
        reference = {**t["config"], "simulator": {**t["config"]["simulator"], "step_delay_s": 0.0}}
        expected = {r["step"]: r for r in SimulatedGroup(TrialSpec.from_config(reference), t["id"]).results()}
        for r in rows:
            want = expected.get(r["step"])
            if want is None or json.dumps(_untimed(r, want), sort_keys=True) != json.dumps(_untimed(want, want),
                                                                                          sort_keys=True):
                problems.append(f"results: trial {t['id']} step {r['step']} differs from the uninterrupted run")
                break
        last = rows[-1]
        if last["status"] not in ("finished", "running"):
            problems.append(f"Tune: trial {t['id']} ended with status {last['status']}")
        if last["status"] == "running" and t["config"].get("baseline"):
            problems.append(f"ASHA: baseline {t['config']['baseline']} was stopped")
        if last["status"] == "finished" and not t["config"].get("baseline"):
            finished_searched += 1
    study = optuna.load_study(study_name="chaos", storage=f"sqlite:///{folder}/optuna.db")
    ot = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in ot)
    if len(ot) != budget:
        problems.append(f"Optuna: {len(ot)} trials, expected the budget {budget} ({dict(states)})")
    if states.get("RUNNING", 0):
        problems.append(f"Optuna: {states['RUNNING']} trials still RUNNING")
    params = Counter(json.dumps(t.params, sort_keys=True) for t in ot)
    if any(n > 1 for n in params.values()):
        problems.append("Optuna: two trials with identical params")
    if states.get("COMPLETE", 0) != finished_searched:
        problems.append(f"Optuna: {states.get('COMPLETE', 0)} COMPLETE, but {finished_searched} searched groups finished")
    client = mlflow.MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("chaos")
    groups = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'group'", max_results=5000)
    seeds = client.search_runs([exp.experiment_id], "tags.`schedsweep.kind` = 'seed'", max_results=5000)
    group_names = Counter(r.info.run_name for r in groups)
    seed_names = Counter(r.info.run_name for r in seeds)
    if len(groups) != budget + 2 or any(n > 1 for n in group_names.values()):
        problems.append(f"MLflow: {len(groups)} group runs ({sum(n > 1 for n in group_names.values())} duplicate "
                        f"names), expected {budget + 2}")
    if len(seeds) != 3 * (budget + 2) or any(n > 1 for n in seed_names.values()):
        problems.append(f"MLflow: {len(seeds)} seed runs ({sum(n > 1 for n in seed_names.values())} duplicate "
                        f"names), expected {3 * (budget + 2)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points (printed; replays a run)")
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--workdir", default=None, help="keep the sweep here (default: a temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    kills = draw_kills(args.kills, args.seed)
    print(json.dumps({"kill_seed": args.seed, "kills": kills, "folder": str(folder)}), flush=True)
    started = time.time()
    records = chaos(folder, kills, args.budget)
    problems = check_sweep(folder, args.budget)
    survived = sum(r["killed"] for r in records)
    print(json.dumps({"kill_seed": args.seed, "kills_survived": survived if not problems else 0,
                      "kills_done": survived, "starts": len(records), "seconds": round(time.time() - started),
                      "problems": problems}), flush=True)
    return 0 if not problems and records[-1]["rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
