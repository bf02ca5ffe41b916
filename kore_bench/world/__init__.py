"""The synthetic world: a seeded testbed of old and new entities, their facts and appearances,
and general skills, exported in EVOKE / VLMEvalKit / LLaVA formats.

    from kore_bench.world import generate, export_world
    world = generate("micro", seed=0)
    world.export(Path("out/micro"))
"""
from .export import export_world
from .generate import N_VIEWS, VIEW_SPLITS, Entity, Fact, World, generate
from .presets import GENERATOR_VERSION, PRESETS, WorldPreset
from .skills import SKILLS

__all__ = ["GENERATOR_VERSION", "PRESETS", "WorldPreset", "World", "Entity", "Fact", "generate", "export_world",
           "SKILLS", "N_VIEWS", "VIEW_SPLITS"]
