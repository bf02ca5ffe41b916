"""KORE (reference/kore.md §2–3): knowledge-oriented augmentation + a null-space constraint.

The constraint (= LoRA-Null v2): for each decoder-block linear ``W`` (m×n) with calibration
covariance ``C`` (old-knowledge prompts, :mod:`kore_bench.adapters.covariance`), take the eigenvectors
``Q`` of the ``rank`` smallest eigenvalues of ``C``, split ``W = W P + (W − W P)`` with
``P = Q Qᵀ``, factor ``W P = U Σ Vᵀ`` and build an adapter ``y = B(Ax) + W_res x (+ b)`` with
``B = U√Σ``, ``A = √Σ Vᵀ`` and no α/r scaling. ``A`` is frozen, so every update ``ΔB·A`` only
acts on inputs outside the old activations' principal subspace. Only B (+ the projector, as in
LLaVA) trains; ``kore-v1`` trains A too.

The adapter is a peft LoRA (r = lora_alpha = rank, dropout 0) on ``lm_linear_regex`` whose
lora_A / lora_B / base weight are overwritten with A / B / W_res; the artifact stores the
rewritten base weights too (:mod:`kore_bench.adapters.residual`).

Registered: ``kore`` (augmentation + constraint), ``kore-constraint`` (constraint only),
``kore-v1`` (augmentation + constraint, A trainable), ``kore-aug`` (augmentation + plain LoRA at
LoRA's default rank, i.e. the parameter budget KORE's default rank is matched to).

Tiny-scale defaults: rank None = the rank whose B-only parameter count matches LoRA at its
default rank (kore.md §2.9: 235 for LLaVA-1.5-7B against LoRA r=128); lr 2e-2 = 10× LoRA's tiny
lr, because B-only training from √(small singular values) needs about 10× the step size
(reference/derisk.md, "Practical notes"); the paper used 2e-4 at 7B for both. Sweep it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from kore_bench.adapters.covariance import Covariances, collect_covariances, draw_calibration
from kore_bench.adapters.nullspace import (adapted_linears, check_rank, null_space_basis, null_space_factors,
                                          resolve_rank)
from kore_bench.data import Sample
from kore_bench.errors import KoreBenchError
from kore_bench.method import CalibrationNeed, Method, MethodConfig, TrainContext, projector_groups, register_method
from kore_bench.models.parts import decoder_linear_names, lm_linear_regex, unwrap
from kore_bench.adapters.residual import REWRITTEN_BASE, ZERO3_REWRITE
from kore_bench.search import LogUniform
from kore_bench.train import ParamGroup, count_trainable

from .lora import LoRA, LoraMethodConfig, add_lora

ADAPTER = "default"


def add_adapter_structure(model: nn.Module, rank: int, empty: bool = False):
    """A peft LoRA with r = α = rank (scaling 1), no dropout, on the decoder linears.

    ``empty`` creates the adapter weights on the meta device (for counting only).
    """
    adapted_linears(model)  # a clear error when there is nothing to adapt
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=lm_linear_regex(model),
                        bias="none")
    return get_peft_model(model, config, low_cpu_mem_usage=empty)


def select_trainable(model: nn.Module, train_A: bool, projector_lr: float | None) -> list[ParamGroup]:
    """Freeze everything but B (and A when ``train_A``); the projector trains at ``projector_lr``."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_B." in name or (train_A and ".lora_A." in name))
    return projector_groups(model, projector_lr)


def count_trainable_with(model: nn.Module, wrap: Callable[[nn.Module], nn.Module]) -> int:
    """Trainable parameters of ``wrap(model)`` with empty (meta) adapter weights; ``model`` is restored.

    ``wrap`` is the method's own adapter + selection code, so the count is what training would see.
    """
    from accelerate import init_empty_weights

    flags = {id(p): p.requires_grad for p in model.parameters()}
    with init_empty_weights(include_buffers=False):
        wrapped = wrap(model)
    try:
        return count_trainable(wrapped)
    finally:
        wrapped.unload()
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), p.requires_grad))


