"""The KORE paper's 12 retention benchmarks as VLMEvalKit lays them out, prompts and headline scores.

A benchmark is read from a local VLMEvalKit data folder (``LMUData``): ``<root>/<NAME>.tsv``, images as
base64 cells (a cell of at most 64 characters names the row holding the image, as in MMBench) or
``image_path`` relative to ``<root>/images/<NAME>/`` or ``<root>``. Prompts are VLMEvalKit's dataset
prompts (``build_prompt``): Y/N benchmarks the question alone; MCQ ``Hint: …\\nQuestion: …\\nOptions:\\nA.
…\\nPlease select the correct answer from the options above. \\n``; VQA the question plus
``\\nAnswer the question using a single word or phrase.``

Splits: a file's own ``split`` column is honoured. Its reported split (``MMBench_DEV_EN``: ``dev``,
``MMMU_DEV_VAL``: ``validation``) is kore-bench's test split; the file's other rows (MMMU's ``dev``)
are kore-bench's dev split.

Headlines (percent, what K.R averages): MME ``MME_norm`` = (perception + cognition) / 2800 × 100;
MMBench circular ``Overall``; POPE overall F1; HallusionBench the mean of aAcc, fAcc, qAcc (as the
OpenCompass leaderboard); the others VLMEvalKit's ``Overall`` accuracy. The LLM-judged benchmarks
(:mod:`.judge`) report ``score``: MathVista's and MathVision's Overall accuracy, MIA-Bench's
``total_score`` ×100, MMDU's ``Overall Score`` over all turns (set ``all``, 0–100); without a judge
they are "not scored" (NaN, never a lower number).

A row with several images (MMDU, some MMMU rows: the cell holds a list) is a
:class:`~.multiturn.MultiImageSample` carrying all of them, laid out as VLMEvalKit's ``build_prompt``
does and generated turn by turn (:mod:`.multiturn`); MMDU's rows are dialogues of several user turns.
"""
from __future__ import annotations

import base64
import binascii
import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..data import IMAGE_TOKEN, ImageRef, ImageResolver, Sample
from ..errors import DataError, UnknownNameError
from .judge import JUDGED, Judge, NotScored
from .multiturn import MultiImageSample, image_digests, images_first, literal_list, mmdu_turns, mmmu_parts
from .score import Scored, is_circular, mme_normalised, score_multiple_choice, score_vqa_accuracy, score_yes_no

KINDS = ("yes_no", "multiple_choice", "vqa_accuracy", "judge")
MC_SUFFIX = "Please select the correct answer from the options above. \n"
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
NOT_SCORED = "not scored: VLMEvalKit scores {name} with an LLM judge, and no judge is configured (--judge)"


