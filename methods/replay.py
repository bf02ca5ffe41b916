"""``replay``: LoRA trained on the new knowledge mixed with a share of old-knowledge data.

The KORE paper's Replay is LoRA + 10 % replay data (reference/methods.md §4.1). The share is
measured against the number of new-knowledge samples; drawn once per seed from the retention
suites' training pool.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext, TrainedModel, register_method
from kore_bench.search import LogUniform

from .lora import LoRA, LoraMethodConfig


@dataclass
class ReplayConfig(LoraMethodConfig):
    ratio: float = field(default=0.1, metadata={"help": "old samples per new sample (paper: 10 %)"})


@register_method("replay")
class Replay(LoRA):
    Config = ReplayConfig
    # the step size and the share of old data (the paper's 10 % in the middle of the range)
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "ratio": LogUniform(0.03, 0.5)}

    def train(self, ctx: TrainContext) -> TrainedModel:
        if not ctx.old_data:
            raise KoreBenchError("replay needs old-knowledge data: the retention suites define no training pool")
        k = min(len(ctx.old_data), max(1, round(self.config.ratio * len(ctx.new_data))))
        replayed = random.Random(ctx.seed).sample(ctx.old_data, k)
        return self.train_on(ctx, list(ctx.new_data) + replayed)
