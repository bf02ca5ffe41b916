"""Augmenters: turn the knowledge to inject into richer training data (KORE-Augmentation).

``augment(name, samples, world_dir, seed, **options)`` runs one; built-ins: ``auto`` (the default of
kore and kore-aug: llm when configured, else kore74k when given, else template with world facts,
else text), ``template`` (the world's facts, offline), ``text`` (the knowledge text itself, offline:
real data), ``llm`` (a chat model, cached) and ``kore74k`` (the released data).
A plugin registers its own with ``@AUGMENTERS.register("name")``.
"""
from __future__ import annotations

from .core import AUGMENTERS, AugmentReport, augment, augment_with_report, augmenter_options
from .world import Entity, WorldFacts
from . import auto, kore74k, llm, template, text  # noqa: E402,F401  (register the built-ins)

__all__ = ["AUGMENTERS", "AugmentReport", "Entity", "WorldFacts", "augment", "augment_with_report",
           "augmenter_options"]
