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
from typing import Any, ClassVar

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

ASD_WRITERS = ("auto", "llm", "template")
ASD_CACHE = ("augment", "sefe-asd")  # under the kore-bench cache root
ASD_MAX_TOKENS = 512
_LETTERS = "ABCD"


def _single_turn(s: Sample) -> bool:
    return [m["role"] for m in s.messages] == ["user", "assistant"]


def _draw(style: str, answer: str, others: list[str], rng: random.Random) -> tuple[str, Any]:
    """The template's draw for ``style``: (the style that applies, the yes/no candidate or the MC options).

    Yes/no and multiple choice need other answers (1 and 3); without them the sample becomes brief.
    """
    wrong = [o for o in dict.fromkeys(others) if o.strip().lower() != answer.strip().lower()]
    if style == "yes/no" and wrong:
        return style, answer if rng.random() < 0.5 else rng.choice(wrong)
    if style == "multiple choice" and len(wrong) >= 3:
        options = rng.sample(wrong, 3) + [answer]
        rng.shuffle(options)
        return style, dict(zip(_LETTERS, options))
    return ("detailed", None) if style == "detailed" else ("brief", None)


def _gold(applied: str, answer: str, draw: Any) -> str:
    """The rewritten sample's answer where the style fixes it: Yes/No, the option letter."""
    if applied == "yes/no":
        return "Yes" if draw == answer else "No"
    if applied == "multiple choice":
        return next(letter for letter, option in draw.items() if option == answer)
    return answer


def _template_text(question: str, answer: str, applied: str, draw: Any) -> tuple[str, str]:
    if applied == "yes/no":
        return f'{question}\nIs the answer "{draw}"? Answer yes or no.', _gold(applied, answer, draw)
    if applied == "multiple choice":
        return format_multiple_choice(question, draw), _gold(applied, answer, draw)
    if applied == "detailed":
        return f"{question}\nAnswer in a complete sentence.", f"The answer is {answer}."
    return f"{question}\n{SHORT_ANSWER_SUFFIX}", answer


def _restyled(sample: Sample, style: str, question: str, answer: str, **meta: Any) -> Sample:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return dataclasses.replace(sample, id=f"{sample.id}#asd", messages=messages, answer=None,
                               meta={**sample.meta, "asd_style": style, **meta})


def restyle(sample: Sample, style: str, others: list[str], rng: random.Random) -> Sample:
    """``sample`` (one user turn, one answer) with its question and answer in ``style`` (templates)."""
    question, answer = sample.messages[0]["content"], sample.messages[1]["content"]
    applied, draw = _draw(style, answer, others, rng)
    return _restyled(sample, style, *_template_text(question, answer, applied, draw))


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
