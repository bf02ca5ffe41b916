"""VLMEvalKit's scores on its exact-matching path, from a benchmark table with a ``prediction`` column
(with a judge, also VLMEvalKit's judge fallback for yes/no and multiple choice: :mod:`.judge`).

Each scorer takes the benchmark TSV as pandas reads it (``pd.read_csv(path, sep="\\t")``, as
VLMEvalKit's ``load`` does, so cell types match) plus VLMEvalKit's ``prediction`` column, and returns
VLMEvalKit's result table (one row per split, VLMEvalKit's column names and scale) and a per-question
score. Sources transcribed (read, not imported): ``vlmeval/dataset/image_yorn.py`` and
``utils/yorn.py`` (MME, POPE, HallusionBench), ``image_mcq.py`` and ``utils/multiple_choice.py``
(vanilla and circular MCQ, ``report_acc``, MMMU's open-question rewrite), ``image_vqa.py`` and
``utils/vqa_eval.py`` (OCRVQA's ``accuracy``).

Deliberate differences, all on inputs where VLMEvalKit raises instead of scoring: an MME subtask
missing from the table is left out of its perception/cognition sum (the normalised score then
divides by 200 per subtask present), and an MME image with one question scores its acc+ on that
question alone.
"""
from __future__ import annotations

import ast
import math
import string
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .extract import UNKNOWN, extract_option, extract_yes_no
from .judge import Judge, judge_option, judge_yes_no

MME_PERCEPTION = ["OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position",
                  "posters", "scene"]
MME_COGNITION = ["code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation"]
MME_MAX_PER_SUBTASK = 200.0  # acc (100) + acc+ (100); 14 subtasks -> the paper's /2800
MMB_ABBRS = {"coarse_perception": "CP", "finegrained_perception (instance-level)": "FP-S",
             "finegrained_perception (cross-instance)": "FP-C", "logic_reasoning": "LR",
             "relation_reasoning": "RR", "attribute_reasoning": "AR"}
CIRCULAR_KEYS = ("mmbench", "ccbench", "circular", "mmcr")


@dataclass
class Scored:
    """VLMEvalKit's result table and each question's score (``index`` -> 0/1 hit)."""

    table: list[dict[str, Any]]
    per_question: dict[Any, float] = field(default_factory=dict)


def _listinstr(keys, name: str) -> bool:
    return any(k in name for k in keys)


def _need(data: pd.DataFrame, columns: list[str], benchmark: str) -> None:
    missing = [c for c in columns if c not in data]
    if missing:
        raise DataError(f"{benchmark}: the prediction table lacks column(s) {', '.join(missing)}")


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


# --------------------------------------------------------------------------------------------- Y/N


def score_yes_no(data: pd.DataFrame, benchmark: str, judge: Judge | None = None) -> Scored:
    """ImageYORNDataset.evaluate: extraction, then the rating. Without a judge ``model='exact_matching'``;
    with one, a prediction extracted as Unknown goes to the judge (:func:`~.judge.judge_yes_no`)."""
    _need(data, ["index", "answer", "prediction"], benchmark)
    data = data.copy()
    data["prediction"] = [str(x) for x in data["prediction"]]
    extracted = [extract_yes_no(p) for p in data["prediction"]]
    if judge is not None:
        _need(data, ["question"], benchmark)
        extracted = [judge_yes_no(judge, q, p) if e == UNKNOWN else e
                     for q, p, e in zip(data["question"], data["prediction"], extracted)]
    data["extracted"] = extracted
    if "AMBER" in benchmark:
        data["score"] = data["answer"].str.lower() == data["extracted"].str.lower()
    else:
        data["score"] = data["answer"] == data["extracted"]
    per_question = {k: float(v) for k, v in zip(data["index"], data["score"])}
    if "MME" in benchmark:
        table = mme_rating(data)
    elif "Hallusion" in benchmark:
        table = hallusion_rating(data)
    elif "POPE" in benchmark:
        table = pope_rating(data)
    else:
        table = default_rating(data)
    return Scored(table, per_question)


