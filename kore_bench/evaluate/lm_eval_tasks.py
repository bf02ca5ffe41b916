"""lm-evaluation-harness tasks inside kore-bench suites (text retention through lm-eval itself).

A suite task whose source is ``{loader: lm_eval, task: NAME}`` is an lm-eval task: one from
lm-eval's registry, or one defined by a YAML file in the source's ``include_path`` (a folder; its
tasks are found without indexing lm-eval's own). Optional: ``num_fewshot`` and ``chat_template``
(``true`` renders prompts with the tokenizer's chat template, as lm-eval's ``--apply_chat_template``).

The task's evaluation documents become samples (id = lm-eval's ``doc_id``, the rendered context as
the question, the target as the answer), so splits, seeded dev hold-outs and ``--limit`` work as for
any other task. The scores are lm-eval's own — its prompts, requests, filters and metrics — computed
on the in-memory model wrapped in lm-eval's ``HFLM``: the numbers are what ``lm_eval`` reports for
the same model and documents. ``HFLM`` is text-only; the model never sees an image here.

Metric names are lm-eval's (``acc``, ``exact_match`` …), optionally with a filter
(``exact_match,strict-match``); without one, the ``none`` filter or the task's only filter is used.
Values are reported ×100 like every kore-bench metric, so they must be fractions in [0, 1].
"""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from ..data import Sample
from ..errors import KoreBenchError, UnknownNameError

LOADER = "lm_eval"


def is_lm_eval(source: dict[str, Any]) -> bool:
    """Whether a task source names an lm-eval task."""
    return source.get("loader") == LOADER


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: str | None, include_defaults: bool):
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def _load_task(spec: dict[str, Any]):
    """A fresh lm-eval task object for ``spec`` (simple_evaluate may change its config)."""
    name = spec.get("task")
    if not name:
        raise KoreBenchError(f"an lm_eval source needs 'task' (an lm-eval task name): {spec}")
    include = spec.get("include_path")
    manager = _task_manager(include, False) if include else None
    if manager is None or name not in manager.all_tasks:
        manager = _task_manager(include, True)
    if name in manager.all_groups:
        raise KoreBenchError(f"lm-eval {name!r} is a group; list its tasks as separate suite tasks")
    if name not in manager.all_tasks:
        raise UnknownNameError("lm-eval task", name, manager.all_tasks)
    try:
        return manager.load([name])["tasks"][name]
    except Exception as e:  # datasets raise many kinds; say which task could not load and why
        raise KoreBenchError(f"lm-eval task {name!r}: could not load its documents ({type(e).__name__}: {e}); "
                             "a task whose data lives on the Hugging Face Hub needs the network or a local "
                             "copy") from e


def _options(spec: dict[str, Any]) -> tuple[int | None, bool]:
    """``num_fewshot`` and ``chat_template`` from a source spec (suites hand over strings)."""
    shots = spec.get("num_fewshot")
    chat = str(spec.get("chat_template", "false")).strip().lower()
    if chat not in ("true", "false"):
        raise KoreBenchError(f"lm-eval task {spec.get('task')!r}: chat_template must be true or false, not {chat!r}")
    try:
        return (None if shots in (None, "", "None") else int(shots)), chat == "true"
    except ValueError:
        raise KoreBenchError(f"lm-eval task {spec.get('task')!r}: num_fewshot must be a whole number, "
                             f"not {shots!r}") from None


def _choices(task, doc) -> list[str] | None:
    return [str(c) for c in task.doc_to_choice(doc)] if task.OUTPUT_TYPE == "multiple_choice" else None


def _answer(task, doc) -> str:
    target = task.doc_to_target(doc)
    choices = _choices(task, doc)
    if choices is not None and isinstance(target, int):
        return choices[target]
    return str(target[0] if isinstance(target, list) and target else target)


def load_samples(spec: dict[str, Any]) -> list[Sample]:
    """The task's evaluation documents as samples (id = lm-eval's doc_id)."""
    task = _load_task(spec)
    return [Sample(str(i), [{"role": "user", "content": str(task.doc_to_text(doc))}], answer=_answer(task, doc),
                   source=f"lm_eval:{spec['task']}", meta={"doc_id": i})
            for i, doc in enumerate(task.eval_docs)]


