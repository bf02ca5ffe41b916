"""Scores do not depend on the evaluation batch size.

Users of lmms-eval and LLaVA report scores that change with the batch size (padding bugs: left
padding without matching position ids, pad tokens attended to, image features misaligned).
The same trained micro base is evaluated at batch sizes 1, 3 and 32 on every registered output
type (every evaluator backend) and both kore-tiny architectures; every per-sample answer and
every task score must be identical.
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from kore_bench.evaluate.backends import BACKENDS, evaluate_suite
from kore_bench.suites import Suite, load_suites, parse_suite

from test_lm_eval_tasks import text_suite  # noqa: F401  (lm-eval tasks over the micro world)
from test_vlmeval_suites import lmudata  # noqa: F401  (a VLMEvalKit data folder)

BATCH_SIZES = (1, 3, 32)
LIMIT = 7  # samples per task: batches of 3 end in a partial batch (3, 3, 1)


@pytest.fixture(scope="module", params=["llava", "qwen"])
def trained(request, micro_world):
    """The micro world's kore-tiny base (pre-trained on its old knowledge) of each architecture."""
    from kore_bench.base import build_base

    return build_base("micro", request.param).load()


@pytest.fixture(scope="module")
def every_output_type(micro_world, text_suite, lmudata, tmp_path_factory) -> list[Suite]:  # noqa: F811
    """world-new, world-retention (+ its multiple-choice task scored by log-likelihood), lm-eval
    tasks and VLMEvalKit benchmarks (scored over the whole task)."""
    suites = {**load_suites(), **load_suites([text_suite])}
    new = suites["world-new"].with_variables(world=str(micro_world))
    retention = suites["world-retention"].with_variables(world=str(micro_world))
    # native multiple choice (by generated letter and by log-likelihood) over MMBench rows read as a
    # plain TSV, and yes/no over the world's POPE-style items (not in world-retention since world v5)
    rows = pd.read_csv(lmudata / "MMBench_DEV_EN.tsv", sep="\t")
    mc_file = tmp_path_factory.mktemp("native") / "choices.tsv"
    rows[rows["index"] < 1_000_000].drop(columns=["split"], errors="ignore").to_csv(mc_file, sep="\t", index=False)
    mc = {"category": "perception", "source": {"loader": "tsv", "path": str(mc_file)}, "metrics": ["choice_accuracy"]}
    native = parse_suite({"suite": "native", "role": "retention", "tasks": [
        {"task": "choice", "output_type": "multiple_choice", **mc},
        {"task": "choice_loglikelihood", "output_type": "multiple_choice_loglikelihood", **mc},
        {"task": "hallucination", "category": "hallucination", "output_type": "yes_no", "metrics": ["yes_no_accuracy"],
         "source": {"loader": "jsonl", "path": str(micro_world / "retention" / "hallucination.jsonl"),
                    "image_root": str(micro_world)}},
    ]})
    kore = suites["kore"].with_variables(path=str(lmudata))
    kore = dataclasses.replace(kore, tasks=[t for t in kore.tasks if t.name in ("MMBench_DEV_EN", "POPE", "MME")])
    chosen = [new, retention, native, suites["text-retention"], kore]
    covered = {t.output_type for s in chosen for t in s.tasks}
    assert covered == set(BACKENDS.names()), f"not covered: {set(BACKENDS.names()) - covered}"
    return chosen


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                        for x, y in ((a[k], b[k]) for k in a))


def test_answers_and_scores_do_not_depend_on_batch_size(trained, every_output_type):
    model, processor = trained
    answers: dict[int, dict[tuple[str, str], str]] = {}
    scores: dict[int, dict[tuple[str, str], dict[str, float]]] = {}
    for batch_size in BATCH_SIZES:
        answers[batch_size], scores[batch_size] = {}, {}
        for suite in every_output_type:
            tasks, records = evaluate_suite(model, processor, suite, LIMIT, "test", batch_size)
            answers[batch_size].update({(r["task"], str(r["id"])): r["prediction"] for r in records})
            scores[batch_size].update({(suite.name, t): v["metrics"] for t, v in tasks.items()})
    reference = answers[1]
    assert len(reference) >= LIMIT * 10
    assert len(set(reference.values())) > 10, "the model answers everything alike: nothing is tested"
    for batch_size in BATCH_SIZES[1:]:
        differing = [k for k in reference if answers[batch_size].get(k) != reference[k]]
        assert not differing, (f"batch size {batch_size} changes {len(differing)} answers, e.g. {differing[0]}: "
                               f"{reference[differing[0]]!r} vs {answers[batch_size].get(differing[0])!r}")
        assert answers[batch_size].keys() == reference.keys()
        for key, metrics in scores[1].items():
            assert _same(scores[batch_size][key], metrics), (batch_size, key)
