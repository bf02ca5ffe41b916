"""Every registered method, proven the same way (as peft's ``test_custom_models.py``): on the micro
world and base it trains a few steps, the new knowledge's loss falls, its artifact reloads into a
fresh base to identical logits without training again (what resume does), and it trains exactly
the parameters it declares. A newly registered method is picked up here without editing.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from kore_bench.method import TrainContext
from kore_bench.registry import load_methods

METHOD_KEYS = load_methods().names()
# small budgets for the micro checks; only the settings a method's config has are used
QUICK = {"steps": 4, "batch_size": 8, "warmup_ratio": 0.0, "calibration_samples": 16, "fisher_samples": 8,
         "stage1_steps": 3}


@pytest.fixture(scope="module")
def micro_data(micro_world):
    from kore_bench.suites import load_suites

    suites = load_suites()
    new = suites["world-new"].with_variables(world=str(micro_world)).train_samples()[:8]
    old = suites["world-retention"].with_variables(world=str(micro_world)).train_samples()[:16]
    return new, old


def quick_method(key: str):
    cls = load_methods().get(key)
    names = {f.name for f in dataclasses.fields(cls.Config)}
    return cls.from_overrides({k: v for k, v in QUICK.items() if k in names})


def batch_of(processor, samples):
    from kore_bench.encoding import collate
    from kore_bench.train import _pad_id, encode_all

    return collate(encode_all(processor, samples), _pad_id(processor))


@torch.no_grad()
def forward(model, batch):
    model.eval()
    return model(**batch)


@pytest.fixture(scope="module")
def trained(micro_base, micro_new_suite, micro_data, tmp_path_factory):
    """Train each method once per module: key → (method, ctx, trained model)."""
    done = {}

    def get(key: str):
        if key not in done:
            method = quick_method(key)
            new, old = micro_data
            ctx = TrainContext(micro_base, new, old, 0, tmp_path_factory.mktemp(key.replace("/", "_")) / "artifact",
                               micro_new_suite, progress=False)
            torch.manual_seed(0)
            done[key] = (method, ctx, method.train(ctx))
        return done[key]

    return get


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_trains_and_the_new_knowledge_loss_falls(key, trained, micro_base, micro_data):
    method, ctx, result = trained(key)
    if result.info is None:
        assert method.declared_trainable(micro_base.load()[0]) == 0, f"{key} trains nothing but declares parameters"
        return
    assert result.info.steps >= QUICK["steps"]
    base, processor = micro_base.load()
    batch = batch_of(processor, micro_data[0])
    before, after = forward(base, batch).loss.item(), forward(result.model, batch).loss.item()
    assert after < before - 1e-3, (key, before, after)


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_artifact_reloads_to_identical_logits_without_training(key, trained, micro_data, monkeypatch):
    import kore_bench.train

    method, ctx, result = trained(key)

    def no_training(*args, **kwargs):
        raise AssertionError(f"{key}: load() trained instead of loading the artifact")

    monkeypatch.setattr(kore_bench.train, "Accelerator", no_training)
    reloaded = method.load(ctx)
    batch = batch_of(result.processor, micro_data[0])
    expected, got = forward(result.model, batch).logits, forward(reloaded.model, batch).logits
    assert torch.equal(expected, got), (key, (expected - got).abs().max().item())


@pytest.mark.parametrize("key", METHOD_KEYS)
def test_trains_exactly_the_declared_parameters(key, trained, micro_base):
    method, ctx, result = trained(key)
    declared = method.declared_trainable(micro_base.load()[0])
    assert (result.info.trainable_params if result.info else 0) == declared
