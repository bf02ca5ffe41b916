"""What a change of view costs a trained model on the default world's new entities.

Asks world-new's test questions on images re-rendered from each entity's views: the test view as
it is, the injection view (view 0), and the two mixtures, the test view's pose drawn on the
injection view's background and noise and the other way round. Prints CEM ×100 per variant.

    .venv/bin/python results/view_sensitivity.py results/default/lora/seed0/artifact

The artifact must come from a run on the default world's kore-tiny base (built if absent).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from kore_bench import cache
from kore_bench.base import build_base
from kore_bench.data import ImageRef, load_evoke
from kore_bench.evaluate.generation import generate
from kore_bench.method import load_artifact
from kore_bench.evaluate.metrics import cem
from kore_bench.world import generate as generate_world
from kore_bench.world.generate import VIEW_SPLITS, Entity
from kore_bench.world.render import View, png_bytes, render_entity

INJECTION_VIEW = 0


def variants(e: Entity, k: int) -> dict[str, View]:
    test, injection = e.views[k], e.views[INJECTION_VIEW]
    return {
        "test view": test,
        "test pose, injection background and noise": dataclasses.replace(test, seed=injection.seed),
        "injection pose, test background and noise": dataclasses.replace(injection, seed=test.seed),
        "injection view": injection,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path, help="a trained method's artifact directory")
    args = parser.parse_args()
    world = generate_world("default")
    model, processor = build_base("default").load()
    model = load_artifact(model, args.artifact)
    _, questions, _ = load_evoke(cache.world_dir("default"))
    questions = [q for q in questions if q.meta.get("split") != "dev"]
    rendered: dict[str, list] = {}
    for q in questions:
        entity = world.entity(q.meta["entity"])
        view = next(k for k in VIEW_SPLITS["test"] if q.image.path.endswith(entity.view_path(k)))
        for name, v in variants(entity, view).items():
            image = ImageRef(data=png_bytes(render_entity(entity.type, entity.appearance, v)))
            rendered.setdefault(name, []).append(dataclasses.replace(q, image=image))
    for name, samples in rendered.items():
        answers = generate(model, processor, samples)
        score = 100 * sum(cem(a, s.answer) for a, s in zip(answers, samples)) / len(samples)
        print(f"{name:45s} CEM {score:5.1f}  ({len(samples)} questions)")


if __name__ == "__main__":
    main()
