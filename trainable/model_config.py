"""GPT shapes as data: the model's config and its named presets, importable without torch.

Config validation (trainer, sweep driver, CLI) needs these names but not the model, so they live apart from
`trainable.model` and keep `import torch` off those paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

GPT2_VOCAB_SIZE = 50257
PADDED_VOCAB_SIZE = 50304


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT. `block_size` is the longest sequence the position table covers."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = PADDED_VOCAB_SIZE
    dropout: float = 0.0
    bias: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


# Named shapes. `tiny` exists so CPU tests train in seconds; `proving-ground` is the byte-level model that
# really learns on 2 CPU cores (configs/proving_ground.yaml, docs/proving_ground.md); the other two are
# GPT-2 small and medium.
MODEL_PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
    "proving-ground": GPTConfig(n_layer=3, n_head=3, n_embd=96, block_size=96, vocab_size=257),
    "gpt2-124m": GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "gpt2-350m": GPTConfig(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
}

GPT_CONFIG_FIELDS = tuple(f.name for f in fields(GPTConfig))
