"""What a pre-trained vision encoder would know about the world's images, as class labels.

Real LMMs start from a vision encoder pre-trained on web images (LLaVA: CLIP). kore-tiny's
vision tower is pre-trained the same way in spirit, before the language model sees anything: on
the structured content of the *training* images (shapes, colours and counts per 3x3 cell,
rendered characters, an entity's appearance traits, and which old entity it is), so that
held-out scenes and views become linearly readable. Labels come from the scene descriptions,
never from questions or answers; new entities and dev/test images are only used to measure.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .facts import ENTITY_TYPES
from .generate import VIEW_SPLITS, World
from .glyphs import ALPHABET
from .render import ENTITY_COLOURS, MARKS, PATTERNS, SHAPE_NAMES, SILHOUETTES, SIZE
from .seeding import py_rng
from .skills import COLOUR_NAMES, ShapesScene, TextScene, fresh_scenes

CELLS = 9  # 3x3 grid over the image
IGNORE = -100


@dataclass
class LabelledImages:
    """Images with one class index per head (``IGNORE`` where a head does not apply)."""

    heads: dict[str, int]  # head name -> number of classes
    images: list[Image.Image]
    labels: list[list[int]]  # per image, one entry per head in ``heads`` order


def heads(world: World) -> dict[str, int]:
    """The label heads of ``world``: names and class counts."""
    return {
        "count": 4,
        **{f"shape_{c}": len(SHAPE_NAMES) + 1 for c in range(CELLS)},  # class 0: empty cell
        **{f"colour_{c}": len(COLOUR_NAMES) + 1 for c in range(CELLS)},
        "char_0": len(ALPHABET), "char_1": len(ALPHABET),
        "silhouette": sum(len(SILHOUETTES[t]) for t in ENTITY_TYPES),
        "primary": len(ENTITY_COLOURS), "secondary": len(ENTITY_COLOURS),
        "pattern": len(PATTERNS), "mark": len(MARKS),
        "old_entity": len(world.old),
    }


def _cell(x: float, y: float) -> int:
    return min(2, int(3 * x / SIZE)) + 3 * min(2, int(3 * y / SIZE))


def scene_labels(scene: ShapesScene | TextScene) -> dict[str, int]:
    """Labels of a skill scene: shapes and colours per cell and the count, or the characters."""
    if isinstance(scene, TextScene):
        return {f"char_{i}": ALPHABET.index(ch) for i, ch in enumerate(scene.text[:2])}
    out = {f"{kind}_{c}": 0 for c in range(CELLS) for kind in ("shape", "colour")}
    for s in scene.shapes:
        c = _cell(s.cx, s.cy)
        out[f"shape_{c}"] = SHAPE_NAMES.index(s.shape) + 1
        out[f"colour_{c}"] = COLOUR_NAMES.index(s.colour) + 1
    out["count"] = len(scene.shapes) - 1
    return out


def labelled_images(world: World, split: str, fresh_per_skill: int = 0) -> LabelledImages:
    """Old-entity views and skill scenes of ``split`` ("train" for training, "test" to measure).

    ``fresh_per_skill`` (train only) adds that many fresh renderings per shape skill, drawn from
    keys no dev or test item uses (:func:`~kore_bench.world.skills.fresh_scenes`).
    """
    names = heads(world)
    offsets = {t: sum(len(SILHOUETTES[u]) for u in ENTITY_TYPES[:i]) for i, t in enumerate(ENTITY_TYPES)}
    images: list[Image.Image] = []
    rows: list[dict[str, int]] = []
    for i, e in enumerate(world.old):
        a = e.appearance
        traits = {"silhouette": offsets[e.type] + a.silhouette, "primary": a.primary,
                  "secondary": a.secondary, "pattern": a.pattern, "mark": a.mark, "old_entity": i}
        for k in VIEW_SPLITS[split]:
            images.append(e.render_view(k))
            rows.append(traits)
    for items in world.skills.values():
        for it in items:
            if it.split == split and it.scene is not None:
                images.append(it.scene.render())
                rows.append(scene_labels(it.scene))
    if fresh_per_skill and split == "train":
        for skill, items in world.skills.items():
            if any(isinstance(it.scene, ShapesScene) for it in items):
                for scene in fresh_scenes(skill, items, py_rng(world.seed, "fresh-scenes", skill), fresh_per_skill):
                    images.append(scene.render())
                    rows.append(scene_labels(scene))
    return LabelledImages(names, images, [[r.get(h, IGNORE) for h in names] for r in rows])
