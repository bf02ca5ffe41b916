"""The ``template`` augmenter: KORE's knowledge tree built from the world's structured facts.

For each injection sample (one new entity, its view-0 image and knowledge text):
- **trunk**: one multi-turn dialogue on the injection image; round 1 is the injection Q/A (the
  heuristic description), later rounds ask every fact (and the name) with training phrasings
  (short-answer suffix appended, as in the world's pre-training data),
  then further training phrasings of the facts, up to ``max_rounds`` rounds;
- **branches** on each of the entity's other training views: recognition ("Is this <name>?" and
  the name asked via the hypernym), a caption (the knowledge text) and VQA (each fact asked via
  the hypernym, EVOKE's short-answer suffix appended).
Only training views and training phrasings are used; randomness comes from ``seed`` alone.
"""
from __future__ import annotations

import random

from ..data import IMAGE_TOKEN, SHORT_ANSWER_SUFFIX, ImageRef, Sample
from ..errors import KoreBenchError
from .core import AUGMENTERS, AugmentReport
from .world import TRAIN, Entity, WorldFacts, fill

CAPTION_PROMPTS = ("Please provide a caption for {subject}.", "Write a short caption for {subject}.",
                   "Give a one-sentence caption for the image.")  # plus world.json's describe prompts
NAME_FALLBACK = ("What is the name of {subject}?",)


def rng_for(seed: int, *parts: object) -> random.Random:
    """A stream seeded by (seed, parts); ``random.Random(str)`` hashes with SHA-512, not ``hash()``."""
    return random.Random("\0".join(map(str, (seed, "augment.template", *parts))))


def _qa(entity: Entity, world: WorldFacts) -> list[tuple[str, list[str], str]]:
    """(relation, training phrasings, answer) for the name and every fact of ``entity``."""
    subject = entity.subject
    names = world.phrasings("name", subject) or [fill(t, subject) for t in NAME_FALLBACK]
    out = [("name", names, entity.name)]
    for fact in entity.facts:
        phrasings = world.phrasings(fact["relation"], subject)
        if not phrasings:
            raise KoreBenchError(f"world.json has no training phrasings for relation {fact['relation']!r} "
                                 f"(entity {entity.id})")
        out.append((fact["relation"], phrasings, str(fact["value"])))
    return out


def dialogue_rounds(entity: Entity, world: WorldFacts, rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """``n`` (relation, question, answer) rounds: every fact, then the name, each once; then unused
    phrasings of them in shuffled passes, until ``n`` rounds or the phrasings run out. Phrasings
    are drawn at random without repetition."""
    pools = []
    for relation, phrasings, answer in _qa(entity, world):
        pool = list(phrasings)
        rng.shuffle(pool)
        pools.append((relation, pool, answer))
    facts_first = [p for p in pools if p[0] != "name"] + [p for p in pools if p[0] == "name"]
    rounds: list[tuple[str, str, str]] = []
    while len(rounds) < n and any(pool for _, pool, _ in facts_first):
        order = [p for p in facts_first if p[1]]
        if rounds:  # the first pass keeps facts before the name; later passes are shuffled
            rng.shuffle(order)
        for relation, pool, answer in order[: n - len(rounds)]:
            rounds.append((relation, pool.pop(), answer))
    return rounds


def _sample(origin: Sample, tag: str, image: str, turns: list[tuple[str, str]], meta: dict) -> Sample:
    messages = []
    for i, (q, a) in enumerate(turns):
        messages += [{"role": "user", "content": (IMAGE_TOKEN + "\n" if i == 0 else "") + q},
                     {"role": "assistant", "content": a}]
    return Sample(id=f"{origin.id}:{tag}", messages=messages, image=ImageRef(path=image),
                  source=f"{origin.source} (augmented: {meta['kind']})",
                  meta={"origin": origin.id, **meta})


def trunk(origin: Sample, entity: Entity | None, extra: list[tuple[str, str]], meta: dict,
          augmenter: str = "template") -> Sample:
    """The dialogue: the injection sample's own turns first, then ``extra`` (question, answer) rounds."""
    return Sample(id=f"{origin.id}:dialogue", messages=[dict(m) for m in origin.messages] + [
        m for q, a in extra for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})],
        image=origin.image, source=f"{origin.source} (augmented: dialogue)",
        meta={**origin.meta, "augmenter": augmenter, "kind": "dialogue", "origin": origin.id,
              "entity": entity.id if entity else None, **meta})


