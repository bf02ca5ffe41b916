"""Search spaces and the deterministic trial design behind ``kore-bench tune`` and ``frontier``.

A method declares its space next to its config (``Method.search_space``)::

    search_space: ClassVar[dict[str, Param]] = {"lr": LogUniform(3e-4, 1e-2), "rank": Choice([4, 8, 16])}

Keys are fields of the method's config. ``LogUniform`` is for step sizes (and anything else that
spans decades), ``Uniform`` for shares, ``Choice`` for discrete settings. A YAML file given as
``--space`` overrides them per method and parameter::

    lora:
      lr: {log_uniform: [1.0e-4, 1.0e-2]}
      rank: {choice: [4, 8]}
    replay:
      ratio: {uniform: [0.05, 0.5]}
      rank: null                 # null removes a parameter from the method's space

Trials come from a centred Latin hypercube: with a budget of N, each parameter's range is cut
into N equal strata (in log space for ``LogUniform``) and every stratum is used exactly once, at
its centre. The first parameter is taken in increasing order, the others in a seeded permutation,
so a design depends only on (budget, number of parameters, seed): every method with the same
number of parameters is probed at the same relative positions of its ranges.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

from .errors import KoreBenchError


def _round(value: float, integer: bool) -> float | int:
    return max(1, round(value)) if integer else float(f"{value:.3g}")


@dataclass(frozen=True)
class _Range:
    """A range of values between ``low`` and ``high``; subclasses map a position in [0, 1] to a value."""

    low: float
    high: float
    integer: bool = False
    kind: ClassVar[str] = ""  # its key in a space file

    def at(self, u: float) -> float | int:
        raise NotImplementedError

    def grid(self, k: int) -> list[float | int]:
        """``k`` values from ``low`` to ``high`` (both included), evenly spaced on the range's scale."""
        return _dedupe([self.at(i / (k - 1)) for i in range(k)] if k > 1 else [self.at(0.5)])

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: [self.low, self.high], **({"integer": True} if self.integer else {})}


@dataclass(frozen=True)
class LogUniform(_Range):
    """A positive range searched on a log scale (learning rates, steps)."""

    kind: ClassVar[str] = "log_uniform"

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high) or not math.isfinite(self.high):
            raise KoreBenchError(f"log_uniform needs 0 < low <= high, got [{self.low}, {self.high}]")

    def at(self, u: float) -> float | int:
        lo, hi = math.log(self.low), math.log(self.high)
        return _round(math.exp(lo + u * (hi - lo)), self.integer)


@dataclass(frozen=True)
class Uniform(_Range):
    """A range searched on a linear scale (shares, ratios)."""

    kind: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise KoreBenchError(f"uniform needs low <= high, got [{self.low}, {self.high}]")

    def at(self, u: float) -> float | int:
        return _round(self.low + u * (self.high - self.low), self.integer)


@dataclass(frozen=True)
class Choice:
    """One of a list of values (ranks, on/off settings)."""

    options: tuple

    def __init__(self, options) -> None:
        options = tuple(options)
        if not options:
            raise KoreBenchError("choice needs at least one option")
        object.__setattr__(self, "options", options)

    def at(self, u: float) -> Any:
        return self.options[min(int(u * len(self.options)), len(self.options) - 1)]

    def grid(self, k: int) -> list[Any]:
        n = len(self.options)
        if k >= n:
            return list(self.options)
        return _dedupe([self.options[round(i * (n - 1) / (k - 1))] for i in range(k)] if k > 1 else [self.at(0.5)])

    def to_dict(self) -> dict[str, Any]:
        return {"choice": list(self.options)}


Param = Union[LogUniform, Uniform, Choice]
Space = dict[str, Param]


def _dedupe(values: list) -> list:
    return list(dict.fromkeys(values))


def default_space(config_cls) -> Space:
    """The fallback space: the learning rate within a factor of 5 of the config's default."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if "lr" not in fields or not isinstance(fields["lr"].default, (int, float)):
        return {}
    lr = float(fields["lr"].default)
    return {"lr": LogUniform(float(f"{lr / 5:.3g}"), float(f"{lr * 5:.3g}"))}


def check_space(space: Space, config_cls, method: str) -> Space:
    """``space`` after checking that every key is a setting of ``config_cls``."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    for key, param in space.items():
        if key not in names:
            from .errors import UnknownNameError

            raise UnknownNameError(f"setting of method {method!r} (search space)", key, names)
        if not isinstance(param, (LogUniform, Uniform, Choice)):
            raise KoreBenchError(f"search space of {method!r}: {key} must be LogUniform, Uniform or Choice, "
                                 f"not {type(param).__name__}")
    return space