@dataclass(frozen=True)
class Benchmark:
    """One VLMEvalKit benchmark: its kind, KORE category, reported split and headline metrics."""

    name: str
    kind: str
    category: str
    metrics: tuple[str, ...]  # the first is the headline (percent)
    reported_split: str | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.tsv"


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("MME", "yes_no", "COM", ("MME_norm", "perception", "cognition")),
    Benchmark("MMBench_DEV_EN", "multiple_choice", "COM", ("Overall",), reported_split="dev"),
    Benchmark("SEEDBench2_Plus", "multiple_choice", "OCR", ("Overall",)),
    Benchmark("OCRVQA_TESTCORE", "vqa_accuracy", "OCR", ("Overall",)),
    Benchmark("ScienceQA_TEST", "multiple_choice", "M-DIS", ("Overall",)),
    Benchmark("MMMU_DEV_VAL", "multiple_choice", "M-DIS", ("Overall",), reported_split="validation"),
    Benchmark("MIA-Bench", "judge", "INS", ("score",)),
    Benchmark("MMDU", "judge", "M-IDU", ("score",)),
    Benchmark("MathVista_MINI", "judge", "MAT", ("score",)),
    Benchmark("MathVision", "judge", "MAT", ("score",)),
    Benchmark("POPE", "yes_no", "HAL", ("F1", "acc", "precision", "recall")),
    Benchmark("HallusionBench", "yes_no", "HAL", ("mean", "aAcc", "fAcc", "qAcc")),
]}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (VLMEvalKit's name); UnknownNameError otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UnknownNameError("VLMEvalKit benchmark", name, BENCHMARKS) from None


def read_table(path: str | Path) -> pd.DataFrame:
    """A benchmark or prediction TSV as VLMEvalKit reads it (``pd.read_csv(sep="\\t")``); ``.xlsx`` too."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        if path.suffix == ".xlsx":
            return pd.read_excel(path)
        return pd.read_csv(path, sep="\t")
    except Exception as e:  # noqa: BLE001 - pandas raises many types for a malformed file
        raise DataError(f"{path}: unreadable table ({e})") from e


def score_table(benchmark: str, data: pd.DataFrame, judge: Judge | None = None,
                images: dict[str, Any] | None = None) -> Scored:
    """VLMEvalKit's score of a prediction table (benchmark TSV + ``prediction``): exact matching
    without a judge; with one, the judge fallback (MC, yes/no) and the judged benchmarks. ``images``
    (index → ImageRef or bytes) for a judge that sees them (MIA-Bench). A benchmark that cannot be
    scored raises :class:`~.judge.NotScored` (a DataError) saying why."""
    bench = get_benchmark(benchmark)
    if "prediction" not in data:
        raise DataError(f"{benchmark}: the table has no 'prediction' column (VLMEvalKit's prediction format)")
    if bench.kind == "yes_no":
        return score_yes_no(data, bench.name, judge)
    if bench.kind == "multiple_choice":
        return score_multiple_choice(data, bench.name, judge)
    if bench.kind == "vqa_accuracy":
        return score_vqa_accuracy(data, bench.name)
    if judge is None:
        raise NotScored(NOT_SCORED.format(name=bench.name))
    return JUDGED[bench.name](data, judge, images)


def headline(benchmark: str, scored: Scored) -> dict[str, float]:
    """The benchmark's kore-bench metrics (percent; MME's perception/cognition in MME points)."""
    bench = get_benchmark(benchmark)
    table = scored.table
    if bench.name == "MME":
        row = table[0]
        return {"MME_norm": mme_normalised(row), "perception": row["perception"], "cognition": row["reasoning"]}
    if bench.name == "POPE":
        row = _row(table, "Overall")
        return {"F1": row["Overall"], "acc": row["acc"], "precision": row["precision"], "recall": row["recall"]}
    if bench.name == "HallusionBench":
        row = _row(table, "Overall")
        return {"mean": (row["aAcc"] + row["fAcc"] + row["qAcc"]) / 3,
                **{k: row[k] for k in ("aAcc", "fAcc", "qAcc")}}
    if bench.name == "MIA-Bench":
        return {"score": 100.0 * table[0].get("total_score", math.nan)}
    if bench.name == "MMDU":
        return {"score": float(_row_named(table, "set", "all")["Overall Score"])}
    if bench.kind == "judge":
        return {"score": float(_row_named(table, "Task&Skill" if "Task&Skill" in table[0] else "Subject",
                                          "Overall")["acc"])}
    if bench.kind == "multiple_choice":
        rows = [r for r in table if r["split"] in (bench.reported_split, "none")] if bench.reported_split else table
        if len(rows) != 1:
            splits = [r["split"] for r in table]
            raise DataError(f"{bench.name}: expected one reported split ({bench.reported_split or 'none'}), "
                            f"the table has {splits}")
        return {"Overall": 100.0 * rows[0]["Overall"]}
    return {"Overall": table[0]["Overall"]}


def _row(table: list[dict[str, Any]], split: str) -> dict[str, Any]:
    return _row_named(table, "split", split)


def _row_named(table: list[dict[str, Any]], column: str, name: str) -> dict[str, Any]:
    return next(r for r in table if r.get(column) == name)


# --------------------------------------------------------------------------------------------- samples


def build_prompt(bench: Benchmark, row: dict[str, Any]) -> str:
    """VLMEvalKit's dataset prompt for one row (text only; the image goes first)."""
    question = str(row["question"])
    if bench.kind != "multiple_choice":
        return question + (VQA_SUFFIX if bench.kind == "vqa_accuracy" else "")
    options = options_of(row)
    hint = row.get("hint")
    prompt = f"Hint: {hint}\n" if hint is not None and not _isna(hint) else ""
    prompt += f"Question: {question}\n"
    if options:
        prompt += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items()) + MC_SUFFIX
    return prompt


