"""Tuned settings: where ``tune`` writes them and how ``run --tuned`` applies them.

A leaf module (it imports no study and not the runner), so the runner reads tuned settings
without importing ``tune``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import KoreBenchError
from ..store import read_json

TUNED = "tuned.json"


def default_output(kind: str, world: str = "default", arch: str = "llava", model: str | None = None) -> Path:
    """The one default output name: ``runs/<kind>-<name>`` (``kind`` "" for ``run``: ``runs/<name>``),
    the name being the model's directory name or ``<world>-<arch>`` for kore-tiny."""
    name = Path(model).name if model else f"{world}-{arch}"
    return Path("runs") / (f"{kind}-{name}" if kind else name)


def load_tuned(path: Path | str) -> tuple[Path, dict[str, Any]]:
    """``tuned.json`` of a tune directory (or the file itself)."""
    path = Path(path)
    file = path / TUNED if path.is_dir() or not path.suffix else path
    if not file.is_file():
        raise KoreBenchError(f"--tuned {path}: no {TUNED} (run kore-bench tune --output {path} first)")
    return file, read_json(file)


def apply_tuned(path: Path | str, methods: list[str], explicit: dict[str, dict[str, Any]]
                ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Method settings with the tuned winners of ``methods`` under the ``explicit`` ones, and the
    provenance to record. Every method must have been tuned, all with the same budget."""
    file, data = load_tuned(path)
    missing = [m for m in methods if (data.get(m) or {}).get("settings") is None]
    if missing:
        raise KoreBenchError(f"{file} has no tuned settings for {', '.join(missing)}: tune them too "
                             f"(kore-bench tune --methods {','.join(missing)} --output {file.parent}) "
                             "or run without --tuned")
    budgets = {m: data[m]["provenance"]["budget"] for m in methods}
    if len(set(budgets.values())) > 1:
        raise KoreBenchError(f"{file}: the methods were tuned with different budgets {budgets}; "
                             "an unequal search is not a fair comparison (re-tune them together)")
    args = {m: dict(v) for m, v in explicit.items()}
    info: dict[str, Any] = {"path": str(file), "methods": {}, "base_fingerprints": set()}
    for m in methods:
        entry = data[m]
        args[m] = {**entry["settings"], **explicit.get(m, {})}
        info["methods"][m] = {"settings": entry["settings"], "applied": args[m], "dev_avg": entry.get("dev_avg"),
                              "overridden_by_set": sorted(set(explicit.get(m, {})) & set(entry["settings"])),
                              "provenance": {k: v for k, v in entry["provenance"].items() if k != "splits"}}
        info["base_fingerprints"].add(entry["provenance"].get("base_fingerprint"))
    return args, info
