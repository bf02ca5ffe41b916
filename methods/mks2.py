"""``mks2`` — an **approximation** of MKS2 (arXiv 2311.15759; reference/methods.md §1). No official
code exists (the repository holds a README and a figure), so every choice below is an assumption:

1. **Modular visual memory (MVM)**: one SwiGLU FFN ``d → d_m → d`` per decoder block
   (d_m = ``memory_ratio`` · the block's MLP width, default 1/2; the paper's size is unknown),
   a *parallel* residual branch beside the block's MLP, on the MLP's (post-norm) input — the
   figure draws no MLP in stage 1; keeping it is the safe option (b) of the card.
2. **Closed gate**: the memory's output is scaled by ``tanh(γ)`` with one γ per block, γ = 0 at
   init (Flamingo-style), so the model equals the base exactly at init; the memory's own weights
   are randomly initialised (``nn.Linear`` default) so γ receives a gradient.
3. **Stage 1** (visual information storage) trains the MVM, γ and the multimodal projector (the
   figure's trainable "Linear layer") on the *new* knowledge's image–text training samples with
   the LM frozen, with the ordinary answer-token CE only: the paper's contrastive image–text
   term (Q-Former, text-to-image retrieval) and its 2.3 M-image caption corpus are not reproduced.
4. **Stage 2** (soft mixture of multimodal experts): per token ``g = softmax(W_R x) ∈ R²`` and
   ``FFN(x) = 2 · [g_t · (MLP(x) + s·B_t A_t x) + g_v · (tanh(γ)·MVM(x) + s·B_v A_v x)]``: each expert
   carries a LoRA bypass ``d → r → d`` (A Kaiming-uniform, B = 0, s = α/r = 2). W_R starts at 0
   (g = ½ each), and the factor E = 2 makes the uniform mixture the parallel sum of stage 1, so
   stage 2 starts from stage 1's model exactly. Stage 2 trains W_R and the four LoRA factors only
   (MLP, MVM, γ, attention and projector frozen), on the same new-knowledge samples (the paper's
   Text-SFT ∪ Multimodal-SFT mixture is not available here).
5. Budgets: stage 2's rank r defaults to the one whose trainable parameters match ``lora`` at its
   default rank (the parameter budget every method shares); stage 1 trains ``stage1_steps`` at
   ``stage1_lr``, and stage 2 the shared ``steps`` at ``lr``.

The artifact holds every tensor the method added or trained (``trained.safetensors``, names
relative to the base model); ``load`` rebuilds the structure from the config on a fresh base.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from kore_bench.errors import KoreBenchError
from kore_bench.adapters.artifacts import TRAINED_TENSORS, ArtifactFormat, load_artifact
from kore_bench.method import Method, MethodConfig, TrainContext, TrainedModel, projector_groups, register_method
from kore_bench.models.parts import language_model, projector, unwrap
from kore_bench.search import LogUniform
from kore_bench.train import ParamGroup, train_model

from .lora import default_rank, lora_size



def save_added_tensors(model: nn.Module, artifact_dir: Path) -> None:
    """What both stages trained: every memory, gate, router and expert LoRA, and the projector
    (stage 2 leaves the stage-1 tensors frozen, so the plain format would miss them)."""
    from safetensors.torch import save_file

    base = unwrap(model)
    added = {id(p) for m in mixtures(base) for p in m.parameters()} - {id(p) for m in mixtures(base)
                                                                        for p in m.mlp.parameters()}
    added |= {id(p) for p in projector(base).parameters()}
    tensors = {n: p.detach().contiguous() for n, p in base.named_parameters() if id(p) in added}
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(Path(artifact_dir) / TRAINED_TENSORS))


ADDED_TENSORS = ArtifactFormat("memory, mixture and projector tensors", save_added_tensors, load_artifact)


@dataclass
class Mks2Config(MethodConfig):
    lr: float = field(default=2e-3, metadata={"help": "stage 2 (router + expert LoRAs); as lora at tiny scale"})
    rank: int | None = field(default=None, metadata={"help": "expert LoRA rank; None: matched to lora's budget"})
    alpha_over_rank: float = field(default=2.0, metadata={"help": "as lora (LLaVA-1.5: α=256 at r=128)"})
    memory_ratio: float = field(default=0.5, metadata={"help": "MVM width d_m / the MLP width (paper: unknown)"})
    stage1_steps: int = field(default=200, metadata={"help": "stage 1 optimiser steps (MVM, gate, projector)"})
    stage1_lr: float = field(default=1e-3, metadata={"help": "stage 1 learning rate (MVM and gate)"})
    projector_lr: float | None = field(default=2e-4, metadata={"help": "projector lr in stage 1 (frozen in stage 2)"})


class LowRank(nn.Module):
    """A LoRA bypass ``s · B A x`` (d → r → d), B = 0 at init."""

    def __init__(self, d: int, rank: int, scaling: float, ref: torch.Tensor):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, d, dtype=ref.dtype, device=ref.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(d, rank, dtype=ref.dtype, device=ref.device))
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * ((x @ self.A.T) @ self.B.T)


class VisualMemory(nn.Module):
    """The MVM: a SwiGLU FFN d → d_m → d."""

    def __init__(self, d: int, d_m: int, ref: torch.Tensor):
        super().__init__()
        kw = {"bias": False, "dtype": ref.dtype, "device": ref.device}
        self.w_gate, self.w_up, self.w_down = nn.Linear(d, d_m, **kw), nn.Linear(d, d_m, **kw), nn.Linear(d_m, d, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(nn.functional.silu(self.w_gate(x)) * self.w_up(x))


class MemoryMixture(nn.Module):
    """The block's FFN: textual expert (the original MLP) and visual expert (MVM), mixed per token."""

    def __init__(self, mlp: nn.Module, d: int, d_m: int, rank: int, scaling: float):
        super().__init__()
        ref = next(mlp.parameters())
        self.mlp, self.memory = mlp, VisualMemory(d, d_m, ref)
        self.gate = nn.Parameter(torch.zeros((), dtype=ref.dtype, device=ref.device))  # closed: tanh(0) = 0
        self.router = nn.Linear(d, 2, bias=False, dtype=ref.dtype, device=ref.device)
        nn.init.zeros_(self.router.weight)  # uniform mixture: stage 2 starts from stage 1
        self.lora_text, self.lora_visual = LowRank(d, rank, scaling, ref), LowRank(d, rank, scaling, ref)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token expert weights (…, 2): textual, visual; they sum to 1."""
        return torch.softmax(self.router(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.weights(x)
        text = self.mlp(x) + self.lora_text(x)
        visual = torch.tanh(self.gate) * self.memory(x) + self.lora_visual(x)
        return 2 * (g[..., :1] * text + g[..., 1:] * visual)


def add_mks2(model: nn.Module, memory_width: int, rank: int, scaling: float) -> nn.Module:
    """Wrap every decoder block's MLP in a :class:`MemoryMixture`; everything else is frozen."""
    lm = language_model(model)
    unwrap(model).requires_grad_(False)
    d = lm.config.hidden_size
    for layer in lm.layers:
        if not isinstance(getattr(layer, "mlp", None), nn.Module):
            raise KoreBenchError(f"mks2: decoder block {type(layer).__name__} has no `mlp` to pair the memory with")
        layer.mlp = MemoryMixture(layer.mlp, d, memory_width, rank, scaling)
    return model


