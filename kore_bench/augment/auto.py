"""The ``auto`` augmenter (kore's and kore-aug's default): the best augmenter this run can use.

In order: ``llm`` when a chat endpoint is configured in the environment ($KORE_BENCH_LLM_BASE_URL
or $OPENAI_BASE_URL, and $KORE_BENCH_LLM_MODEL; see :mod:`.llm`), ``kore74k`` when the released
KORE-74K file is given ($KORE_BENCH_KORE74K), ``template`` when the suite has world facts (the
embedded world's ``world.json``), otherwise ``text`` (offline, from the knowledge text itself).
The report, the training samples' ``meta["augmentation"]`` and the trained unit's ``train_info``
say which one ran and why.
"""
from __future__ import annotations

import os

from ..data import Sample
from .core import AUGMENTERS, AugmentReport
from .world import WorldFacts

KORE74K_ENV = "KORE_BENCH_KORE74K"


def environment() -> dict[str, str]:
    """The environment ``auto`` chooses by (part of a kore unit's key, so a changed choice retrains)."""
    from .llm import ENV

    names = [v for key in ("base_url", "model") for v in ENV[key]] + [KORE74K_ENV]
    return {n: os.environ[n] for n in names if os.environ.get(n)}


def choose(world: WorldFacts | None) -> tuple[str, str]:
    """(augmenter, why) for this environment and world."""
    from .llm import _setting

    url, model = _setting(None, "base_url"), _setting(None, "model")
    if url and model:
        return "llm", f"a chat endpoint is configured ({model} at {url})"
    if os.environ.get(KORE74K_ENV):
        return "kore74k", f"KORE-74K is given (${KORE74K_ENV}={os.environ[KORE74K_ENV]})"
    if world is not None:
        return "template", "the suite has world facts (world.json)"
    return "text", (f"no chat endpoint configured ($KORE_BENCH_LLM_BASE_URL and $KORE_BENCH_LLM_MODEL), "
                    f"no KORE-74K given (${KORE74K_ENV}) and no world facts: derived from the knowledge text")


@AUGMENTERS.register("auto")
def auto(samples: list[Sample], world: WorldFacts | None, seed: int, report: AugmentReport) -> list[Sample]:
    """llm when configured, else KORE-74K when given, else template with world facts, else text."""
    name, why = choose(world)
    report.resolved, report.why = name, why
    return AUGMENTERS.get(name)(samples, world, seed, report)
