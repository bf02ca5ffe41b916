"""A read-only view of an exported world's ``world.json`` for augmenters and the leak guard.

``world.json``: ``entities`` [{id, name, type, hypernym, split: old|new, facts: [{relation, value,
value_entity?}], description, views: {train, dev, test: [paths relative to the world folder]}}] and
``relations`` {relation: {train, dev, test: [templates]}}; templates name their subject with
``{subject}`` / ``{Subject}`` (the hypernym phrase, e.g. "the person in the image"). Optional:
``templates.describe_prompts`` (training-only prompts that ask for the knowledge text).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Sample
from ..errors import DataError

TRAIN, HELD_OUT = "train", ("dev", "test")
_SLOTS = re.compile(r"\{subject\}|\{Subject\}")


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    type: str
    hypernym: str
    split: str
    facts: tuple[dict[str, Any], ...]
    description: str
    views: dict[str, tuple[str, ...]]

    @property
    def subject(self) -> str:
        """How questions refer to the entity: "the person in the image"."""
        h = self.hypernym.strip()
        return h if h.lower().startswith(("the ", "a ", "an ")) else f"the {h} in the image"


def fill(template: str, subject: str) -> str:
    """``template`` with ``{subject}`` / ``{Subject}`` replaced (other braces left alone)."""
    return _SLOTS.sub(lambda m: subject[:1].upper() + subject[1:] if m.group() == "{Subject}" else subject,
                      template)


def _pattern(template: str) -> re.Pattern[str]:
    """A template as a case-insensitive regex whose subject slots match any text on one line."""
    parts = [r"\s+".join(re.escape(w) for w in p.split()) for p in _SLOTS.split(template)]
    return re.compile(r"[^\n]+?".join(parts), re.IGNORECASE)


class WorldFacts:
    """Entities, relation phrasings and view paths of one exported world."""

    def __init__(self, root: Path, entities: list[Entity], relations: dict[str, dict[str, list[str]]],
                 describe_prompts: tuple[str, ...] = ()):
        self.root = root
        self.describe_prompts = describe_prompts  # training-only "describe" prompts, if the world has them
        self.entities = {e.id: e for e in entities}
        self.relations = relations
        self._by_view: dict[str, tuple[Entity, str]] = {}
        for e in entities:
            for rel in e.views.get(TRAIN, ()):
                self._by_view[self._abs(rel)] = (e, rel)
        self._by_description = {" ".join(e.description.split()): e for e in entities}
        self._held_out_views = {self._abs(rel) for e in entities for s in HELD_OUT for rel in e.views.get(s, ())}
        self._held_out_rel = {rel.replace("\\", "/").lstrip("./") for e in entities for s in HELD_OUT
                              for rel in e.views.get(s, ())}
        self._held_out_phrasings = [(_pattern(t), f"{r}/{s}: {t!r}") for r, spl in relations.items()
                                    for s in HELD_OUT for t in spl.get(s, ())]

    @classmethod
    def load(cls, root: Path) -> WorldFacts:
        """Reads ``root/world.json``; a malformed file raises DataError naming the field."""
        path = root / "world.json"
        if not path.is_file():
            raise DataError(f"no world.json in {root} (augmenters need an exported world)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entities = [Entity(id=str(e["id"]), name=e["name"], type=e["type"], hypernym=e["hypernym"],
                               split=e["split"], facts=tuple(e["facts"]), description=e["description"],
                               views={k: tuple(v) for k, v in e["views"].items()})
                        for e in raw["entities"]]
            relations = {r: {s: list(t) for s, t in spl.items()} for r, spl in raw["relations"].items()}
            describe = tuple(raw.get("templates", {}).get("describe_prompts", ()))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not a world export ({type(e).__name__}: {e})") from e
        return cls(root.resolve(), entities, relations, describe)

    def _abs(self, rel: str) -> str:
        return str((self.root / rel).resolve())

    def image(self, rel: str) -> str:
        """The absolute path of a view given relative to the world folder."""
        return self._abs(rel)

    def phrasings(self, relation: str, subject: str) -> list[str]:
        """The relation's training phrasings, filled with ``subject`` (empty if unknown)."""
        return [fill(t, subject) for t in self.relations.get(relation, {}).get(TRAIN, [])]

    def match(self, sample: Sample) -> tuple[Entity, str] | None:
        """(entity, injection view) of an injection sample: by its image, else by its knowledge text.

        Matched by text only, the injection view is taken to be training view 0 (the export's rule).
        """
        img = sample.image
        if img is not None and img.path is not None:
            if img.member is None:
                hit = self._by_view.get(str(Path(img.path).resolve()))
                if hit:
                    return hit
            else:
                member = img.member.replace("\\", "/")
                for e in self.entities.values():
                    for rel in e.views.get(TRAIN, ()):
                        if member == rel or member.endswith("/" + rel):
                            return e, rel
        answers = [m["content"] for m in sample.messages if m["role"] == "assistant"]
        e = self._by_description.get(" ".join(answers[0].split())) if answers else None
        if e is not None and e.views.get(TRAIN):
            return e, e.views[TRAIN][0]
        return None

    def held_out_phrasing(self, text: str) -> str | None:
        """The dev/test template ``text`` uses ("relation/split: template"), or None."""
        for pattern, label in self._held_out_phrasings:
            if pattern.search(text):
                return label
        return None

    def leaks(self, samples: list[Sample]) -> list[str]:
        """One message per sample that shows a dev/test view or asks with a dev/test phrasing."""
        found = []
        for s in samples:
            img = s.image
            if img is not None and img.path is not None:
                member = (img.member or "").replace("\\", "/")
                if (img.member is None and str(Path(img.path).resolve()) in self._held_out_views) or (
                        member and any(member == r or member.endswith("/" + r) for r in self._held_out_rel)):
                    found.append(f"{s.id}: held-out image {img.key}")
            for m in s.messages:
                label = self.held_out_phrasing(m["content"]) if m["role"] == "user" else None
                if label:
                    found.append(f"{s.id}: question {m['content']!r} uses held-out phrasing {label}")
        return found
