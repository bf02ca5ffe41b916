"""``o-lora``: LoRA with O-LoRA's orthogonality penalty (reference/methods.md §4.4).

``L = CE + λ₁ Σ_layers Σ_j ‖A A_jᵀ‖₁`` (the sum of absolute entries), λ₁ = 0.05 as MCITlib on
LLaVA-1.5, no L2 term. In O-LoRA the A_j are the down-projections of the adapters of earlier
tasks. A single injection has no earlier adapter, so here **A is kept orthogonal to the
old-knowledge principal subspace** of each linear: A_old = the top-k eigenvectors (k = the
adapter's rank, unit rows) of the layer's input covariance on the old-knowledge calibration
prompts (the same cached covariances as KORE, :mod:`kore_bench.adapters.covariance`). That is the subspace
an earlier adapter trained on old data would have spanned at best; in sequential injection the
earlier adapters' A take its place and the method is the original one (the engine has no
sequential injection yet). The penalty drives A off the old inputs' main directions, so the
update ``B A x`` barely reacts to them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext, register_method
from kore_bench.models.parts import unwrap
from kore_bench.search import LogUniform

from .kore import old_covariances
from .lora import LoRA, LoraMethodConfig, default_rank


@dataclass
class OLoraConfig(LoraMethodConfig):
    ortho_lambda: float = field(default=0.05, metadata={"help": "λ₁ of Σ|A A_oldᵀ| (MCITlib LLaVA: 0.05)"})
    old_rank: int | None = field(default=None, metadata={
        "help": "dimension k of the old-knowledge subspace A is kept orthogonal to (single injection: "
                "top-k eigenvectors of the old prompts' input covariance); None: the adapter's rank"})
    calibration_samples: int = field(default=256, metadata={"help": "old-knowledge prompts (as KORE)"})


def principal_subspaces(covs, names: list[str], k: int) -> dict[str, torch.Tensor]:
    """Linear name → A_old (k × n): the top-k eigenvectors of its input covariance, as rows."""
    out: dict[str, torch.Tensor] = {}
    done: dict[int, torch.Tensor] = {}
    for name in names:
        cov = covs[name]
        if not 1 <= k <= cov.shape[0]:
            raise KoreBenchError(f"old_rank {k} must be between 1 and the input dimension {cov.shape[0]} of {name}")
        if id(cov) not in done:
            _, vectors = torch.linalg.eigh(cov.double())  # ascending
            done[id(cov)] = vectors[:, -k:].T.float().contiguous()
        out[name] = done[id(cov)]
    return out


def orthogonality_penalty(model: nn.Module, old: dict[str, torch.Tensor], lam: float,
                          adapter: str = "default") -> torch.Tensor:
    """``λ Σ_layers ‖A A_oldᵀ‖₁`` over the adapted linears."""
    base = unwrap(model)
    total = None
    for name, a_old in old.items():
        a = base.get_submodule(name).lora_A[adapter].weight
        term = (a @ a_old.to(a.device, a.dtype).T).abs().sum()
        total = term if total is None else total + term
    if total is None:
        raise KoreBenchError("o-lora: no adapted layer to keep orthogonal")
    return lam * total


@register_method("o-lora")
class OLoRA(LoRA):
    """LoRA whose A is kept orthogonal to the old-knowledge principal subspace (single injection)."""

    Config = OLoraConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "ortho_lambda": LogUniform(5e-3, 0.5)}

    def old_subspaces(self, model: nn.Module, processor, ctx: TrainContext) -> dict[str, torch.Tensor]:
        from .lora import linear_shapes

        covs = old_covariances(model, processor, ctx, self.config.calibration_samples)
        k = self.config.old_rank or self.config.rank or default_rank(model)
        return principal_subspaces(covs, list(linear_shapes(model)), k)

    def penalty(self, base: nn.Module, processor, ctx: TrainContext) -> Callable:
        old, lam = self.old_subspaces(base, processor, ctx), self.config.ortho_lambda
        return lambda m, batch, out: orthogonality_penalty(m, old, lam)
