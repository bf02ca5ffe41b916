"""``lora``: peft LoRA on the language model's linears (selected explicitly: vision towers have
``q_proj`` too) plus the projector at its own learning rate.

LLaVA-1.5: r=128, α=256, dropout 0.05, lr 2e-4, projector 2e-5 (reference/methods.md §4.8).
Tiny-scale rule: the rank scales with the hidden size, r = max(4, round(128·d/4096)) (8 for
d=256), keeping α/r = 2; the step size and passes are raised as for full-ft.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from peft import LoraConfig, get_peft_model

from kore_bench.data import Sample
from kore_bench.method import Method, MethodConfig, TrainContext, TrainedModel, projector_groups, register_method
from kore_bench.models.parts import language_model, lm_linear_regex
from kore_bench.search import Choice, LogUniform
from kore_bench.train import train_model


@dataclass
class LoraMethodConfig(MethodConfig):
    lr: float = field(default=2e-3, metadata={"help": "LLaVA-1.5: 2e-4 at 7B; tiny models: 2e-3"})
    rank: int | None = field(default=None, metadata={"help": "None: max(4, round(128·hidden/4096))"})
    alpha_over_rank: float = field(default=2.0, metadata={"help": "LLaVA-1.5: α=256 at r=128"})
    dropout: float = field(default=0.05, metadata={"help": "LLaVA-1.5 default"})
    projector_lr: float | None = field(default=2e-4, metadata={"help": "LLaVA-1.5: 2e-5 (a tenth of lr)"})


def default_rank(model: torch.nn.Module) -> int:
    """The paper's r=128 at hidden 4096, scaled to the model's hidden size."""
    hidden = language_model(model).config.hidden_size
    return max(4, round(128 * hidden / 4096))


def add_lora(model: torch.nn.Module, cfg: LoraMethodConfig):
    """Wrap ``model`` with a LoRA adapter on the language model's linears only."""
    rank = cfg.rank or default_rank(model)
    lora = LoraConfig(
        r=rank,
        lora_alpha=cfg.alpha_over_rank * rank,
        lora_dropout=cfg.dropout,
        target_modules=lm_linear_regex(model),
        bias="none",
    )
    return get_peft_model(model, lora)


@register_method("lora")
class LoRA(Method):
    Config = LoraMethodConfig
    # tiny models learn between ~1e-3 and ~1e-2 (reference/derisk.md); ranks around the scaled default
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "rank": Choice([4, 8, 16])}

    def trainable_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = add_lora(model, self.config)
        projector_groups(model, self.config.projector_lr)
        return model

    def train_on(self, ctx: TrainContext, samples: list[Sample], **train_options: Any) -> TrainedModel:
        """Train a fresh adapter on ``samples``; ``train_options`` go to the trainer (replay's memory)."""
        model, processor = ctx.base.load(ctx.device)
        model = self.trainable_model(model)
        groups = projector_groups(model, self.config.projector_lr)
        info = train_model(model, processor, samples, self.config, ctx.seed, groups, progress=ctx.progress,
                           **train_options)
        self.save(model, ctx.artifact_dir)
        return TrainedModel(model, processor, info)

    def train(self, ctx: TrainContext) -> TrainedModel:
        return self.train_on(ctx, ctx.new_data)
