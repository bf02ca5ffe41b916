"""Evaluator backends, chosen by a task's declared ``output_type``, and :func:`evaluate_suite`.

A backend turns one task's samples into per-sample predictions (text); scoring is separate
(:func:`~.metrics.score_task`). Registered:

* ``generate`` — greedy generation, scored as text (CEM, F1, exact match ...);
* ``multiple_choice`` — greedy generation; the metric extracts the option letter (VLMEvalKit style);
* ``multiple_choice_loglikelihood`` — no generation: every option letter is scored as the
  assistant's answer by its log-likelihood and the most likely letter is the prediction (as
  lm-eval's ``multiple_choice``);
* ``yes_no`` — greedy generation; the metric extracts yes/no (POPE, MME);
* ``lm_eval`` — an lm-evaluation-harness task, scored by lm-eval itself (:mod:`.lm_eval_tasks`);
  the output type of every task whose source is an lm-eval task;
* ``vlmeval`` — a VLMEvalKit benchmark, generated and then scored over the whole task as
  VLMEvalKit scores it (:mod:`kore_bench.vlmeval`: MME, POPE F1, circular MMBench ...); the output
  type of every task whose source is a VLMEvalKit benchmark.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .. import distributed
from ..data import Sample
from ..encoding import IGNORE_INDEX, collate, encode_for_training
from ..errors import KoreBenchError
from ..registry import Registry
from .. import vlmeval
from . import lm_eval_tasks
from .generation import generate
from .metrics import chance_level, get_metric, score_task

if TYPE_CHECKING:
    from ..suites import Suite, TaskSpec


@dataclass
class TaskResult:
    """A task's scores (×100 per metric), which way each is better, and the per-sample records."""

    means: dict[str, float]
    higher_is_better: dict[str, bool]
    records: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)  # task-level facts for result.json (not_scored ...)


Backend = Callable[..., TaskResult]
BACKENDS: Registry[Backend] = Registry("output type")


def _scored(task: "TaskSpec", samples: Sequence[Sample], predictions: Sequence[str]) -> TaskResult:
    scores = score_task(samples, predictions, task.metrics)
    records = [{"task": task.name, "id": s.id, "prediction": p, "answer": s.answer,
                "scores": {m: v[i] for m, v in scores.per_sample.items()}}
               for i, (s, p) in enumerate(zip(samples, predictions))]
    return TaskResult(scores.means, {m: get_metric(m).higher_is_better for m in task.metrics}, records)


def _generated(model, processor, suite: "Suite", task: "TaskSpec", samples: Sequence[Sample],
               batch_size: int) -> TaskResult:
    preds = generate(model, processor, samples, task.generation.get("max_new_tokens", 32), batch_size,
                     label=f"evaluating {suite.name}/{task.name}")
    return _scored(task, samples, preds)


for _name in ("generate", "multiple_choice", "yes_no"):
    BACKENDS.register(_name)(_generated)


@BACKENDS.register("multiple_choice_loglikelihood")
def _loglikelihood_choice(model, processor, suite: "Suite", task: "TaskSpec", samples: Sequence[Sample],
                          batch_size: int) -> TaskResult:
    """The option letter whose answer turn has the highest log-likelihood, per sample."""
    options = []
    for i, s in enumerate(samples):
        if not s.choices:
            raise KoreBenchError(f"{s.source or s.id}: task {task.name!r} is multiple_choice_loglikelihood "
                                 "but the sample has no choices")
        options += [(i, letter) for letter in s.choices]
    scores = choice_loglikelihoods(model, processor, [_answered(samples[i], letter) for i, letter in options],
                                   batch_size)
    best: dict[int, tuple[float, str]] = {}
    for (i, letter), ll in zip(options, scores):
        if i not in best or ll > best[i][0]:  # ties: the first option
            best[i] = (ll, letter)
    return _scored(task, samples, [best[i][1] for i in range(len(samples))])


def _answered(sample: Sample, answer: str) -> Sample:
    return Sample(sample.id, [*sample.messages, {"role": "assistant", "content": answer}], sample.image,
                  sample.answer, sample.choices, sample.category, sample.source, sample.meta)


@torch.no_grad()
def choice_loglikelihoods(model, processor, samples: Sequence[Sample], batch_size: int) -> list[float]:
    """Sum of the log-probabilities of each sample's assistant tokens (right padding, in order)."""
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features = [encode_for_training(processor, s) for s in samples]
    found: dict[int, list[float]] = {}
    starts = list(range(0, len(features), batch_size))
    for b, start in distributed.shard(starts):  # under a launcher: this rank's batches, gathered in order
        batch = {k: v.to(device) for k, v in collate(features[start: start + batch_size], pad_id, "right").items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = labels[:, 1:]
        keep = target != IGNORE_INDEX
        picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
        found[b] = (picked * keep).sum(dim=1).tolist()
    model.train(was_training)
    return [x for part in distributed.gather(found, len(starts)) for x in part]


@BACKENDS.register(lm_eval_tasks.LOADER)
def _lm_eval(model, processor, suite: "Suite", task: "TaskSpec", samples: Sequence[Sample],
             batch_size: int) -> TaskResult:
    # lm-eval's HFLM wrapping a model object assumes one process: the main rank scores, the others wait
    means, higher, records = distributed.on_main(lambda: lm_eval_tasks.evaluate(
        model, processor, suite.source(task), task.name, samples, task.metrics, batch_size))
    return TaskResult(means, higher, records)


@BACKENDS.register(vlmeval.LOADER)
def _vlmeval(model, processor, suite: "Suite", task: "TaskSpec", samples: Sequence[Sample],
             batch_size: int, judge: "vlmeval.Judge | None" = None) -> TaskResult:
    means, higher, records, extra = vlmeval.evaluate(model, processor, suite.source(task), task.name, samples,
                                                     task.metrics, task.generation, batch_size, judge)
    return TaskResult(means, higher, records, extra)


def task_chance(output_type: str, samples: Sequence[Sample]) -> float | None:
    """The task's chance level (a fraction, :func:`~.metrics.chance_level`); None where the items do
    not define one (e.g. a multiple-choice item without its choices, an lm-eval task)."""
    try:
        return chance_level(output_type, [s.answer for s in samples], [s.choices for s in samples])
    except ValueError:
        return None


def evaluate_suite(model, processor, suite: "Suite", limit: int | None, split: str, batch_size: int,
                   judge: "vlmeval.Judge | None" = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Scores of one suite (per task) and the per-sample records, each task by its backend; the LLM
    judge (``--judge``) goes to the VLMEvalKit tasks, the only ones that use it."""
    tasks: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    for task in suite.tasks:
        samples = suite.task_samples(task, split)[: limit or None]
        if not samples:
            raise KoreBenchError(f"suite {suite.name!r}, task {task.name!r}: no {split} samples")
        started = time.perf_counter()
        options = {"judge": judge} if task.output_type == vlmeval.LOADER and judge is not None else {}
        result = BACKENDS.get(task.output_type)(model, processor, suite, task, samples, batch_size, **options)
        tasks[task.name] = {
            "category": task.category,
            "primary_metric": task.primary_metric,
            "metrics": result.means,
            "chance": task_chance(task.output_type, samples),
            "higher_is_better": result.higher_is_better,
            "n": len(samples),
            "seconds": round(time.perf_counter() - started, 2),
            **result.extra,
        }
        records += result.records
    return tasks, records
