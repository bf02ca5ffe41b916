"""The world's data sets as JSON-ready records (no pixels): EVOKE files, retention suites, pre-training.

Split discipline: train views (0-11) and train phrasings only in ``pretraining`` and the injection
file; the dev view (12) and dev phrasing only in dev records; test views (13-14) and test phrasings only
in test records.
"""
from __future__ import annotations

from typing import Any

from ..data import IMAGE_TOKEN
from . import facts as F
from .generate import VIEW_SPLITS, Entity, World
from .seeding import deal, py_rng
from .skills import SkillItem

Record = dict[str, Any]


def _human(text: str, image: bool) -> dict[str, str]:
    return {"from": "human", "value": f"{IMAGE_TOKEN}\n{text}" if image else text}


def _gpt(text: str) -> dict[str, str]:
    return {"from": "gpt", "value": text}


def injection_records(world: World) -> list[Record]:
    """``evoke_injection_data.json``: one describe conversation per new entity, on view 0."""
    return [{"id": i + 1, "image": e.view_path(0),
             "conversations": [_human(F.fill(F.DESCRIBE_PROMPTS[0], e.type), True), _gpt(e.description)]}
            for i, e in enumerate(world.new)]


def evoke_records(world: World, split: str) -> list[Record]:
    """``evoke_{evaluation,dev}_data.jsonl``: new entities x relations x views x phrasings of ``split``."""
    out: list[Record] = []
    for gi, e in enumerate(world.new):
        for rel in F.relations_for(e.type):
            for k in VIEW_SPLITS[split]:
                for tpl in F.RELATIONS[rel].templates(split):
                    out.append({"question_id": len(out) + 1, "image": e.view_path(k),
                                "text": F.question_text(tpl, e.type), "category": "default",
                                "answer": e.answer(rel), "type": e.type, "cnn_wiki_type": "wiki",
                                "ground_truth": [gi], "relation": rel, "entity": e.id})
    return out


def old_fact_records(world: World) -> list[Record]:
    """``retention/old_facts.jsonl``: every old fact once on a test view + test phrasing, and a
    sample of ``old_facts_dev`` facts on the dev view + dev phrasing."""
    rng = py_rng(world.seed, "old-facts")
    pairs = [(e, rel) for e in world.old for rel in F.relations_for(e.type)]
    out: list[Record] = []

    def rec(split: str, n: int, e: Entity, rel: str) -> Record:
        k = rng.choice(VIEW_SPLITS[split])
        tpl = rng.choice(F.RELATIONS[rel].templates(split))
        return {"id": f"old_facts-{split}-{n:04d}", "image": e.view_path(k), "question": F.question_text(tpl, e.type),
                "answer": e.answer(rel), "category": "old_knowledge", "split": split,
                "relation": rel, "entity": e.id}

    for n, (e, rel) in enumerate(pairs):
        out.append(rec("test", n, e, rel))
    dev = rng.sample(pairs, min(world.preset.old_facts_dev, len(pairs)))
    out += [rec("dev", n, e, rel) for n, (e, rel) in enumerate(dev)]
    return out


def skill_records(items: list[SkillItem]) -> list[Record]:
    """``retention/<skill>.jsonl`` records of the test and dev items."""
    out = []
    for it in items:
        if it.split == "train":
            continue
        r: Record = {"id": it.id, "image": it.image, "question": it.question, "answer": it.answer,
                     "category": it.skill, "split": it.split}
        if it.history:
            r["history"] = [{"question": q, "answer": a} for q, a in it.history]
        out.append(r)
    return out


def skill_conversation(it: SkillItem) -> Record:
    """A training skill item as a LLaVA conversation (the image, if any, with the first turn)."""
    has_image = it.scene is not None
    turns = list(it.history) + [(it.question, it.answer)]
    conv: list[dict[str, str]] = []
    for j, (q, a) in enumerate(turns):
        conv += [_human(q, has_image and j == 0), _gpt(a)]
    r: Record = {"id": it.id, "image": it.image} if has_image else {"id": it.id}
    return r | {"conversations": conv, "category": it.skill}


def pretraining_records(world: World) -> list[Record]:
    """``train/old_knowledge.json``: the base model's training set and the later replay pool.

    Old-entity knowledge texts (the description, then biographies), single-turn recognition/fact
    questions and multi-turn fact conversations on train views with train phrasings (views and
    phrasings dealt evenly), plus the train items of every skill; shuffled.
    """
    p, rng = world.preset, py_rng(world.seed, "pretraining")
    out: list[Record] = []
    train_views = VIEW_SPLITS["train"]
    for e in world.old:
        img = lambda k: e.view_path(k)  # noqa: E731
        for j, (k, prompt) in enumerate(zip(deal(rng, train_views, p.describe_per_entity),
                                            deal(rng, F.DESCRIBE_PROMPTS, p.describe_per_entity))):
            text = e.description if j == 0 else e.biography(rng)
            out.append({"id": f"{e.id}-describe-{j}", "image": img(k),
                        "conversations": [_human(F.fill(prompt, e.type), True), _gpt(text)],
                        "category": "old_knowledge"})
        rels = F.relations_for(e.type)
        for rel in rels:
            views = deal(rng, train_views, p.qa_per_fact)
            tpls = deal(rng, F.RELATIONS[rel].train, p.qa_per_fact)
            for j, (k, tpl) in enumerate(zip(views, tpls)):
                out.append({"id": f"{e.id}-{rel}-{j}", "image": img(k),
                            "conversations": [_human(F.question_text(tpl, e.type), True), _gpt(e.answer(rel))],
                            "category": "old_knowledge"})
        for j, k in enumerate(deal(rng, train_views, p.multi_turn_per_entity)):
            conv: list[dict[str, str]] = []
            for t, rel in enumerate(rng.sample(rels, rng.randint(2, 3))):
                tpl = rng.choice(F.RELATIONS[rel].train)
                conv += [_human(F.question_text(tpl, e.type), t == 0), _gpt(e.answer(rel))]
            out.append({"id": f"{e.id}-multi-{j}", "image": img(k), "conversations": conv,
                        "category": "old_knowledge"})
    for items in world.skills.values():
        out += [skill_conversation(it) for it in items if it.split == "train"]
    rng.shuffle(out)
    return out