def options_of(row: dict[str, Any]) -> dict[str, Any]:
    return {c: row[c] for c in string.ascii_uppercase if c in row and not _isna(row[c])}


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def load_samples(root: str | Path, benchmark: str) -> list[Sample]:
    """The benchmark's questions as samples; ``meta["vlmeval_row"]`` keeps the row for scoring."""
    bench = get_benchmark(benchmark)
    root = Path(root)
    path = root / bench.file
    if not path.is_file():
        raise DataError(f"{bench.name}: no {path} (a VLMEvalKit data folder holds <NAME>.tsv; "
                        f"give it as --retention NAME:/path/to/LMUData)")
    data = read_table(path)
    for col in ("index", "question", "answer"):
        if col not in data and not (col == "answer" and bench.kind == "judge"):
            raise DataError(f"{path}: missing column {col!r}")
    rows = [dict(zip(data.columns, r)) for r in data.itertuples(index=False, name=None)]
    images = {str(r["index"]): str(r["image"]) for r in rows} if "image" in data else {}
    resolver_roots = [root / "images" / bench.name, root]
    samples = []
    for line, row in enumerate(rows, 2):
        where = f"{path}:{line}"
        refs = _images(row, images, resolver_roots, where)
        image = refs[0] if refs else None
        meta: dict[str, Any] = {"vlmeval_row": {k: v for k, v in row.items() if k != "image"}}
        if bench.reported_split and "split" in row and row["split"] != bench.reported_split:
            meta["split"] = "dev"
        group = holdout_group(bench, row, image)
        if group is not None:
            meta["group"] = group
        options = options_of(row)
        answer = None if _isna(row.get("answer")) else str(row["answer"])
        common = dict(id=str(row["index"]), image=image, answer=answer,
                      choices={k: str(v) for k, v in options.items()} or None,
                      category=None if _isna(row.get("category")) else str(row["category"]), source=where)
        if bench.name == "MMDU" or len(refs) > 1:
            samples.append(_multi_image_sample(bench, row, refs, meta, common, where))
            continue
        text = build_prompt(bench, row)
        if image is not None:
            text = (text.replace("<image 1>", IMAGE_TOKEN, 1) if bench.name.startswith("MMMU")
                    and text.count("<image 1>") == 1 else IMAGE_TOKEN + "\n" + text)
        samples.append(Sample(messages=[{"role": "user", "content": text}], meta=meta, **common))
    return samples


def _multi_image_sample(bench: Benchmark, row: dict[str, Any], refs: list[ImageRef], meta: dict[str, Any],
                        common: dict[str, Any], where: str) -> MultiImageSample:
    """A row with several images, or an MMDU dialogue, laid out as VLMEvalKit's ``build_prompt`` (:mod:`.multiturn`)."""
    if bench.name == "MMDU":
        questions = literal_list(row["question"], "question", where)
        turns = mmdu_turns(questions, len(refs), where)
    else:
        questions = [build_prompt(bench, row)]
        turns = [mmmu_parts(questions[0], len(refs), where) if bench.name.startswith("MMMU")
                 else images_first(questions[0], len(refs))]
    meta = {**meta, "vlmeval_turns": turns, "vlmeval_images": image_digests(refs)}
    return MultiImageSample(messages=[{"role": "user", "content": q} for q in questions], meta=meta,
                            images=tuple(refs), **common)


