"""The augmenter registry, the report every augmenter fills, and the entry point :func:`augment`.

An augmenter is a function ``fn(samples, world, seed, report, *, option=default, ...)`` registered
under a CLI key; it returns the training samples that replace ``samples``. ``world`` is the
exported world's structured facts (None for real data). Every input item ends up either augmented,
passed through unchanged or replaced, and the report says which and why: nothing is dropped silently.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..data import Sample
from ..errors import KoreBenchError, UnknownNameError
from ..progress import progress_line
from ..registry import Registry
from .world import WorldFacts

log = logging.getLogger(__name__)

Augmenter = Callable[..., list[Sample]]
AUGMENTERS: Registry = Registry("augmenter")


@dataclass
class AugmentReport:
    """What an augmenter produced (per kind), passed through, rejected (with reasons) and noted."""

    augmenter: str
    inputs: int = 0
    produced: dict[str, int] = field(default_factory=dict)  # kind -> number of samples
    passed_through: list[tuple[str, str]] = field(default_factory=list)  # (item id, why unaugmented)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (item or "item round k", reason)
    notes: list[str] = field(default_factory=list)
    calls: int = 0  # model calls made (llm)
    cache_hits: int = 0
    resolved: str | None = None  # the augmenter that ran, when ``augmenter`` chose it (auto)
    why: str = ""  # why it was chosen

    @property
    def ran(self) -> str:
        """The augmenter that produced the samples: ``text``, or ``text (auto: why)``."""
        return f"{self.resolved} ({self.augmenter}: {self.why})" if self.resolved else self.augmenter

    @property
    def augmented(self) -> int:
        """Samples the augmenter produced (everything but the passed-through originals)."""
        return self.total - self.produced.get("original", 0)

    def count(self, kind: str, n: int = 1) -> None:
        self.produced[kind] = self.produced.get(kind, 0) + n

    def reject(self, item: str, reason: str) -> None:
        self.rejected.append((item, reason))

    def pass_through(self, item: str, reason: str) -> None:
        self.passed_through.append((item, reason))
        self.count("original")

    @property
    def total(self) -> int:
        return sum(self.produced.values())

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.produced.items())) or "nothing"
        text = f"augmenter {self.ran}: {self.inputs} inputs -> {self.total} samples ({kinds})"
        if self.calls or self.cache_hits:
            text += f"; {self.calls} model calls, {self.cache_hits} cache hits"
        if self.passed_through:
            text += f"; {len(self.passed_through)} passed through unaugmented"
        if self.rejected:
            text += f"; {len(self.rejected)} rejected"
        return text + "".join(f"; {note}" for note in self.notes)

    def details(self, limit: int = 20) -> str:
        """The summary plus the first ``limit`` pass-throughs and rejections with their reasons."""
        lines = [str(self)]
        for title, rows in (("passed through", self.passed_through), ("rejected", self.rejected)):
            lines += [f"  {title}: {item}: {why}" for item, why in rows[:limit]]
            if len(rows) > limit:
                lines.append(f"  ... {len(rows) - limit} more {title}")
        return "\n".join(lines)


def _options(fn: Augmenter) -> dict[str, Any]:
    """The keyword-only options of an augmenter with their defaults."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def augmenter_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts and their defaults (for the CLI and error messages)."""
    return _options(AUGMENTERS.get(name))


def augment_with_report(name: str, samples: list[Sample], world_dir: Path | str | None, seed: int,
                        **options: Any) -> tuple[list[Sample], AugmentReport]:
    """Runs augmenter ``name`` on ``samples``: (training samples, report).

    Unknown names and options raise UnknownNameError with the nearest valid one. When a world is
    given, the output is checked against its held-out (dev/test) views and phrasings and a leak
    raises KoreBenchError, whatever the augmenter.
    """
    fn = AUGMENTERS.get(name)
    valid = _options(fn)
    for key in options:
        if key not in valid:
            raise UnknownNameError(f"option of augmenter {name!r}", key, valid)
    world = WorldFacts.load(Path(world_dir)) if world_dir is not None else None
    report = AugmentReport(augmenter=name, inputs=len(samples))
    started = time.perf_counter()
    out = fn(list(samples), world, seed, report, **options)
    progress_line(f"augmentation ({report.resolved + ', auto' if report.resolved else name}): {len(samples)} items "
                  f"→ {len(out)} training samples in {time.perf_counter() - started:.1f} s")
    if world is not None:
        leaks = world.leaks(out)
        if leaks:
            raise KoreBenchError(f"augmenter {name!r} produced {len(leaks)} samples with held-out "
                                 f"(dev/test) views or phrasings, e.g. " + "; ".join(leaks[:3]))
    record = {"requested": name, "augmenter": report.resolved or name, "why": report.why, "summary": str(report)}
    given = {id(s) for s in samples}  # passed-through inputs stay as given (same objects, no record)
    out = [s if id(s) in given else replace(s, meta={**s.meta, "augmentation": record}) for s in out]
    return out, report


def augment(name: str, samples: list[Sample], world_dir: Path | str | None, seed: int,
            **options: Any) -> list[Sample]:
    """The augmented training set; the report is logged (WARNING when anything was rejected).

    Every produced sample carries ``meta["augmentation"]`` (which augmenter ran, why, its report), which
    the trainer records in ``train_info``. When the augmenter augmented none of the samples, this
    raises KoreBenchError instead of returning the data unaugmented (kore would silently be
    kore-constraint).
    """
    out, report = augment_with_report(name, samples, world_dir, seed, **options)
    if samples and report.augmented == 0:
        why = "; ".join(f"{item}: {reason}" for item, reason in (report.passed_through + report.rejected)[:3])
        raise KoreBenchError(
            f"augmenter {report.ran} augmented none of the {len(samples)} injection items"
            + (f" ({why})" if why else "") + "; refusing to train on them unaugmented. Use an augmenter that can "
            "(--set kore.augmenter=llm with a chat endpoint, or kore74k with KORE-74K; see `kore-bench ls "
            "augmenters`), or kore-constraint for the constraint on the data as given")
    level = logging.WARNING if report.rejected or report.passed_through else logging.INFO
    log.log(level, "%s", report.details())
    return out
