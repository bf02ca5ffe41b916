"""Writing a world to disk, atomically and byte-reproducibly.

Layout (all image paths in records are relative to the export root)::

    world.json                    entities, facts, views, phrasings, skills (format kore-bench-world/1)
    evoke_injection_data.json     new entities: describe conversation on view 0
    evoke_evaluation_data.jsonl   new entities: test views x test phrasings
    evoke_dev_data.jsonl          new entities: dev view x dev phrasing
    retention/<skill>.jsonl       test + dev items (perception: retention/perception.tsv, VLMEvalKit)
    retention/old_facts.jsonl     old entities: test/dev views + phrasings
    train/old_knowledge.json      pre-training conversations (LLaVA format), also the replay pool
    images/entities/<eid>_v<k>.png, images/skills/<skill>/<item id>.png
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..data import MC_SUFFIX, SHORT_ANSWER_SUFFIX
from ..errors import KoreBenchError
from . import facts as F
from . import render
from .datasets import (evoke_records, injection_records, old_fact_records, pretraining_records,
                       skill_records)
from .generate import N_VIEWS, VIEW_SPLITS, World, generate
from .presets import GENERATOR_VERSION
from .skills import SKILL_DESCRIPTIONS, SkillItem

FORMAT = "kore-bench-world/1"
TSV_SKILLS = ("perception",)  # exported as VLMEvalKit TSV (an open question: no option columns)


def export_world(preset: str, out: Path | str, seed: int | None = None) -> World:
    """Generate the ``preset`` world from ``seed`` and export it to ``out`` (the CLI's entry point)."""
    world = generate(preset, seed)
    export(world, Path(out))
    return world


def export(world: World, out_dir: Path) -> None:
    """Write ``world`` into ``out_dir``; refuses a non-empty target, leaves nothing half-written."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise KoreBenchError(f"cannot export the world to {out_dir}: it exists and is not a directory")
        if any(out_dir.iterdir()):
            raise KoreBenchError(f"refusing to export the world into {out_dir}: the directory is not empty "
                                 "(choose a new directory or remove this one)")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as e:
        raise KoreBenchError(f"cannot export the world to {out_dir}: {out_dir.parent} is not writable "
                             f"({e.strerror or e})") from e
    try:
        _write_all(world, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0o700
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); os.replace cannot replace a directory everywhere
        os.replace(tmp, out_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KoreBenchError(f"cannot export the world to {out_dir}: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ writers
def _dump(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=indent)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    _write_text(path, "".join(_dump(r) + "\n" for r in records))


def _write_png(root: Path, rel: str, img) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render.png_bytes(img))


def _perception_tsv(items: list[SkillItem]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["index", "image", "question", "answer", "category", "split"])
    for i, it in enumerate(x for x in items if x.split != "train"):
        assert it.scene is not None
        b64 = base64.b64encode(render.png_bytes(it.scene.render())).decode("ascii")
        w.writerow([i, b64, it.question, it.answer, it.skill, it.split])
    return buf.getvalue()


def _write_all(world: World, root: Path) -> None:
    for e in world.entities:
        for k in range(N_VIEWS):
            _write_png(root, e.view_path(k), e.render_view(k))
    for skill, items in world.skills.items():
        for it in items:
            if it.scene is not None and not (skill in TSV_SKILLS and it.split != "train"):
                _write_png(root, it.image, it.scene.render())
        if skill in TSV_SKILLS:
            _write_text(root / "retention" / f"{skill}.tsv", _perception_tsv(items))
        else:
            _write_jsonl(root / "retention" / f"{skill}.jsonl", skill_records(items))
    _write_jsonl(root / "retention" / "old_facts.jsonl", old_fact_records(world))
    _write_text(root / "evoke_injection_data.json", _dump(injection_records(world)))
    _write_jsonl(root / "evoke_evaluation_data.jsonl", evoke_records(world, "test"))
    _write_jsonl(root / "evoke_dev_data.jsonl", evoke_records(world, "dev"))
    _write_text(root / "train" / "old_knowledge.json", _dump(pretraining_records(world)))
    _write_text(root / "world.json", _dump(world_json(world), indent=1) + "\n")


def world_json(world: World) -> dict[str, Any]:
    """The world's full structure: enough to rebuild every question and answer from the facts."""
    def count(items: list[SkillItem], split: str) -> int:
        return sum(it.split == split for it in items)

    return {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "preset": world.preset.name,
        "seed": world.seed,
        "entities": [{
            "id": e.id, "name": e.name, "type": e.type, "hypernym": e.hypernym, "split": e.split,
            "facts": [{"relation": f.relation, "value": f.value} | ({"value_entity": f.value_entity}
                                                                    if f.value_entity else {}) for f in e.facts],
            "description": e.description,
            "appearance": e.appearance.describe(e.type),
            "views": {s: e.view_paths(s) for s in VIEW_SPLITS},
        } for e in world.entities],
        "relations": {name: {s: list(r.templates(s)) for s in F.SPLITS} for name, r in F.RELATIONS.items()},
        "relation_info": {name: {"types": list(r.types), "answer": r.answer} for name, r in F.RELATIONS.items()},
        "templates": {
            "placeholders": {"{subject}": "the entity's hypernym", "{Subject}": "the hypernym, capitalised"},
            "question_suffix": "\n" + SHORT_ANSWER_SUFFIX,
            "mc_suffix": MC_SUFFIX,
            "describe_prompts": list(F.DESCRIBE_PROMPTS),
            "injection_prompt": F.DESCRIBE_PROMPTS[0],
        },
        "hypernyms": dict(F.HYPERNYMS),
        "vocabularies": {"occupation": list(F.OCCUPATIONS), "industry": list(F.INDUSTRIES),
                         "country": list(world.countries)},
        "view_splits": {s: list(v) for s, v in VIEW_SPLITS.items()},
        "skills": [{
            "name": skill,
            "description": SKILL_DESCRIPTIONS[skill],
            "file": f"retention/{skill}.{'tsv' if skill in TSV_SKILLS else 'jsonl'}",
            "format": "vlmevalkit-tsv" if skill in TSV_SKILLS else "kore-bench-jsonl",
            "answer_match": "exact" if skill == "instruction" else "cem",
            "counts": {s: count(items, s) for s in F.SPLITS},
        } for skill, items in world.skills.items()] + [{
            "name": "old_facts", "description": "facts of old entities on test/dev views and phrasings",
            "file": "retention/old_facts.jsonl", "format": "kore-bench-jsonl", "answer_match": "cem",
            "counts": {s: sum(r["split"] == s for r in old_fact_records(world)) for s in F.SPLITS},
        }],
        "files": {"injection": "evoke_injection_data.json", "evaluation": "evoke_evaluation_data.jsonl",
                  "dev": "evoke_dev_data.jsonl", "pretraining": "train/old_knowledge.json"},
    }
