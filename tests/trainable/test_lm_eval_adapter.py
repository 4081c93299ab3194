"""The lm-eval adapter on trained tiny GPT checkpoints: its numbers are the model's, they flow through
lm-eval's local file-defined tasks, and from there into MLflow (seed runs and group seed statistics).

Two seeds of a tiny GPT (GPT-2 vocabulary, as every real run) train for a few steps, in this process, on
GPT-2 tokens of the local task's own documents, so the trained model is measurably better than chance on them.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from sweep.config import SweepConfig
from sweep.confirm.lm_eval import evaluate_stage, final_checkpoint, log_to_mlflow
from sweep.core.outcome import GroupOutcome
from sweep.tracking.callback import MLflowSweepCallback
from trainable.config import TrainConfig
from trainable.data.shards import write_shard
from trainable.data.tokenizer import gpt2_encoding
from trainable.lm_eval_adapter import LOCAL_TASKS, LOCAL_TASKS_DIR, SchedsweepGPT, load_gpt
from trainable.model import GPT
from trainable.train import train

pytestmark = pytest.mark.slow  # two short trainings and lm-eval's imports: ~1 min idle, several under load

TRAINER = {"model": {"name": "tiny", "block_size": 64}, "optimizer": {"lr": 1e-2}, "horizon": {"steps": 12},
           "batch": {"micro_batch_size": 4, "seq_len": 64}, "eval": {"interval": 12, "max_tokens": 512},
           "checkpoint": {"every": 1, "keep": 1}, "device": "cpu"}


def documents() -> list[str]:
    rows = (LOCAL_TASKS_DIR / "schedsweep_text.jsonl").read_text().splitlines()
    return [json.loads(r)["text"] for r in rows if r.strip()]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[int, Path]:
    """seed -> the final checkpoint of a 12-step tiny GPT trained on the task documents."""
    root = tmp_path_factory.mktemp("lm_eval")
    enc = gpt2_encoding()
    tokens = np.array([t for _ in range(40) for d in documents() for t in enc.encode_ordinary(d + "\n") + [enc.eot_token]],
                      dtype=np.uint16)
    data = root / "tokens"
    data.mkdir()
    write_shard(data / "train_000000.bin", tokens)
    write_shard(data / "val_000000.bin", tokens[:4096])
    out = {}
    for seed in (0, 1):
        cfg = TrainConfig.from_dict({**TRAINER, "data": {"dir": str(data), "bundled": False}, "seed": seed,
                                     "data_seed": seed, "schedule": {"preset": "nanogpt_cosine"},
                                     "checkpoint": {**TRAINER["checkpoint"], "dir": str(root / f"ckpt{seed}")}})
        assert train(cfg).status == "finished"
        out[seed] = final_checkpoint(root / f"ckpt{seed}")
        assert out[seed] is not None and out[seed].name == "step_00000012"
    return out


def direct_logprob(model, context: list[int], target: list[int]) -> float:
    """log P(target | context) computed here from the model's logits (over GPT-2's 50257 real tokens)."""
    ids = torch.tensor([context + target[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(model(ids)[0, :, :50257].double(), dim=-1)
    rows = logp[len(context) - 1:]
    return math.fsum(rows[i, t].item() for i, t in enumerate(target))


def test_adapter_scores_are_the_models_own_log_probabilities(checkpoints) -> None:
    lm = SchedsweepGPT(str(checkpoints[0]))
    model, enc = load_gpt(checkpoints[0]), gpt2_encoding()
    doc = documents()[0]
    toks = enc.encode_ordinary(doc)
    assert len(toks) < 64  # one window: the rolling score is the plain sum below
    rolling = lm.loglikelihood_rolling([SimpleNamespace(args=(doc,))])[0]
    assert rolling == pytest.approx(direct_logprob(model, [enc.eot_token], toks), abs=1e-9)

    ctx, cont = "Question: What is frozen water called?\nAnswer:", " ice"
    (ll, greedy), = lm.loglikelihood([SimpleNamespace(args=(ctx, cont))])
    assert ll == pytest.approx(direct_logprob(model, enc.encode_ordinary(ctx), enc.encode_ordinary(cont)), abs=1e-9)
    assert isinstance(greedy, bool)
    # A context's trailing space moves to the continuation (how BPE tokenizes " ice").
    (ll_space, _), = lm.loglikelihood([SimpleNamespace(args=(ctx + " ", "ice"))])
    assert ll_space == pytest.approx(ll, abs=1e-12)

    # Training helped on these documents: far better than an untrained model of the same shape.
    torch.manual_seed(0)
    assert rolling > direct_logprob(GPT(model.cfg).eval(), [enc.eot_token], toks) + len(toks) * 0.5


def test_local_tasks_through_lm_eval_and_into_mlflow(checkpoints, tmp_path: Path) -> None:
    storage = tmp_path / "sweeps"
    stage = SweepConfig.from_dict({"name": "t.confirm-1x", "trainer": {**TRAINER, "data": {"bundled": True}},
                                   "search_space": "wsd", "baselines": ["constant"], "seeds": [0, 1], "budget": 0,
                                   "scheduler": {"enabled": False},
                                   "storage": str(storage)})
    config = {"schedule": {"preset": "constant"}, "baseline": "constant", "seeds": [0, 1]}
    group = GroupOutcome("g1", "constant", "finished", 12, {"0": 5.0, "1": 5.1}, config=config)
    for seed, ckpt in checkpoints.items():  # where a stage's seed runs leave their final checkpoints
        shutil.copytree(ckpt, storage / stage.name / "train" / f"g1-seed{seed}" / ckpt.name)
    # The stage's MLflow runs, made by the sweep's own callback.
    callback = MLflowSweepCallback(stage.tracking_uri, stage.experiment, stage.name, stage.to_dict(), strict=True)
    callback.setup()
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="g1", config=config))

    results = evaluate_stage(stage, [group], LOCAL_TASKS)
    assert set(results) == {"constant"} and set(results["constant"]) == {"0", "1"}
    enc = gpt2_encoding()
    for seed, metrics in results["constant"].items():
        assert 0.0 <= metrics["lm_eval.schedsweep_mc.acc"] <= 1.0 and "lm_eval.schedsweep_mc.acc_norm" in metrics
        # bits per byte as lm-eval aggregates it, recomputed here from the adapter-free log-probabilities.
        model = load_gpt(checkpoints[int(seed)])
        nats = -math.fsum(direct_logprob(model, [enc.eot_token], enc.encode_ordinary(d)) for d in documents())
        nbytes = sum(len(d.encode()) for d in documents())
        assert metrics["lm_eval.schedsweep_text.bits_per_byte"] == pytest.approx(nats / nbytes / math.log(2), rel=1e-9)
        assert metrics["lm_eval.schedsweep_text.byte_perplexity"] == pytest.approx(2 ** (nats / nbytes / math.log(2)), rel=1e-9)
    assert (storage / stage.name / "lm_eval.json").exists()

    assert log_to_mlflow(stage, [group], results) == 3  # two seed runs and the group run
    client = MlflowClient(stage.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(stage.experiment).experiment_id],
                              f"tags.`schedsweep.sweep` = '{stage.name}'")
    seed_runs = {r.data.tags["schedsweep.seed"]: r for r in runs if r.data.tags["schedsweep.kind"] == "seed"}
    group_run = next(r for r in runs if r.data.tags["schedsweep.kind"] == "group")
    key = "lm_eval.schedsweep_text.bits_per_byte"
    for seed, run in seed_runs.items():
        assert run.data.metrics[key] == results["constant"][seed][key]
    values = [results["constant"][s][key] for s in ("0", "1")]
    assert group_run.data.metrics[f"{key}_mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert group_run.data.metrics[f"{key}_std"] == pytest.approx(statistics.stdev(values), abs=1e-12)

    # A rerun evaluates only what is missing: with the checkpoints gone, the kept results come back.
    shutil.rmtree(storage / stage.name / "train")
    assert evaluate_stage(stage, [group], LOCAL_TASKS) == results
