"""Augmenters: turn the knowledge to inject into richer training data (KORE-Augmentation).

``augment(name, samples, world_dir, seed, **options)`` runs one; built-ins: ``template`` (the
world's facts, offline), ``llm`` (a chat model, cached) and ``kore74k`` (the released data).
A plugin registers its own with ``@AUGMENTERS.register("name")``.
"""
from __future__ import annotations

from .core import AUGMENTERS, AugmentReport, augment, augment_with_report, augmenter_options
from .world import Entity, WorldFacts
from . import kore74k, llm, template  # noqa: E402,F401  (register the built-ins)

__all__ = ["AUGMENTERS", "AugmentReport", "Entity", "WorldFacts", "augment", "augment_with_report",
           "augmenter_options"]
