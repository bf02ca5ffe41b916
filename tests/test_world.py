"""The synthetic world (micro preset): determinism, split discipline, formats, distinguishability."""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kore_bench.data import SHORT_ANSWER_SUFFIX
from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.world import PRESETS, SKILLS, VIEW_SPLITS, export_world, generate
from kore_bench.world import facts as F
from kore_bench.world.datasets import evoke_records
from kore_bench.world.skills import COLOUR_NAMES, QUADRANTS, generate_skill

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("world") / "micro"
    world = export_world("micro", out)
    return out, world


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{subject\}|\{Subject\})", template)
    body = "".join("(?:the|The) (?:person|organisation|place) in the image" if p in ("{subject}", "{Subject}")
                   else re.escape(p) for p in parts)
    return re.compile(body + "(?:\n" + re.escape(SHORT_ANSWER_SUFFIX) + ")?")


TEMPLATE_SPLIT = [(_template_regex(t), split) for r in F.RELATIONS.values() for split in SPLITS
                  for t in r.templates(split)]
DESCRIBE = [_template_regex(t) for t in F.DESCRIBE_PROMPTS]


def _phrasing_split(question: str) -> str | None:
    """The split of the relation phrasing a question uses (None: not an entity question)."""
    hits = {split for rx, split in TEMPLATE_SPLIT if rx.fullmatch(question)}
    assert len(hits) <= 1, question
    return hits.pop() if hits else None


def _view(path: str) -> int | None:
    m = re.fullmatch(r"images/entities/e\d+_v(\d+)\.png", path or "")
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ API
def test_unknown_preset_suggests_nearest():
    with pytest.raises(UnknownNameError, match="did you mean 'micro'"):
        generate("mikro")
    assert {"micro", "small", "default"} <= set(PRESETS)


def test_same_seed_byte_identical_and_other_seed_differs(exported, tmp_path):
    root, _ = exported
    again = tmp_path / "again"  # another process with another str-hash salt: no hidden hash() seeding
    code = f"from kore_bench.world import export_world; export_world('micro', {str(again)!r}, seed=0)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert _files(again) == _files(root)
    other = tmp_path / "other"
    export_world("micro", other, seed=1)
    a, b = _files(root), _files(other)
    assert a["world.json"] != b["world.json"]
    assert a["images/entities/e001_v0.png"] != b["images/entities/e001_v0.png"]
    names = lambda p: {e["name"] for e in json.loads((p / "world.json").read_text())["entities"]}  # noqa: E731
    assert names(root) != names(other)


