"""``base``: no injection — the reference row every retention change is measured against."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from kore_bench.method import Method, TrainContext, TrainedModel, register_method


@register_method("base")
class NoInjection(Method):
    """Returns the base model untouched; evaluated once per run, whatever the seeds."""

    seed_dependent: ClassVar[bool] = False
    search_space: ClassVar[dict] = {}  # nothing to tune

    def train(self, ctx: TrainContext) -> TrainedModel:
        model, processor = ctx.base.load(ctx.device)
        return TrainedModel(model, processor)

    def trainable_model(self, model: nn.Module) -> nn.Module:
        return model.requires_grad_(False)

    def load(self, ctx: TrainContext) -> TrainedModel:
        return self.train(ctx)

    def declared_trainable(self, model) -> int:
        return 0
