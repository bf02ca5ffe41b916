"""The suite hook: a task whose source is ``{loader: vlmeval, path, benchmark}`` is generated as
usual, then scored over the whole task at once (corpus-level: MME's per-image acc+, POPE's F1,
MMBench's circular groups) by VLMEvalKit's rules (:mod:`kore_bench.vlmeval.score`), with the LLM
judge when one is given (:mod:`kore_bench.vlmeval.judge`). Rows with several images and MMDU's
dialogues are generated turn by turn with all their images (:mod:`kore_bench.vlmeval.multiturn`)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import Sample
from ..errors import DataError
from .benchmarks import get_benchmark, headline, load_samples, predictions_table, score_table, table_images
from .judge import Judge, NotScored
from .multiturn import MultiImageSample, check_multi_image, generate_dialogues

LOADER = "vlmeval"


def is_vlmeval(spec: dict[str, Any]) -> bool:
    """Whether a suite source names a VLMEvalKit benchmark."""
    return spec.get("loader") == LOADER


def load_source(spec: dict[str, Any]) -> list[Sample]:
    """The samples of ``{loader: vlmeval, path: LMUData folder, benchmark: NAME}``."""
    if not spec.get("path") or not spec.get("benchmark"):
        raise DataError(f"a vlmeval source needs 'path' (the LMUData folder) and 'benchmark': {spec}")
    return load_samples(Path(spec["path"]), spec["benchmark"])


def score_report(benchmark: str, table, judge: Judge | None = None,
                 images: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"benchmark", "metrics" (kore-bench headline, percent), "vlmeval" (VLMEvalKit's table), "n",
    "judge" (its identity, or None: exact matching)}``."""
    scored = score_table(benchmark, table, judge, images)
    return {"benchmark": get_benchmark(benchmark).name, "metrics": headline(benchmark, scored),
            "vlmeval": scored.table, "n": len(table), "judge": judge.identity if judge is not None else None}


def evaluate(model, processor, spec: dict[str, Any], task_name: str, samples: Sequence[Sample],
             metrics: Sequence[str], generation: dict[str, Any], batch_size: int, judge: Judge | None = None
             ) -> tuple[dict[str, float], dict[str, bool], list[dict[str, Any]], dict[str, Any]]:
    """Generate, then score the task as VLMEvalKit does: (means, higher_is_better, records, extra).

    With a judge, VLMEvalKit's judge fallback (MC, yes/no) and the judged benchmarks are scored and
    ``extra["judge"]`` names it. A benchmark that cannot be scored (a judged one without a judge) is
    still generated (the predictions are in the records, to re-score later): its metrics are NaN and
    ``extra["not_scored"]`` says why.

    Samples with several images, and MMDU's dialogues, are answered one conversation at a time with all
    their images (:func:`~.multiturn.generate_dialogues`); an MMDU prediction is the Python list of its
    answers, one per turn, as VLMEvalKit's prediction files hold it. A model that cannot take several
    images in one prompt is refused for those rows (never answered on the first image alone)."""
    bench = get_benchmark(spec["benchmark"])
    higher = {m: True for m in metrics}
    from ..evaluate.generation import generate

    max_new_tokens = generation.get("max_new_tokens", 32)
    multi = [i for i, s in enumerate(samples) if isinstance(s, MultiImageSample)]
    lost = [s.id for s in samples if "vlmeval_turns" in s.meta and not isinstance(s, MultiImageSample)]
    if lost:
        raise DataError(f"task {task_name!r}: samples {', '.join(lost[:5])} lost their images on the way "
                        "(rebuilt as a plain Sample)")
    preds: list[str] = [""] * len(samples)
    if multi:
        check_multi_image(processor, bench.name, [samples[i].id for i in multi])
        answers = generate_dialogues(model, processor, [samples[i] for i in multi], max_new_tokens)
        for i, turns in zip(multi, answers):
            preds[i] = str(turns) if bench.name == "MMDU" else turns[0]
    taken = set(multi)
    single = [i for i in range(len(samples)) if i not in taken]
    if single:
        for i, p in zip(single, generate(model, processor, [samples[i] for i in single], max_new_tokens,
                                         batch_size)):
            preds[i] = p
    table = predictions_table(list(samples), preds)
    images = {s.id: s.image for s in samples if s.image is not None} if bench.kind == "judge" else None
    extra: dict[str, Any] = {"judge": judge.identity} if judge is not None else {}
    before = judge.stats if judge is not None else {}
    try:
        scored = score_table(bench.name, table, judge, images)
    except NotScored as e:
        records = [{"task": task_name, "id": s.id, "prediction": p, "answer": s.answer, "scores": {}}
                   for s, p in zip(samples, preds)]
        return {m: math.nan for m in metrics}, higher, records, {"not_scored": str(e), **extra}
    values = headline(bench.name, scored)
    unknown = [m for m in metrics if m not in values]
    if unknown:
        raise DataError(f"task {task_name!r}: {bench.name} has no metric {', '.join(unknown)} "
                        f"(it has {', '.join(values)})")
    per_question = {str(k): v for k, v in scored.per_question.items()}
    # MIA-Bench: the item's total (no entry: unparsed); MMDU: the mean Overall Score of its turns (0-100)
    name = "score" if bench.name in ("MIA-Bench", "MMDU") else "hit"
    records = [{"task": task_name, "id": s.id, "prediction": p, "answer": s.answer,
                "scores": {name: per_question[s.id]} if s.id in per_question else {}}
               for s, p in zip(samples, preds)]
    if judge is not None:  # this task's share: calls made and replies found in the cache
        extra["judge_calls"] = {k: v - before[k] for k, v in judge.stats.items()}
    return {m: float(values[m]) for m in metrics}, higher, records, {"vlmeval": scored.table, **extra}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def score_file(benchmark: str, predictions: Path, output: Path | None = None, judge: Judge | None = None,
               data: Path | None = None) -> tuple[dict[str, Any], list]:
    """``kore-bench score``: the report of a prediction file (written as JSON to ``output``) and rich
    tables to print (VLMEvalKit's table, its names and scale; then kore-bench's headline in percent).
    ``data``: the LMUData folder holding the benchmark, for the images a judge sees (MIA-Bench) when
    the prediction file has none."""
    from rich.table import Table

    from ..store import atomic_write_json
    from .benchmarks import read_table

    table = read_table(predictions)
    images = None
    if get_benchmark(benchmark).kind == "judge" and judge is not None:
        images = table_images(table, benchmark, data)
    report = _jsonable(score_report(benchmark, table, judge, images))
    report["predictions"] = str(predictions)
    if judge is not None:
        report["judge_calls"] = judge.stats
    if output is not None:
        atomic_write_json(output, report)
    tables = []
    columns = list(dict.fromkeys(k for row in report["vlmeval"] for k in row))
    how = f"judge {judge}" if judge is not None else "exact matching"
    t = Table(*columns, title=f"{report['benchmark']} (VLMEvalKit, {how}; {report['n']} rows)")
    for row in report["vlmeval"]:
        t.add_row(*[_fmt(row.get(c)) for c in columns])
    tables.append(t)
    h = Table(*report["metrics"], title="kore-bench (percent; MME perception/cognition in MME points)")
    h.add_row(*[_fmt(v) for v in report["metrics"].values()])
    tables.append(h)
    return report, tables


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
