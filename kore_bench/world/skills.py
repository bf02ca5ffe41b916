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
# 3x3 grid for single-shape scenes: (column, row) -> name.
GRID_NAMES = {(0, 0): "top left", (1, 0): "top", (2, 0): "top right",
              (0, 1): "left", (1, 1): "centre", (2, 1): "right",
              (0, 2): "bottom left", (1, 2): "bottom", (2, 2): "bottom right"}
POSITION_NAMES = tuple(GRID_NAMES.values())
_CELL_CENTRES = (6.0, 16.0, 26.0)
QUADRANTS = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SKILLS = ("perception", "counting", "ocr", "hallucination", "reasoning", "dialogue", "instruction")
SKILL_DESCRIPTIONS = {
    "perception": "colour, shape or position of one shape; multiple choice A-D",
    "counting": "number of shapes (1-4, one per quadrant)",
    "ocr": "a two-character code (digits, capitals but I/O/Q) in a bitmap font",
    "hallucination": "POPE-style 'Is there a <shape> in the image?', balanced yes/no",
    "reasoning": "text-only addition of a one- or two-digit and a one-digit number",
    "dialogue": "two turns; the final question refers to the shape chosen in the first turn",
    "instruction": "answer-format following (capital letters, number as word or digit); exact match",
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
    question: str  # without any <image> placeholder; MC items: the bare question
    answer: str  # MC items: the correct option's letter
    scene: Scene | None = None
    choices: dict[str, str] | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # earlier (question, answer) turns

    @property
    def image(self) -> str | None:
        """The image path relative to the export root, or None for text-only items."""
        return f"images/skills/{self.skill}/{self.id}.png" if self.scene is not None else None


# ------------------------------------------------------------------ scene helpers
def _single(rng: random.Random) -> tuple[tuple, ShapeSpec]:
    shape, colour = rng.choice(SHAPE_NAMES), rng.choice(COLOUR_NAMES)
    cell = rng.choice(list(GRID_NAMES))
    spec = ShapeSpec(shape, colour, _CELL_CENTRES[cell[0]] + rng.uniform(-1, 1),
                     _CELL_CENTRES[cell[1]] + rng.uniform(-1, 1), rng.uniform(4.2, 5.0), rng.uniform(-8, 8))
    return (shape, colour, GRID_NAMES[cell]), spec


def _several(rng: random.Random, n: int, distinct_shapes: bool = False) -> tuple[tuple, tuple[ShapeSpec, ...]]:
    """``n`` shapes in distinct quadrants. Quadrants are 16 px, i.e. 2x2 patches of a patch-8 ViT,
    and a shape (half-size <= 5.2 px, jitter <= 1.5 px) never leaves its quadrant."""
    cells = rng.sample(list(QUADRANTS), n)
    kinds = rng.sample(SHAPE_NAMES, n) if distinct_shapes else [rng.choice(SHAPE_NAMES) for _ in cells]
    specs = tuple(ShapeSpec(k, rng.choice(COLOUR_NAMES), 8 + 16 * c[0] + rng.uniform(-1.5, 1.5),
                            8 + 16 * c[1] + rng.uniform(-1.5, 1.5), rng.uniform(4.2, 5.2), rng.uniform(-8, 8))
                  for c, k in zip(cells, kinds))
    key = tuple(sorted((QUADRANTS[c], s.shape, s.colour) for c, s in zip(cells, specs)))
    return key, specs


def _options(rng: random.Random, correct: str, vocab: tuple[str, ...]) -> tuple[dict[str, str], str]:
    opts = [correct] + rng.sample([v for v in vocab if v != correct], 3)
    rng.shuffle(opts)
    choices = dict(zip("ABCD", opts))
    return choices, "ABCD"[opts.index(correct)]


# ------------------------------------------------------------------ skills
# A maker draws one item for (rng, index within split, split size): (key, build(id, split) -> SkillItem).
Maker = Callable[[random.Random, int, int], tuple[tuple, Callable[[str, str], SkillItem]]]


def _perception(rng: random.Random, i: int, n: int):
    key, spec = _single(rng)
    attr = ("colour", "shape", "position")[i % 3]
    question, correct, vocab = {
        "colour": ("What colour is the shape?", spec.colour, COLOUR_NAMES),
        "shape": ("Which shape is shown in the image?", spec.shape, SHAPE_NAMES),
        "position": ("Where is the shape in the image?", key[2], POSITION_NAMES),
    }[attr]
    choices, letter = _options(rng, correct, vocab)
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "perception", split, key, question, letter,
                                             ShapesScene((spec,), seed), choices)


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
    key, specs = _several(rng, rng.randint(1, 3), distinct_shapes=True)
    present = {s.shape for s in specs}
    yes = i % 2 == 0  # exactly balanced for an even split size
    asked = rng.choice(sorted(present) if yes else [s for s in SHAPE_NAMES if s not in present])
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "hallucination", split, key,
                                             short(f"Is there a {asked} in the image?"), "yes" if yes else "no",
                                             ShapesScene(specs, seed))