def mme_rating(data: pd.DataFrame) -> list[dict[str, Any]]:
    """Per subtask: acc + acc+ (both questions of an image right), ×100; perception and cognition
    ("reasoning" in VLMEvalKit's table) are sums over their subtasks."""
    _need(data, ["category", "image_path", "score"], "MME")
    stats: dict[str, dict[Any, list[bool]]] = defaultdict(dict)
    for cat, img, score in zip(data["category"], data["image_path"], data["score"]):
        stats[cat].setdefault(img, []).append(score)
    scores = {}
    for cat, per_image in stats.items():
        normal = [s for v in per_image.values() for s in v]
        plus = [v[0] * v[1] if len(v) >= 2 else v[0] for v in per_image.values()]
        scores[cat] = float(np.mean(normal) * 100 + np.mean(plus) * 100)
    row = {"perception": sum(scores[c] for c in MME_PERCEPTION if c in scores),
           "reasoning": sum(scores[c] for c in MME_COGNITION if c in scores)}
    row.update(scores)
    return [row]


def mme_normalised(row: Mapping[str, Any]) -> float:
    """(perception + cognition) / (200 × subtasks present) × 100: the KORE paper's total / 2800."""
    present = [c for c in MME_PERCEPTION + MME_COGNITION if c in row]
    if not present:
        raise DataError("MME: no known subtask in the table")
    return 100.0 * (row["perception"] + row["reasoning"]) / (MME_MAX_PER_SUBTASK * len(present))


def hallusion_rating(data: pd.DataFrame) -> list[dict[str, Any]]:
    """aAcc (questions), fAcc (all questions on a figure), qAcc (a question on all its figures), ×100;
    overall, per ``category`` and per ``l2-category``. Set/figure/question ids come from ``index``."""
    _need(data, ["index", "l2-category", "score"], "HallusionBench")
    parts = [str(x).split("_") for x in data["index"]]
    if any(len(p) < 6 for p in parts):
        raise DataError("HallusionBench: index must look like VLMEvalKit's (category_subset_x_set_figure_question)")
    data = data.assign(set_id=[p[3] for p in parts], figure_id=[p[4] for p in parts],
                       question_id=[p[5] for p in parts])

    def grouped(sub: pd.DataFrame, key: str) -> float:
        res = defaultdict(list)
        for l2, s, k, score in zip(sub["l2-category"], sub["set_id"], sub[key], sub["score"]):
            res[f"{l2}_{s}_{k}"].append(score)
        return float(np.mean([np.all(x) for x in res.values()]) * 100)

    def row(name: str, sub: pd.DataFrame) -> dict[str, Any]:
        return {"split": name, "aAcc": float(np.mean(sub["score"]) * 100),
                "fAcc": grouped(sub, "figure_id"), "qAcc": grouped(sub, "question_id")}

    rows = [row("Overall", data)]
    for col in ("category", "l2-category"):
        if col in data:
            rows += [row(c, data[data[col] == c]) for c in sorted(set(data[col]), key=str)]
    return rows


def _f1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    tp = int(np.sum((y_true == 1) & (y_pred == 1)))
    fp = int(np.sum((y_true == 0) & (y_pred == 1)))
    fn = int(np.sum((y_true == 1) & (y_pred == 0)))
    precision = tp / (tp + fp) if tp + fp else 0
    recall = tp / (tp + fn) if tp + fn else 0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0
    return f1, precision, recall


