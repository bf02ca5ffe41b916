"""One home for progress reporting and for silencing libraries' own bars and known warnings.

On a terminal every long phase (base stages, calibration, augmentation, training, evaluation)
shows a rich progress bar that disappears when the phase ends; in a log (stderr not a terminal)
it prints one line at each 10 % of the work instead (at most one per ``LINE_INTERVAL_S``; a phase
shorter than that prints none), so a CI log shows that a 5-minute stage is moving without
drowning in carriage returns. ``set_enabled(False)`` (``--no-progress``) turns
both off.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console

T = TypeVar("T")
_state = {"enabled": True, "quiet": False}
_console: Console | None = None
LINE_INTERVAL_S = 5.0  # in logs: the shortest time between two progress lines of one phase

# Deprecation warnings transformers emits for code paths kore-bench does not choose; filtered by
# message only, so any other warning still shows.
KNOWN_WARNINGS = (
    # transformers v5 on peft / accelerate asking for the old name (every training run)
    r"`is_gradient_checkpointing` is deprecated",
)


def set_enabled(enabled: bool) -> bool:
    """Show (True) or hide (False) every kore-bench progress bar and progress line; returns the
    previous setting."""
    previous, _state["enabled"] = _state["enabled"], enabled
    return previous


@contextmanager
def progress_enabled(enabled: bool) -> Iterator[None]:
    """``set_enabled(enabled)`` for the ``with`` block, the previous setting restored after it."""
    previous = set_enabled(enabled)
    try:
        yield
    finally:
        set_enabled(previous)


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


def quiet_libraries() -> None:
    """Silence transformers' / huggingface_hub's own progress bars and the known deprecation warnings.

    Idempotent; called wherever kore-bench loads, saves or evaluates a model.
    """
    if _state["quiet"]:
        return
    _state["quiet"] = True
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards", "Loading checkpoint shards"
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    try:
        import datasets  # lm-eval tasks load their documents through it ("Map", "Generating split")

        datasets.disable_progress_bars()
    except ImportError:
        pass


def progress_line(text: str) -> None:
    """One progress line (on a terminal and in logs) unless progress is switched off."""
    if _state["enabled"]:
        console().print(f"  {text}", highlight=False)


class Progress:
    """A progress bar on a terminal, one line per 10 % of ``total`` otherwise.

    ``fields`` are shown next to the count (e.g. ``loss=3.2``); use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "", **fields: float):
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.done, self.fields = 0, dict(fields)
        self.enabled = enabled and _state["enabled"] and self.total > 0
        self.started = time.perf_counter()
        self._next_line = 1
        self._last_line = self.started
        self.bar = None
        if self.enabled and console().is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(f"{k} {{task.fields[{k}]:.3f}}") for k in self.fields]
            columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
            self.bar = RichProgress(*columns, console=console(), transient=True)
            self.task = self.bar.add_task(label, total=self.total, **{k: float(v) for k, v in self.fields.items()})
            self.bar.start()

    def advance(self, n: int = 1, **fields: float) -> None:
        self.done += n
        self.fields.update(fields)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=n, **{k: float(v) for k, v in fields.items()})
            return
        decile = min(10, self.done * 10 // self.total)
        if decile >= self._next_line:
            self._next_line = decile + 1
            now = time.perf_counter()
            # a short phase stays silent; a long one reports each 10 %, at most every LINE_INTERVAL_S
            if now - self._last_line >= LINE_INTERVAL_S or (decile == 10 and now - self.started >= LINE_INTERVAL_S):
                self._last_line = now
                self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.started
        rest = elapsed * (self.total - self.done) / self.done if self.done else 0.0
        extra = "".join(f"  {k} {v:.3f}" for k, v in self.fields.items())
        unit = f" {self.unit}" if self.unit else ""
        console().print(f"  {self.label}: {self.done}/{self.total}{unit}{extra}  {elapsed:.0f} s"
                        + (f", ~{rest:.0f} s left" if self.done < self.total else ""), highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True,
          unit: str = "") -> Iterator[T]:
    """Iterate ``items`` under a :class:`Progress` (``total`` defaults to ``len(items)``)."""
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    with Progress(label, n, enabled, unit) as bar:
        for item in items:
            yield item
            bar.advance()
