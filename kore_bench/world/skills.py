"""General skills that stand for the KORE paper's retention categories.

Every skill draws random *scenes* identified by a discrete key (the scene's content: shapes,
colours, cells, text, operands). A key belongs to exactly one split, so no test or dev scene is
ever seen in training; training items may reuse a training key with a fresh rendering. Question
wordings are fixed per skill (like POPE's), so there are no phrasings to split.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from ..data import SHORT_ANSWER_SUFFIX
from ..errors import KoreBenchError
from .glyphs import ALPHABET
from .render import SHAPE_NAMES, SKILL_COLOURS, ShapeSpec, render_shapes, render_text

COLOUR_NAMES = tuple(SKILL_COLOURS)
QUADRANTS = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SKILLS = ("perception", "counting", "ocr", "hallucination", "reasoning", "dialogue", "instruction")
# What each skill asks, and the KORE paper's retention category it stands for (README, "The embedded
# world"). Every answer is generated as words or digits: a 4-layer model trained from scratch learns
# to name what its vision tower reads (colour, count, position, characters), not to map option
# letters or fine shape identity (README: four rounds of probes left those at chance).
SKILL_DESCRIPTIONS = {
    "perception": "colour or quadrant of one shape, answered as a word (MME/MMBench perception)",
    "counting": "number of shapes (1-4, one per quadrant)",
    "ocr": "a two-character code (digits, capitals but I/O/Q) in a bitmap font",
    "hallucination": "POPE-style 'Is there a <colour> shape in the image?', balanced yes/no",
    "reasoning": "text-only comparison of two two-digit numbers (tens digits differ), answered 'first' or 'second'",
    "dialogue": "two turns: the colour of the shape on one side, then 'And the other shape?' (the other's colour)",
    "instruction": "answer-format following (colour or count in capital letters, count as word or digit); exact match",
}


def short(q: str) -> str:
    """A question with the short-answer suffix (every open short-answer skill question has it)."""
    return q + "\n" + SHORT_ANSWER_SUFFIX


@dataclass(frozen=True)
class ShapesScene:
    shapes: tuple[ShapeSpec, ...]
    seed: int

    def render(self) -> Image.Image:
        return render_shapes(self.shapes, self.seed)


@dataclass(frozen=True)
class TextScene:
    text: str
    colour: str
    x: int
    y: int
    seed: int

    def render(self) -> Image.Image:
        return render_text(self.text, self.colour, self.x, self.y, self.seed)


Scene = ShapesScene | TextScene


@dataclass
class SkillItem:
    """One question about one scene (or about no image: reasoning)."""

    id: str
    skill: str
    split: str
    key: tuple
    question: str  # without any <image> placeholder
    answer: str
    scene: Scene | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # earlier (question, answer) turns

    @property
    def image(self) -> str | None:
        """The image path relative to the export root, or None for text-only items."""
        return f"images/skills/{self.skill}/{self.id}.png" if self.scene is not None else None


# ------------------------------------------------------------------ scene helpers
def _single_quadrant(rng: random.Random) -> tuple[tuple, ShapeSpec]:
    """One shape in one quadrant (2x2 patches of a patch-8 ViT): key (shape, colour, quadrant)."""
    cell = rng.choice(list(QUADRANTS))
    spec = ShapeSpec(rng.choice(SHAPE_NAMES), rng.choice(COLOUR_NAMES), 8 + 16 * cell[0] + rng.uniform(-1.5, 1.5),
                     8 + 16 * cell[1] + rng.uniform(-1.5, 1.5), rng.uniform(4.2, 5.2), rng.uniform(-8, 8))
    return (spec.shape, spec.colour, QUADRANTS[cell]), spec


def _several(rng: random.Random, n: int, distinct_colours: bool = False) -> tuple[tuple, tuple[ShapeSpec, ...]]:
    """``n`` shapes in distinct quadrants. Quadrants are 16 px, i.e. 2x2 patches of a patch-8 ViT,
    and a shape (half-size <= 5.2 px, jitter <= 1.5 px) never leaves its quadrant."""
    cells = rng.sample(list(QUADRANTS), n)
    colours = rng.sample(COLOUR_NAMES, n) if distinct_colours else [rng.choice(COLOUR_NAMES) for _ in cells]
    specs = tuple(ShapeSpec(rng.choice(SHAPE_NAMES), col, 8 + 16 * c[0] + rng.uniform(-1.5, 1.5),
                            8 + 16 * c[1] + rng.uniform(-1.5, 1.5), rng.uniform(4.2, 5.2), rng.uniform(-8, 8))
                  for c, col in zip(cells, colours))
    key = tuple(sorted((QUADRANTS[c], s.shape, s.colour) for c, s in zip(cells, specs)))
    return key, specs


# ------------------------------------------------------------------ skills
# A maker draws one item for (rng, index within split, split size): (key, build(id, split) -> SkillItem).
Maker = Callable[[random.Random, int, int], tuple[tuple, Callable[[str, str], SkillItem]]]


def _perception(rng: random.Random, i: int, n: int):
    scene_key, spec = _single_quadrant(rng)
    attr = ("colour", "position")[i % 2]
    question, answer = {"colour": ("What colour is the shape?", spec.colour),
                        "position": ("Where is the shape in the image?", scene_key[2])}[attr]
    key = (attr,) + scene_key
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "perception", split, key, short(question), answer,
                                             ShapesScene((spec,), seed))


def _counting(rng: random.Random, i: int, n: int):
    key, specs = _several(rng, rng.randint(1, 4))
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "counting", split, key,
                                             short("How many shapes are in the image?"), str(len(specs)),
                                             ShapesScene(specs, seed))


def _ocr(rng: random.Random, i: int, n: int):
    # Black or white text at a fixed place, each character in its own 16 px half (2x2 patches):
    # a tiny ViT probe read held-out codes at 86 % after 1000 training items, but at 0 % with
    # coloured text at random offsets. Scenes still differ in code, background and noise.
    code = rng.choice(ALPHABET) + rng.choice(ALPHABET)
    scene = TextScene(code, rng.choice(("black", "white")), 3, 9, rng.getrandbits(63))
    return (code,), lambda id_, split: SkillItem(id_, "ocr", split, (code,),
                                                 short("What text is written in the image?"), code, scene)


def _hallucination(rng: random.Random, i: int, n: int):
    key, specs = _several(rng, rng.randint(1, 3), distinct_colours=True)
    present = {s.colour for s in specs}
    yes = i % 2 == 0  # exactly balanced for an even split size
    asked = rng.choice(sorted(present) if yes else [c for c in COLOUR_NAMES if c not in present])
    key = key + (asked,)
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "hallucination", split, key,
                                             short(f"Is there a {asked} shape in the image?"), "yes" if yes else "no",
                                             ShapesScene(specs, seed))


def _reasoning(rng: random.Random, i: int, n: int):
    # Answered "first" or "second" (balanced by index), never by copying a number: the v5 form
    # "Which number is larger, 47 or 82?" answered with the number stayed at 2.5 % on the small
    # world (the model wrote a two-digit number from neither question). The key is the unordered
    # pair, so a held-out comparison is never seen in training in either order.
    tens = rng.sample(range(1, 10), 2)
    lo, hi = sorted(10 * t + rng.randint(0, 9) for t in tens)
    first_larger = i % 2 == 0
    x, y = (hi, lo) if first_larger else (lo, hi)
    key = (lo, hi)
    return key, lambda id_, split: SkillItem(
        id_, "reasoning", split, key, short(f"Which number is larger, the first or the second: {x} or {y}?"),
        "first" if first_larger else "second")


_SIDE_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
FOLLOW_UP = "And the other shape?"


def _dialogue(rng: random.Random, i: int, n: int):
    # Both turns ask a colour, so the follow-up needs the image and the first turn (which shape is
    # "the other"); v5's position turns ("Where is the red shape?" -> "And the other shape?") were
    # answerable from the text alone (the opposite side) and sat at chance.
    sides = ("left", "right") if rng.random() < 0.5 else ("top", "bottom")
    kinds, colours = rng.sample(SHAPE_NAMES, 2), rng.sample(COLOUR_NAMES, 2)
    specs, attrs = [], []
    for j, side in enumerate(sides):
        along, across = (8.0 if j == 0 else 24.0) + rng.uniform(-1, 1), rng.uniform(10, 22)
        cx, cy = (along, across) if sides[0] == "left" else (across, along)
        specs.append(ShapeSpec(kinds[j], colours[j], cx, cy, rng.uniform(4.8, 5.8), rng.uniform(-8, 8)))
        attrs.append({"shape": kinds[j], "colour": colours[j], "position": side})
    r = rng.randrange(2)
    ref, other = attrs[r], attrs[1 - r]
    history = [(short(f"What colour is the shape {_SIDE_PHRASES[ref['position']]}?"), ref["colour"])]
    key = (r,) + tuple(tuple(a.values()) for a in attrs)
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "dialogue", split, key, short(FOLLOW_UP), other["colour"],
                                             ShapesScene(tuple(specs), seed), history=history)


def _instruction(rng: random.Random, i: int, n: int):
    kind = ("caps_colour", "caps_count", "count_word", "count_digit")[i % 4]
    if kind == "caps_colour":
        scene_key, spec = _single_quadrant(rng)
        specs: tuple[ShapeSpec, ...] = (spec,)
        question, answer = "What colour is the shape? Answer in capital letters.", spec.colour.upper()
    else:
        scene_key, specs = _several(rng, rng.randint(1, 4))
        count = len(specs)
        if kind == "caps_count":
            question, answer = "How many shapes are in the image? Answer in capital letters.", NUMBER_WORDS[count].upper()
        elif kind == "count_word":
            question, answer = "How many shapes are in the image? Answer with a word, not a digit.", NUMBER_WORDS[count]
        else:
            question, answer = "How many shapes are in the image? Reply with the number only.", str(count)
    key = (kind,) + scene_key
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "instruction", split, key, question, answer,
                                             ShapesScene(specs, seed))


MAKERS: dict[str, Maker] = {
    "perception": _perception, "counting": _counting, "ocr": _ocr, "hallucination": _hallucination,
    "reasoning": _reasoning, "dialogue": _dialogue, "instruction": _instruction,
}


# Training items per skill, relative to the preset's ``skill_train`` (OCR needs more to generalise; the
# skills that sat at chance in v5 get twice the items).
TRAIN_WEIGHT = {"ocr": 2.0, "hallucination": 2.0, "reasoning": 2.0, "dialogue": 2.0}


def fresh_scenes(skill: str, items: list[SkillItem], rng: random.Random, n: int) -> list[Scene]:
    """``n`` new renderings of ``skill``'s scenes for the vision stage, never of a dev or test key.

    Drawn from the skill's maker with fresh jitter and pixels (training keys and keys no item uses),
    so the vision tower sees far more scenes than the language model's training items.
    """
    held_out = {it.key for it in items if it.split != "train"}
    make, out = MAKERS[skill], []
    while len(out) < n:
        key, build = make(rng, len(out), n)
        if key not in held_out:
            scene = build("fresh", "train").scene
            if scene is not None:
                out.append(scene)
    return out


def generate_skill(skill: str, rng: random.Random, n_test: int, n_dev: int, n_train: int) -> list[SkillItem]:
    """Items of one skill: test and dev keys unique and disjoint; train keys never used in test/dev."""
    make = MAKERS[skill]
    owner: dict[tuple, str] = {}
    items: list[SkillItem] = []
    for split, n in (("test", n_test), ("dev", n_dev), ("train", n_train)):
        i = tries = 0
        while i < n:
            tries += 1
            if tries > 200 * n + 1000:
                raise KoreBenchError(f"skill {skill!r}: cannot draw {n} distinct {split} scenes; "
                                     "the preset asks for more items than the scene space holds")
            key, build = make(rng, i, n)
            if key in owner and (owner[key] != split or split != "train"):
                continue
            owner[key] = split
            items.append(build(f"{skill}-{split}-{i:04d}", split))
            i += 1
    return items
