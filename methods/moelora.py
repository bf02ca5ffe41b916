"""``moelora``: a mixture of LoRA experts per targeted linear with a per-token router (CoIN's form,
reference/methods.md §4.5; peft has no such layer, so it is written here).

Per decoder linear: ``y = W x + s · Σ_e g_e(x) · B_e A_e x`` with ``g = softmax(W_g x)``
(``W_g ∈ R^{E×d_in}``, no bias), E experts of rank r/E each and s = α/r. The experts are held as one
``A`` (E·r/E × d_in) and one ``B`` (d_out × E·r/E): ``B (A x ⊙ g repeated r/E times)`` is the sum
above at the cost of one rank-r LoRA. Init as peft LoRA (A Kaiming-uniform, B = 0, so the model
equals the base at init); the router is a default ``nn.Linear``. CoIN merges nothing at inference,
so neither does this.

Tiny-scale defaults: total rank r = LoRA's default rank (CoIN: r = 128, α = 256 at 7B, scaled like
``lora``), E = 4 experts (CoIN: 8 at r = 128, MCITlib: 6 at r = 18; 8 would leave rank-1 experts
at r = 8), α/r = 2, dropout 0.05, lr as ``lora``. Trainable: experts + routers (+ the projector):
LoRA's budget plus E·d_in per linear for the routers.

Artifact: the plain format (the trained tensors); ``rebuild`` adds the layers to a fresh base from
the config (part of the unit key) before they load, so the evaluator sees an ordinary ``nn.Module``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kore_bench.errors import KoreBenchError
from kore_bench.method import Method, projector_groups, register_method
from kore_bench.models.parts import unwrap
from kore_bench.search import Choice, LogUniform

from .lora import LoraMethodConfig, default_rank, linear_shapes, projector_size


@dataclass
class MoeLoraConfig(LoraMethodConfig):
    experts: int = field(default=4, metadata={"help": "LoRA experts per linear E (CoIN: 8 at r=128); rank % E == 0"})
    rank: int | None = field(default=None, metadata={"help": "total rank r (each expert r/E); None: lora's default"})


class MoELoRALinear(nn.Module):
    """``base_layer(x) + s · B (A drop(x) ⊙ repeat(softmax(router(x)), r/E))``."""

    def __init__(self, base_layer: nn.Linear, rank: int, experts: int, alpha: float, dropout: float):
        super().__init__()
        if rank % experts:
            raise KoreBenchError(f"moelora: rank {rank} is not divisible by the number of experts {experts}")
        self.base_layer, self.experts, self.expert_rank = base_layer, experts, rank // experts
        self.scaling = alpha / rank
        ref = base_layer.weight
        self.experts_A = nn.Parameter(torch.empty(rank, base_layer.in_features, dtype=ref.dtype, device=ref.device))
        self.experts_B = nn.Parameter(torch.zeros(base_layer.out_features, rank, dtype=ref.dtype, device=ref.device))
        for e in range(experts):  # each expert's A as peft initialises a LoRA A
            nn.init.kaiming_uniform_(self.experts_A[e * self.expert_rank:(e + 1) * self.expert_rank], a=math.sqrt(5))
        self.router = nn.Linear(base_layer.in_features, experts, bias=False, dtype=ref.dtype, device=ref.device)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token expert weights (…, E); they sum to 1."""
        return torch.softmax(self.router(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.dropout(x) @ self.experts_A.T  # (…, r)
        mixed = low * self.gates(x).repeat_interleave(self.expert_rank, dim=-1)
        return self.base_layer(x) + self.scaling * (mixed @ self.experts_B.T)


def add_moelora(model: nn.Module, rank: int, experts: int, alpha: float, dropout: float) -> nn.Module:
    """Replace every decoder linear by a :class:`MoELoRALinear` around it; the rest is frozen."""
    base = unwrap(model)
    base.requires_grad_(False)
    for name in linear_shapes(base):
        parent_name, _, child = name.rpartition(".")
        parent = base.get_submodule(parent_name)
        setattr(parent, child, MoELoRALinear(getattr(parent, child), rank, experts, alpha, dropout))
    return model


def moelora_layers(model: nn.Module) -> dict[str, MoELoRALinear]:
    return {n: m for n, m in unwrap(model).named_modules() if isinstance(m, MoELoRALinear)}


@register_method("moelora")
class MoELoRA(Method):
    """E rank-r/E LoRA experts per decoder linear, mixed per token by a softmax router."""

    Config = MoeLoraConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "experts": Choice([2, 4, 8])}

    def structure(self, model: nn.Module) -> dict:
        cfg = self.config
        rank = cfg.rank or default_rank(model)
        return {"rank": rank, "experts": cfg.experts, "alpha": cfg.alpha_over_rank * rank, "dropout": cfg.dropout}

    def trainable_model(self, model: nn.Module) -> nn.Module:
        model = add_moelora(model, **self.structure(model))
        projector_groups(model, self.config.projector_lr)
        return model

    def rebuild(self, model: nn.Module) -> nn.Module:
        return add_moelora(model, **self.structure(model))

    def declared_trainable(self, model: nn.Module) -> int:
        """Experts (Σ r·(d_in + d_out), LoRA's budget) + routers (E·d_in per linear) + projector."""
        rank = self.config.rank or default_rank(model)
        return sum(rank * (i + o) + self.config.experts * i for i, o in linear_shapes(model).values()) \
            + projector_size(model, self.config.projector_lr)