def pope_rating(data: pd.DataFrame) -> list[dict[str, Any]]:
    """F1 (column ``Overall``), acc, precision, recall (×100, "Yes" positive; Unknown counts as a
    negative prediction) over all questions and per split (``category``; a question listed under
    several comma-separated splits counts in each, the overall row included, as in VLMEvalKit)."""
    _need(data, ["category", "answer", "extracted", "score"], "POPE")
    data = data.assign(category=data["category"].str.split(",")).explode("category")

    def row(name: str, sub: pd.DataFrame) -> dict[str, Any]:
        y_true = np.array([1 if a == "Yes" else 0 for a in sub["answer"]])
        y_pred = np.array([1 if e == "Yes" else 0 for e in sub["extracted"]])
        f1, precision, recall = _f1(y_true, y_pred)
        return {"split": name, "Overall": f1 * 100, "acc": float(np.mean(sub["score"]) * 100),
                "precision": precision * 100, "recall": recall * 100}

    cats = sorted({c for c in data["category"] if not (isinstance(c, float) and math.isnan(c))})
    return [row("Overall", data)] + [row(c, data[data["category"] == c]) for c in cats]


def default_rating(data: pd.DataFrame) -> list[dict[str, Any]]:
    """Accuracy ×100 overall and per category / l2-category (other Y/N benchmarks)."""
    res: dict[str, Any] = {"Overall": float(np.mean(data["score"]) * 100)}
    for col in ("category", "l2-category"):
        if col in data:
            for c in sorted(c for c in set(data[col]) if not pd.isna(c)):
                res[c] = float(np.mean(data[data[col] == c]["score"]) * 100)
    return [res]


# --------------------------------------------------------------------------------------------- MCQ


def _choices(item: Mapping[str, Any]) -> dict[str, Any]:
    return {ch: item[ch] for ch in string.ascii_uppercase if ch in item and not pd.isna(item[ch])}


def _mmmu_preproc(data: pd.DataFrame) -> pd.DataFrame:
    """MMMU's open questions as two-option MC: A = the answer, B = "Other Answers"."""
    a, b = list(data["A"]), list(data["B"])
    for i, ans in enumerate(data["answer"]):
        if pd.isna(a[i]):
            a[i], b[i] = ans, "Other Answers"
    return data.assign(A=a, B=b)


def is_circular(benchmark: str) -> bool:
    """VLMEvalKit evaluates MMBench-like benchmarks circularly (by name)."""
    return _listinstr(CIRCULAR_KEYS, benchmark.lower())


def score_multiple_choice(data: pd.DataFrame, benchmark: str, judge: Judge | None = None) -> Scored:
    """ImageMCQDataset.evaluate_heuristic, with ``model='exact_matching'`` when there is no judge.

    Vanilla: a question is right when the extracted option equals the answer (nothing extracted
    counts as "Z"; with a judge, it goes to the judge: :func:`~.judge.judge_option`). Circular
    (MMBench): the rows sharing ``index % 1e6`` (or ``g_index``) form a group, scored on its main row
    (index == g_index): 1 only if every row of the group is extracted and right (with a judge, rows
    are taken in order and the first wrong one ends the group, as ``eval_circular_group``).
    ``report_acc``: accuracy in [0, 1] per split, overall and per l2-category / category."""
    _need(data, ["index", "answer", "prediction"] + (["question"] if judge is not None else []), benchmark)
    data = data.copy()
    circular = is_circular(benchmark)
    if circular:
        data["index"] = [int(x) for x in data["index"]]
    data = data.sort_values(by="index", kind="stable")
    data["prediction"] = [str(x) for x in data["prediction"]]
    data.columns = [c if c in string.ascii_uppercase else c.lower() for c in data.columns]
    answer_map = dict(zip(data["index"], data["answer"]))
    if "MMMU" in benchmark:
        data = _mmmu_preproc(data)
        answer_map = {k: (v if v in list(string.ascii_uppercase) else "A") for k, v in answer_map.items()}
    gt = [answer_map[i] for i in data["index"]]
    rows = [dict(zip(data.columns, r)) for r in data.itertuples(index=False, name=None)]
    preds = [extract_option(r["prediction"], _choices(r)) for r in rows]
    if not circular:
        if judge is not None:
            preds = [p or judge_option(judge, r, _choices(r), benchmark) for p, r in zip(preds, rows)]
        hits = [float((p or "Z") == g) for p, g in zip(preds, gt)]
        data["hit"] = hits
        per_question = dict(zip(data["index"], hits))
        return Scored(report_acc(data), per_question)
    g_index = list(data["g_index"]) if "g_index" in data else [int(x % 1e6) for x in data["index"]]
    groups: dict[int, list[tuple[Any, Any, dict[str, Any]]]] = defaultdict(list)
    for g, p, t, r in zip(g_index, preds, gt, rows):
        groups[g].append((p, t, r))
    if judge is None:
        group_hit = {g: float(all(p is not None and p == t for p, t, _ in v)) for g, v in groups.items()}
    else:
        group_hit = {g: _circular_group_hit(judge, v, benchmark) for g, v in groups.items()}
    main = data[[i == g for i, g in zip(data["index"], g_index)]].copy()
    main["hit"] = [group_hit[i] for i in main["index"]]
    per_question = {i: group_hit[g] for i, g in zip(data["index"], g_index)}
    return Scored(report_acc(main), per_question)


