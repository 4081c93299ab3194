"""The trainer's configuration: small typed sections, validated on construction.

A YAML file (or a dict from a sweep config) becomes a `TrainConfig` through `TrainConfig.from_dict` /
`from_yaml`. Every bad value, missing requirement or unknown key raises `ConfigError` naming the dotted
field (`optimizer.lr`, `batch.seq_len`, `checkpoint.keep`), before anything is created. `to_dict()` gives
back a plain dict that `from_dict` accepts again, and `apply_overrides` handles the CLI's `--set a.b=c`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from search_spaces.errors import ConfigError
from search_spaces.validation import (MAX_SEED, MAX_STEPS, check_bool, check_choice, check_int, check_keys,
                                      check_number, check_steps)
from trainable.data.tokenizers import check_folder_vocab, check_tokenizer_name, check_vocab
from trainable.model_config import GPT_CONFIG_FIELDS, MODEL_PRESETS, GPTConfig
from trainable.yaml_input import read_yaml_mapping

DEFAULT_SCHEDULE: dict[str, Any] = {
    "warmup_frac": 0.05,
    "warmup_curve": "linear",
    "hold_frac": 0.05,
    "shape": "cosine",
    "floor": 0.1,
}


# ---------------------------------------------------------------------------------------------------------
# Sections


# Bounds far above any model this project trains (GPT-2 XL: 48 layers, 25 heads, 1600 wide, 1024 context).
_MODEL_MAX = {"n_layer": 1024, "n_head": 1024, "n_embd": 65536, "block_size": 1_048_576, "vocab_size": 10_000_000}
MAX_LR = 1000.0  # AdamW diverges far below this (tests force divergence with tens); beyond it a typo (1e30)


@dataclass(frozen=True)
class ModelSection:
    """A named model shape (`tiny`, `gpt2-124m`, `gpt2-350m`), optionally with fields overridden."""

    name: str | None = "tiny"
    gpt: GPTConfig = MODEL_PRESETS["tiny"]

    @staticmethod
    def parse(d: Any, path: str = "model") -> "ModelSection":
        if isinstance(d, str):
            d = {"name": d}
        check_keys(d, {"name", *GPT_CONFIG_FIELDS}, path)
        name = d.get("name")
        if name is not None and (not isinstance(name, str) or name not in MODEL_PRESETS):
            raise ConfigError(f"{path}.name", f"unknown model {name!r} (known: {', '.join(MODEL_PRESETS)})")
        base = MODEL_PRESETS[name] if name is not None else GPTConfig()
        over: dict[str, Any] = {}
        for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if key in d:
                over[key] = check_int(d[key], f"{path}.{key}", minimum=1, maximum=_MODEL_MAX[key])
        if "dropout" in d:
            over["dropout"] = check_number(d["dropout"], f"{path}.dropout", lo=0.0, from_string=True)
            if over["dropout"] >= 1.0:
                raise ConfigError(f"{path}.dropout", "must be < 1")
        if "bias" in d:
            over["bias"] = check_bool(d["bias"], f"{path}.bias")
        gpt = replace(base, **over)
        if gpt.n_embd % gpt.n_head:
            raise ConfigError(f"{path}.n_head", f"n_embd ({gpt.n_embd}) must be a multiple of n_head ({gpt.n_head})")
        return ModelSection(name=name, gpt=gpt)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.gpt.to_dict()}


@dataclass(frozen=True)
class DataSection:
    """Where the token shards are: a prepared folder (`dir`, whose meta.json names its tokenizer) or the
    bundled offline corpus, tokenized with `tokenizer` (``gpt2``, ``bytes`` or ``spN``) on first use."""

    dir: str | None = None
    bundled: bool = True
    tokenizer: str | None = "gpt2"  # None for a folder: its meta.json says

    @staticmethod
    def parse(d: Any, path: str = "data") -> "DataSection":
        check_keys(d, {"dir", "bundled", "tokenizer"}, path)
        data_dir = d.get("dir")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ConfigError(f"{path}.dir", f"expected a folder path, got {data_dir!r}")
        bundled = check_bool(d.get("bundled", data_dir is None), f"{path}.bundled")
        if bundled and data_dir is not None:
            raise ConfigError(f"{path}.dir", "give either dir or bundled: true, not both")
        if not bundled and data_dir is None:
            raise ConfigError(f"{path}.dir", "required unless bundled: true")
        if not bundled:
            if d.get("tokenizer") is not None:
                raise ConfigError(f"{path}.tokenizer", "only for bundled: true; a prepared folder's meta.json names its own")
            return DataSection(dir=data_dir, bundled=False, tokenizer=None)
        return DataSection(bundled=True, tokenizer=check_tokenizer_name(d.get("tokenizer", "gpt2"), f"{path}.tokenizer"))

    def resolve_dir(self) -> Path:
        """The data folder; prepares the bundled corpus on first use (safe from several processes)."""
        if self.bundled:
            from trainable.data.bundled import ensure_bundled_data

            return Path(ensure_bundled_data(tokenizer=self.tokenizer))
        return Path(self.dir).expanduser()


@dataclass(frozen=True)
class OptimizerSection:
    """AdamW. `lr` is the peak LR: the schedule's multiplier 1.0. `grad_clip` 0 turns clipping off."""

    lr: float = 6e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0

    @staticmethod
    def parse(d: Any, path: str = "optimizer") -> "OptimizerSection":
        check_keys(d, {f.name for f in fields(OptimizerSection)}, path)
        out = OptimizerSection()
        lr = check_number(d.get("lr", out.lr), f"{path}.lr", lo=0.0, lo_open=True, hi=MAX_LR, from_string=True)
        wd = check_number(d.get("weight_decay", out.weight_decay), f"{path}.weight_decay", lo=0.0, from_string=True)
        betas = d.get("betas", list(out.betas))
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ConfigError(f"{path}.betas", f"expected two numbers, got {betas!r}")
        for i, b in enumerate(betas):
            check_number(b, f"{path}.betas[{i}]", lo=0.0, from_string=True)
            if b >= 1.0:
                raise ConfigError(f"{path}.betas[{i}]", f"must be < 1, got {b}")
        eps = check_number(d.get("eps", out.eps), f"{path}.eps", lo=0.0, lo_open=True, from_string=True)
        clip = check_number(d.get("grad_clip", out.grad_clip), f"{path}.grad_clip", lo=0.0, from_string=True)
        return OptimizerSection(lr, wd, (float(betas[0]), float(betas[1])), eps, clip)


