"""``sefe``: SEFE's two parts on LoRA (reference/methods.md §4.6): ASD answer-style diversification
of a share of the training set, and RegLoRA's penalty on the key positions of earlier updates.

**ASD** (data side, offline templates): ``asd_share`` (SEFE: X = 20 %) of the single-turn training
samples, drawn with the run's seed, are rewritten into another answer style, in turn yes/no (the
true answer or another sample's, → "Yes"/"No"), multiple choice (the answer among 3 other
samples' answers, the canonical prompt of :func:`kore_bench.data.format_multiple_choice`, → the
letter), brief (the short-answer suffix) and detailed (a full sentence). SEFE rewrites with an
LLM and per-task prompts; the llm augmenter is not wired to these styles (not done).

**RegLoRA**: ``L = CE + w · (1/N) Σ_linears mean(|ΔW[K]|)`` with ΔW = s·B A the current update,
K the key positions and w = 2.5e3 (SEFE's constant; N = the number of adapted linears, 224 in
SEFE's 32×7). In SEFE, K is the top 2 % of |ΔW_t| of the *earlier tasks'* updates. A single
injection has no earlier update, so **K is the top 2 % of each base weight's old-knowledge
importance** ``|W_ij| · √C_jj`` (Wanda's score: the weight times its input's RMS on the old
calibration prompts, from the cached covariances KORE uses): the positions an update would most
disturb old outputs through. In sequential injection K becomes SEFE's own (the union over earlier
updates); the engine has no sequential injection yet.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kore_bench.data import SHORT_ANSWER_SUFFIX, Sample, format_multiple_choice
from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext, register_method
from kore_bench.models.parts import unwrap
from kore_bench.search import LogUniform

from .kore import old_covariances
from .lora import LoRA, LoraMethodConfig, linear_shapes, lora_updates

STYLES = ("yes/no", "multiple choice", "brief", "detailed")


@dataclass
class SefeConfig(LoraMethodConfig):
    asd_share: float = field(default=0.2, metadata={"help": "share of training samples ASD rewrites (SEFE: 20 %)"})
    key_share: float = field(default=0.02, metadata={"help": "share of each weight's entries that are key positions "
                                                             "(SEFE: top 2 %)"})
    reg_weight: float = field(default=2.5e3, metadata={"help": "RegLoRA weight w (SEFE: 2.5e3)"})
    calibration_samples: int = field(default=256, metadata={"help": "old-knowledge prompts for the importance"})


# ---------------------------------------------------------------- ASD


def _single_turn(s: Sample) -> bool:
    return [m["role"] for m in s.messages] == ["user", "assistant"]


def restyle(sample: Sample, style: str, others: list[str], rng: random.Random) -> Sample:
    """``sample`` (one user turn, one answer) with its question and answer in ``style``."""
    question, answer = sample.messages[0]["content"], sample.messages[1]["content"]
    wrong = [o for o in dict.fromkeys(others) if o.strip().lower() != answer.strip().lower()]
    if style == "yes/no" and wrong:
        candidate = answer if rng.random() < 0.5 else rng.choice(wrong)
        question = f'{question}\nIs the answer "{candidate}"? Answer yes or no.'
        answer = "Yes" if candidate == answer else "No"
    elif style == "multiple choice" and len(wrong) >= 3:
        options = rng.sample(wrong, 3) + [answer]
        rng.shuffle(options)
        letters = "ABCD"
        question = format_multiple_choice(question, dict(zip(letters, options)))
        answer = letters[options.index(answer)]
    elif style == "detailed":
        question, answer = f"{question}\nAnswer in a complete sentence.", f"The answer is {answer}."
    else:  # brief (and the fallback when there are too few other answers)
        question = f"{question}\n{SHORT_ANSWER_SUFFIX}"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return dataclasses.replace(sample, id=f"{sample.id}#asd", messages=messages, answer=None,
                               meta={**sample.meta, "asd_style": style})


def diversify_answers(samples: list[Sample], share: float, seed: int) -> list[Sample]:
    """ASD: ``share`` of the single-turn samples rewritten in place into the four styles in turn."""
    if not 0 <= share <= 1:
        raise KoreBenchError(f"asd_share must be between 0 and 1, got {share}")
    rng = random.Random(f"asd-{seed}")
    eligible = [i for i, s in enumerate(samples) if _single_turn(s)]
    chosen = rng.sample(eligible, round(share * len(eligible)))
    answers = [samples[i].messages[1]["content"] for i in eligible]
    out = list(samples)
    for k, i in enumerate(sorted(chosen)):
        out[i] = restyle(samples[i], STYLES[k % len(STYLES)], answers, rng)
    return out


# ---------------------------------------------------------------- RegLoRA


def key_positions(model: nn.Module, covs, share: float) -> dict[str, torch.Tensor]:
    """Linear name → boolean mask of its top-``share`` entries by ``|W_ij|·√C_jj``."""
    if not 0 < share <= 1:
        raise KoreBenchError(f"key_share must be in (0, 1], got {share}")
    base = unwrap(model)
    masks = {}
    for name in linear_shapes(base):
        weight = base.get_submodule(name).weight.detach()
        score = weight.abs().float() * covs[name].diagonal().clamp_min(0).sqrt().float().to(weight.device)
        k = max(1, round(share * score.numel()))
        top = score.flatten().topk(k).indices
        mask = torch.zeros(score.numel(), dtype=torch.bool, device=weight.device)
        mask[top] = True
        masks[name] = mask.view_as(score)
    return masks


def reglora_penalty(model: nn.Module, keys: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    """``w · (1/N) Σ mean(|ΔW[K]|)`` over the N adapted linears."""
    updates = lora_updates(model)
    terms = [updates[name].abs()[mask].mean() for name, mask in keys.items()]
    return weight * torch.stack(terms).mean()


@register_method("sefe")
class SEFE(LoRA):
    """LoRA + RegLoRA on the old-knowledge key positions, trained on ASD-diversified data."""

    Config = SefeConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "reg_weight": LogUniform(250.0, 2.5e4)}

    def penalty(self, base: nn.Module, processor, ctx: TrainContext) -> Callable:
        cfg = self.config
        keys = key_positions(base, old_covariances(base, processor, ctx, cfg.calibration_samples), cfg.key_share)
        return lambda m, batch, out: reglora_penalty(m, keys, cfg.reg_weight)

    def training_samples(self, ctx: TrainContext) -> list[Sample]:
        return diversify_answers(list(ctx.new_data), self.config.asd_share, ctx.seed)
