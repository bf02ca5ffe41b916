"""``lwf``: LoRA plus Learning-without-Forgetting distillation (reference/methods.md §4.3).

``L = CE(new) + w · T² · KL(p_teacher,T ‖ p_student,T)`` on the new-knowledge inputs, answer
tokens only (the positions whose next token is a label), T = 2 and w = 1 as TRACE
(``model/Regular/LwF.py``). TRACE's ``kl_div`` swaps its arguments and so computes KL(new‖old);
here the KL is the standard LwF direction, teacher first. The teacher is the frozen base model:
its logits come from the same peft model with the adapter disabled (``disable_adapter()``) when
nothing outside the adapter trains (``projector_lr=None``), else from a frozen copy of the base
(the projector trains by default, as in LLaVA, so the default is the copy). Either way the loss
is exactly 0 at init (B = 0: student = teacher). Cost: one teacher forward per step.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kore_bench.encoding import IGNORE_INDEX
from kore_bench.method import TrainContext, register_method
from kore_bench.search import LogUniform

from .lora import LoRA, LoraMethodConfig


@dataclass
class LwfConfig(LoraMethodConfig):
    temperature: float = field(default=2.0, metadata={"help": "distillation temperature T (TRACE: 2)"})
    distill_weight: float = field(default=1.0, metadata={
        "help": "weight of T²·KL (TRACE: 1); teacher = the adapter disabled when projector_lr is None, "
                "else a frozen copy of the base"})


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, T: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))`` averaged over the answer positions."""
    keep = labels[:, 1:] != IGNORE_INDEX  # logits at t predict the token at t + 1
    s = F.log_softmax(student[:, :-1][keep].float() / T, dim=-1)
    t = F.log_softmax(teacher[:, :-1][keep].float() / T, dim=-1)
    if s.shape[0] == 0:
        return student.sum() * 0.0
    return T * T * F.kl_div(s, t, log_target=True, reduction="batchmean")


@torch.no_grad()
def teacher_logits(model: nn.Module, teacher: nn.Module | None, batch: dict) -> torch.Tensor:
    """Teacher logits for a batch: a frozen copy when given, else ``model`` with its adapter disabled."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if teacher is not None:
        return teacher(**inputs).logits
    with model.disable_adapter():
        return model(**inputs).logits


@register_method("lwf")
class LwF(LoRA):
    """LoRA + distillation to the frozen base's output distribution on the new inputs."""

    Config = LwfConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "distill_weight": LogUniform(0.1, 10.0)}

    def penalty(self, base: nn.Module, processor, ctx: TrainContext) -> Callable:
        """The weighted distillation term; the teacher is a frozen copy of the base when something
        outside the adapter trains, else the student with its adapter disabled."""
        cfg, teacher = self.config, None
        if cfg.projector_lr is not None:
            teacher, _ = ctx.base.load(ctx.device)
            teacher.requires_grad_(False).eval()

        def extra_loss(m: nn.Module, batch: dict, outputs) -> torch.Tensor:
            return cfg.distill_weight * distillation_loss(outputs.logits, teacher_logits(m, teacher, batch),
                                                          batch["labels"], cfg.temperature)

        return extra_loss