@dataclass(frozen=True)
class HorizonSection:
    """Training length: exactly one of `steps` (optimizer steps) or `tokens` (global tokens)."""

    steps: int | None = 100
    tokens: int | None = None

    @staticmethod
    def parse(d: Any, path: str = "horizon") -> "HorizonSection":
        check_keys(d, {"steps", "tokens"}, path)
        steps, tokens = d.get("steps"), d.get("tokens")
        if (steps is None) == (tokens is None):
            raise ConfigError(f"{path}.steps", "give exactly one of steps or tokens")
        if steps is not None:
            check_int(steps, f"{path}.steps", minimum=1, maximum=MAX_STEPS)
        if tokens is not None:
            check_int(tokens, f"{path}.tokens", minimum=1, maximum=MAX_STEPS * 2**24)
        return HorizonSection(steps=steps, tokens=tokens)


@dataclass(frozen=True)
class BatchSection:
    """Per-rank micro-batch, sequence length and gradient-accumulation steps per optimizer step."""

    micro_batch_size: int = 8
    seq_len: int = 64
    grad_accum: int = 1

    @staticmethod
    def parse(d: Any, path: str = "batch") -> "BatchSection":
        check_keys(d, {f.name for f in fields(BatchSection)}, path)
        out = BatchSection()
        return BatchSection(
            micro_batch_size=check_int(d.get("micro_batch_size", out.micro_batch_size), f"{path}.micro_batch_size", 1),
            seq_len=check_int(d.get("seq_len", out.seq_len), f"{path}.seq_len", 1),
            grad_accum=check_int(d.get("grad_accum", out.grad_accum), f"{path}.grad_accum", 1),
        )


