"""``replay``: a memory of old-knowledge data rehearsed alongside LoRA's own batches."""
from __future__ import annotations

import random

import torch

from kore_bench.method import TrainContext
from kore_bench.registry import load_methods
from kore_bench.suites import load_suites
from kore_bench.train import _memory_draws


def test_memory_draws_cover_every_sample_once_per_pass():
    memory = [{"i": i} for i in range(10)]
    draws = _memory_draws(memory, 4, random.Random(0))
    seen = [d["i"] for _ in range(5) for d in next(draws)]  # 20 draws = two full passes
    assert sorted(seen[:10]) == sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:20]  # each pass in its own order
    assert next(_memory_draws([], 0, random.Random(0))) == []  # no memory: batches as without replay


def test_replay_keeps_more_old_knowledge_than_lora(micro_base, micro_world, tmp_path):
    """Same new-data batches as LoRA (same seed), plus a memory of 10 % of the old-knowledge pool:
    the injected knowledge is learnt as well, and held-out old facts are kept better."""
    from kore_bench.evaluate.backends import evaluate_suite

    suites = load_suites()
    new = suites["world-new"].with_variables(world=str(micro_world))
    retention = suites["world-retention"].with_variables(world=str(micro_world))
    pool = retention.train_samples()
    methods = load_methods()
    replay = methods.get("replay")()
    ctx = TrainContext(micro_base, new.train_samples(), pool, 0, tmp_path / "replay", new, progress=False)

    memory = replay.memory(ctx)
    assert len(memory) == round(0.1 * len(pool))
    assert {s.id for s in memory} <= {s.id for s in pool}
    assert [s.id for s in memory] == [s.id for s in replay.memory(ctx)]
    assert [s.id for s in memory] != [s.id for s in replay.memory(TrainContext(**{**vars(ctx), "seed": 1}))]

    def score(trained, suite, task) -> float:
        tasks, _ = evaluate_suite(trained.model, trained.processor, suite, None, "test", 32)
        return next(iter(tasks[task]["metrics"].values()))

    torch.manual_seed(0)  # as the runner does: adapter inits come before the trainer seeds
    lora = methods.get("lora")().train(TrainContext(**{**vars(ctx), "artifact_dir": tmp_path / "lora"}))
    torch.manual_seed(0)
    rehearsed = replay.train(ctx)
    old_facts = {name: score(m, retention, "old_facts") for name, m in (("lora", lora), ("replay", rehearsed))}
    new_facts = {name: score(m, new, "world-new") for name, m in (("lora", lora), ("replay", rehearsed))}
    assert old_facts["replay"] > old_facts["lora"] + 10, old_facts
    assert new_facts["replay"] > new_facts["lora"] - 10, new_facts
