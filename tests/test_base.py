"""The micro base: built by the two-stage recipe, it knows the old world and not the new one."""
from __future__ import annotations

from collections import Counter, defaultdict


def test_micro_base_knows_old_facts_far_above_the_answer_prior(micro_base, micro_world):
    """Old-entity facts on held-out views and phrasings beat the best per-relation constant answer
    by a wide margin; new-entity facts stay near the prior (the base never saw them)."""
    from kore_bench.data import load_jsonl, select_split
    from kore_bench.evaluate import generate
    from kore_bench.metrics import cem

    old = select_split(load_jsonl(micro_world / "retention" / "old_facts.jsonl", micro_world)[0], "test")
    model, processor = micro_base.load()
    answers = generate(model, processor, old, max_new_tokens=16)
    score = sum(cem(a, s.answer) for a, s in zip(answers, old)) / len(old)

    by_relation: dict[str, Counter] = defaultdict(Counter)
    for s in old:
        by_relation[s.meta["relation"]][s.answer] += 1
    prior = sum(c.most_common(1)[0][1] for c in by_relation.values()) / len(old)
    assert score > prior + 0.1, (score, prior)


def test_vision_stage_makes_held_out_images_readable(micro_base):
    """The vision stage's held-out accuracy (recorded in base_info) is far above chance."""
    from kore_bench.base import base_info

    vision = base_info("micro", "llava")["vision_stage"]
    assert vision["old_entity"] > 60  # chance 1/8 on micro
    assert vision["count"] > 50 and vision["colour"] > 60  # chance 1/4 and 1/9
