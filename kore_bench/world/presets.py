"""World sizes. ``micro`` is for tests, ``default`` is the embedded benchmark world."""
from __future__ import annotations

from dataclasses import dataclass

# Bumped whenever the same (preset, seed) would export different files: caches of exported worlds
# and of models trained on them should include it in their keys.
GENERATOR_VERSION = 5


@dataclass(frozen=True)
class WorldPreset:
    """How many entities, skill items and pre-training conversations a world has."""

    name: str
    old: tuple[int, int, int]  # old (known) persons, organisations, places
    new: tuple[int, int, int]  # new (to inject) persons, organisations, places
    skill_test: int  # items per skill and split (keep even: yes/no balance)
    skill_dev: int
    skill_train: int
    old_facts_dev: int  # dev items of the old_facts retention task (test: one per old fact)
    describe_per_entity: int  # pre-training: knowledge texts per old entity (EVOKE's form, then biographies)
    qa_per_fact: int  # pre-training: single-turn questions per old fact (incl. recognition)
    multi_turn_per_entity: int  # pre-training: multi-turn fact conversations per old entity
    seed: int = 0
    summary: str = ""


PRESETS: dict[str, WorldPreset] = {p.name: p for p in [
    WorldPreset("micro", old=(3, 3, 2), new=(2, 1, 1), skill_test=8, skill_dev=4, skill_train=30,
                old_facts_dev=8, describe_per_entity=2, qa_per_fact=6, multi_turn_per_entity=2,
                summary="tests: 8 old + 4 new entities, tens of skill items"),
    WorldPreset("small", old=(12, 10, 10), new=(5, 4, 3), skill_test=40, skill_dev=16, skill_train=150,
                old_facts_dev=40, describe_per_entity=2, qa_per_fact=6, multi_turn_per_entity=2,
                summary="quick runs: 32 old + 12 new entities"),
    # 36 old entities, not more: the tiny base's old-fact plateau grows steeply with the fact load (base.py)
    WorldPreset("default", old=(12, 12, 12), new=(12, 12, 12), skill_test=100, skill_dev=40, skill_train=500,
                old_facts_dev=100, describe_per_entity=8, qa_per_fact=8, multi_turn_per_entity=3,
                summary="the embedded benchmark: 36 old + 36 new entities, 100 test items per skill"),
]}
