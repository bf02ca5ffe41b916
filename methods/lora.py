"""``lora``: peft LoRA on the language model's linears (selected explicitly: vision towers have
``q_proj`` too) plus the projector at its own learning rate.

LLaVA-1.5: r=128, α=256, dropout 0.05, lr 2e-4, projector 2e-5 (reference/methods.md §4.8).
Tiny-scale rule: the rank scales with the hidden size, r = max(4, round(128·d/4096)) (8 for
d=256), keeping α/r = 2; the step size and passes are raised as for full-ft.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from peft import LoraConfig, get_peft_model

from kore_bench.adapters.nullspace import default_rank
from kore_bench.method import Method, MethodConfig, projector_groups, register_method
from kore_bench.models.parts import decoder_linear_names, language_model, lm_linear_regex, projector, unwrap
from kore_bench.search import Choice, LogUniform


@dataclass
class LoraMethodConfig(MethodConfig):
    lr: float = field(default=2e-3, metadata={"help": "LLaVA-1.5: 2e-4 at 7B; tiny models: 2e-3"})
    rank: int | None = field(default=None, metadata={"help": "None: max(4, round(128·hidden/4096))"})
    alpha_over_rank: float = field(default=2.0, metadata={"help": "LLaVA-1.5: α=256 at r=128"})
    dropout: float = field(default=0.05, metadata={"help": "LLaVA-1.5 default"})
    projector_lr: float | None = field(default=2e-4, metadata={"help": "LLaVA-1.5: 2e-5 (a tenth of lr)"})


def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Decoder-block linear name → (in_features, out_features): what LoRA-style adapters wrap."""
    base = unwrap(model)
    out = {}
    for name in decoder_linear_names(base):
        module = base.get_submodule(name)
        module = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        out[name] = (module.in_features, module.out_features)
    return out


def projector_size(model: torch.nn.Module, lr: float | None) -> int:
    """Parameters :func:`projector_groups` makes trainable at ``lr`` (0 when it stays frozen)."""
    return 0 if lr is None else sum(p.numel() for p in projector(model).parameters())


def lora_size(model: torch.nn.Module, rank: int) -> int:
    """A and B of a rank-``rank`` LoRA on every decoder linear: Σ r·(d_in + d_out)."""
    return sum(rank * (i + o) for i, o in linear_shapes(model).values())


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

    def declared_trainable(self, model: torch.nn.Module) -> int:
        rank = self.config.rank or default_rank(model)
        return lora_size(model, rank) + projector_size(model, self.config.projector_lr)


def lora_updates(model: torch.nn.Module, adapter: str = "default") -> dict[str, torch.Tensor]:
    """Decoder linear name (relative to the unwrapped model) → its effective update ``s·B A``.

    Differentiable: penalties on what the adapter changes in each weight (EWC, SEFE) use it.
    """
    base = unwrap(model)
    out = {}
    for name in decoder_linear_names(base):
        layer = base.get_submodule(name)
        if not hasattr(layer, "lora_A") or adapter not in layer.lora_A:
            continue
        out[name] = layer.scaling[adapter] * (layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight)
    return out
