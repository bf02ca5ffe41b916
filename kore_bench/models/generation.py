"""Batched greedy generation for any image-text-to-text model + processor pair.

Prompts are left-padded. A batch may mix prompts with and without images: both kore-tiny
architectures (LLaVA and Qwen2.5-VL) handle this, because their processors take the images of a
batch as one flat list matched, in order, to the image placeholders in the texts.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL.Image import Image
from transformers import PreTrainedModel, ProcessorMixin

from kore_bench.errors import KoreBenchError

ImagesArg = Sequence[Image] | Image | None


def prepare_batch(processor: ProcessorMixin, prompts: Sequence[str], images: Sequence[ImagesArg] | None = None,
                  *, padding_side: str = "left", model: PreTrainedModel | None = None) -> dict[str, torch.Tensor]:
    """Tokenise chat-templated ``prompts`` with their images (``images[i]``: None, one, or a list).

    With ``model`` given, tensors are moved to its device and floating inputs cast to its dtype.
    """
    images = list(images) if images is not None else [None] * len(prompts)
    if len(images) != len(prompts):
        raise KoreBenchError(f"{len(prompts)} prompts but {len(images)} image entries")
    flat = [im for entry in images for im in _as_list(entry)]
    batch = processor(text=list(prompts), images=flat or None, return_tensors="pt", padding=True,
                      padding_side=padding_side)
    batch = dict(batch)
    if model is not None:
        batch = {k: (v.to(model.device, model.dtype) if v.is_floating_point() else v.to(model.device))
                 for k, v in batch.items()}
    return batch


@torch.no_grad()
def generate(model: PreTrainedModel, processor: ProcessorMixin, prompts: Sequence[str],
             images: Sequence[ImagesArg] | None = None, max_new_tokens: int = 32,
             **generate_kwargs: object) -> list[str]:
    """Greedy-decode a continuation of each prompt; returns the new text without special tokens."""
    batch = prepare_batch(processor, prompts, images, model=model)
    kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generate_kwargs}
    out = model.generate(**batch, **kwargs)
    new = out[:, batch["input_ids"].shape[1]:]
    return processor.batch_decode(new, skip_special_tokens=True)


def _as_list(entry: ImagesArg) -> list[Image]:
    if entry is None:
        return []
    if isinstance(entry, Image):
        return [entry]
    return list(entry)
