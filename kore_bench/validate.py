"""Checks of everything a user types, run before any work starts: each bad value is one line naming
the option and what is allowed (the CLI exits with code 2).

Method settings (``--set METHOD.FIELD=VALUE``) are coerced to their field's type and checked against
:data:`RANGES`, by field name (a config field may declare its own with ``metadata={"range": ...}``):
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any

from .errors import KoreBenchError

# (lowest, highest, lowest allowed, highest allowed): None for an open end
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "lr": (0, None, False, True),
    "projector_lr": (0, None, False, True),
    "steps": (1, None, True, True),
    "epochs": (0, None, False, True),
    "batch_size": (1, None, True, True),
    "rank": (1, None, True, True),
    "warmup_ratio": (0, 1, True, False),
    "weight_decay": (0, None, True, True),
    "max_grad_norm": (0, None, False, True),
    "max_length": (1, None, True, True),
    "dropout": (0, 1, True, False),
    "alpha_over_rank": (0, None, False, True),
    "ratio": (0, 1, False, True),
    "grad_accum": (1, None, True, True),
}


def describe(bounds: tuple[float | None, float | None, bool, bool]) -> str:
    low, high, low_in, high_in = bounds
    if high is None:
        return f"{'≥' if low_in else '>'} {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def _kind(annotation: Any) -> tuple[type | None, bool]:
    """(base type, None allowed) of a field annotation such as ``int | None``."""
    args = typing.get_args(annotation)
    if args:
        non_none = [a for a in args if a is not type(None)]
        return (non_none[0] if len(non_none) == 1 else None), type(None) in args
    return (annotation if isinstance(annotation, type) else None), False


def coerce(name: str, value: Any, annotation: Any, bounds=None) -> Any:
    """``value`` as the field's type, checked against its range; KoreBenchError otherwise."""
    kind, nullable = _kind(annotation)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if nullable:
            return None
        raise KoreBenchError(f"{name}: None is not allowed")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise KoreBenchError(f"{name}={value!r}: expected true or false")
    if kind in (int, float) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise KoreBenchError(f"{name}={value!r}: expected a number") from None
    if kind is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise KoreBenchError(f"{name}={value!r}: expected an integer")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KoreBenchError(f"{name}={value!r}: expected a number")
        value = float(value)
        if not math.isfinite(value):
            raise KoreBenchError(f"{name}={value!r}: expected a finite number")
    elif kind is str and not isinstance(value, str):
        value = str(value)
    if bounds and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, low_in, high_in = bounds
        ok = (low is None or value > low or (low_in and value == low)) and \
             (high is None or value < high or (high_in and value == high))
        if not ok:
            raise KoreBenchError(f"{name}={value!r}: must be {describe(bounds)}")
    return value


def method_settings(config_cls: type, method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` coerced to the fields of ``config_cls`` (names checked by the caller)."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    return {k: coerce(f"--set {method}.{k}", v, hints.get(k), fields[k].metadata.get("range", RANGES.get(k)))
            for k, v in overrides.items()}


def seeds(value: str) -> list[int]:
    """``--seeds 0,1,2``: non-negative integers, at least one, duplicates dropped."""
    parts = [p.strip() for p in value.split(",")]
    if not any(parts):
        raise KoreBenchError(f"--seeds {value!r}: give at least one seed, e.g. --seeds 0,1,2")
    out = []
    for p in parts:
        if not p:
            continue
        if not p.isdigit():
            raise KoreBenchError(f"--seeds {value!r}: {p!r} is not a non-negative integer")
        out.append(int(p))
    return list(dict.fromkeys(out))


def run_settings(cfg) -> None:
    """Check a RunConfig's own values (CLI and API alike), before anything is loaded. (``methods``
    may be empty here: tune, frontier and diagnose prepare a run template without methods.)"""
    if not cfg.seeds:
        raise KoreBenchError("--seeds: give at least one seed")
    for s in cfg.seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise KoreBenchError(f"--seeds: {s!r} is not a non-negative integer")
    if cfg.limit is not None and (isinstance(cfg.limit, bool) or not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise KoreBenchError(f"--limit {cfg.limit}: must be an integer ≥ 1 (leave it out for no limit)")
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise KoreBenchError(f"--batch-size {cfg.batch_size}: must be an integer ≥ 1")
    if not (isinstance(cfg.dev_share, (int, float)) and 0 <= cfg.dev_share < 1):
        raise KoreBenchError(f"--dev-share {cfg.dev_share}: must be in [0, 1)")
    device(cfg.device)
    if cfg.shard is not None:
        parse_shard("/".join(map(str, cfg.shard)))
    output_dir(Path(cfg.output))
    if getattr(cfg, "judge", None):
        from .vlmeval import parse_judge

        parse_judge(cfg.judge)  # its form; whether it answers is checked once the suites are known
    if cfg.model:
        model(cfg.model)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``--shard I/N``: the I-th (1-based) of N shares."""
    if value is None:
        return None
    i, sep, n = value.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard[0] <= shard[1]:
        raise KoreBenchError(f"--shard {value!r}: expected I/N with 1 ≤ I ≤ N, e.g. --shard 1/4")
    return shard


def device(value: str | None) -> None:
    """``--device``: a torch device that exists here."""
    if value is None:
        return
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise KoreBenchError(f"--device {value!r}: not a device (cpu, cuda, cuda:1, mps ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise KoreBenchError(f"--device {value}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise KoreBenchError(f"--device {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise KoreBenchError(f"--device {value}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise KoreBenchError(f"--device {value!r}: unsupported device type {dev.type!r} (cpu, cuda, mps)")


def output_dir(path: Path) -> None:
    """``--output``: a directory that exists or can be created, and is writable."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"is under the file {parent}"
                raise KoreBenchError(f"--output {path}: {where}; give a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise KoreBenchError(f"--output {path}: {parent} is not writable")
            return


def model(value: str) -> None:
    """``--model``: a folder (or hub id) whose config transformers can read."""
    from .unit_key import resolve_model_dir

    folder = resolve_model_dir(value)
    if not (folder / "config.json").is_file():
        raise KoreBenchError(f"--model {value}: {folder} has no config.json")
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(folder)
    except Exception as e:
        raise KoreBenchError(f"--model {value}: its config does not load ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None


def samples_readable(samples, what: str) -> None:
    """Every image of ``samples`` decodes; the first that does not is reported with its file and row."""
    from .data import DataError

    seen: set = set()
    for s in samples:
        if s.image is None or s.image in seen:
            continue
        seen.add(s.image)
        try:
            s.image.load()
        except DataError as e:
            raise DataError(f"{s.source or what}: {e}") from None
