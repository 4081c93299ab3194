"""Our GPT checkpoints as an EleutherAI lm-evaluation-harness model: downstream evaluation without
reimplementing any task.

`SchedsweepGPT` is an `lm_eval.api.model.LM`, registered as ``schedsweep_gpt``, so lm-eval's own CLI works too:

    lm_eval --model schedsweep_gpt --model_args checkpoint=PATH/step_00000040 --tasks wikitext,arc_easy

A checkpoint folder (`trainable.checkpoint`) holds `model.pt` and `meta.json`, whose `config` is the run's
`TrainConfig`; the model shape comes from there, the tokenizer is GPT-2 BPE (`trainable.data.tokenizer`).

It implements the two request types the perplexity and multiple-choice tasks use: `loglikelihood` (the
log-probability of a continuation after a context, and whether greedy decoding would produce it) and
`loglikelihood_rolling` (a whole document, scored in windows of the model's block size, each token predicted
once). Generation tasks are out of scope (`generate_until` raises).

Log-probabilities are taken over the tokenizer's vocabulary: the rows the model pads its embedding with
(50257 -> 50304) are left out, so a distribution sums to one over real tokens.

`DEFAULT_TASKS` is the set the confirmation stage evaluates on a cluster (datasets from the Hugging Face hub);
`LOCAL_TASKS` are small tasks defined from files in `trainable/lm_eval_tasks/` for offline tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from trainable.config import TrainConfig
from trainable.data.tokenizer import gpt2_encoding
from trainable.model import GPT

MODEL_NAME = "schedsweep_gpt"
DEFAULT_TASKS = ("wikitext", "lambada_openai", "arc_easy", "hellaswag", "piqa", "winogrande")
LOCAL_TASKS = ("schedsweep_mc", "schedsweep_text")
LOCAL_TASKS_DIR = Path(__file__).resolve().with_name("lm_eval_tasks")


def load_gpt(checkpoint: str | Path, device: str = "cpu") -> GPT:
    """The model of a checkpoint folder, in eval mode on `device`."""
    path = Path(checkpoint)
    meta_file = path / "meta.json"
    if not meta_file.exists() or not (path / "model.pt").exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (needs meta.json and model.pt)")
    meta = json.loads(meta_file.read_text())
    if "config" not in meta:
        raise ValueError(f"{meta_file} carries no trainer config: cannot tell the model's shape")
    cfg = TrainConfig.from_dict(meta["config"])
    model = GPT(cfg.model.gpt)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval()


@register_model(MODEL_NAME)
class SchedsweepGPT(LM):
    """lm-eval's view of one trained GPT checkpoint (see the module docstring).

    Args:
        checkpoint: a checkpoint folder (`step_XXXXXXXX/` or a Ray Train checkpoint holding the same files).
        device: torch device string.
        batch_size: sequences per forward pass.
    """

    def __init__(self, checkpoint: str, device: str = "cpu", batch_size: int | str = 16, **_: Any):
        super().__init__()
        self._device = torch.device(device)
        self.model = load_gpt(checkpoint, device)
        self.enc = gpt2_encoding()
        self.eot = int(self.enc.eot_token)
        self.vocab = int(self.enc.n_vocab)
        if self.model.cfg.vocab_size < self.vocab:
            raise ValueError(f"model vocabulary {self.model.cfg.vocab_size} < GPT-2's {self.vocab}")
        self.max_length = int(self.model.cfg.block_size)
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "SchedsweepGPT":
        """`checkpoint=PATH,device=cpu,batch_size=16` (lm-eval's --model_args form)."""
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv.strip())
        for key, value in (additional_config or {}).items():
            if value is not None and key in ("device", "batch_size"):
                args.setdefault(key, value)
        return cls(**args)

    # ---- scoring --------------------------------------------------------------------------------
    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """For each (context, continuation) token pair: the continuation's summed log-probability (float64)
        and whether every continuation token is the argmax. Context is cut from the left to fit the block."""
        out: list[tuple[float, bool]] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            inputs, spans = [], []
            for ctx, cont in chunk:
                if not cont:
                    raise ValueError("empty continuation")
                if len(cont) > self.max_length:
                    raise ValueError(f"continuation of {len(cont)} tokens exceeds the block size {self.max_length}")
                whole = (ctx + cont)[-(self.max_length + 1):]
                inputs.append(whole[:-1])
                spans.append(len(cont))
            width = max(len(x) for x in inputs)
            batch = torch.full((len(inputs), width), self.eot, dtype=torch.long)
            for i, x in enumerate(inputs):
                batch[i, :len(x)] = torch.tensor(x, dtype=torch.long)  # right padding: causal, so harmless
            with torch.no_grad():
                logits = self.model(batch.to(self._device))[..., :self.vocab].double()
            logprobs = F.log_softmax(logits, dim=-1).cpu()
            for i, ((ctx, cont), x) in enumerate(zip(chunk, inputs)):
                n = spans[i]
                rows = logprobs[i, len(x) - n:len(x)]
                target = torch.tensor(cont, dtype=torch.long)
                total = math.fsum(rows.gather(1, target[:, None]).squeeze(1).tolist())
                greedy = bool((rows.argmax(dim=-1) == target).all())
                out.append((total, greedy))
        return out

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing spaces belong to the continuation: BPE merges a space with the next word (" Paris").
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        ctx = self.enc.encode_ordinary(context) if context else []
        return (ctx or [self.eot]), self.enc.encode_ordinary(continuation)

    def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
        """(log P(continuation | context), is greedy) per request; an empty context starts from EOT."""
        pairs = [self._encode_pair(*req.args[:2]) for req in requests]
        results = self._score(pairs)
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests: list) -> list[float]:
        """log P(document), every token predicted once with up to a block of context before it."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        results = []
        for req in requests:
            tokens = self.enc.encode_ordinary(req.args[0])
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=tokens, prefix_token=self.eot, max_seq_len=self.max_length, context_len=1)]
            total = math.fsum(lp for lp, _ in self._score(windows))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
            results.append(total)
        return results

    def generate_until(self, requests: list) -> list[str]:
        raise NotImplementedError(f"{MODEL_NAME} scores text; generation tasks are not supported")


# ---------------------------------------------------------------------------------------------------------
def task_manager(include_local: bool = True):
    """lm-eval's TaskManager, with the local test tasks of `trainable/lm_eval_tasks` when `include_local`."""
    from lm_eval.tasks import TaskManager

    return TaskManager(verbosity="ERROR", include_path=str(LOCAL_TASKS_DIR) if include_local else None)


