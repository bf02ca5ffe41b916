"""The micro base: built by the two-stage recipe, it knows the old world and not the new one."""
from __future__ import annotations

from collections import Counter, defaultdict


def test_micro_base_knows_old_facts_far_above_the_answer_prior(micro_base, micro_world):
    """Old-entity facts on held-out views and phrasings beat the best per-relation constant answer
    by a wide margin; new-entity facts stay near the prior (the base never saw them)."""
    from kore_bench.data import load_jsonl, select_split
    from kore_bench.evaluate.generation import generate
    from kore_bench.evaluate.metrics import cem

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


def test_knowledge_stage_trains_on_old_entity_conversations_before_the_full_mix(micro_world, monkeypatch):
    """A recipe with a knowledge stage first trains on the old-entity conversations alone, then on the
    whole pre-training set with the oversampled categories repeated, on the recipe's pinned threads,
    and records both stages."""
    import dataclasses

    import torch

    import kore_bench.train
    from kore_bench import base
    from kore_bench.data import load_conversations

    recipe = dataclasses.replace(base.RECIPES["micro"], vision_steps=2, knowledge_steps=3, steps=2,
                                 oversample=(("reasoning", 3),), threads=2)
    monkeypatch.setitem(base.RECIPES, "micro", recipe)
    calls: list[tuple[int, Counter, int]] = []
    train_model = kore_bench.train.train_model

    def recording(model, processor, samples, cfg, **kw):
        calls.append((cfg.steps, Counter(s.meta.get("category") for s in samples), torch.get_num_threads()))
        return train_model(model, processor, samples, cfg, **kw)

    monkeypatch.setattr(kore_bench.train, "train_model", recording)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base.build_base("micro", "llava")
    finally:
        torch.set_num_threads(threads_before)
    world = Counter(s.meta.get("category") for s in load_conversations(micro_world / "train" / "old_knowledge.json",
                                                                        micro_world)[0])
    assert calls[0][:2] == (3, Counter({"old_knowledge": world["old_knowledge"]}))
    assert calls[1][0] == 2 and calls[1][1] == world + Counter({"reasoning": 2 * world["reasoning"]})
    assert calls[0][2] == calls[1][2] == 2  # pinned to the recipe's threads, not the caller's one
    info = base.base_info("micro", "llava")
    assert info["knowledge_stage"]["steps"] == 3 and info["train"]["steps"] == 2 and info["torch_threads"] == 2