@dataclass(frozen=True)
class EvalSection:
    """Evaluate every `interval` optimizer steps (and always at the last), on up to `max_tokens` val tokens.

    `probe_steps`: at the first eval at or after each of these steps, also run a cooldown probe (a fork
    that anneals to the schedule's floor over `probe_frac` x the steps done so far, is evaluated, then
    discarded; see trainable.cooldown_probe). Empty: no probes.
    """

    interval: int = 25
    max_tokens: int | None = 32768
    batch_size: int | None = None  # None: the training micro-batch size
    probe_steps: tuple[int, ...] = ()
    probe_frac: float = 0.2

    @staticmethod
    def parse(d: Any, path: str = "eval") -> "EvalSection":
        check_keys(d, {f.name for f in fields(EvalSection)}, path)
        out = EvalSection()
        interval = check_int(d.get("interval", out.interval), f"{path}.interval", 1)
        max_tokens = d.get("max_tokens", out.max_tokens)
        if max_tokens is not None:
            check_int(max_tokens, f"{path}.max_tokens", 1)
        batch_size = d.get("batch_size")
        if batch_size is not None:
            check_int(batch_size, f"{path}.batch_size", 1)
        probe_steps = check_steps(d.get("probe_steps", []), f"{path}.probe_steps")
        probe_frac = check_number(d.get("probe_frac", out.probe_frac), f"{path}.probe_frac", lo=0.0, lo_open=True, from_string=True)
        if probe_frac > 1.0:
            raise ConfigError(f"{path}.probe_frac", f"must be <= 1 (a fraction of the steps so far), got {probe_frac}")
        return EvalSection(interval, max_tokens, batch_size, probe_steps, probe_frac)

    def to_dict(self) -> dict:
        return {**asdict(self), "probe_steps": list(self.probe_steps)}


@dataclass(frozen=True)
class CheckpointSection:
    """Write a checkpoint into `dir` every `every` evals (and at the end); keep the last `keep`."""

    dir: str | None = None
    every: int = 1
    keep: int = 2

    @staticmethod
    def parse(d: Any, path: str = "checkpoint") -> "CheckpointSection":
        check_keys(d, {f.name for f in fields(CheckpointSection)}, path)
        ckpt_dir = d.get("dir")
        if ckpt_dir is not None and (not isinstance(ckpt_dir, str) or not ckpt_dir):
            raise ConfigError(f"{path}.dir", f"expected a folder path, got {ckpt_dir!r}")
        every = check_int(d.get("every", 1), f"{path}.every", 1)
        keep = check_int(d.get("keep", 2), f"{path}.keep", 1)
        return CheckpointSection(dir=ckpt_dir, every=every, keep=keep)


@dataclass(frozen=True)
class DivergenceSection:
    """When a run counts as diverged: a non-finite train loss always; or one above a limit.

    `margin`: the loss exceeds the first step's loss by more than this many nats. `max_loss`: an absolute
    ceiling. Either may be null (off).
    """

    margin: float | None = 5.0
    max_loss: float | None = None

    @staticmethod
    def parse(d: Any, path: str = "divergence") -> "DivergenceSection":
        check_keys(d, {"margin", "max_loss"}, path)
        margin = d.get("margin", 5.0)
        if margin is not None:
            margin = check_number(margin, f"{path}.margin", lo=0.0, lo_open=True, from_string=True)
        max_loss = d.get("max_loss")
        if max_loss is not None:
            max_loss = check_number(max_loss, f"{path}.max_loss", lo=0.0, lo_open=True, from_string=True)
        return DivergenceSection(margin=margin, max_loss=max_loss)