def _reasoning(rng: random.Random, i: int, n: int):
    a, b = rng.randint(0, 89), rng.randint(0, 9)
    key = (max(a, b), min(a, b))  # "3 + 5" and "5 + 3" are the same item
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    return key, lambda id_, split: SkillItem(id_, "reasoning", split, key,
                                             short(f"What is {x} + {y}?"), str(a + b))


_SIDE_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_FIRST_TURN = {  # (referred by, asked) -> question about the referent r (a dict of its attributes)
    ("position", "colour"): lambda r: f"What colour is the shape {_SIDE_PHRASES[r['position']]}?",
    ("position", "shape"): lambda r: f"Which shape is {_SIDE_PHRASES[r['position']]}?",
    ("colour", "shape"): lambda r: f"Which shape is {r['colour']}?",
    ("colour", "position"): lambda r: f"Where is the {r['colour']} shape?",
    ("shape", "colour"): lambda r: f"What colour is the {r['shape']}?",
    ("shape", "position"): lambda r: f"Where is the {r['shape']}?",
}
_FOLLOW_UP = {"colour": "And what colour is it?", "shape": "And what shape is it?", "position": "And where is it?"}


def _dialogue(rng: random.Random, i: int, n: int):
    sides = ("left", "right") if rng.random() < 0.5 else ("top", "bottom")
    kinds, colours = rng.sample(SHAPE_NAMES, 2), rng.sample(COLOUR_NAMES, 2)
    specs, attrs = [], []
    for j, side in enumerate(sides):
        along, across = (8.0 if j == 0 else 24.0) + rng.uniform(-1, 1), rng.uniform(10, 22)
        cx, cy = (along, across) if sides[0] == "left" else (across, along)
        specs.append(ShapeSpec(kinds[j], colours[j], cx, cy, rng.uniform(4.8, 5.8), rng.uniform(-8, 8)))
        attrs.append({"shape": kinds[j], "colour": colours[j], "position": side})
    ref = attrs[rng.randrange(2)]
    by, first, last = rng.sample(("position", "colour", "shape"), 3)
    history = [(short(_FIRST_TURN[(by, first)](ref)), ref[first])]
    key = tuple(sorted(tuple(a.values()) for a in attrs))
    seed = rng.getrandbits(63)
    return key, lambda id_, split: SkillItem(id_, "dialogue", split, key, short(_FOLLOW_UP[last]), ref[last],
                                             ShapesScene(tuple(specs), seed), history=history)


def _instruction(rng: random.Random, i: int, n: int):
    kind = ("caps_colour", "caps_shape", "count_word", "count_digit")[i % 4]
    if kind.startswith("caps"):
        scene_key, spec = _single(rng)
        specs: tuple[ShapeSpec, ...] = (spec,)
        if kind == "caps_colour":
            question, answer = "What colour is the shape? Answer in capital letters.", spec.colour.upper()
        else:
            question, answer = "Which shape is shown in the image? Answer in capital letters.", spec.shape.upper()
    else:
        scene_key, specs = _several(rng, rng.randint(1, 4))
        count = len(specs)
        if kind == "count_word":
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


# Training items per skill, relative to the preset's ``skill_train`` (OCR needs more to generalise).
TRAIN_WEIGHT = {"ocr": 2.0}


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
