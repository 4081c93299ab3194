"""`sweep confirm` on the GPT trainer: the final checkpoints of the confirmation stage go through the lm-eval
adapter (local file-defined tasks) into MLflow and the report, with seed means and intervals.

Real Ray Train (one DDP worker per seed run), a tiny GPT with the GPT-2 vocabulary on GPT-2 tokens of the local
task's documents, real lm-eval, real MLflow (sqlite). Kept as small as a real run gets: 8 steps, one seed in
the sweep, two in the confirmation, one horizon.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the shared test helpers
from test_sweep_run_helpers import ray_env  # noqa: E402

from trainable.data.shards import write_shard  # noqa: E402
from trainable.data.tokenizer import gpt2_encoding  # noqa: E402
from trainable.lm_eval_adapter import LOCAL_TASKS_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def gpt2_token_dir(root: Path) -> Path:
    enc = gpt2_encoding()
    docs = [json.loads(r)["text"] for r in (LOCAL_TASKS_DIR / "schedsweep_text.jsonl").read_text().splitlines() if r]
    tokens = np.array([t for _ in range(30) for d in docs for t in enc.encode_ordinary(d + "\n") + [enc.eot_token]],
                      dtype=np.uint16)
    root.mkdir(parents=True)
    write_shard(root / "train_000000.bin", tokens)
    write_shard(root / "val_000000.bin", tokens[:2048])
    return root


@pytest.mark.ray
@pytest.mark.slow
def test_confirm_evaluates_final_checkpoints_with_lm_eval_into_mlflow(tmp_path: Path) -> None:
    storage = tmp_path / "sweeps"
    cfg = {
        "name": "tr",
        "trainer": {"model": "tiny", "data": {"dir": str(gpt2_token_dir(tmp_path / "tokens")), "bundled": False},
                    "optimizer": {"lr": 3e-3}, "horizon": {"steps": 8}, "batch": {"micro_batch_size": 2, "seq_len": 32},
                    "eval": {"interval": 4, "max_tokens": 256}, "checkpoint": {"every": 1, "keep": 2}, "device": "cpu"},
        "search_space": "wsd", "baselines": ["constant"], "seeds": [0], "budget": 1,
        "scheduler": {"enabled": False}, "resources": {"workers": 1, "cpus_per_worker": 0.5},
        "storage": str(storage),
    }
    (tmp_path / "tr.yaml").write_text(yaml.safe_dump(cfg))
    env = {**ray_env(tmp_path), "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    for args in (["run", str(tmp_path / "tr.yaml")],
                 ["confirm", "tr", "--top", "1", "--horizons", "1x", "--seeds", "2", "--storage", str(storage),
                  "--lm-eval-tasks", "local"]):
        proc = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900, start_new_session=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    saved = json.loads((storage / "tr.confirm-1x" / "lm_eval.json").read_text())
    assert saved["tasks"] == ["schedsweep_mc", "schedsweep_text"]
    groups = saved["groups"]
    # Fresh seeds: the sweep ran seed 0, so the confirmation runs 1 and 2.
    assert len(groups) == 2 and "constant" in groups and all(set(v) == {"1", "2"} for v in groups.values())

    client = MlflowClient(f"sqlite:///{storage}/tr/mlflow.db")
    exp = client.get_experiment_by_name("tr")
    runs = client.search_runs([exp.experiment_id], "tags.`schedsweep.sweep` = 'tr.confirm-1x'")
    key = "lm_eval.schedsweep_text.bits_per_byte"
    for run in runs:
        tags = run.data.tags
        name = tags.get("schedsweep.label") if tags.get("schedsweep.label") != "search" else None
        name = name or run.data.params.get("source_group")
        if tags["schedsweep.kind"] == "seed":
            assert run.data.metrics[key] == groups[name][tags["schedsweep.seed"]][key]
            assert 0.0 <= run.data.metrics["lm_eval.schedsweep_mc.acc"] <= 1.0
        elif tags["schedsweep.kind"] == "group":
            values = [groups[name][s][key] for s in ("1", "2")]
            assert run.data.metrics[f"{key}_mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)

    report = (storage / "tr" / "confirm" / "report.md").read_text()
    assert "## Downstream evaluation (lm-eval, final checkpoints at 1x" in report
    const = next(line for line in report.splitlines() if line.startswith("| constant | ") and "(n=2)" in line
                 and line.count("|") == 7)
    mean_bpb = statistics.fmean(groups["constant"][s][key] for s in ("1", "2"))
    assert f"{mean_bpb:.4f} ± " in const