def branches(origin: Sample, entity: Entity, injection_view: str, world: WorldFacts, rng: random.Random,
             report: AugmentReport, *, max_views: int | None = None, short_answer_suffix: bool = True,
             augmenter: str = "template") -> list[Sample]:
    """Recognition, caption and VQA samples on the entity's training views other than the injection one."""
    views = [v for v in entity.views.get(TRAIN, ()) if v != injection_view]
    if max_views is not None:
        views = views[:max_views]
    if not views:
        report.notes.append(f"{origin.id}: entity {entity.id} has no training view besides the injection "
                            "image, no branches")
    qa = _qa(entity, world)
    suffix = "\n" + SHORT_ANSWER_SUFFIX if short_answer_suffix else ""
    captions = [fill(t, entity.subject) for t in CAPTION_PROMPTS + world.describe_prompts]
    out = []
    for k, view in enumerate(views):
        image = world.image(view)
        meta = {"augmenter": augmenter, "entity": entity.id, "view": view}
        yes = "yes" if short_answer_suffix else "Yes."  # the world's yes/no style; KORE's own is "Yes."
        out.append(_sample(origin, f"v{k}:recognition:yes", image, [(f"Is this {entity.name}?{suffix}", yes)],
                           {**meta, "kind": "recognition", "relation": "name"}))
        out.append(_sample(origin, f"v{k}:recognition:name", image, [(rng.choice(qa[0][1]) + suffix, entity.name)],
                           {**meta, "kind": "recognition", "relation": "name"}))
        out.append(_sample(origin, f"v{k}:caption", image, [(rng.choice(captions), entity.description)],
                           {**meta, "kind": "caption"}))
        for relation, phrasings, answer in qa[1:]:
            out.append(_sample(origin, f"v{k}:vqa:{relation}", image, [(rng.choice(phrasings) + suffix, answer)],
                               {**meta, "kind": "vqa", "relation": relation}))
    for s in out:
        report.count(s.meta["kind"])
    return out


@AUGMENTERS.register("template")
def template(samples: list[Sample], world: WorldFacts | None, seed: int, report: AugmentReport, *,
             max_rounds: int = 11, max_views: int | None = None, branch: bool = True,
             short_answer_suffix: bool = True) -> list[Sample]:
    """KORE's knowledge tree from world.json facts (offline, deterministic from ``seed``).

    ``max_rounds`` caps the dialogue (round 1 included); ``max_views`` caps the other training
    views used per entity; ``branch=False`` builds the dialogue only; ``short_answer_suffix``
    appends EVOKE's "Answer the question using a single word or phrase." to every short-answer
    question (dialogue rounds after the first, recognition, VQA), as the world's own data does.
    Samples whose entity world.json does not know are passed through unchanged (and reported).
    """
    if world is None:
        raise KoreBenchError("augmenter 'template' needs the world's structured facts: pass world_dir "
                             "(the exported world with world.json); for real data use 'llm' or 'kore74k'")
    if max_rounds < 1:
        raise KoreBenchError(f"max_rounds must be at least 1, got {max_rounds}")
    out = []
    for s in samples:
        hit = world.match(s)
        if hit is None:
            report.pass_through(s.id, "no entity of world.json has this image or knowledge text")
            out.append(s)
            continue
        entity, view = hit
        rng = rng_for(seed, entity.id, s.id)
        n_own = sum(m["role"] == "assistant" for m in s.messages)
        rounds = dialogue_rounds(entity, world, rng, max(0, max_rounds - n_own))
        missing = {f["relation"] for f in entity.facts} - {r for r, _, _ in rounds}
        if missing:
            report.notes.append(f"{s.id}: max_rounds={max_rounds} leaves out fact(s) {sorted(missing)}")
        suffix = "\n" + SHORT_ANSWER_SUFFIX if short_answer_suffix else ""
        out.append(trunk(s, entity, [(q + suffix, a) for _, q, a in rounds], {"injection_view": view}))
        report.count("dialogue")
        if branch:
            out += branches(s, entity, view, world, rng, report, max_views=max_views,
                            short_answer_suffix=short_answer_suffix)
    return out