def _circular_group_hit(judge: Judge, group: list[tuple[Any, Any, dict[str, Any]]], benchmark: str) -> float:
    """``eval_circular_group``: a prefetched wrong answer fails the group without a call; rows with
    nothing extracted go to the judge in order, and the first wrong one ends the group."""
    if any(p is not None and p != t for p, t, _ in group):
        return 0.0
    for p, t, row in group:
        if p is None and judge_option(judge, row, _choices(row), benchmark) != t:
            return 0.0
    return 1.0


def report_acc(df: pd.DataFrame) -> list[dict[str, Any]]:
    """VLMEvalKit's ``report_acc``: per split, Overall and per l2-category / category (MMBench's
    abbreviations), mean hit in [0, 1]."""
    splits = sorted(set(df["split"]), key=str) if "split" in df else ["none"]
    split_col = list(df["split"]) if "split" in df else ["none"] * len(df)
    df = df.assign(split=split_col)
    rows = {sp: {"split": sp, "Overall": _mean(df[df["split"] == sp]["hit"])} for sp in splits}
    for group in ("l2-category", "category"):
        if group not in df:
            continue
        for ab in sorted(set(df[group]), key=str):
            name = MMB_ABBRS.get(ab, ab)
            sub = df[df[group] == ab]
            for sp in splits:
                rows[sp][name] = _mean(sub[sub["split"] == sp]["hit"])
    return list(rows.values())


# --------------------------------------------------------------------------------------------- VQA


def _answers(answer: str) -> list[str]:
    """A cell holding a Python list literal is several gold answers (VLMEvalKit evals it)."""
    try:
        value = ast.literal_eval(answer)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [answer]
    return value if isinstance(value, list) else [answer]


def score_vqa_accuracy(data: pd.DataFrame, benchmark: str) -> Scored:
    """ImageVQADataset with ``method='accuracy'`` (OCRVQA, GQA): a hit when the stripped, lowercased
    prediction equals any gold answer; ×100 overall and per split, or per category."""
    _need(data, ["index", "answer", "prediction"], benchmark)
    preds = [str(x).strip() for x in data["prediction"]]
    golds = [_answers(str(x)) for x in data["answer"]]
    hits = [float(max((1.0 if str(g).strip().lower() == p.lower() else 0.0) for g in gs)) for gs, p in zip(golds, preds)]
    row: dict[str, Any] = {}
    if "split" in data:
        for sp in sorted(set(data["split"]), key=str):
            row[sp] = _mean(h for h, s in zip(hits, data["split"]) if s == sp) * 100
        row["Overall"] = _mean(hits) * 100
    else:
        row["Overall"] = _mean(hits) * 100
        if "category" in data:
            for c in sorted(set(data["category"]), key=str):
                row[c] = _mean(h for h, s in zip(hits, data["category"]) if s == c) * 100
    return Scored([row], dict(zip(data["index"], hits)))
