"""Turning Samples into model inputs: one home for chat templating, label masking and padding.

Everything goes through the processor's chat template, so any image-text-to-text model whose
template is prefix-stable (rendering the first k turns with a generation prompt is a prefix of
rendering k+1 turns) is handled the same way: LLaVA-1.5, Qwen2.5-VL, kore-tiny.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .data import Sample
from .errors import KoreBenchError

IGNORE_INDEX = -100
# Per-token tensors are padded; every other tensor (pixel values, grids) is concatenated.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def _process(processor, text: str, sample: Sample) -> dict[str, torch.Tensor]:
    images = [sample.image.load()] if sample.image is not None else None
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images is not None:
        kwargs["images"] = images
    return dict(processor(**kwargs))


def render(processor, sample: Sample, add_generation_prompt: bool) -> str:
    """The sample's conversation rendered by the processor's chat template."""
    return processor.apply_chat_template(
        sample.chat(), add_generation_prompt=add_generation_prompt, tokenize=False
    )


def encode_for_training(processor, sample: Sample, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Model inputs with ``labels`` covering the assistant turns only (and their end token)."""
    chat = sample.chat()
    tok = _tokenizer(processor)
    full_text = processor.apply_chat_template(chat, tokenize=False)
    features = _process(processor, full_text, sample)
    ids = features["input_ids"][0]
    plain = tok(full_text)["input_ids"]
    # The processor only expands each image placeholder into the image's tokens; every prefix we
    # measure below contains the (single) image, so its length shifts by the same amount.
    expansion = len(ids) - len(plain)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for k, message in enumerate(chat):
        if message["role"] != "assistant":
            continue
        start = _prefix_len(tok, processor.apply_chat_template(chat[:k], add_generation_prompt=True, tokenize=False), plain, sample)
        end = _prefix_len(tok, processor.apply_chat_template(chat[: k + 1], tokenize=False), plain, sample)
        shift = expansion if sample.image is not None else 0
        labels[start + shift : end + shift] = ids[start + shift : end + shift]
    if not (labels != IGNORE_INDEX).any():
        raise KoreBenchError(f"{sample.source or sample.id}: no assistant turn to learn from")
    features["labels"] = labels[None]
    if max_length is not None and ids.shape[0] > max_length:
        raise KoreBenchError(
            f"{sample.source or sample.id}: {ids.shape[0]} tokens exceed max_length {max_length}"
        )
    return features


def _prefix_len(tok, prefix_text: str, full_ids: list[int], sample: Sample) -> int:
    ids = tok(prefix_text)["input_ids"]
    if full_ids[: len(ids)] != ids:
        raise KoreBenchError(
            f"{sample.source or sample.id}: the chat template is not prefix-stable "
            "(a conversation prefix tokenises differently inside the full conversation)"
        )
    return len(ids)


def encode_prompt(processor, sample: Sample) -> dict[str, torch.Tensor]:
    """Model inputs for generation: the conversation so far plus the assistant generation prompt."""
    return _process(processor, render(processor, sample, add_generation_prompt=True), sample)


def collate(features: Sequence[dict[str, torch.Tensor]], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad per-token tensors to the longest sequence and concatenate image tensors."""
    longest = max(f["input_ids"].shape[1] for f in features)
    batch: dict[str, torch.Tensor] = {}
    keys = {k for f in features for k in f}
    for key in keys:
        values = [f[key] for f in features if key in f]
        if key in SEQUENCE_KEYS:
            fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}.get(key, 0)
            padded = []
            for v in values:
                pad = torch.full((1, longest - v.shape[1]), fill, dtype=v.dtype)
                padded.append(torch.cat([v, pad] if padding_side == "right" else [pad, v], dim=1))
            batch[key] = torch.cat(padded, dim=0)
        else:
            batch[key] = torch.cat(values, dim=0)
    return batch
