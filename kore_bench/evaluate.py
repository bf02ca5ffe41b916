"""The native evaluator: batched greedy generation, then scoring — two separate steps.

Inference (:func:`generate`) only produces text; scoring (:func:`score_task`) only reads text,
so stored predictions can be re-scored without a model (VLMEvalKit's split of the two).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data import Sample
from .encoding import collate, encode_prompt
from .metrics import get_metric


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    processor,
    samples: Sequence[Sample],
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers for every sample (left padding, KV cache), in the input order."""
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features = [encode_prompt(processor, s) for s in samples]
    # Similar lengths in one batch waste less compute on padding; results go back in order.
    order = sorted(range(len(samples)), key=lambda i: features[i]["input_ids"].shape[1])
    answers: list[str] = [""] * len(samples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([features[i] for i in idx], pad_id, "left").items()}
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        for i, text in zip(idx, tok.batch_decode(new_tokens, skip_special_tokens=True)):
            answers[i] = text.strip()
    model.train(was_training)
    return answers


@dataclass
class TaskScores:
    """Per-sample scores of one task, per metric, and their means (×100)."""

    per_sample: dict[str, list[float]]

    @property
    def means(self) -> dict[str, float]:
        return {m: 100.0 * sum(v) / len(v) if v else float("nan") for m, v in self.per_sample.items()}


def score_task(samples: Sequence[Sample], predictions: Sequence[str], metrics: Sequence[str]) -> TaskScores:
    """Score predictions against the samples' gold answers with the named metrics."""
    per_sample = {}
    for name in metrics:
        metric = get_metric(name)
        per_sample[name] = [metric.fn(p, s.answer or "", s.choices) for s, p in zip(samples, predictions)]
    return TaskScores(per_sample)
