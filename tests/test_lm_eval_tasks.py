"""lm-eval tasks in kore-bench suites: lm-eval's own scores on the in-memory model, with kore-bench's
splits, records and leaderboard."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kore_bench.evaluate import lm_eval_tasks
from kore_bench.errors import DataError, KoreBenchError, UnknownNameError
from kore_bench.evaluate.backends import evaluate_suite
from kore_bench.runner import RunConfig, run
from kore_bench.suites import load_source, load_suites, parse_suite

# Two lm-eval tasks over the micro world's text-only reasoning items (the very file world-retention
# reads): open generation with the chat template, and a two-way multiple choice scored by
# log-likelihood. Defined in a folder of the user's, as lm-eval users define local tasks.
LM_EVAL_TASKS = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
{body}
"""
GENERATE = """\
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["</s>"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
"""
CHOICE = """\
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""
SUITE = """\
suite: text-retention
role: retention
tasks:
  - task: compare
    category: lm_eval_reasoning
    source: {{loader: lm_eval, task: kb_compare, include_path: "{tasks}", chat_template: true}}
    metrics: [exact_match]
  - task: compare_mc
    category: lm_eval_reasoning
    source: {{loader: lm_eval, task: kb_compare_mc, include_path: "{tasks}", chat_template: false}}
    metrics: [acc]