def test_non_empty_out_dir_refused_and_nothing_written(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(KoreBenchError, match="not empty"):
        export_world("micro", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temp sibling left behind


def test_unwritable_target_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KoreBenchError, match="not writable"):
        export_world("micro", blocker / "world")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    from kore_bench.world import export as export_mod

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export_mod, "pretraining_records", boom)
    with pytest.raises(RuntimeError):
        export_world("micro", tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def test_empty_existing_dir_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    export_world("micro", out)
    assert (out / "world.json").is_file()


# ------------------------------------------------------------------ formats
def test_exports_parse_back_with_the_contract_fields(exported):
    root, world = exported
    wj = json.loads((root / "world.json").read_text(encoding="utf-8"))
    assert wj["format"] == "kore-bench-world/1" and wj["preset"] == "micro" and wj["seed"] == 0
    ents = {e["id"]: e for e in wj["entities"]}
    assert len(ents) == sum(PRESETS["micro"].old) + sum(PRESETS["micro"].new)
    for e in ents.values():
        assert {"id", "name", "type", "hypernym", "split", "facts", "description", "views"} <= set(e)
        assert e["split"] in ("old", "new") and e["hypernym"] == F.HYPERNYMS[e["type"]]
        assert len(e["facts"]) >= 3 and all({"relation", "value"} <= set(f) for f in e["facts"])
        assert [len(e["views"][s]) for s in SPLITS] == [len(VIEW_SPLITS[s]) for s in SPLITS]
    assert set(wj["relations"]) == set(F.RELATIONS)
    assert {s["name"] for s in wj["skills"]} == set(SKILLS) | {"old_facts"}

    inj = json.loads((root / "evoke_injection_data.json").read_text(encoding="utf-8"))
    new = [e for e in wj["entities"] if e["split"] == "new"]
    assert len(inj) == len(new)
    for i, (r, e) in enumerate(zip(inj, new)):
        assert r["id"] == i + 1 and r["image"] == f"images/entities/{e['id']}_v0.png"
        human, gpt = r["conversations"]
        assert human == {"from": "human", "value": f"<image>\nCan you describe {e['hypernym']}?"}
        assert gpt == {"from": "gpt", "value": e["description"]}

    for name in ("evoke_evaluation_data.jsonl", "evoke_dev_data.jsonl"):
        recs = _jsonl(root / name)
        assert [r["question_id"] for r in recs] == list(range(1, len(recs) + 1))
        for r in recs:
            assert {"question_id", "image", "text", "category", "answer", "type", "cnn_wiki_type",
                    "ground_truth"} <= set(r)
            assert r["category"] == "default" and r["cnn_wiki_type"] == "wiki"
            assert r["text"].endswith("\n" + SHORT_ANSWER_SUFFIX)
            target = new[r["ground_truth"][0]]
            assert r["image"].startswith(f"images/entities/{target['id']}_v") and r["type"] == target["type"]
            facts = {f["relation"]: f["value"] for f in target["facts"]} | {"name": target["name"]}
            assert r["answer"] == facts[r["relation"]]

    for skill in [*SKILLS, "old_facts"]:
        if skill == "perception":
            rows = _tsv(root / "retention" / "perception.tsv")
            assert list(rows[0]) == ["index", "image", "question", "answer", "category", "split"]
            for row in rows:
                img = Image.open(io.BytesIO(base64.b64decode(row["image"])))
                assert img.size == (32, 32) and img.mode == "RGB"
                assert row["answer"] in (*COLOUR_NAMES, *QUADRANTS.values()) and row["split"] in ("test", "dev")
            continue
        recs = _jsonl(root / "retention" / f"{skill}.jsonl")
        assert recs and {r["split"] for r in recs} == {"test", "dev"}
        for r in recs:
            assert {"id", "image", "question", "answer", "category", "split"} <= set(r)
            assert r["category"] == ("old_knowledge" if skill == "old_facts" else skill)
            assert ("history" in r) == (skill == "dialogue")
            assert (r["image"] is None) == (skill == "reasoning")

    train = json.loads((root / "train" / "old_knowledge.json").read_text(encoding="utf-8"))
    assert {r["category"] for r in train} == set(SKILLS) | {"old_knowledge"}
    for r in train:
        conv = r["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert conv[0]["value"].startswith("<image>\n") == ("image" in r)
        assert sum("<image>" in t["value"] for t in conv) == ("image" in r)
        if r["category"] == "perception":
            assert conv[0]["value"].endswith(SHORT_ANSWER_SUFFIX)
            assert conv[1]["value"] in (*COLOUR_NAMES, *QUADRANTS.values())  # a word, never an option letter


def test_every_named_image_exists_and_is_32px_rgb(exported):
    root, _ = exported
    paths = set()
    for name in ("evoke_evaluation_data.jsonl", "evoke_dev_data.jsonl", *(f"retention/{p.name}" for p in
                                                                          (root / "retention").glob("*.jsonl"))):
        paths |= {r["image"] for r in _jsonl(root / name) if r["image"]}
    for name in ("evoke_injection_data.json", "train/old_knowledge.json"):
        paths |= {r["image"] for r in json.loads((root / name).read_text()) if "image" in r}
    for e in json.loads((root / "world.json").read_text())["entities"]:
        paths |= {p for s in SPLITS for p in e["views"][s]}
    assert paths
    for p in paths:
        assert not Path(p).is_absolute()
        with Image.open(root / p) as img:
            assert img.size == (32, 32) and img.mode == "RGB"


def test_questions_are_hypernym_phrasings_and_descriptions_state_all_facts(exported):
    _, world = exported
    for r in F.RELATIONS.values():
        assert len(r.train) >= 4 and len(r.dev) == 1 and len(r.test) >= 2
        all_t = [*r.train, *r.dev, *r.test]
        assert len(set(all_t)) == len(all_t), f"{r.name}: a phrasing is in two splits"
        assert all("{subject}" in t or "{Subject}" in t for t in all_t)
    for e in world.entities:
        assert e.name in e.description
        assert all(f.value in e.description for f in e.facts), e.description
    rng = random.Random(0)
    for e in world.entities:
        bios = {e.biography(rng) for _ in range(6)}
        assert len(bios) > 1 and e.description not in bios  # other forms and orders than EVOKE's sentence
        for bio in bios:
            assert bio.count(e.name) == len(e.facts), bio  # one sentence per fact, each naming the entity
            assert all(f.value in bio for f in e.facts), bio
    root, _ = exported
    texts = {r["id"]: r["conversations"][1]["value"] for r in
             json.loads((root / "train" / "old_knowledge.json").read_text()) if "-describe-" in r["id"]}
    assert {i.split("-describe-")[0] for i in texts} == {e.id for e in world.old}
    assert all(texts[f"{e.id}-describe-0"] == e.description for e in world.old)
    assert all(texts[f"{e.id}-describe-1"] != e.description for e in world.old)
    # No held-out phrasing occurs inside a training question (what a leak guard searching for
    # held-out templates, subject slot = any text, would see).
    train_q = [F.question_text(t, ty) for r in F.RELATIONS.values() for t in r.train for ty in r.types]
    for r in F.RELATIONS.values():
        for t in [*r.dev, *r.test]:
            parts = [re.escape(p) for p in re.split(r"\{subject\}|\{Subject\}", t)]
            rx = re.compile(r"[^\n]+?".join(parts), re.IGNORECASE)
            assert not any(rx.search(q) for q in train_q), t
    rec = evoke_records(world, "test")[0]
    assert rec["text"].split("\n")[0].lower().count(" in the image") == 1


def test_held_out_phrasings_recombine_trained_words():
    """A from-scratch model knows only its world's words: a held-out phrasing may be a new
    combination, but every word in it, and the relation's noun, must occur in training phrasings."""
    words = lambda t: set(re.findall(r"[a-z']+", t.replace("{subject}", "").replace("{Subject}", "").lower()))  # noqa: E731
    trained = set().union(*(words(t) for r in F.RELATIONS.values() for t in r.train))
    for r in F.RELATIONS.values():
        for t in [*r.dev, *r.test]:
            assert words(t) <= trained, (t, words(t) - trained)
        assert any(r.noun in t for t in r.train), r.name
        assert all(r.noun in t for t in [*r.dev, *r.test]), r.name


# ------------------------------------------------------------------ split discipline
def test_train_dev_test_views_and_phrasings_disjoint(exported):
    root, _ = exported
    train = json.loads((root / "train" / "old_knowledge.json").read_text())
    inj = json.loads((root / "evoke_injection_data.json").read_text())
    seen_train_phrasing = 0
    for r in train + inj:
        v = _view(r.get("image"))
        if v is not None:
            assert v in VIEW_SPLITS["train"], r["id"]
        for turn in r["conversations"][::2]:
            q = turn["value"].removeprefix("<image>\n")
            split = _phrasing_split(q)
            assert split in (None, "train"), (r["id"], q)
            seen_train_phrasing += split == "train"
            if split is None and v is not None and r.get("category", "old_knowledge") == "old_knowledge":
                assert any(rx.fullmatch(q) for rx in DESCRIBE), q  # a describe prompt, nothing else
    assert seen_train_phrasing > 0
    assert {_view(r["image"]) for r in inj} == {0}

    for name, split in (("evoke_evaluation_data.jsonl", "test"), ("evoke_dev_data.jsonl", "dev")):
        for r in _jsonl(root / name):
            assert _view(r["image"]) in VIEW_SPLITS[split]
            assert _phrasing_split(r["text"]) == split, r["text"]
    for r in _jsonl(root / "retention" / "old_facts.jsonl"):
        assert _view(r["image"]) in VIEW_SPLITS[r["split"]]
        assert _phrasing_split(r["question"]) == r["split"]


def test_skill_scenes_disjoint_across_splits(exported):
    root, world = exported
    for skill, items in world.skills.items():
        owner: dict = {}
        for it in items:
            assert owner.setdefault(it.key, it.split) == it.split, (skill, it.key)
        counts = Counter(it.split for it in items)
        assert counts["test"] == PRESETS["micro"].skill_test and counts["dev"] == PRESETS["micro"].skill_dev
        assert counts["train"] >= PRESETS["micro"].skill_train
    # a crowded scene space (3,600 comparisons, 3,000 items) forces collisions that the generator must refuse
    crowded = generate_skill("reasoning", random.Random(0), n_test=2500, n_dev=500, n_train=400)
    by_split = {s: {it.key for it in crowded if it.split == s} for s in SPLITS}
    assert len(by_split["test"]) == 2500 and len(by_split["dev"]) == 500
    assert not (by_split["test"] & by_split["dev"]) and not (by_split["train"] & (by_split["test"] | by_split["dev"]))
    with pytest.raises(KoreBenchError, match="cannot draw"):
        generate_skill("reasoning", random.Random(0), n_test=3500, n_dev=200, n_train=0)
    # and in the exported files: arithmetic problems and OCR codes never cross from eval to train
    train = json.loads((root / "train" / "old_knowledge.json").read_text())

    def operands(q: str) -> tuple:
        return tuple(sorted(map(int, re.findall(r"\d+", q.split("\n")[0]))))

    train_sums = {operands(r["conversations"][0]["value"]) for r in train if r["category"] == "reasoning"}
    eval_sums = {operands(r["question"]) for r in _jsonl(root / "retention" / "reasoning.jsonl")}
    assert train_sums and eval_sums and not train_sums & eval_sums
    train_codes = {r["conversations"][1]["value"] for r in train if r["category"] == "ocr"}
    eval_codes = {r["answer"] for r in _jsonl(root / "retention" / "ocr.jsonl")}
    assert train_codes and eval_codes and not train_codes & eval_codes


def test_hallucination_is_balanced_per_split(exported):
    _, world = exported
    for split in SPLITS:
        answers = Counter(it.answer for it in world.skills["hallucination"] if it.split == split)
        assert answers["yes"] == answers["no"] > 0


def test_dialogue_final_answer_depends_on_the_first_turn(exported):
    _, world = exported
    for it in world.skills["dialogue"]:
        assert len(it.history) == 1 and it.question.startswith("And ")
        assert len(it.scene.shapes) == 2  # two candidates: the first turn picks which one "it" is
        # both turns ask a colour, the two shapes' colours differ: the follow-up needs the image
        colours = {s.colour for s in it.scene.shapes}
        assert it.history[0][1] in colours and it.answer in colours - {it.history[0][1]}


def test_reasoning_answers_first_or_second_balanced(exported):
    _, world = exported
    for split in SPLITS:
        items = [it for it in world.skills["reasoning"] if it.split == split]
        assert {it.answer for it in items} == {"first", "second"}
        for it in items:
            x, y = map(int, re.findall(r"\d+", it.question.split("\n")[0]))
            assert it.answer == ("first" if x > y else "second") and x // 10 != y // 10


# ------------------------------------------------------------------ knowledge
def test_new_entity_facts_reference_old_entities(exported):
    _, world = exported
    by_id = {e.id: e for e in world.entities}
    for e in world.entities:
        for f in e.facts:
            if f.value_entity:
                target = by_id[f.value_entity]
                assert target.split == "old" and target.name == f.value
    assert all(any(f.value_entity for f in e.facts) for e in world.new)
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)


def test_new_entities_never_appear_in_pretraining(exported):
    root, world = exported
    text = (root / "train" / "old_knowledge.json").read_text(encoding="utf-8")
    for e in world.new:
        assert e.name not in text and f"{e.id}_v" not in text


def test_guessing_new_facts_scores_below_5_percent():
    """A base that answers each relation with the most common old answer: <= 5 % on new facts."""
    world = generate("default")
    common = {rel: Counter(e.answer(rel) for e in world.old if rel in F.relations_for(e.type)).most_common(1)[0][0]
              for rel in F.RELATIONS}
    recs = evoke_records(world, "test")
    hits = sum(common[r["relation"]] == r["answer"] for r in recs)
    assert hits / len(recs) <= 0.05


# ------------------------------------------------------------------ appearance
def _colour_feature(img: Image.Image) -> np.ndarray:
    """Hue histogram of saturated (entity) pixels + share of white/black (marks): pose-invariant."""
    a = np.asarray(img, dtype=float) / 255
    mx, mn = a.max(2), a.min(2)
    d = mx - mn + 1e-6
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    hist = np.histogram(hue[(mx - mn) / (mx + 1e-6) > 0.45], bins=24, range=(0, 1))[0].astype(float)
    return np.concatenate([hist / max(1.0, hist.sum()), [5 * (mn > 0.85).mean(), 5 * (mx < 0.15).mean()]])


def test_entities_distinguishable_across_views(exported):
    """Nearest centroid over train views classifies dev/test views (chance 1/12 on micro)."""
    _, world = exported
    centroids = np.array([np.mean([_colour_feature(e.render_view(k)) for k in VIEW_SPLITS["train"]], axis=0)
                          for e in world.entities])
    hits = total = 0
    for i, e in enumerate(world.entities):
        for k in VIEW_SPLITS["dev"] + VIEW_SPLITS["test"]:
            pred = np.abs(centroids - _colour_feature(e.render_view(k))).sum(axis=1).argmin()
            hits += pred == i
            total += 1
    assert hits / total >= 0.9


def test_appearances_far_apart_in_trait_space(exported):
    _, world = exported
    ents = world.entities
    for i, a in enumerate(ents):
        for b in ents[i + 1:]:
            ta, tb = a.appearance, b.appearance
            diff = [ta.primary != tb.primary, ta.secondary != tb.secondary, ta.pattern != tb.pattern,
                    ta.mark != tb.mark]
            if a.type == b.type:
                assert sum(diff) + (ta.silhouette != tb.silhouette) >= 3
            else:
                assert sum(diff) >= 2


def test_views_of_one_entity_differ_beyond_noise(exported):
    _, world = exported
    for e in world.entities:
        assert len({v.pose for v in e.views}) == len(e.views)  # every view has its own pose
        views = [np.asarray(e.render_view(k), dtype=float) for k in range(len(e.views))]
        for i in range(len(views)):
            for j in range(i + 1, len(views)):
                # pixel noise alone gives ~4.5; background, pose and colour jitter add to it
                assert np.abs(views[i] - views[j]).mean() > 6, (e.id, i, j)


def test_vision_labels_describe_the_rendered_content():
    """The vision stage's labels come from the scenes themselves, on train images only."""
    world = generate("micro")
    from kore_bench.world.glyphs import ALPHABET
    from kore_bench.world.labels import IGNORE, heads, labelled_images, scene_labels
    from kore_bench.world.skills import ShapesScene, TextScene

    counting = next(it for it in world.skills["counting"] if it.split == "train")
    y = scene_labels(counting.scene)
    assert y["count"] == int(counting.answer) - 1
    assert sum(v > 0 for k, v in y.items() if k.startswith("shape_")) == int(counting.answer)
    ocr = next(it for it in world.skills["ocr"] if it.split == "train")
    assert isinstance(ocr.scene, TextScene)
    assert "".join(ALPHABET[v] for v in scene_labels(ocr.scene).values()) == ocr.answer

    train, test = labelled_images(world, "train"), labelled_images(world, "test")
    names = list(heads(world))
    n_scenes = sum(it.split == "train" and isinstance(it.scene, (ShapesScene, TextScene))
                   for items in world.skills.values() for it in items)
    assert len(train.images) == len(world.old) * len(VIEW_SPLITS["train"]) + n_scenes
    entity_col = names.index("old_entity")
    entity_rows = [r for r in train.labels if r[entity_col] != IGNORE]
    assert Counter(r[entity_col] for r in entity_rows) == {i: len(VIEW_SPLITS["train"]) for i in range(len(world.old))}
    assert len([r for r in test.labels if r[entity_col] != IGNORE]) == len(world.old) * len(VIEW_SPLITS["test"])
