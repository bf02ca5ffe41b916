"""Helpers shared by ``tune`` and ``frontier``: each trial or point is an ordinary run directory."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..errors import KoreBenchError
from ..runner import REFERENCE_METHOD, RunConfig
from ..store import RunDir

SCORES = ("CEM", "F1", "K.A", "K.R", "Avg")


def score_run(run_dir: Path, method: str) -> dict[str, float]:
    """Mean over seeds of CEM, F1, K.A, K.R and Avg of ``method`` in a run directory."""
    from ..report import per_seed, tidy_scores

    if not any(Path(run_dir).glob("*/seed*/*/result.json")):  # the trial failed before any unit finished
        return {k: math.nan for k in SCORES}
    rows = per_seed(tidy_scores(run_dir))
    rows = rows[rows.method == method] if len(rows) else rows
    return {k: float(rows[k].mean()) if len(rows) and k in rows else math.nan for k in SCORES}


def run_status(run_dir: Path, method: str) -> str:
    manifest = RunDir(run_dir).manifest()
    failed = {k: v for k, v in (manifest.get("failed") or {}).items() if k.split("/")[0] == method}
    return "failed: " + next(iter(failed.values())) if failed else "ok"


def record_failures(study: RunDir, run_dirs: list[Path]) -> dict[str, str]:
    """Write into the study's own manifest (``tune``/``frontier`` directory) what failed in its
    trials or points — ``<dir>: <unit>`` → reason, unreadable units included — so the command exits 1
    when anything did (:func:`kore_bench.cli._exit_on_failures`); returns them."""
    failed, unreadable = {}, {}
    for d in run_dirs:
        manifest = RunDir(d).manifest()
        rel = d.relative_to(study.path)
        failed.update({f"{rel}: {unit}": why for unit, why in (manifest.get("failed") or {}).items()})
        unreadable.update({f"{rel}: {unit}": why for unit, why in (manifest.get("unreadable") or {}).items()})
    study.update_manifest(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), failed=failed, unreadable=unreadable)
    return {**failed, **unreadable}


def trial_template(command: str, methods: list[str], count: tuple[str, int], output: Path, split: str,
                   own_keys: tuple[str, ...], run_options: dict[str, Any], empty: str) -> tuple[list[str], RunConfig]:
    """Checks shared by ``tune`` and ``frontier``: a positive count, some methods besides the base,
    no run option the command sets itself; returns the methods and the RunConfig every trial copies."""
    name, value = count
    if value < 1:
        raise KoreBenchError(f"--{name} must be at least 1, got {value}")
    methods = list(dict.fromkeys(m for m in methods if m != REFERENCE_METHOD))
    if not methods:
        raise KoreBenchError(empty)
    for key in ("methods", "output", "split", "reference", *own_keys):
        if key in run_options:
            raise KoreBenchError(f"{command} sets {key!r} itself")
    return methods, RunConfig(methods=[], output=output, split=split, reference=False, **run_options)