"""


@pytest.fixture(scope="module")
def text_suite(micro_world, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm-eval")
    rows = [json.loads(line) for line in (micro_world / "retention" / "reasoning.jsonl").open()]
    with (root / "compare.jsonl").open("w") as f:
        for r in rows:
            # the world's reasoning items compare two numbers ("first" / "second"); the option order
            # varies so the gold label is not always the same index
            choices = ["first", "second"] if r["id"].endswith(("0", "3", "6", "9")) else ["second", "first"]
            f.write(json.dumps({**r, "choices": choices, "label": choices.index(r["answer"])}) + "\n")
    tasks, suites = root / "tasks", root / "suites"
    tasks.mkdir()
    suites.mkdir()
    for name, body in (("kb_compare", GENERATE), ("kb_compare_mc", CHOICE)):
        (tasks / f"{name}.yaml").write_text(LM_EVAL_TASKS.format(name=name, data=root / "compare.jsonl", body=body.format()))
    (suites / "text.yaml").write_text(SUITE.format(tasks=tasks))
    return suites


def test_lm_eval_scores_match_lm_eval_and_the_native_evaluator(text_suite, micro_base, micro_world):
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    suites = load_suites([text_suite])
    suite = suites["text-retention"]
    model, processor = micro_base.load()
    tasks, records = evaluate_suite(model, processor, suite, None, "test", 8)
    docs = load_source(suite.source(suite.tasks[0]))
    assert len(docs) == sum(1 for _ in (micro_world / "retention" / "reasoning.jsonl").open())
    assert tasks["compare"]["n"] == len(docs) and tasks["compare"]["category"] == "lm_eval_reasoning"

    # the same numbers as lm-eval run directly on the same model
    manager = TaskManager(include_path=str(Path(suite.source(suite.tasks[0])["include_path"])), include_defaults=False)
    direct = evaluator.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=processor.tokenizer, batch_size=8, backend="causal"),
        tasks=["kb_compare_mc"], task_manager=manager, log_samples=True, bootstrap_iters=0, verbosity="ERROR")
    assert tasks["compare_mc"]["metrics"]["acc"] == pytest.approx(100 * direct["results"]["kb_compare_mc"]["acc,none"])
    mc = [r for r in records if r["task"] == "compare_mc"]
    assert [r["scores"]["acc"] for r in mc] == [s["acc"] for s in sorted(direct["samples"]["kb_compare_mc"],
                                                                          key=lambda s: s["doc_id"])]
    assert all((r["prediction"] == r["answer"]) == (r["scores"]["acc"] == 1.0) for r in mc)
    assert tasks["compare_mc"]["metrics"]["acc"] == pytest.approx(100 * sum(r["scores"]["acc"] for r in mc) / len(mc))

    # through the chat template, lm-eval's greedy answers are the native evaluator's answers
    retention = load_suites()["world-retention"].with_variables(world=str(micro_world))
    retention.tasks = [t for t in retention.tasks if t.name == "reasoning"]
    _, native = evaluate_suite(model, processor, retention, None, "test", 8)
    native_by_question = {s.messages[-1]["content"]: r["prediction"]
                          for s, r in zip(retention.task_samples(retention.tasks[0]), native)}
    generated = {d.messages[-1]["content"]: r["prediction"].strip()
                 for d, r in zip(docs, (r for r in records if r["task"] == "compare"))}
    assert native_by_question and all(generated[q] == p.strip() for q, p in native_by_question.items())


def test_lm_eval_tasks_split_limit_and_bad_names(text_suite, micro_base):
    suite = load_suites([text_suite])["text-retention"].with_dev_holdout(0.25, 0)
    task = suite.tasks[1]
    dev, test = suite.task_samples(task, "dev"), suite.task_samples(task, "test")
    ids = [s.id for s in dev + test]
    assert dev and test and len(set(ids)) == len(ids) == len(load_source(suite.source(task)))
    model, processor = micro_base.load()
    tasks, records = evaluate_suite(model, processor, suite, 5, "dev", 4)
    assert [r["id"] for r in records if r["task"] == "compare_mc"] == [s.id for s in dev[:5]]
    assert tasks["compare_mc"]["n"] == min(5, len(dev))

    with pytest.raises(KoreBenchError, match="chat_template must be true or false, not 'maybe'"):
        lm_eval_tasks.evaluate(model, processor, {**suite.source(task), "chat_template": "maybe"}, "x", dev, ["acc"], 4)
    with pytest.raises(DataError, match="mine.yaml: task 'x' is an lm-eval task.*remove generation, prompt"):
        parse_suite({"suite": "s", "role": "retention", "tasks": [
            {"task": "x", "source": {"loader": "lm_eval", "task": "kb_compare"}, "metrics": ["acc"], "prompt": "{question}",
             "generation": {"max_new_tokens": 4}}]}, Path("mine.yaml"))
    source = {**suite.source(task), "task": "kb_sum_mc"}
    with pytest.raises(UnknownNameError, match="did you mean 'kb_compare_mc'") as unknown:
        load_source(source)  # searched among lm-eval's thousands of tasks too; the message lists a few
    assert "more)" in str(unknown.value) and len(str(unknown.value)) < 2000
    bad = load_suites([text_suite])["text-retention"]
    bad.tasks = [bad.tasks[1]]
    bad.tasks[0].metrics = ["f1"]
    with pytest.raises(KoreBenchError, match="metric 'f1' not reported; it has \\['acc,none'\\]"):
        evaluate_suite(model, processor, bad, 2, "test", 4)


def test_run_reports_an_lm_eval_category(text_suite, micro_base, tmp_path):
    out = run(RunConfig(methods=["lora"], output=tmp_path / "run", world="micro", seeds=[0], progress=False,
                        retention=["world-retention", "text-retention"], include_paths=[text_suite], limit=6))
    with open(out / "leaderboard.csv") as f:
        board = {r["method"]: r for r in csv.DictReader(f)}
    result = json.loads((out / "lora" / "seed0" / "text-retention" / "result.json").read_text())
    category = (result["tasks"]["compare"]["metrics"]["exact_match"] + result["tasks"]["compare_mc"]["metrics"]["acc"]) / 2
    assert float(board["lora"]["lm_eval_reasoning"]) == pytest.approx(category, abs=0.01)
    assert {"base", "lora"} <= set(board)
    samples = (out / "lora" / "seed0" / "text-retention" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 12 and {json.loads(s)["task"] for s in samples} == {"compare", "compare_mc"}