@dataclass(frozen=True)
class TrainLossSection:
    """The loss the optimiser minimises. Evaluation always uses plain cross-entropy, whatever this says.

    `focal` (with `gamma`) and `z_loss` (a coefficient on logsumexp^2) are training-only options.
    """

    kind: str = "cross_entropy"
    gamma: float = 2.0
    z_loss: float = 0.0

    @staticmethod
    def parse(d: Any, path: str = "train_loss") -> "TrainLossSection":
        if isinstance(d, str):
            d = {"kind": d}
        check_keys(d, {"kind", "gamma", "z_loss"}, path)
        kind = check_choice(d.get("kind", "cross_entropy"), f"{path}.kind", ("cross_entropy", "focal"))
        gamma = check_number(d.get("gamma", 2.0), f"{path}.gamma", lo=0.0, from_string=True)
        z_loss = check_number(d.get("z_loss", 0.0), f"{path}.z_loss", lo=0.0, from_string=True)
        return TrainLossSection(kind=kind, gamma=gamma, z_loss=z_loss)


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Build it with `from_dict` / `from_yaml`, which validate."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    schedule: dict = field(default_factory=lambda: dict(DEFAULT_SCHEDULE))
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    horizon: HorizonSection = field(default_factory=HorizonSection)
    batch: BatchSection = field(default_factory=BatchSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    divergence: DivergenceSection = field(default_factory=DivergenceSection)
    train_loss: TrainLossSection = field(default_factory=TrainLossSection)
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False

    _SECTIONS = {
        "model": ModelSection.parse,
        "data": DataSection.parse,
        "optimizer": OptimizerSection.parse,
        "horizon": HorizonSection.parse,
        "batch": BatchSection.parse,
        "eval": EvalSection.parse,
        "checkpoint": CheckpointSection.parse,
        "divergence": DivergenceSection.parse,
        "train_loss": TrainLossSection.parse,
    }

    @classmethod
    def from_dict(cls, d: Any) -> "TrainConfig":
        """Validate a plain dict (YAML-shaped) into a TrainConfig; missing sections take defaults."""
        if d is None:
            d = {}
        allowed = {f.name for f in fields(cls)}
        check_keys(d, allowed, "")
        kwargs: dict[str, Any] = {}
        for name, parse in cls._SECTIONS.items():
            if name in d:
                kwargs[name] = parse(d[name] if d[name] is not None else {}, name)
        if "schedule" in d:
            kwargs["schedule"] = d["schedule"]
        for name in ("seed", "data_seed"):
            if name in d:
                kwargs[name] = check_int(d[name], name, minimum=0, maximum=MAX_SEED)
        if "device" in d:
            kwargs["device"] = check_choice(d["device"], "device", ("auto", "cpu", "cuda"))
        if "dtype" in d:
            kwargs["dtype"] = check_choice(d["dtype"], "dtype", ("auto", "float32", "bfloat16"))
        if "compile" in d:
            kwargs["compile"] = check_bool(d["compile"], "compile")
        cfg = cls(**kwargs)
        cfg._validate_across_sections()
        return cfg

    def _validate_across_sections(self) -> None:
        if self.batch.seq_len > self.model.gpt.block_size:
            raise ConfigError(
                "batch.seq_len",
                f"{self.batch.seq_len} exceeds the model's block_size {self.model.gpt.block_size}",
            )
        if not isinstance(self.schedule, dict):
            raise ConfigError("schedule", f"expected a mapping, got {type(self.schedule).__name__}")
        self.build_schedule()  # raises ConfigError naming schedule.<field>
        if self.data.tokenizer is not None:  # a folder's is known only where it exists (check_runs_here, the trainer)
            check_vocab(self.model.gpt.vocab_size, self.data.tokenizer)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read and validate a YAML file; a missing or unreadable file is a ConfigError on `config`."""
        return cls.from_dict(load_yaml(path))

    def to_dict(self) -> dict:
        """A plain, YAML-able dict that `from_dict` turns back into an equal config."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "model":
                out["model"] = value.to_dict()
            elif f.name == "eval":
                out["eval"] = value.to_dict()
            elif f.name == "optimizer":
                out["optimizer"] = {**asdict(value), "betas": list(value.betas)}
            elif hasattr(value, "__dataclass_fields__"):
                out[f.name] = asdict(value)
            else:
                out[f.name] = value
        return out

    def build_schedule(self):
        """The `search_spaces.Schedule` this config's `schedule` section describes."""
        from search_spaces import schedule_from_dict

        try:
            return schedule_from_dict(dict(self.schedule))
        except ConfigError as err:
            raise err.prefixed("schedule") from None

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Global tokens consumed by one optimizer step across `world_size` ranks."""
        b = self.batch
        return b.micro_batch_size * b.seq_len * b.grad_accum * world_size

    def total_steps(self, world_size: int = 1) -> int:
        """The horizon T in optimizer steps; a token horizon is rounded up to whole steps."""
        if self.horizon.steps is not None:
            return self.horizon.steps
        return max(1, math.ceil(self.horizon.tokens / self.tokens_per_step(world_size)))


def check_runs_here(cfg: "TrainConfig", processes: int, where: str = "trainer",
                    processes_field: str = "--nproc") -> None:
    """Refuse, before any process starts, what cannot run on *this* machine: more processes than it has CPUs
    (or, with device cuda, CUDA devices), `device: cuda` without CUDA, a data folder that is missing or holds
    no train/val shards. Only for runs that stay on this machine (`sweep train`, a sweep on a local Ray): a config
    is also valid for a cluster whose nodes have what this one lacks. `where`: the config section's path."""
    import os

    cpus = os.cpu_count() or 1
    if cfg.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise ConfigError(f"{where}.device" if where else "device", "cuda, but this machine has no CUDA device")
        if processes > gpus:
            raise ConfigError(f"{where}.device" if where else "device",
                              f"cuda with {processes} processes ({processes_field}), but this machine has {gpus} "
                              "CUDA devices")
    elif processes > 4 * cpus:
        raise ConfigError(processes_field, f"{processes} processes on a machine with {cpus} CPUs (at most {4 * cpus})")
    if not cfg.data.bundled:
        folder = Path(cfg.data.dir).expanduser()
        field = f"{where}.data.dir" if where else "data.dir"
        if not folder.is_dir():
            raise ConfigError(field, f"{folder} is not a folder (make one with: sweep data prepare ... --out {folder})")
        from trainable.data.shards import list_shards

        missing = [split for split in ("train", "val") if not list_shards(folder, split)]
        if missing:  # what the loader needs, and nothing more (a folder of shards without meta.json is fine)
            raise ConfigError(field, f"{folder} holds no {' and no '.join(f'{m}_*.bin' for m in missing)} shards: "
                                     "not a prepared data folder (sweep data prepare)")
        check_folder_vocab(cfg.model.gpt.vocab_size, folder, f"{where}.model.vocab_size" if where else "model.vocab_size")


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping from `path`; any problem (I/O, encoding, syntax, duplicate keys, not a mapping) is a
    one-line ConfigError on `config` (`trainable.yaml_input`)."""
    return read_yaml_mapping(path, "config")


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply CLI overrides `a.b=c` to a nested dict (a copy); values are parsed as YAML (`1e-3`, `true`)."""
    out = _deep_copy(d)
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError("--set", f"bad key {key!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and part == "model":
                child = {"name": child}  # `model: tiny` with `--set model.n_layer=4`
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), "is not a section; cannot set a field inside it")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d