def space_to_dict(space: Space) -> dict[str, dict[str, Any]]:
    return {k: p.to_dict() for k, p in space.items()}


def describe_space(space: Space) -> str:
    """``lr ∈ log[0.0003, 0.01], rank ∈ {4, 8, 16}`` (for listings)."""
    def one(p: Param) -> str:
        if isinstance(p, Choice):
            return "{" + ", ".join(map(str, p.options)) + "}"
        return f"{'log' if isinstance(p, LogUniform) else 'lin'}[{p.low:g}, {p.high:g}]"

    return ", ".join(f"{k} ∈ {one(p)}" for k, p in space.items()) or "—"


def _number(value: Any, where: str) -> float:
    try:
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    except (TypeError, ValueError):
        raise KoreBenchError(f"{where}: {value!r} is not a number") from None


def parse_param(raw: Any, where: str) -> Param:
    """``{log_uniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{choice: [...]}`` (``integer: true``
    rounds a range); a bare scalar is a fixed value (a one-option choice)."""
    if not isinstance(raw, dict):
        return Choice([raw])
    integer = bool(raw.get("integer", False))
    kinds = [k for k in ("log_uniform", "uniform", "choice") if k in raw]
    if len(kinds) != 1 or set(raw) - {kinds[0], "integer"}:
        raise KoreBenchError(f"{where}: expected one of log_uniform: [low, high], uniform: [low, high], "
                             f"choice: [...] (optionally integer: true), got {raw}")
    value = raw[kinds[0]]
    if kinds[0] == "choice":
        if not isinstance(value, list):
            raise KoreBenchError(f"{where}: choice needs a list")
        return Choice(value)
    if not (isinstance(value, list) and len(value) == 2):
        raise KoreBenchError(f"{where}: {kinds[0]} needs [low, high]")
    lo, hi = (_number(v, where) for v in value)
    return (LogUniform if kinds[0] == "log_uniform" else Uniform)(lo, hi, integer)


def load_space_file(path: Path | str) -> dict[str, dict[str, Param | None]]:
    """``{method: {setting: Param or None (= remove)}}`` from a YAML file."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise KoreBenchError(f"--space {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise KoreBenchError(f"--space {path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise KoreBenchError(f"--space {path}: expected a mapping of method → {{setting: range}}")
    out: dict[str, dict[str, Param | None]] = {}
    for method, params in raw.items():
        if not isinstance(params, dict):
            raise KoreBenchError(f"--space {path}: {method}: expected a mapping of setting → range")
        out[str(method)] = {str(k): None if v is None else parse_param(v, f"{path}: {method}.{k}")
                            for k, v in params.items()}
    return out


def merge_space(space: Space, overrides: dict[str, Param | None] | None) -> Space:
    merged = dict(space)
    for key, param in (overrides or {}).items():
        if param is None:
            merged.pop(key, None)
        else:
            merged[key] = param
    return merged


def at_range_edge(value: Any, tried: list[Any]) -> bool:
    """Whether ``value``, the best of a swept range, is its smallest or largest value (with at least
    three distinct values tried): the optimum may then lie outside the range."""
    distinct = sorted(set(tried))
    return len(distinct) >= 3 and value in (distinct[0], distinct[-1])


def latin_hypercube(n: int, d: int, seed: int) -> list[list[float]]:
    """``n`` points in [0, 1]^d, one per stratum and dimension, at the strata centres.

    Dimension 0 is in increasing order, the others seeded permutations.
    """
    if n < 1:
        raise KoreBenchError(f"the budget must be at least 1 trial, got {n}")
    rng = random.Random(f"kore-bench-lhs:{seed}")
    columns = []
    for j in range(d):
        order = list(range(n))
        if j > 0:
            rng.shuffle(order)
        columns.append([(i + 0.5) / n for i in order])
    return [[columns[j][i] for j in range(d)] for i in range(n)]


def design(space: Space, budget: int, seed: int) -> list[dict[str, Any]]:
    """``budget`` settings drawn from ``space`` (see the module docstring); ``[{}] * budget`` if empty."""
    keys = list(space)
    points = latin_hypercube(budget, len(keys), seed)
    return [{k: space[k].at(u) for k, u in zip(keys, point)} for point in points]
