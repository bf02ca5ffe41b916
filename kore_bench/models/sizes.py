"""kore-tiny size presets: plain dataclasses, importable without torch or transformers (the base
cache fingerprints them; ``kore-bench base info`` should not pay for a transformers import)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a kore-tiny model. ``vocab_size=None`` means ``len(tokenizer)``."""

    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    image_size: int = 32
    patch_size: int = 8
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 256
    vocab_size: int | None = None
    max_positions: int = 1024

    def replace(self, **changes: int | None) -> TinyModelConfig:
        return dataclasses.replace(self, **changes)


SIZES: dict[str, TinyModelConfig] = {
    "micro": TinyModelConfig(),
    "small": TinyModelConfig(text_layers=4, text_intermediate=384),
    "default": TinyModelConfig(vision_hidden=128, text_hidden=256, text_layers=4,
                               text_intermediate=688),
}