@contextlib.contextmanager
def hflm_generation_length(model) -> Iterator[None]:
    """Let lm-eval's ``HFLM`` decide how many tokens ``model`` generates: HFLM passes ``max_length``,
    which a ``max_new_tokens`` in the model's generation config (kore-tiny sets 32) would override,
    so lm-eval would not stop at a task's ``max_gen_toks``."""
    config = getattr(model, "generation_config", None)
    saved = getattr(config, "max_new_tokens", None)
    if config is not None:
        config.max_new_tokens = None
    try:
        yield
    finally:
        if config is not None:
            config.max_new_tokens = saved


def _result_key(results: dict[str, Any], metric: str, task: str) -> str:
    """lm-eval's ``metric,filter`` key for a metric named with or without its filter."""
    reported = sorted(k for k in results if "," in k and "_stderr" not in k)
    if "," in metric:
        keys = [metric] if metric in reported else []
    elif f"{metric},none" in reported:
        keys = [f"{metric},none"]
    else:
        keys = [k for k in reported if k.partition(",")[0] == metric]
    if len(keys) == 1:
        return keys[0]
    raise KoreBenchError(f"lm-eval task {task!r}: metric {metric!r} "
                         + (f"has several filters, name one of {keys}" if keys else f"not reported; it has {reported}"))


def _prediction(task, entry: dict[str, Any]) -> str:
    resps = entry["filtered_resps"]
    choices = _choices(task, entry["doc"])
    if choices is not None:  # one (loglikelihood, is_greedy) per choice
        scores = [r[0] if isinstance(r, (list, tuple)) else r for r in resps]
        return choices[max(range(len(scores)), key=scores.__getitem__)]
    return str(resps[0] if isinstance(resps, list) and resps else resps)


def evaluate(model, processor, spec: dict[str, Any], task_name: str, samples: Sequence[Sample],
             metrics: Sequence[str], batch_size: int) -> tuple[dict[str, float], dict[str, bool], list[dict]]:
    """Score ``samples`` (documents of the lm-eval task in ``spec``) with lm-eval on the in-memory model.

    Returns the metrics' means (×100), whether each is better high, and one record per document
    (``task, id, prediction, answer, scores``) as the native evaluator writes them.
    """
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    task = _load_task(spec)
    name = spec["task"]
    shots, chat = _options(spec)
    if chat and getattr(processor.tokenizer, "chat_template", None) is None:  # kore-tiny keeps it in the processor
        processor.tokenizer.chat_template = getattr(processor, "chat_template", None)
    lm = HFLM(pretrained=model, tokenizer=processor.tokenizer, batch_size=batch_size, backend="causal")
    with hflm_generation_length(model):
        out = evaluator.simple_evaluate(
            model=lm, tasks=[task], num_fewshot=shots, samples={name: [int(s.id) for s in samples]},
            log_samples=True, bootstrap_iters=0, apply_chat_template=chat,
            random_seed=None, numpy_random_seed=None, torch_random_seed=None, verbosity="ERROR")
    results, higher = out["results"][name], out["higher_is_better"].get(name, {})
    keys = {m: _result_key(results, m, name) for m in metrics}
    answers = {int(s.id): s.answer for s in samples}
    means, records = {}, {}
    for metric, key in keys.items():
        value = float(results[key])
        if not 0.0 <= value <= 1.0:
            raise KoreBenchError(f"lm-eval task {name!r}: {key} = {value} is not a fraction in [0, 1] "
                                 "(kore-bench reports metrics ×100 and averages them into K.R)")
        means[metric] = 100.0 * value
        measure, _, filter_name = key.partition(",")
        for entry in out["samples"][name]:
            if entry["filter"] != filter_name:
                continue
            record = records.setdefault(entry["doc_id"], {
                "task": task_name, "id": str(entry["doc_id"]), "prediction": _prediction(task, entry),
                "answer": answers.get(entry["doc_id"]), "scores": {}})
            record["scores"][metric] = float(entry[measure])
    if set(records) != set(answers):
        raise KoreBenchError(f"lm-eval task {name!r} scored {len(records)} documents, {len(answers)} were asked")
    return means, {m: bool(higher.get(m.partition(",")[0], True)) for m in metrics}, [records[i] for i in answers]
