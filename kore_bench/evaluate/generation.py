"""The native generator: batched greedy generation (left padding, KV cache) and prompt encoding.

Inference (:func:`generate`) only produces text; scoring (:func:`kore_bench.evaluate.metrics.score_task`)
only reads text, so stored predictions can be re-scored without a model (VLMEvalKit's split).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import distributed
from ..data import Sample
from ..encoding import SEQUENCE_KEYS, collate, encode_prompt, render, uses_prefix_suffix
from ..progress import Progress

ENCODE_CHUNK = 64  # samples per processor call when encoding prompts


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    processor,
    samples: Sequence[Sample],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    label: str = "evaluating",
) -> list[str]:
    """Greedy answers for every sample (left padding, KV cache), in the input order."""
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features = encode_prompts(processor, samples)
    # Similar lengths in one batch waste less compute on padding; results go back in order.
    order = sorted(range(len(samples)), key=lambda i: features[i]["input_ids"].shape[1])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    found: dict[int, str] = {}
    bar = Progress(label, len(order), unit="samples")
    for _, idx in distributed.shard(batches):  # under a launcher: this rank's batches, the same as alone
        batch = {k: v.to(device) for k, v in collate([features[i] for i in idx], pad_id, "left").items()}
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        for i, text in zip(idx, tok.batch_decode(new_tokens, skip_special_tokens=True)):
            found[i] = text.strip()
        bar.advance(len(idx))
    bar.close()
    model.train(was_training)
    return distributed.gather(found, len(samples))


def encode_prompts(processor, samples: Sequence[Sample]) -> list[dict[str, torch.Tensor]]:
    """``[encode_prompt(processor, s) for s in samples]``, with one processor call per chunk.

    A processor call costs 1-3 ms of Python overhead (kwargs merging and validation, tokenizer
    setup) whatever its size: on kore-tiny, per-sample calls took as long as generating the
    answers. A chunk is processed at once (right padding) and split back per sample: per-token
    tensors by the attention mask, image tensors by image (rows, or Qwen-style patch rows counted
    by ``image_grid_thw``). The split is checked once per call against :func:`encode_prompt` (a
    sample with an image and one without); any processor whose batched output does not split
    back exactly is encoded one sample at a time, as before.
    """
    features: list[dict[str, torch.Tensor]] = []
    checked: set[bool] = set()  # has_image values whose split was verified
    for start in range(0, len(samples), ENCODE_CHUNK):
        chunk = samples[start : start + ENCODE_CHUNK]
        split = _encode_chunk(processor, chunk)
        if split is not None:
            for sample, feature in zip(chunk, split):
                kind = sample.image is not None
                if kind not in checked:
                    if not _same(feature, encode_prompt(processor, sample)):
                        split = None
                        break
                    checked.add(kind)
        features += split if split is not None else [encode_prompt(processor, s) for s in chunk]
    return features


def _encode_chunk(processor, chunk: Sequence[Sample]) -> list[dict[str, torch.Tensor]] | None:
    """Per-sample features from one processor call, or None when the output cannot be split."""
    tok = getattr(processor, "tokenizer", processor)
    if tok.pad_token_id is None or uses_prefix_suffix(processor):
        return None
    rendered = [render(processor, s, add_generation_prompt=True) for s in chunk]
    if len({r.add_special_tokens for r in rendered}) != 1:
        return None
    images = [s.image.load() for s in chunk if s.image is not None]
    kwargs = {"text": [r.text for r in rendered], "return_tensors": "pt", "padding": True,
              "padding_side": "right", "add_special_tokens": rendered[0].add_special_tokens}
    if images:
        kwargs["images"] = images
    try:
        out = dict(processor(**kwargs))
    except Exception:  # noqa: BLE001 - e.g. a processor without padding_side; per-sample calls report real errors
        return None
    mask = out.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[0] != len(chunk):
        return None
    lengths = mask.sum(dim=1)
    if not torch.equal(mask.bool(), torch.arange(mask.shape[1]) < lengths[:, None]):
        return None  # not right-padded
    n_images = len(images)
    grid = out.get("image_grid_thw")
    patches = grid.prod(dim=-1).tolist() if isinstance(grid, torch.Tensor) and grid.dim() == 2 else None
    per_image: dict[str, list[torch.Tensor]] = {}
    sequence: list[str] = []
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            return None
        if key in SEQUENCE_KEYS and value.shape[:2] == mask.shape:
            sequence.append(key)
        elif n_images and value.shape[0] == n_images:
            per_image[key] = list(value.split(1))
        elif patches is not None and len(patches) == n_images and value.shape[0] == sum(patches):
            per_image[key] = list(value.split(patches))
        else:
            return None
    features = []
    image_index = 0
    for i, sample in enumerate(chunk):
        length = int(lengths[i])
        feature = {k: out[k][i : i + 1, :length].contiguous() for k in sequence}
        if sample.image is not None:
            feature.update({k: rows[image_index].contiguous() for k, rows in per_image.items()})
            image_index += 1
        features.append(feature)
    return features


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
