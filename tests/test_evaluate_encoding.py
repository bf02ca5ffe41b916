"""The evaluator's chunked prompt encoding gives exactly the per-sample features, so greedy answers
cannot change (batches are built from the same tensors)."""
from __future__ import annotations

import random

import pytest
import torch

from kore_bench.evaluate import generation as evaluate
from kore_bench.encoding import encode_prompt


@pytest.fixture(scope="module", params=["llava", "qwen"])
def tiny(request):
    from kore_bench.models.tiny import build_tiny
    from kore_bench.models.tokenizer import train_tokenizer

    tok = train_tokenizer(["how many shapes are in the image? 3", "what is 4 + 5? 9"] * 20, 300)
    return build_tiny(request.param, tok, "micro", seed=0)


@pytest.fixture(scope="module")
def mixed_samples(micro_world):
    from kore_bench.suites import load_suites

    suites = load_suites()
    samples = []
    for name in ("world-retention", "world-new"):
        suite = suites[name].with_variables(world=str(micro_world))
        samples += [s for t in suite.tasks for s in suite.task_samples(t)]
    random.Random(0).shuffle(samples)  # chunks mix image and text-only prompts of many lengths
    assert any(s.image is None for s in samples) and any(s.image is not None for s in samples)
    return samples


def test_chunked_encoding_equals_per_sample(tiny, mixed_samples, monkeypatch):
    _, processor = tiny
    calls = []
    real = evaluate._encode_chunk
    monkeypatch.setattr(evaluate, "_encode_chunk", lambda p, c: calls.append(r := real(p, c)) or r)
    got = evaluate.encode_prompts(processor, mixed_samples)
    assert calls and all(c is not None for c in calls)  # the fast path was taken
    want = [encode_prompt(processor, s) for s in mixed_samples]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            assert g[k].dtype == w[k].dtype and torch.equal(g[k], w[k]), k


def test_unsplittable_output_falls_back_to_per_sample(tiny, mixed_samples, monkeypatch):
    _, processor = tiny
    monkeypatch.setattr(evaluate, "_encode_chunk", lambda p, c: None)
    got = evaluate.encode_prompts(processor, mixed_samples[:5])
    want = [encode_prompt(processor, s) for s in mixed_samples[:5]]
    assert all(evaluate._same(g, w) for g, w in zip(got, want))


def test_wrong_split_is_caught_by_the_check(tiny, mixed_samples, monkeypatch):
    _, processor = tiny
    real = evaluate._encode_chunk

    def off_by_one(p, chunk):
        out = real(p, chunk)
        return [{k: (v[:, 1:] if k == "input_ids" else v) for k, v in f.items()} for f in out]

    monkeypatch.setattr(evaluate, "_encode_chunk", off_by_one)
    got = evaluate.encode_prompts(processor, mixed_samples[:5])
    want = [encode_prompt(processor, s) for s in mixed_samples[:5]]
    assert all(evaluate._same(g, w) for g, w in zip(got, want))


def test_generate_answers_unchanged(tiny, mixed_samples, monkeypatch):
    model, processor = tiny
    samples = mixed_samples[:24]
    fast = evaluate.generate(model, processor, samples, max_new_tokens=4, batch_size=8)
    monkeypatch.setattr(evaluate, "encode_prompts", lambda p, ss: [encode_prompt(p, s) for s in ss])
    assert evaluate.generate(model, processor, samples, max_new_tokens=4, batch_size=8) == fast
