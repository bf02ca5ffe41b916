"""The old-knowledge pool: what replay replays and what kore, corda, ewc, o-lora and sefe calibrate on.

Default (no ``--old-data``): each retention suite's training pool (its ``train:`` source), and for a
suite without one, the dev items of its own data — rows its file marks as another split than the
reported one, e.g. MMMU_DEV_VAL's ``dev`` rows (:mod:`kore_bench.vlmeval.benchmarks`) or an
``evoke_dev_data.jsonl`` — turned into training conversations (the question, then its gold answer).
Never test items, and never the seeded dev hold-out of test data (``--dev-share``): those are test
items set aside for selection, and the training pool must not depend on the hold-out.
(``tune`` selects on the dev split, so with this default replay also trains on dev items it is
scored on; give ``--old-data`` to keep the two apart.)

``--old-data`` replaces the default with a file (training conversations as JSON or JSONL in
LLaVA/ShareGPT form, kore-bench evaluation JSONL or a TSV of questions with answers, used whole) or a
suite (``NAME`` or ``NAME:/path``: its training pool, else its own dev items, as above).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import data as loaders
from .data import Sample
from .errors import DataError, KoreBenchError

if TYPE_CHECKING:
    from .suites import Suite

OPTION = "--old-data"
NO_OLD_DATA = (f"no old-knowledge data: the retention suites have no training pool and no dev items of their own "
               f"(e.g. --retention kore:/data/LMUData without MMMU_DEV_VAL's dev rows); give {OPTION} FILE "
               f"(conversations JSON/JSONL, or a JSONL/TSV of questions with answers) or {OPTION} SUITE")


def no_old_data(what: str) -> KoreBenchError:
    """The error of a method that needs old data and got none (``what``: e.g. "replay needs ...")."""
    return KoreBenchError(f"{what}: {NO_OLD_DATA}")


def as_training(sample: Sample) -> Sample | None:
    """An evaluation question as a training conversation (the question, then the gold answer); a
    conversation that already ends with the assistant is returned as is; None without an answer."""
    if sample.messages and sample.messages[-1]["role"] == "assistant":
        return sample
    if sample.answer is None or not str(sample.answer).strip():
        return None
    messages = [dict(m) for m in sample.messages] + [{"role": "assistant", "content": str(sample.answer).strip()}]
    return replace(sample, id=f"old:{sample.id}", messages=messages, answer=None)


def _trainable(samples: list[Sample]) -> list[Sample]:
    return [t for t in (as_training(s) for s in samples) if t is not None]


def own_dev_samples(suite: Suite) -> list[Sample]:
    """The dev items of ``suite``'s own data (its files' dev rows; no seeded hold-out), as training samples."""
    from .suites import _apply_prompt, load_source

    out = []
    for task in suite.tasks:
        if task.split == "dev":  # its dev rows are what it reports
            continue
        dev = [s for s in load_source(suite.source(task)) if s.meta.get("split") == "dev"]
        if task.prompt:
            dev = [_apply_prompt(s, task.prompt) for s in dev]
        out += _trainable([replace(s, id=f"{suite.name}/{task.name}:{s.id}") for s in dev])
    return out


def suite_pool(suite: Suite) -> tuple[list[Sample], str]:
    """(samples, where from): the suite's training pool, else its own dev items."""
    if suite.train:
        return suite.train_samples(), "training pool"
    return own_dev_samples(suite), "dev items"


def default_pool(retention: list[Suite]) -> tuple[list[Sample], dict[str, Any]]:
    """The default old-knowledge pool of the retention suites and a record of where it came from."""
    pool, parts = [], {}
    for suite in retention:
        samples, where = suite_pool(suite)
        pool += samples
        parts[suite.name] = {"from": where, "samples": len(samples)}
    return pool, {"source": "retention suites (training pools, else their own dev items)", "suites": parts,
                  "samples": len(pool)}


def _first_record(path: Path) -> Any:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".jsonl":
        line = next((ln for ln in text.splitlines() if ln.strip()), "")
        return json.loads(line) if line else None
    data = json.loads(text) if text.strip() else []
    return data[0] if isinstance(data, list) and data else None


def load_file(path: Path) -> list[Sample]:
    """Old data from a file: conversations (.json/.jsonl), evaluation JSONL or a TSV with answers."""
    if not path.is_file():
        raise DataError(f"{OPTION} {path}: no such file")
    if path.suffix == ".tsv":
        return _trainable(loaders.load_tsv(path)[0])
    if path.suffix not in (".json", ".jsonl"):
        raise DataError(f"{OPTION} {path}: expected a .json, .jsonl or .tsv file")
    try:
        first = _first_record(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{OPTION} {path}: not JSON ({e})") from e
    if path.suffix == ".jsonl" and isinstance(first, dict) and "question" in first and not (
            {"conversations", "messages"} & set(first)):
        return _trainable(loaders.load_jsonl(path)[0])
    return loaders.load_conversations(path)[0]


def _names_suite(ref: str | None, suites: dict[str, Suite]) -> bool:
    return bool(ref) and ref.partition(":")[0] in suites and not Path(ref).expanduser().is_file()


def needs_world(ref: str | None, suites: dict[str, Suite]) -> bool:
    """Whether ``--old-data REF`` names a suite of the embedded world (which must be exported first)."""
    return _names_suite(ref, suites) and "world" in suites[ref.partition(":")[0]].needs


def load(ref: str, suites: dict[str, Suite], variables: dict[str, str] | None = None
         ) -> tuple[list[Sample], dict[str, Any]]:
    """``--old-data REF``: a file, or a suite ``NAME`` / ``NAME:/path``; (samples, record).
    ``variables`` fill a suite's placeholders (``{world}``)."""
    path = Path(ref).expanduser()
    if _names_suite(ref, suites):
        from .suites import resolve_suite

        suite = resolve_suite(ref, suites, "retention")
        if variables:
            suite = suite.with_variables(**{k: v for k, v in variables.items() if k in suite.needs})
        samples, where = suite_pool(suite)
        record: dict[str, Any] = {"source": f"{OPTION} {ref}", "suites": {suite.name: {"from": where,
                                                                                      "samples": len(samples)}}}
    elif path.suffix in (".json", ".jsonl", ".tsv") or path.exists():
        samples = load_file(path)
        record = {"source": f"{OPTION} {path.resolve()}"}
    else:
        from .errors import UnknownNameError

        raise UnknownNameError(f"{OPTION} (a .json/.jsonl/.tsv file or a retention suite)", ref,
                               [n for n, s in suites.items() if s.role == "retention"])
    if not samples:
        raise KoreBenchError(f"{OPTION} {ref}: no old-knowledge samples in it (a suite gives its training pool "
                             "or its own dev items, never test items)")
    record["samples"] = len(samples)
    return samples, record
