"""``replay``: LoRA on the new knowledge, every batch joined by samples from a replay memory of
old-knowledge data.

The KORE paper's Replay is "LoRA + 10 % replay data" (reference/methods.md §4.1); as in
continual-learning practice (MCITlib, CoIN) the memory is that share of the *previous* training
data, here the retention suites' old-knowledge pool, drawn once per seed. The memory joins the
new data batch by batch (as Avalanche's ReplayDataLoader does): the new data's batches and steps
are exactly LoRA's, so replay differs from LoRA only in what it rehearses.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from kore_bench.data import Sample
from kore_bench.method import TrainContext, register_method
from kore_bench.old_data import no_old_data
from kore_bench.search import LogUniform
from kore_bench.train import WithMemory

from .lora import LoRA, LoraMethodConfig


@dataclass
class ReplayConfig(LoraMethodConfig):
    ratio: float = field(default=0.1, metadata={"help": "share of the old-knowledge pool kept as replay memory "
                                                        "(paper: 10 %)"})
    memory_batch_size: int | None = field(default=None, metadata={
        "help": "memory samples added to every batch; None: the batch size (Avalanche's default)"})


@register_method("replay")
class Replay(LoRA):
    Config = ReplayConfig
    # the step size and the memory's share of the old data (the paper's 10 % inside the range)
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "ratio": LogUniform(0.02, 0.5)}

    def memory(self, ctx: TrainContext) -> list[Sample]:
        """The replay memory: ``ratio`` of the old-knowledge pool, drawn with the run's seed."""
        if not ctx.old_data:
            raise no_old_data("replay needs old-knowledge data to replay")
        k = min(len(ctx.old_data), max(1, round(self.config.ratio * len(ctx.old_data))))
        return random.Random(ctx.seed).sample(ctx.old_data, k)

    def samples_per_step(self) -> int:
        return self.config.batch_size + (self.config.memory_batch_size or self.config.batch_size)

    def batch_source(self, ctx: TrainContext) -> WithMemory:
        return WithMemory(self.memory(ctx), self.config.memory_batch_size or self.config.batch_size)
