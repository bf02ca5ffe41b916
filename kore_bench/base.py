"""The base model every method starts from: kore-tiny pre-trained on the old world, or a real
Hugging Face model given by id or path.

kore-tiny's recipe is deterministic: a tokenizer trained on the old world's pre-training text,
a tiny LLaVA (or Qwen2.5-VL) built from a size preset, then stages as real LMMs are made:
(0) the vision tower and projector learn the training images' content (:mod:`kore_bench.world.labels`,
the stand-in for a pre-trained CLIP); then, with the vision tower frozen, (1) optionally a knowledge
stage on the old-entity conversations alone and (2) a fixed number of AdamW steps on all of
``train/old_knowledge.json`` (old-entity conversations and skills). The result is cached by
fingerprint (world preset and seed, model config, recipe) and sealed with checksums; a corrupt
entry is rebuilt, not loaded.

The build runs on the recipe's number of torch threads whatever the machine has (``Recipe.threads``,
part of the fingerprint): the thread count changes the order of floating-point sums, so pinned, every
machine with the same torch build makes the same bytes and a fresh clone reproduces the base behind
``results/``. A recipe must learn every skill whatever that order: world v5's reasoning scored 87 in a
1-thread build and 50, chance, in a 2-thread build of the same recipe; repeating its items in the
language stage (``Recipe.oversample``) made it learned in both.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from . import cache, integrity
from .data import load_conversations
from .errors import UnknownNameError
from .progress import Progress
from .store import fingerprint
from .world import World, generate

if TYPE_CHECKING:  # kore_bench.method imports torch; base info and fingerprints do without it
    from .method import BaseModelRef

RECIPE_VERSION = 4  # bump when the trainer or encoding change in a way that changes the base
ARCHS = ("llava", "qwen")


@dataclass(frozen=True)
class Recipe:
    """Pre-training settings of kore-tiny for one world preset."""

    model_size: str
    vocab_size: int
    steps: int
    batch_size: int
    lr: float
    vision_steps: int
    knowledge_steps: int = 0  # old-entity conversations alone, before the full mix
    vision_batch_size: int = 128
    vision_lr: float = 1e-3
    fresh_scenes: int = 0  # vision stage: fresh renderings per shape skill, from keys no dev/test item uses
    view_pair_weight: float = 0.0  # vision stage: weight of the loss pulling two views of an old entity together
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    oversample: tuple[tuple[str, int], ...] = ()  # language stage: (category, k): its items k times in the mix
    threads: int = 1  # torch threads the build runs on (module docstring)


# Measured on the default world (probes, README): with lr 2e-3 and no vision stage the model never
# used the image within 2,500 steps; 500 vision steps make held-out counts, characters and old-entity
# identity linearly readable (99 / 100 / 95+ %). Old facts then sit on a plateau whose length grows
# steeply with the fact load and which the skills in the mix stretch further: 32 old people reach
# 53 % within 200 fact-only steps where 96 old entities stay at 3 % after 500, and in the full mix
# 36 stay at 0 % after 900 steps. Hence a knowledge stage before the mix on the default world.
# With world v3 (12 training views, held-out phrasings that recombine trained words) the same
# recipe reached 78-90 % held-out old facts depending on the machine (a loss spike in the knowledge
# stage); 800 mix steps instead of 600 gave 83.3 %, not more. World v4 (biographies) with 450
# knowledge steps: 93.5 % (knowledge-stage loss 0.02 at its end). World v5 on two threads: reasoning
# 50 (chance) after 600 mix steps; with its items twice in the mix 100 (old facts 95.2), and after
# 700 steps 99 (old facts 95.8), from the same knowledge-stage checkpoint.
RECIPES: dict[str, Recipe] = {
    "micro": Recipe(model_size="micro", vocab_size=512, steps=420, batch_size=32, lr=1e-3, vision_steps=100,
                    fresh_scenes=100, view_pair_weight=1.0),
    "small": Recipe(model_size="small", vocab_size=1024, steps=900, batch_size=32, lr=1e-3, vision_steps=500),
    "default": Recipe(model_size="default", vocab_size=1024, steps=700, batch_size=32, lr=1e-3,
                      vision_steps=800, knowledge_steps=450, fresh_scenes=1500, view_pair_weight=1.0,
                      oversample=(("reasoning", 2),), threads=2),
}


def _recipe(world: str) -> Recipe:
    if world not in RECIPES:
        raise UnknownNameError("world preset", world, RECIPES)
    return RECIPES[world]


def base_fingerprint(world: str, arch: str, seed: int | None = None) -> str:
    from .models.sizes import SIZES
    from .world import PRESETS

    if arch not in ARCHS:
        raise UnknownNameError("architecture", arch, ARCHS)
    recipe = _recipe(world)
    world_seed = PRESETS[world].seed if seed is None else seed
    size = dataclasses.asdict(SIZES[recipe.model_size])
    return fingerprint("kore-tiny", RECIPE_VERSION, world, world_seed, cache.world_code_fingerprint(),
                       cache.code_fingerprint("models/tokenizer.py", "models/tiny.py", "models/sizes.py"), arch, size,
                       dataclasses.asdict(recipe))


def base_dir(world: str, arch: str = "llava", seed: int | None = None) -> Path:
    return cache.cache_root() / "bases" / f"{world}-{arch}-{base_fingerprint(world, arch, seed)}"


def build_base(world: str, arch: str = "llava", seed: int | None = None, force: bool = False,
               console: Console | None = None) -> BaseModelRef:
    """The cached kore-tiny base for a world preset, building it if absent or corrupt."""
    from .method import BaseModelRef

    console = console or Console(stderr=True)
    target = base_dir(world, arch, seed)
    fp = target.name.rsplit("-", 1)[1]
    ref = BaseModelRef(str(target / "model"), fp, f"kore-tiny {arch} ({world} world)")
    if target.exists() and not force and cache.verify(target) is None:
        integrity.clean_stale_if_idle(target)
        return ref
    with integrity.build_lock(target, console):  # a concurrent build of the same base is waited for
        problem = cache.verify(target) if target.exists() else "absent"
        if problem is None and not force:
            return ref  # another process built it while this one waited
        if problem != "absent":
            console.print(f"[yellow]cached base {target.name}: {problem}; rebuilding[/]")
        with _pinned_threads(_recipe(world).threads):
            _build(world, arch, seed, target, console)
    return ref


@contextmanager
def _pinned_threads(n: int) -> Iterator[None]:
    """Pin torch to ``n`` threads for the build (module docstring: reproducible bytes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(world: str, arch: str, seed: int | None, target: Path, console: Console) -> None:
    import torch

    from .models import parts
    from .models.loading import save_model
    from .models.tiny import build_tiny
    from .models.tokenizer import train_tokenizer
    from .train import TrainConfig, TrainInfo, train_model

    recipe = _recipe(world)
    wdir = cache.world_dir(world, seed, console)
    samples = load_conversations(wdir / "train" / "old_knowledge.json", wdir)[0]
    started = time.perf_counter()
    tokenizer = train_tokenizer((s.text() for s in samples), recipe.vocab_size)
    torch.manual_seed(0)
    model, processor = build_tiny(arch, tokenizer, recipe.model_size, seed=0)
    console.print(f"pre-training kore-tiny ({arch}, {sum(p.numel() for p in model.parameters()):,} parameters): "
                  f"vision stage, {recipe.vision_steps} steps")
    vision = pretrain_vision(model, processor, generate(world, seed), recipe)
    console.print(f"vision stage: held-out accuracy {vision}")
    projector = {id(p) for p in parts.projector(model).parameters()}  # Qwen's sits inside its vision tower
    frozen = [p for p in parts.vision_tower(model).parameters() if p.requires_grad and id(p) not in projector]
    for p in frozen:
        p.requires_grad_(False)

    def language_stage(stage_samples: list, steps: int, what: str) -> TrainInfo:
        console.print(f"{what}: {len(stage_samples):,} conversations, {steps} steps")
        cfg = TrainConfig(lr=recipe.lr, steps=steps, batch_size=recipe.batch_size,
                          warmup_ratio=recipe.warmup_ratio, weight_decay=recipe.weight_decay)
        return train_model(model, processor, stage_samples, cfg, seed=0, label=f"base: {what.split(' (')[0]}")

    knowledge = None
    if recipe.knowledge_steps:
        old_entities = [s for s in samples if s.meta.get("category") == "old_knowledge"]
        knowledge = language_stage(old_entities, recipe.knowledge_steps, "knowledge stage (old entities)").to_dict()
    mix = list(samples)
    for category, k in recipe.oversample:
        mix += [s for s in samples if s.meta.get("category") == category] * (k - 1)
    info = language_stage(mix, recipe.steps, "language stage (old entities and skills)")
    for p in frozen:
        p.requires_grad_(True)
    tmp = cache.new_temp_dir(target.parent, target.name)
    save_model(model, processor, tmp / "model")
    meta = {
        "fingerprint": target.name.rsplit("-", 1)[1],
        "world": world, "world_seed": seed, "arch": arch, "recipe": dataclasses.asdict(recipe),
        "recipe_version": RECIPE_VERSION, "parameters": sum(p.numel() for p in model.parameters()),
        "vision_stage": vision, "knowledge_stage": knowledge, "train": info.to_dict(),
        "build_seconds": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads(),
    }
    (tmp / "base_info.json").write_text(json.dumps(meta, indent=2))
    integrity.fault_point("base-publish")
    cache.publish(tmp, target)
    console.print(f"base ready in {meta['build_seconds']} s: {target}")


def pretrain_vision(model, processor, world: World, recipe: Recipe) -> dict[str, float]:
    """Stage 0: train the vision tower and projector to predict the training images' labels.

    Linear heads read the flattened image tokens the language model will see; they are thrown
    away afterwards. Returns held-out accuracy per label group (test scenes, test views).
    """
    import torch

    from .models import parts
    from .world.labels import IGNORE, labelled_images

    train, test = labelled_images(world, "train", recipe.fresh_scenes), labelled_images(world, "test")

    def encode(images: list) -> list[dict[str, torch.Tensor]]:
        return [dict(processor.image_processor([im], return_tensors="pt")) for im in images]

    def features(encoded: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """The image tokens the language model sees, flattened: (images, tokens x width)."""
        inputs = {k: torch.cat([e[k] for e in encoded]) for k in encoded[0]}
        out = model.get_image_features(**inputs).pooler_output
        return torch.stack([f.flatten() for f in out]) if isinstance(out, (list, tuple)) else out.flatten(1)

    train_inputs = encode(train.images)
    torch.manual_seed(0)
    width = features(train_inputs[:1]).shape[1]
    heads = torch.nn.ModuleList(torch.nn.Linear(width, n) for n in train.heads.values())
    params = [*parts.vision_tower(model).parameters(), *parts.projector(model).parameters(), *heads.parameters()]
    params = list({id(p): p for p in params}.values())  # Qwen's projector lives inside its vision tower
    optimizer = torch.optim.AdamW(params, lr=recipe.vision_lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.vision_lr,
                                                   total_steps=recipe.vision_steps, pct_start=recipe.warmup_ratio)
    labels = torch.tensor(train.labels)
    entity_col = list(train.heads).index("old_entity")
    views: dict[int, list[int]] = {}  # old entity -> indices of its training views
    for i, row in enumerate(train.labels):
        if row[entity_col] != IGNORE:
            views.setdefault(row[entity_col], []).append(i)
    entities = sorted(views)
    generator = torch.Generator().manual_seed(0)
    model.train()
    bar = Progress("base: vision stage", recipe.vision_steps, unit="steps", loss=float("nan"))
    for _ in range(recipe.vision_steps):
        idx = torch.randint(0, len(train_inputs), (recipe.vision_batch_size,), generator=generator).tolist()
        feats = features([train_inputs[i] for i in idx])
        y = labels[idx]
        loss = sum(torch.nn.functional.cross_entropy(h(feats), y[:, j], ignore_index=IGNORE)
                   for j, h in enumerate(heads) if (y[:, j] != IGNORE).any())
        if recipe.view_pair_weight:  # two training views of each of a batch of old entities: pulled together
            picks = torch.randint(0, len(entities), (min(32, len(entities)),), generator=generator).tolist()
            pairs = [[views[entities[e]][k] for k in torch.randperm(len(views[entities[e]]), generator=generator)[:2]]
                     for e in picks]
            f = features([train_inputs[i] for pair in pairs for i in pair]).view(len(pairs), 2, -1)
            cos = torch.nn.functional.cosine_similarity(f[:, 0], f[:, 1], dim=-1)
            loss = loss + recipe.view_pair_weight * (1 - cos).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        bar.advance(loss=loss.item())
    bar.close()
    model.eval()
    with torch.no_grad():
        feats, y = features(encode(test.images)), torch.tensor(test.labels)
        hits: dict[str, list[float]] = {}
        for j, (name, h) in enumerate(zip(test.heads, heads)):
            mask = y[:, j] != IGNORE
            if mask.any():
                group = name.split("_")[0] if name[-1].isdigit() else name
                hits.setdefault(group, []).append((h(feats[mask]).argmax(1) == y[mask, j]).float().mean().item())
    return {g: round(100 * sum(v) / len(v), 1) for g, v in hits.items()}


def base_info(world: str, arch: str = "llava", seed: int | None = None) -> dict[str, Any] | None:
    """What is known about the cached base (None when not built)."""
    target = base_dir(world, arch, seed)
    if not (target / "base_info.json").exists():
        return None
    info = json.loads((target / "base_info.json").read_text())
    info["path"] = str(target)
    info["intact"] = cache.verify(target) is None
    if (target / "scores.json").exists():
        info["scores"] = json.loads((target / "scores.json").read_text())
    if (target / "at_chance.json").exists():  # retention tasks the base knows no better than chance
        info["at_chance"] = json.loads((target / "at_chance.json").read_text())
    return info


def external_base(model: str) -> BaseModelRef:
    """A Hugging Face model id or local path as the base (fingerprinted by its files' content, so
    another checkpoint with the same config is another base)."""
    from .method import BaseModelRef
    from .unit_key import weights_hash

    return BaseModelRef(model, fingerprint("external", weights_hash(model)), model)


def evaluate_base(world: str, arch: str = "llava", seed: int | None = None, limit: int | None = None,
                  console: Console | None = None) -> dict[str, float]:
    """Score the cached base on the world's suites (test split) and store it beside the base."""
    from .evaluate.backends import evaluate_suite
    from .suites import load_suites

    console = console or Console(stderr=True)
    ref = build_base(world, arch, seed, console=console)
    wdir = cache.world_dir(world, seed)
    model, processor = ref.load()
    suites = load_suites()
    from .evaluate.metrics import within_chance

    scores: dict[str, float] = {}
    at_chance: list[str] = []
    for name in ("world-new", "world-retention"):
        suite = suites[name].with_variables(world=str(wdir))
        tasks, _ = evaluate_suite(model, processor, suite, limit, "test", 64)
        for task, t in tasks.items():
            for metric, value in t["metrics"].items():
                scores[f"{task} {metric}"] = value
            primary = t["metrics"][t["primary_metric"]]
            if name == "world-retention" and t["chance"] is not None and within_chance(primary / 100, t["n"], t["chance"]):
                at_chance.append(task)
    target = base_dir(world, arch, seed)
    (target / "scores.json").write_text(json.dumps(scores, indent=2))
    (target / "at_chance.json").write_text(json.dumps(at_chance))
    return scores
