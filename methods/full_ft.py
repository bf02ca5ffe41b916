"""``full-ft``: fine-tune every language-model weight and the projector (vision tower frozen).

LLaVA-1.5 task fine-tuning uses lr 2e-5, 1 epoch, cosine, warm-up 3 %, no weight decay
(reference/methods.md §4.8). Tiny models on a few dozen knowledge items need far more passes and
a larger step size; the defaults below are the tiny-scale equivalents (see README, "Defaults").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from kore_bench.method import Method, MethodConfig, projector_groups, register_method
from kore_bench.models.parts import language_model
from kore_bench.search import LogUniform


@dataclass
class FullFTConfig(MethodConfig):
    lr: float = field(default=3e-4, metadata={"help": "LLaVA-1.5: 2e-5 at 7B; tiny models: 3e-4"})
    projector_lr: float | None = field(default=3e-4, metadata={"help": "trained at the main lr, as in LLaVA"})


@register_method("full-ft")
class FullFineTune(Method):
    Config = FullFTConfig
    # derisk.md: 3e-4 learns and keeps most, 1e-3 forgets nearly everything
    search_space: ClassVar[dict] = {"lr": LogUniform(5e-5, 2e-3)}

    def trainable_model(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(False)
        language_model(model).requires_grad_(True)
        projector_groups(model, self.config.projector_lr)
        return model

    def declared_trainable(self, model) -> int:
        from .lora import projector_size

        return sum(p.numel() for p in language_model(model).parameters()) + projector_size(
            model, self.config.projector_lr)