def trainable_parameter_count(model: nn.Module, rank: int, train_A: bool = False, projector: bool = True) -> int:
    """Parameters KORE trains on ``model`` at ``rank`` (B, A when ``train_A``, projector)."""

    def wrap(m: nn.Module) -> nn.Module:
        wrapped = add_adapter_structure(m, rank, empty=True)
        select_trainable(wrapped, train_A, 1.0 if projector else None)
        return wrapped

    return count_trainable_with(model, wrap)


def lora_trainable_parameter_count(model: nn.Module, rank: int | None = None, projector: bool = True) -> int:
    """Parameters the ``lora`` method trains on ``model`` (its ``add_lora`` + projector group)."""

    def wrap(m: nn.Module) -> nn.Module:
        wrapped = add_lora(m, LoraMethodConfig(rank=rank))
        projector_groups(wrapped, 1.0 if projector else None)
        return wrapped

    return count_trainable_with(model, wrap)


# ---------------------------------------------------------------- building the adapter


@torch.no_grad()
def add_null_space_adapter(model: nn.Module, covs: Covariances, rank: int,
                           dtype: torch.dtype = torch.float64):
    """Wrap ``model`` with the KORE adapter initialised from ``covs``; the function is unchanged."""
    linears = adapted_linears(model)
    check_rank(model, rank)
    for name in linears:
        if name not in covs:
            raise KoreBenchError(f"no calibration covariance for layer {name}")
    peft_model = add_adapter_structure(model, rank)
    base = unwrap(peft_model)
    bases: dict[int, torch.Tensor] = {}  # one eigendecomposition per shared covariance
    for name in linears:
        layer = base.get_submodule(name)
        weight = layer.get_base_layer().weight
        cov = covs[name]
        if id(cov) not in bases:
            bases[id(cov)] = null_space_basis(cov.to(weight.device), rank, dtype)
        b, a, residual = null_space_factors(weight, cov, rank, dtype=dtype, basis=bases[id(cov)], name=name)
        layer.lora_A[ADAPTER].weight.copy_(a)
        layer.lora_B[ADAPTER].weight.copy_(b)
        weight.copy_(residual)
    return peft_model


# ---------------------------------------------------------------- methods


def _dtype(name: str, setting: str) -> torch.dtype:
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise KoreBenchError(f"{setting}: {name!r} is not a torch floating-point dtype (e.g. float64, float32)")
    return value


def old_covariances(model: nn.Module, processor, ctx: TrainContext, samples: int, batch_size: int = 8,
                    dtype: torch.dtype = torch.float64, cache: bool = True) -> Covariances:
    """Input covariances of the decoder linears on ``samples`` old-knowledge prompts drawn with the
    run's seed, cached per base model and draw (shared by KORE, O-LoRA and SEFE)."""
    calibration = draw_calibration(ctx.old_data, samples, ctx.seed)
    cache_dir = None
    if cache:
        from kore_bench.cache import cache_root

        cache_dir = cache_root() / "covariances"
    return collect_covariances(model, processor, calibration, batch_size, dtype,
                               cache_dir=cache_dir, model_fingerprint=ctx.base.fingerprint)


@dataclass
class KoreConstraintConfig(MethodConfig):
    lr: float = field(default=2e-2, metadata={"help": "B-only needs ~10x LoRA's lr (derisk.md); paper: 2e-4 at 7B"})
    rank: int | None = field(default=None, metadata={"help": "None: matched to LoRA's default rank (235 at 7B)"})
    train_A: bool = field(default=False, metadata={"help": "train the down-projection A too (LoRA-Null v1)"})
    projector_lr: float | None = field(default=2e-4, metadata={"help": "LLaVA-1.5: 2e-5; tiny: as lora"})
    calibration_samples: int = field(default=256, metadata={"help": "old-knowledge prompts (paper: 4x64)"})
    calibration_batch_size: int = field(default=8, metadata={"help": "padded and masked; result as batch 1"})
    covariance_dtype: str = field(default="float64", metadata={"help": "accumulation precision"})
    decomposition_dtype: str = field(default="float64", metadata={"help": "eigh/SVD precision (paper: float32)"})
    cache_covariances: bool = field(default=True, metadata={"help": "reuse covariances from the cache dir"})