def flat_metrics(results: dict[str, Any], tasks: Iterable[str]) -> dict[str, float]:
    """`lm_eval.<task>.<metric>` -> value from lm-eval's results dict (finite numbers only; stderr and the
    filter suffix `,none` and the sample count left out)."""
    out: dict[str, float] = {}
    per_task = results.get("results", {})
    for task in tasks:
        for key, value in (per_task.get(task) or {}).items():
            metric, _, _filter = key.partition(",")
            if metric.endswith("_stderr") or metric in ("alias", "sample_len") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"lm_eval.{task}.{metric}"] = float(value)
    return out


def evaluate_checkpoint(checkpoint: str | Path, tasks: Iterable[str] = DEFAULT_TASKS, device: str = "cpu",
                        batch_size: int = 16, limit: int | None = None) -> dict[str, float]:
    """Run lm-eval's `tasks` (zero-shot) on one checkpoint; returns `flat_metrics`."""
    import logging

    import lm_eval

    # lm-eval warns per task and per run about things that are as intended here (a custom dataset loader,
    # num_fewshot set to 0); keep the sweep's output readable.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tasks = list(tasks)
    model = SchedsweepGPT(str(checkpoint), device=device, batch_size=batch_size)
    results = lm_eval.simple_evaluate(
        model=model, tasks=tasks, num_fewshot=0, limit=limit, task_manager=task_manager(),
        log_samples=False, bootstrap_iters=0, verbosity="ERROR",
    )
    if results is None:
        raise RuntimeError("lm-eval returned no results")
    return flat_metrics(results, tasks)
