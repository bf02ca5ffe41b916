"""Chat-template encoding: labels cover exactly the assistant turns; padding keeps images intact."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from kore_bench.data import ImageRef, Sample
from kore_bench.encoding import IGNORE_INDEX, collate, encode_for_training, encode_prompt


@pytest.fixture(scope="module", params=["llava", "qwen"])
def tiny(request, tmp_path_factory):
    from kore_bench.models.tiny import build_tiny
    from kore_bench.models.tokenizer import train_tokenizer

    texts = ["what colour is the square? red", "and the circle? blue", "how many shapes are there? 3"] * 20
    tok = train_tokenizer(texts, 300)
    model, processor = build_tiny(request.param, tok, "micro", seed=0)
    img = tmp_path_factory.mktemp("img") / "a.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(img)
    return processor, ImageRef(path=str(img))


def _dialogue(image):
    return Sample("d1", [
        {"role": "user", "content": "<image>\nwhat colour is the square?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "and the circle?"},
        {"role": "assistant", "content": "blue"},
    ], image=image)


def test_labels_are_exactly_the_assistant_turns(tiny):
    processor, image = tiny
    f = encode_for_training(processor, _dialogue(image))
    labels = f["labels"][0]
    assert labels.shape == f["input_ids"][0].shape
    learned = labels[labels != IGNORE_INDEX]
    text = processor.tokenizer.decode(learned, skip_special_tokens=True)
    assert "".join(text.split()) == "redblue"  # ChatML also learns the newline after <|im_end|>
    # the end-of-turn token is learned too, so generation stops
    eos_like = {processor.tokenizer.eos_token_id, processor.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    assert sum(int(t) in eos_like for t in learned) == 2
    # image tokens are never targets
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert not (learned == image_id).any()


def test_text_only_sample_and_mixed_collation(tiny):
    processor, image = tiny
    text_only = Sample("t", [{"role": "user", "content": "what is 2 + 3?"}, {"role": "assistant", "content": "5"}])
    a = encode_for_training(processor, _dialogue(image))
    b = encode_for_training(processor, text_only)
    assert "pixel_values" not in b
    batch = collate([a, b], pad_id=processor.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2
    assert batch["pixel_values"].shape[0] == a["pixel_values"].shape[0]  # only the one image
    n_b = b["input_ids"].shape[1]
    assert (batch["labels"][1, n_b:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][1, n_b:] == 0).all()


def test_left_padding_for_generation(tiny):
    processor, image = tiny
    long = encode_prompt(processor, _dialogue(image).__class__("p", [{"role": "user", "content": "<image>\nwhat colour is the square and the circle?"}], image=image))
    short = encode_prompt(processor, Sample("q", [{"role": "user", "content": "hi"}]))
    batch = collate([long, short], pad_id=0, padding_side="left")
    pad = long["input_ids"].shape[1] - short["input_ids"].shape[1]
    assert (batch["attention_mask"][1, :pad] == 0).all()
    assert torch.equal(batch["input_ids"][1, pad:], short["input_ids"][0])