def holdout_group(bench: Benchmark, row: dict[str, Any], image: ImageRef | None) -> str | None:
    """The questions VLMEvalKit scores together, which a dev hold-out must not split (``data.hold_out_dev``):
    MMBench's circular group (``g_index``, else ``index`` modulo 1e6), MME's image (its two questions
    make acc+), HallusionBench's set (``l2-category`` and set id: fAcc and qAcc group inside it)."""
    if is_circular(bench.name):
        if "g_index" in row and not _isna(row["g_index"]):
            return f"g{int(row['g_index'])}"
        try:
            return f"g{int(float(row['index']) % 1e6)}"
        except (TypeError, ValueError):
            return None
    if bench.name == "MME":
        if row.get("image_path") is not None and not _isna(row.get("image_path")):
            return f"image:{row['image_path']}"
        return f"image:{image.key}" if image is not None else None
    if bench.name == "HallusionBench":
        parts = str(row["index"]).split("_")
        if len(parts) >= 6:
            return f"set:{row.get('l2-category', parts[1])}_{parts[3]}"
    return None


def _image(row: dict[str, Any], images: dict[str, str], roots: list[Path], where: str) -> ImageRef | None:
    """A row's first image (a judge's view of the row; see :func:`_images`)."""
    refs = _images(row, images, roots, where)
    return refs[0] if refs else None


def _images(row: dict[str, Any], images: dict[str, str], roots: list[Path], where: str) -> list[ImageRef]:
    """A row's images, in order: base64 ``image`` (a cell of at most 64 characters names another row's),
    else the ``image_path`` files; a cell holding a list (MMDU, some MMMU rows) gives several."""
    raw = row.get("image")
    if raw is not None and not _isna(raw):
        raw = str(raw)
        if len(raw) <= 64:
            raw = images.get(raw, "")
            if len(raw) <= 64:
                raise DataError(f"{where}: image refers to index {row['image']!r}, which has no image data")
        out = []
        for cell in literal_list(raw.strip(), "image", where) if raw.lstrip().startswith("[") else [raw]:
            try:
                out.append(ImageRef(data=base64.b64decode("".join(cell.split()), validate=True)))
            except (binascii.Error, ValueError) as e:
                raise DataError(f"{where}: image is not valid base64 ({e})") from e
        return out
    rel = row.get("image_path")
    if rel is None or _isna(rel):
        return []
    rel = str(rel)
    rels = literal_list(rel.strip(), "image_path", where) if rel.lstrip().startswith("[") else [rel]
    return [_image_file(r, roots, where) for r in rels]


def _image_file(rel: str, roots: list[Path], where: str) -> ImageRef:
    for root in roots:
        if (root / rel).is_file():
            return ImageRef(path=str(root / rel))
    return ImageResolver(roots[-1]).resolve(rel, where)


def predictions_table(samples: list[Sample], predictions: list[str]) -> pd.DataFrame:
    """VLMEvalKit's prediction format (the benchmark rows plus ``prediction``) for scored samples."""
    rows = [{**s.meta["vlmeval_row"], "prediction": p} for s, p in zip(samples, predictions)]
    return pd.DataFrame(rows)


def table_images(data: pd.DataFrame, benchmark: str, root: str | Path | None = None) -> dict[str, ImageRef]:
    """A prediction table's images by index (what a judge that sees images needs): from the benchmark's
    data in the LMUData folder ``root`` when given, else from the table's own ``image`` (base64) or
    ``image_path`` column; {} when there are none (VLMEvalKit's prediction files drop the images)."""
    if root is not None:
        return {s.id: s.image for s in load_samples(root, benchmark) if s.image is not None}
    if "image" not in data and "image_path" not in data:
        return {}
    rows = [dict(zip(data.columns, r)) for r in data.itertuples(index=False, name=None)]
    by_index = {str(r["index"]): str(r["image"]) for r in rows} if "image" in data else {}
    out = {}
    for line, row in enumerate(rows, 2):
        image = _image(row, by_index, [Path.cwd()], f"{benchmark} prediction table, row {line}")
        if image is not None:
            out[str(row["index"])] = image
    return out
