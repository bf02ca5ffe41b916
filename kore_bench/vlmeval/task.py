"""The suite hook: a task whose source is ``{loader: vlmeval, path, benchmark}`` is generated as
usual, then scored over the whole task at once (corpus-level: MME's per-image acc+, POPE's F1,
MMBench's circular groups) by VLMEvalKit's rules (:mod:`kore_bench.vlmeval.score`)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import Sample
from ..errors import DataError
from .benchmarks import NOT_SCORED, get_benchmark, headline, load_samples, predictions_table, score_table

LOADER = "vlmeval"


def is_vlmeval(spec: dict[str, Any]) -> bool:
    """Whether a suite source names a VLMEvalKit benchmark."""
    return spec.get("loader") == LOADER


def load_source(spec: dict[str, Any]) -> list[Sample]:
    """The samples of ``{loader: vlmeval, path: LMUData folder, benchmark: NAME}``."""
    if not spec.get("path") or not spec.get("benchmark"):
        raise DataError(f"a vlmeval source needs 'path' (the LMUData folder) and 'benchmark': {spec}")
    return load_samples(Path(spec["path"]), spec["benchmark"])


def score_report(benchmark: str, table) -> dict[str, Any]:
    """``{"benchmark", "metrics" (kore-bench headline, percent), "vlmeval" (VLMEvalKit's table)}``."""
    scored = score_table(benchmark, table)
    return {"benchmark": get_benchmark(benchmark).name, "metrics": headline(benchmark, scored),
            "vlmeval": scored.table, "n": len(table)}


def evaluate(model, processor, spec: dict[str, Any], task_name: str, samples: Sequence[Sample],
             metrics: Sequence[str], generation: dict[str, Any], batch_size: int
             ) -> tuple[dict[str, float], dict[str, bool], list[dict[str, Any]], dict[str, Any]]:
    """Generate, then score the task as VLMEvalKit does: (means, higher_is_better, records, extra).

    A judge-scored benchmark is not generated: its metrics are NaN and ``extra["not_scored"]`` says why."""
    bench = get_benchmark(spec["benchmark"])
    higher = {m: True for m in metrics}
    if bench.kind == "judge":
        return ({m: math.nan for m in metrics}, higher, [],
                {"not_scored": NOT_SCORED.format(name=bench.name)})
    from ..evaluate.generation import generate

    preds = generate(model, processor, samples, generation.get("max_new_tokens", 32), batch_size)
    table = predictions_table(list(samples), preds)
    scored = score_table(bench.name, table)
    values = headline(bench.name, scored)
    unknown = [m for m in metrics if m not in values]
    if unknown:
        raise DataError(f"task {task_name!r}: {bench.name} has no metric {', '.join(unknown)} "
                        f"(it has {', '.join(values)})")
    hits = {str(k): v for k, v in scored.per_question.items()}
    records = [{"task": task_name, "id": s.id, "prediction": p, "answer": s.answer,
                "scores": {"hit": hits[s.id]}} for s, p in zip(samples, preds)]
    return {m: float(values[m]) for m in metrics}, higher, records, {"vlmeval": scored.table}


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


def score_file(benchmark: str, predictions: Path, output: Path | None = None) -> tuple[dict[str, Any], list]:
    """``kore-bench score``: the report of a prediction file (written as JSON to ``output``) and rich
    tables to print (VLMEvalKit's table, its names and scale; then kore-bench's headline in percent)."""
    from rich.table import Table

    from ..store import atomic_write_json
    from .benchmarks import read_table

    report = _jsonable(score_report(benchmark, read_table(predictions)))
    report["predictions"] = str(predictions)
    if output is not None:
        atomic_write_json(output, report)
    tables = []
    columns = list(dict.fromkeys(k for row in report["vlmeval"] for k in row))
    t = Table(*columns, title=f"{report['benchmark']} (VLMEvalKit, exact matching; {report['n']} rows)")
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
