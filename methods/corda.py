"""``corda``: peft's CorDA in knowledge-preserved mode (KPM) on the old-knowledge prompts.

reference/methods.md §0.2, §2. ``preprocess_corda`` collects each decoder linear's input
covariance on the calibration prompts (the same draw and the same prompt-only samples as KORE),
decomposes ``W C̃`` and keeps the *smallest* r components as the trainable adapter (A and B);
the base weight becomes the frozen residual. peft's hook needs batch size 1 (no padding), so the
calibration forward feeds one prompt at a time.

Defaults: r = LoRA's default rank (same trainable parameters as ``lora``), α = r as in CorDA
(scaling 1), dropout 0, lr and projector as ``lora``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from kore_bench.adapters.covariance import draw_calibration, encode_prompts
from kore_bench.adapters.nullspace import adapted_linears, default_rank
from kore_bench.errors import KoreBenchError
from kore_bench.method import CalibrationNeed, Method, TrainContext, projector_groups, register_method
from kore_bench.models.parts import lm_linear_regex
from kore_bench.adapters.residual import REWRITTEN_BASE, ZERO3_REWRITE

from .lora import LoRA, LoraMethodConfig, lora_size, projector_size


@dataclass
class CordaMethodConfig(LoraMethodConfig):
    rank: int | None = field(default=None, metadata={"help": "None: lora's default rank"})
    alpha_over_rank: float = field(default=1.0, metadata={"help": "CorDA: α = r"})
    dropout: float = field(default=0.0, metadata={"help": "CorDA: 0"})
    corda_method: str = field(default="kpm", metadata={"help": "kpm (keep old knowledge) or ipm"})
    calibration_samples: int = field(default=256, metadata={"help": "old-knowledge prompts (CorDA: 256)"})


def add_corda(model: nn.Module, processor, calibration, cfg: CordaMethodConfig):
    """Run ``preprocess_corda`` on the calibration prompts and wrap ``model`` with the adapter."""
    from peft.tuners.lora.config import CordaConfig
    from peft.tuners.lora.corda import preprocess_corda

    if cfg.corda_method not in ("kpm", "ipm"):
        raise KoreBenchError(f"corda_method must be 'kpm' or 'ipm', got {cfg.corda_method!r}")
    rank = cfg.rank if cfg.rank is not None else default_rank(model)
    for name, linear in adapted_linears(model).items():
        if not 1 <= rank <= min(linear.in_features, linear.out_features):
            raise KoreBenchError(f"rank {rank} must be between 1 and min(in, out) = "
                                 f"{min(linear.in_features, linear.out_features)} of layer {name}")
    features = encode_prompts(processor, calibration)
    config = LoraConfig(r=rank, lora_alpha=cfg.alpha_over_rank * rank, lora_dropout=cfg.dropout,
                        target_modules=lm_linear_regex(model), bias="none", init_lora_weights="corda",
                        corda_config=CordaConfig(corda_method=cfg.corda_method))
    device = next(model.parameters()).device
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    @torch.no_grad()
    def run_model() -> None:
        for f in features:  # batch size 1: peft's hook squeezes the batch dimension
            model(**{k: v.to(device) for k, v in f.items()}, **extra)

    try:
        preprocess_corda(model, config, run_model=run_model)
    except ValueError as e:  # peft reports NaN/Inf activations this way
        raise KoreBenchError(f"CorDA calibration failed: {e}") from e
    return get_peft_model(model, config)


@register_method("corda")
class CorDA(Method):
    Config = CordaMethodConfig
    artifact = REWRITTEN_BASE
    unsupported_sharding: ClassVar[dict[str, str]] = {"zero3": ZERO3_REWRITE}
    search_space: ClassVar[dict] = dict(LoRA.search_space)  # A and B train, as in LoRA

    def trainable_model(self, model: nn.Module) -> nn.Module:
        """The adapter's shape (A and B train) without peft's CorDA initialisation."""
        rank = self.config.rank if self.config.rank is not None else default_rank(model)
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=self.config.alpha_over_rank * rank,
                                                 target_modules=lm_linear_regex(model), bias="none"))
        projector_groups(model, self.config.projector_lr)
        return model

    def calibration_need(self, model: nn.Module) -> CalibrationNeed:
        # peft's preprocess_corda: one float32 matrix per adapted linear, all layers hooked at once
        return CalibrationNeed(torch.float32, False, torch.float32, self.config.calibration_samples, 1)

    def prepare(self, model: nn.Module, processor, ctx: TrainContext) -> nn.Module:
        """peft's CorDA initialisation from the old data's covariances (rewrites the base weights)."""
        calibration = draw_calibration(ctx.old_data, self.config.calibration_samples, ctx.seed)
        return add_corda(model, processor, calibration, self.config)

    def declared_trainable(self, model: nn.Module) -> int:
        rank = self.config.rank if self.config.rank is not None else default_rank(model)
        return lora_size(model, rank) + projector_size(model, self.config.projector_lr)
