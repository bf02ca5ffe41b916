"""``ewc``: LoRA plus Elastic Weight Consolidation on the effective update (reference/methods.md §4.2).

Penalty ``(λ/2) Σ_W Σ_ij F_W,ij · (s·B A)_ij²`` over every adapted decoder linear ``W``, with
``F_W`` the diagonal empirical Fisher of the *base* weight on old-knowledge data:
``F = mean over samples of (∂ CE(sample) / ∂W)²`` (per-sample gradients, batch 1, the answer
tokens' mean CE, the base model in eval mode). EWC on LoRA's own A/B would be blind: with B = 0
at init, ``∂L/∂A = 0``, so the Fisher of A is zero; the effective update ``s·B A`` is what moves
the model, and the base weight's Fisher is what old knowledge is sensitive to.

The Fisher is computed once per (base model, old-data draw) and cached under
``$KORE_BENCH_CACHE/fisher`` like KORE's covariances; the old-data pool is the retention suites'
training pool (an empty pool is an error).

λ = 400: TRACE's ``lambda_ewc`` default (``model/Regular/EWC.py``; TRACE's double division by the
train length is not reproduced: the Fisher here is a plain mean). Tiny-scale rule: the Fisher is a
per-sample quantity of a mean-token loss, so its scale does not grow with the data or the model's
width and the 7B value is kept; sweep λ (search space).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from kore_bench.adapters.covariance import draw_calibration, features_fingerprint
from kore_bench import distributed
from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext, register_method
from kore_bench.old_data import no_old_data
from kore_bench.models.parts import unwrap
from kore_bench.search import LogUniform
from kore_bench.train import encode_all

from .lora import LoRA, LoraMethodConfig, linear_shapes, lora_updates

FISHER_VERSION = 1


@dataclass
class EwcConfig(LoraMethodConfig):
    ewc_lambda: float = field(default=400.0, metadata={"help": "penalty weight λ (TRACE: 400; kept at tiny scale)"})
    fisher_samples: int = field(default=128, metadata={"help": "old-knowledge samples the Fisher averages over"})
    cache_fisher: bool = field(default=True, metadata={"help": "reuse the Fisher from the cache dir"})


def compute_fisher(model: nn.Module, features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of every decoder linear's weight: mean of per-sample squared gradients."""
    if not features:
        raise KoreBenchError("the Fisher needs at least one old-knowledge sample")
    base = unwrap(model)
    weights = {name: base.get_submodule(name).weight for name in linear_shapes(base)}
    flags = {id(p): p.requires_grad for p in base.parameters()}
    base.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    fisher = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in weights.items()}
    device = next(base.parameters()).device
    was_training = base.training
    base.eval()
    try:
        for _, f in distributed.shard(features):  # under a launcher: this rank's share, summed below
            loss = base(**{k: v.to(device) for k, v in f.items()}).loss
            if not torch.isfinite(loss):
                raise KoreBenchError("non-finite loss on an old-knowledge sample while computing the Fisher")
            grads = torch.autograd.grad(loss, list(weights.values()))
            for name, g in zip(weights, grads):
                fisher[name] += g.float() ** 2
    finally:
        base.train(was_training)
        for p in base.parameters():
            p.requires_grad_(flags[id(p)])
    return {name: distributed.all_reduce_sum(f) / len(features) for name, f in fisher.items()}


def fisher_for(model: nn.Module, processor, ctx: TrainContext, n: int, cache: bool) -> dict[str, torch.Tensor]:
    """The Fisher of ``model`` (the base, before any adapter) on ``n`` old samples, cached per base and draw."""
    from safetensors.torch import load_file, save_file

    from kore_bench.cache import cache_root
    from kore_bench.store import fingerprint

    if not ctx.old_data:
        raise no_old_data("ewc needs old-knowledge data for its Fisher")
    features = encode_all(processor, draw_calibration(ctx.old_data, n, ctx.seed))
    names = list(linear_shapes(model))
    key = fingerprint("fisher", ctx.base.fingerprint, features_fingerprint(features), names, FISHER_VERSION)
    path = cache_root() / "fisher" / f"fisher-{key}.safetensors"
    device = next(model.parameters()).device
    if cache and distributed.broadcast(path.exists()):  # one decision for every rank
        stored = load_file(str(path), device=str(device))
        if sorted(stored) == sorted(names):
            return stored
    fisher = compute_fisher(model, features)
    if cache and distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous().cpu() for k, v in fisher.items()}, str(tmp),
                  metadata={"samples": str(len(features)), "names": json.dumps(names)})
        tmp.replace(path)
    return fisher


def ewc_penalty(model: nn.Module, fisher: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """``(λ/2) Σ F ⊙ (s·B A)²`` over the adapted linears."""
    updates = lora_updates(model)
    missing = set(fisher) - set(updates)
    if missing:
        raise KoreBenchError(f"ewc: no adapter on {sorted(missing)[0]} although it has a Fisher")
    total = sum((fisher[name] * delta.float() ** 2).sum() for name, delta in updates.items())
    return 0.5 * lam * total


@register_method("ewc")
class EWC(LoRA):
    """LoRA + EWC on the effective update, weighted by the base weights' Fisher on old data."""

    Config = EwcConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "ewc_lambda": LogUniform(40.0, 4e4)}

    def penalty(self, base: nn.Module, processor, ctx: TrainContext) -> Callable:
        cfg = self.config
        fisher = fisher_for(base, processor, ctx, cfg.fisher_samples, cfg.cache_fisher)
        return lambda m, batch, out: ewc_penalty(m, fisher, cfg.ewc_lambda)