@dataclass
class KoreConfig(KoreConstraintConfig):
    augmenter: str = field(default="auto", metadata={"help": "knowledge augmenter: auto (llm if configured, kore74k "
                                                             "if given, template with world facts, else text), "
                                                             "template, text, llm, kore74k"})


@dataclass
class KoreV1Config(KoreConfig):
    train_A: bool = field(default=True, metadata={"help": "ablation 'W/o Frozen Matrix A'"})


@dataclass
class KoreAugConfig(LoraMethodConfig):
    augmenter: str = field(default="auto", metadata={"help": "knowledge augmenter: auto (llm if configured, kore74k "
                                                             "if given, template with world facts, else text), "
                                                             "template, text, llm, kore74k"})


def augmented(name: str, ctx: TrainContext) -> list[Sample]:
    from kore_bench.augment import augment  # another component; imported only when used

    return augment(name, list(ctx.new_data), ctx.facts_dir, ctx.seed)


@register_method("kore-constraint")
class KoreConstraint(Method):
    """The null-space constrained adapter trained on the injection data as given."""

    Config = KoreConstraintConfig
    artifact = REWRITTEN_BASE
    unsupported_sharding: ClassVar[dict[str, str]] = {"zero3": ZERO3_REWRITE}
    # B-only training needs ~10x LoRA's step size and learns nothing below a threshold (derisk.md:
    # 3e-3 nothing, 3e-2 learns); the rank stays matched to LoRA's parameter budget
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-3, 1e-1)}

    def trainable_model(self, model: nn.Module) -> nn.Module:
        rank = resolve_rank(model, self.config.rank)
        check_rank(model, rank)
        wrapped = add_adapter_structure(model, rank, empty=True)
        select_trainable(wrapped, self.config.train_A, self.config.projector_lr)
        return wrapped

    def calibration_need(self, model: nn.Module) -> CalibrationNeed:
        cfg = self.config
        return CalibrationNeed(_dtype(cfg.covariance_dtype, "covariance_dtype"), True,
                               _dtype(cfg.decomposition_dtype, "decomposition_dtype"),
                               cfg.calibration_samples, cfg.calibration_batch_size)

    def prepare(self, model: nn.Module, processor, ctx: TrainContext) -> nn.Module:
        """Every input check, the calibration and the adapter init (before any training)."""
        cfg = self.config
        cov_dtype = _dtype(cfg.covariance_dtype, "covariance_dtype")
        dec_dtype = _dtype(cfg.decomposition_dtype, "decomposition_dtype")
        rank = resolve_rank(model, cfg.rank)
        check_rank(model, rank)
        covs = old_covariances(model, processor, ctx, cfg.calibration_samples, cfg.calibration_batch_size,
                               cov_dtype, cfg.cache_covariances)
        return add_null_space_adapter(model, covs, rank, dec_dtype)

    def trainable_groups(self, model: nn.Module) -> list[ParamGroup]:
        return select_trainable(model, self.config.train_A, self.config.projector_lr)

    def declared_trainable(self, model: nn.Module) -> int:
        """B (rank·d_out per linear), A too when ``train_A`` (rank·d_in), and the projector."""
        from .lora import linear_shapes, projector_size

        rank = resolve_rank(model, self.config.rank)
        return sum(rank * (o + (i if self.config.train_A else 0)) for i, o in linear_shapes(model).values()) \
            + projector_size(model, self.config.projector_lr)


@register_method("kore")
class Kore(KoreConstraint):
    """KORE: augmented injection data + the null-space constraint."""

    Config = KoreConfig

    def training_samples(self, ctx: TrainContext) -> list[Sample]:
        return augmented(self.config.augmenter, ctx)


@register_method("kore-v1")
class KoreV1(Kore):
    """KORE with A trainable as well (LoRA-Null v1; paper ablation 'W/o Frozen Matrix A')."""

    Config = KoreV1Config


@register_method("kore-aug")
class KoreAug(LoRA):
    """KORE's augmentation with plain LoRA (LoRA's rank = the budget KORE's default rank matches)."""

    Config = KoreAugConfig

    def training_samples(self, ctx: TrainContext) -> list[Sample]:
        return augmented(self.config.augmenter, ctx)
