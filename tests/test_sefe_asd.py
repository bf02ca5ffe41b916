"""SEFE's ASD (answer-style diversification): the template writer's samples are pinned, and the
``llm`` writer, against a local OpenAI-protocol server, rewrites the chosen share, falls back to
the template for a reply that fails validation (counted), caches replies and is chosen by ``auto``
exactly as kore's augmenter is."""
from __future__ import annotations

import hashlib
import json

import pytest

from kore_bench.data import Sample
from kore_bench.methods.sefe import diversify_answers


def make_samples(n: int = 40) -> list[Sample]:
    """Single-turn image questions with repeating answers, and a few multi-turn samples ASD skips."""
    out = []
    for i in range(n):
        if i % 13 == 5:
            out.append(Sample(id=f"m{i}", messages=[{"role": "user", "content": "<image>\nWho?"},
                                                    {"role": "assistant", "content": "A"},
                                                    {"role": "user", "content": "And?"},
                                                    {"role": "assistant", "content": "B"}]))
            continue
        out.append(Sample(id=f"s{i}", meta={"k": i}, messages=[
            {"role": "user", "content": f"<image>\nWhat is fact {i} of the company in the image?"},
            {"role": "assistant", "content": f"Answer {i % 17}"}]))
    return out


def digest(rows: list[Sample]) -> str:
    return hashlib.sha256(json.dumps([(s.id, s.messages, s.answer, s.meta) for s in rows],
                                     sort_keys=True).encode()).hexdigest()


# sha256 of the template writer's output before the llm writer was added (commit 2bf9825)
PINNED = {(0, 0.2, 40): "f6869b1bdf84322036859ac5c9e2eb335438f68c2019d95e297984097464c771",
          (0, 0.5, 40): "d32bcc56aab4285b19223ebc766bbba4fd67d59a237feac2bc79cbfe2e0a92a6",
          (0, 1.0, 3): "079cec0146d85b2d076da5caccff0161a83fea5a9fafc78c816af210b1108150",
          (1, 0.2, 40): "aea1b1263d573c81658ee68b97ac40e0a1d5387e5e30ba1178a874269fa0d1d5",
          (1, 0.5, 40): "091433c04047a9e835a3d5063ebf82ea43bf2aa74fcd9da5d1b15b3bb92061ef"}


@pytest.mark.parametrize("seed,share,n", sorted(PINNED))
def test_template_asd_output_is_pinned(seed, share, n):
    assert digest(diversify_answers(make_samples(n), share, seed)) == PINNED[(seed, share, n)]