def mixtures(model: nn.Module) -> list[MemoryMixture]:
    return [m for m in unwrap(model).modules() if isinstance(m, MemoryMixture)]


def stage1_parameters(model: nn.Module) -> list[nn.Parameter]:
    """MVM and gate of every block (the projector comes as its own group)."""
    return [p for m in mixtures(model) for p in [*m.memory.parameters(), m.gate]]


def stage2_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Router and both expert LoRAs of every block."""
    return [p for m in mixtures(model) for mod in (m.router, m.lora_text, m.lora_visual) for p in mod.parameters()]


def select(model: nn.Module, params: list[nn.Parameter]) -> None:
    unwrap(model).requires_grad_(False)
    for p in params:
        p.requires_grad_(True)


@register_method("mks2")
class MKS2(Method):
    """MKS2-style (approximate): modular visual memory, then a soft mixture of MLP and memory experts."""

    Config = Mks2Config
    artifact = ADDED_TENSORS
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "stage1_lr": LogUniform(1e-4, 1e-2)}

    def structure(self, model: nn.Module) -> dict:
        """Memory width, expert LoRA rank and scaling for ``model`` (a base)."""
        cfg = self.config
        lm = language_model(model)
        d, layers = lm.config.hidden_size, len(lm.layers)
        width = max(1, round(cfg.memory_ratio * lm.config.intermediate_size))
        rank = cfg.rank
        if rank is None:  # per block: 2 LoRAs of 2·r·d plus the 2·d router = lora's budget
            rank = max(1, round((lora_size(model, default_rank(model)) / layers - 2 * d) / (4 * d)))
        return {"memory_width": width, "rank": rank, "scaling": cfg.alpha_over_rank}

    def train(self, ctx: TrainContext) -> TrainedModel:
        cfg = self.config
        model, processor = ctx.base.load(ctx.device)
        self.rebuild(model)
        # stage 1: store the new knowledge's visual information in the memory, LM frozen
        select(model, stage1_parameters(model))
        groups = projector_groups(model, cfg.projector_lr)
        stage1 = replace(cfg, steps=cfg.stage1_steps, lr=cfg.stage1_lr)
        info1 = train_model(model, processor, ctx.new_data, stage1, ctx.seed, groups, device=ctx.device,
                            progress=ctx.progress)
        # stage 2: router + expert LoRAs, memory and MLP frozen
        select(model, stage2_parameters(model))
        info = train_model(model, processor, ctx.new_data, cfg, ctx.seed + 1, device=ctx.device, progress=ctx.progress)
        info.seconds += info1.seconds
        info.steps += info1.steps
        self.save(model, ctx.artifact_dir)
        return TrainedModel(model, processor, info)

    def rebuild(self, model: nn.Module) -> nn.Module:
        return add_mks2(model, **self.structure(model))

    def trainable_model(self, model: nn.Module) -> nn.Module:
        """Stage 2's model: router and expert LoRAs trainable, memory, MLP and projector frozen."""
        self.rebuild(model)
        select(model, stage2_parameters(model))
        return model

    def declared_trainable(self, model: nn.Module) -> int:
        """Stage 2: per block a 2×d router and two d→r→d LoRAs (4·r·d)."""
        spec = self.structure(model)
        lm = language_model(model)
        d = lm.config.hidden_size
        return len(lm.layers) * (2 * d + 4 * spec["rank"] * d)

    def declared_stage1(self, model: nn.Module) -> int:
        """Stage 1: per block the MVM (3·d·d_m) and its gate, plus the projector."""
        from .lora import projector_size

        spec = self.structure(model)
        lm = language_model(model)
        d = lm.config.hidden_size
        return len(lm.layers) * (3 * d * spec["memory_width"] + 1) + projector_size(model, self.config.projector_lr)
