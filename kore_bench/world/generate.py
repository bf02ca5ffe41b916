"""Entities, their facts and appearances, and the :class:`World` that holds them.

Old entities only refer to old entities; new entities refer to old entities too (a new person is
born in an old city and works for an old organisation), as emerging real-world knowledge does.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import KoreBenchError, UnknownNameError
from . import facts as F
from .names import NameGenerator
from .presets import PRESETS, WorldPreset
from .render import ENTITY_COLOURS, MARKS, PATTERNS, SILHOUETTES, Appearance, View, render_entity, sample_view
from .seeding import deal, derive_seed, np_rng, py_rng
from .skills import SKILLS, TRAIN_WEIGHT, SkillItem, generate_skill

N_VIEWS = 15
VIEW_SPLITS = {"train": tuple(range(12)), "dev": (12,), "test": (13, 14)}
MIN_TRAIT_DISTANCE = 3  # two entities differ in >= 3 of (silhouette, primary, secondary, pattern, mark)


@dataclass(frozen=True)
class Fact:
    relation: str
    value: str
    value_entity: str | None = None  # id of the entity the value names, for relations to entities


@dataclass
class Entity:
    id: str
    name: str
    type: str
    split: str  # "old" | "new"
    facts: list[Fact]
    appearance: Appearance
    views: list[View] = field(repr=False, default_factory=list)

    @property
    def hypernym(self) -> str:
        return F.HYPERNYMS[self.type]

    @property
    def values(self) -> dict[str, str]:
        """Every question relation's answer, recognition ("name") included: the one home from which
        the knowledge texts and gold answers are derived."""
        return {"name": self.name} | {f.relation: f.value for f in self.facts}

    @property
    def description(self) -> str:
        """The knowledge text (EVOKE's injection "gpt" value)."""
        return F.describe(self.type, self.values)

    def biography(self, rng: random.Random) -> str:
        """Another knowledge text stating every fact (sentence forms and order drawn from ``rng``)."""
        return F.biography(self.type, self.values, rng)

    def answer(self, relation: str) -> str:
        """The gold answer to a question about ``relation`` ("name" = recognition)."""
        values = self.values
        if relation not in values:
            raise KoreBenchError(f"entity {self.id} ({self.type}) has no relation {relation!r}")
        return values[relation]

    def view_path(self, k: int) -> str:
        return f"images/entities/{self.id}_v{k}.png"

    def view_paths(self, split: str) -> list[str]:
        return [self.view_path(k) for k in VIEW_SPLITS[split]]

    def render_view(self, k: int):
        """View ``k`` as a 32x32 RGB PIL image."""
        return render_entity(self.type, self.appearance, self.views[k])


@dataclass
class World:
    """A generated world: entities, countries and skill items. Rendering happens on export."""

    preset: WorldPreset
    seed: int
    entities: list[Entity]
    countries: list[str]
    skills: dict[str, list[SkillItem]]

    @property
    def old(self) -> list[Entity]:
        return [e for e in self.entities if e.split == "old"]

    @property
    def new(self) -> list[Entity]:
        return [e for e in self.entities if e.split == "new"]

    def entity(self, eid: str) -> Entity:
        return next(e for e in self.entities if e.id == eid)

    def export(self, out_dir: Path | str) -> None:
        """Write the world's files to ``out_dir`` (must not exist or be empty); see export.py."""
        from .export import export

        export(self, Path(out_dir))


# ------------------------------------------------------------------ generation
def _appearances(types: list[str], seed: int) -> list[Appearance]:
    """Greedy random appearances, pairwise far apart in trait space.

    Same type: >= MIN_TRAIT_DISTANCE of the 5 traits differ. Different types (their silhouette
    families differ anyway): >= MIN_TRAIT_DISTANCE - 1 of the 4 colour/pattern/mark traits differ.
    """
    rng = np_rng(seed, "appearance")
    pools, valid = {}, {}
    for t in F.ENTITY_TYPES:
        grid = np.array([c for c in itertools.product(
            range(len(SILHOUETTES[t])), range(len(ENTITY_COLOURS)), range(len(ENTITY_COLOURS)),
            range(len(PATTERNS)), range(len(MARKS))) if c[1] != c[2]])
        pools[t] = grid[rng.permutation(len(grid))]
        valid[t] = np.ones(len(grid), dtype=bool)
    out = []
    for t in types:
        free = np.flatnonzero(valid[t])
        if not len(free):
            raise KoreBenchError(f"cannot give {len(types)} entities distinct appearances (trait distance "
                                 f"{MIN_TRAIT_DISTANCE}); use fewer entities")
        pick = pools[t][free[0]]
        out.append(Appearance(*(int(x) for x in pick)))
        for u in F.ENTITY_TYPES:  # rule out everything too close to the new pick
            if u == t:
                valid[u] &= (pools[u] != pick).sum(axis=1) >= MIN_TRAIT_DISTANCE
            else:
                valid[u] &= (pools[u][:, 1:] != pick[1:]).sum(axis=1) >= MIN_TRAIT_DISTANCE - 1
    return out


def _entities(preset: WorldPreset, seed: int) -> tuple[list[Entity], list[str]]:
    reserved = set(F.OCCUPATIONS) | set(F.INDUSTRIES) | {w for r in F.RELATIONS.values() for w in r.name.split("_")}
    names = NameGenerator(py_rng(seed, "names"), reserved)
    countries = [names.country() for _ in range(F.N_COUNTRIES)]
    shells: list[tuple[str, str]] = [(t, split) for split, counts in (("old", preset.old), ("new", preset.new))
                                     for t, n in zip(F.ENTITY_TYPES, counts) for _ in range(n)]
    apps = _appearances([t for t, _ in shells], seed)
    make_name = {"person": names.person, "organisation": names.organisation, "place": names.place}
    ents = [Entity(id=f"e{i + 1:03d}", name=make_name[t](), type=t, split=s, facts=[], appearance=a)
            for i, ((t, s), a) in enumerate(zip(shells, apps))]

    old = {t: [e for e in ents if e.split == "old" and e.type == t] for t in F.ENTITY_TYPES}
    if any(not v for v in old.values()):
        raise KoreBenchError("a world needs at least one old entity of every type")
    rng = py_rng(seed, "facts")
    for split in ("old", "new"):  # old first: organisations' founding years need founders' birth years
        group = {t: [e for e in ents if e.split == split and e.type == t] for t in F.ENTITY_TYPES}
        persons, orgs, places = group["person"], group["organisation"], group["place"]
        for e, c, o, j in zip(persons, deal(rng, old["place"], len(persons)),
                              deal(rng, old["organisation"], len(persons)), deal(rng, F.OCCUPATIONS, len(persons))):
            e.facts = [Fact("birth_city", c.name, c.id), Fact("birth_year", str(rng.randint(*F.PERSON_BIRTH_YEARS))),
                       Fact("occupation", j), Fact("employer", o.name, o.id)]
        for e, h, f, ind in zip(orgs, deal(rng, old["place"], len(orgs)), deal(rng, old["person"], len(orgs)),
                                deal(rng, F.INDUSTRIES, len(orgs))):
            year = int(f.answer("birth_year")) + rng.randint(*F.ORG_FOUNDING_OFFSET)
            e.facts = [Fact("headquarters", h.name, h.id), Fact("founder", f.name, f.id),
                       Fact("founding_year", str(year)), Fact("industry", ind)]
        for e, c, m in zip(places, deal(rng, countries, len(places)), deal(rng, old["person"], len(places))):
            e.facts = [Fact("country", c), Fact("founding_year", str(rng.randint(*F.PLACE_FOUNDING_YEARS))),
                       Fact("mayor", m.name, m.id)]
    for e in ents:
        e.views = [sample_view(np_rng(seed, "view", e.id, k), derive_seed(seed, "pixels", e.id, k))
                   for k in range(N_VIEWS)]
    return ents, countries


def generate(preset: str, seed: int | None = None) -> World:
    """The world of ``preset`` (see PRESETS), deterministic from ``seed`` (default: the preset's)."""
    if preset not in PRESETS:
        raise UnknownNameError("world preset", preset, PRESETS)
    p = PRESETS[preset]
    seed = p.seed if seed is None else int(seed)
    entities, countries = _entities(p, seed)
    skills = {s: generate_skill(s, py_rng(seed, "skill", s), p.skill_test, p.skill_dev,
                                round(p.skill_train * TRAIN_WEIGHT.get(s, 1.0))) for s in SKILLS}
    return World(preset=p, seed=seed, entities=entities, countries=countries, skills=skills)

