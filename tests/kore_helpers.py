"""A micro kore-tiny model and synthetic image+question samples for the covariance / KORE tests.

Independent of the world module: images are random-coloured 32 px squares with noise, questions
are random word strings of varying length (so batches need padding).
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import torch
from PIL import Image

from kore_bench.data import ImageRef, Sample
from kore_bench.encoding import collate, encode_prompt

WORDS = ("what colour is the shape in the picture red green blue square circle tell me about it "
         "please who where when does this show a small large dark light object").split()


def tokenizer():
    from kore_bench.models.tokenizer import train_tokenizer

    return train_tokenizer([" ".join(WORDS)] * 3 + ["0 1 2 3 4 5 6 7 8 9"], 300)


def micro(arch: str = "llava", seed: int = 0):
    from kore_bench.models.tiny import build_tiny

    return build_tiny(arch, tokenizer(), "micro", seed=seed)


def samples(n: int, seed: int = 0, turns: int = 1) -> list[Sample]:
    """``n`` image+question samples with answers (and ``turns`` rounds of dialogue)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        image = Image.new("RGB", (32, 32), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(30):
            image.putpixel((rng.randrange(32), rng.randrange(32)), tuple(rng.randrange(256) for _ in range(3)))
        buf = io.BytesIO()
        image.save(buf, "PNG")
        messages = []
        for t in range(turns):
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 16)))
            messages.append({"role": "user", "content": ("<image>\n" if t == 0 else "") + question})
            messages.append({"role": "assistant", "content": rng.choice(WORDS)})
        out.append(Sample(f"s{seed}-{i}", messages, ImageRef(data=buf.getvalue()), source=f"synthetic:{i}"))
    return out


def prompt_batch(processor, items: list[Sample]) -> dict[str, torch.Tensor]:
    return collate([encode_prompt(processor, s) for s in items], processor.tokenizer.pad_token_id)


def save_base(model, processor, directory: Path):
    """Save the model as a base model reference (what methods load)."""
    from kore_bench.method import BaseModelRef
    from kore_bench.models.loading import save_model

    save_model(model, processor, directory)
    return BaseModelRef(str(directory), f"test-{directory.name}")
