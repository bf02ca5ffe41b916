"""Several images per question, and multi-turn dialogues (MMDU), generated as VLMEvalKit does.

A VLMEvalKit row with several images (a ``image`` / ``image_path`` cell holding a list) becomes a
:class:`MultiImageSample`: every image, in the row's order, and the user turns as VLMEvalKit's
``build_prompt`` lays them out — text and image parts interleaved, an image part naming its position
in ``images``. ``meta["vlmeval_turns"]`` holds that layout and ``meta["vlmeval_images"]`` the images'
sha256, so the sample's content hash (a unit's data key) covers both.

* MMDU (``dataset/image_mt.py: ImageMTDataset.build_prompt``): ``question`` is a list of user turns;
  each ``<ImageHere>`` in a turn is the next image of the row (empty text pieces dropped, as there).
* MMMU (``dataset/image_mcq.py: MMMUDataset.split_MMMU``): ``<image k>`` in the prompt is replaced
  by image k (an image the text does not name is not fed; one named twice is fed twice); without
  such a tag, every image goes first, then the text (``ImageMCQDataset.build_prompt``).
* Any other benchmark: every image first, then the text (``ImageBaseDataset.build_prompt``).

Generation (:func:`generate_dialogues`) follows ``inference_mt.py: chat_mt``: for each user turn the
model answers the conversation so far — every earlier user turn with its images, and the model's own
earlier answers as assistant turns — greedily, with the task's ``max_new_tokens``. The conversation is
rendered by the processor's chat template (:func:`kore_bench.encoding.render_chat`, as every kore-bench
prompt: an earlier answer is followed by the end-of-turn token the model was trained to stop with) and
all its images are given to the processor in order. A model whose inputs cannot carry several images
(PaliGemma's prefix/suffix processor, a processor without a chat template) is refused with an error
naming the benchmark and the rows; a row is never answered on its first image alone.
"""
from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data import ImageRef, Sample
from ..errors import DataError, KoreBenchError

MMDU_IMAGE_TAG = "<ImageHere>"  # VLMEvalKit's image placeholder in MMDU's questions


@dataclass
class MultiImageSample(Sample):
    """A sample with several images (``image`` is the first, for code that looks for one) and its
    user turns, each a list of parts: ``{"type": "text", "text": …}`` or ``{"type": "image", "image": k}``
    (``images[k]``). Kept in ``meta["vlmeval_turns"]``."""

    images: tuple[ImageRef, ...] = ()

    @property
    def turns(self) -> list[list[dict[str, Any]]]:
        return self.meta["vlmeval_turns"]


def image_digests(images: Sequence[ImageRef]) -> list[str]:
    """The sha256 of each image's bytes (what the content hash of a sample records)."""
    return [hashlib.sha256(ref.read_bytes()).hexdigest() for ref in images]


def literal_list(cell: Any, what: str, where: str) -> list[str]:
    """VLMEvalKit's ``toliststr`` of a cell holding a Python list literal (``eval`` there; a literal
    reader here), or a one-item list for a plain string."""
    text = str(cell)
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise DataError(f"{where}: {what} is not a Python list literal ({e})") from e
        return [str(x) for x in value]
    return [text]


def mmdu_turns(questions: Sequence[str], n_images: int, where: str) -> list[list[dict[str, Any]]]:
    """``ImageMTDataset.build_prompt``'s user turns: each ``<ImageHere>`` is the row's next image."""
    turns, used = [], 0
    for q in questions:
        if MMDU_IMAGE_TAG not in q:
            turns.append([{"type": "text", "text": q}])
            continue
        pieces = q.split(MMDU_IMAGE_TAG)
        parts: list[dict[str, Any]] = []
        for piece in pieces[:-1]:
            if piece != "":
                parts.append({"type": "text", "text": piece})
            parts.append({"type": "image", "image": used})
            used += 1
        if pieces[-1] != "":
            parts.append({"type": "text", "text": pieces[-1]})
        turns.append(parts)
    if used > n_images:
        raise DataError(f"{where}: the questions hold {used} {MMDU_IMAGE_TAG} tags but the row has {n_images} images")
    return turns


def mmmu_parts(text: str, n_images: int, where: str) -> list[dict[str, Any]]:
    """``MMMUDataset.split_MMMU`` of [images…, text]: ``<image k>`` tags replaced by image k; without
    a tag, the images first, then the text."""
    segments = text.split("<image ")
    if len(segments) == 1:
        return images_first(text, n_images)
    parts: list[dict[str, Any]] = [{"type": "text", "text": segments[0]}]
    for seg in segments[1:]:
        if len(seg) < 2 or not seg[0].isdigit() or seg[1] != ">":  # VLMEvalKit asserts this
            raise DataError(f"{where}: '<image {seg[:3]}' is not an <image k> tag with k from 1 to 9 "
                            "(VLMEvalKit's split_MMMU fails on it)")
        k = int(seg[0]) - 1
        if not 0 <= k < n_images:
            raise DataError(f"{where}: the prompt names <image {k + 1}> but the row has {n_images} images")
        parts.append({"type": "image", "image": k})
        parts.append({"type": "text", "text": seg[2:]})
    return [p for p in parts if p["type"] == "image" or p["text"] != ""]


def images_first(text: str, n_images: int) -> list[dict[str, Any]]:
    """``ImageBaseDataset.build_prompt``: every image, then the text."""
    return [*({"type": "image", "image": k} for k in range(n_images)), {"type": "text", "text": text}]


# --------------------------------------------------------------------------------------------- inference


def check_multi_image(processor, benchmark: str, ids: Sequence[str]) -> None:
    """Refuse a processor that cannot take several interleaved images, naming the benchmark and rows."""
    from ..encoding import uses_prefix_suffix

    tok = getattr(processor, "tokenizer", processor)
    reason = None
    if uses_prefix_suffix(processor):
        reason = f"{type(processor).__name__} encodes one image before a prefix and has no chat turns"
    elif getattr(processor, "chat_template", None) is None and getattr(tok, "chat_template", None) is None:
        reason = f"{type(processor).__name__} has no chat template to place the images and turns"
    elif not hasattr(processor, "image_processor"):
        reason = f"{type(processor).__name__} takes no images"
    if reason:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        raise KoreBenchError(f"{benchmark}: rows {shown} need several images (or turns) in one prompt, "
                             f"which this model cannot take: {reason}. Leave {benchmark} out of the "
                             "retention suites for this model (answering on the first image alone would "
                             "not be VLMEvalKit's score)")


def _counted_images(inputs: dict[str, Any]) -> int | None:
    """How many images the processor encoded, where its output says so unambiguously."""
    grid = inputs.get("image_grid_thw")
    if isinstance(grid, torch.Tensor) and grid.dim() == 2:
        return grid.shape[0]
    pixels = inputs.get("pixel_values")
    if isinstance(pixels, torch.Tensor) and pixels.dim() == 4:  # (images, channels, height, width)
        return pixels.shape[0]
    return None


def encode_turn(processor, history: list[dict[str, Any]], images: Sequence[ImageRef], where: str
                ) -> dict[str, torch.Tensor]:
    """The model's inputs for the conversation ``history`` (HF structured messages ending with a user
    turn, an image part ``{"type": "image", "image": k}``) plus the generation prompt."""
    from ..encoding import render_chat

    chat, order = [], []
    for m in history:
        if m["role"] == "assistant":
            chat.append(m)
            continue
        content = []
        for p in m["content"]:
            if p["type"] == "image":
                order.append(p["image"])
                content.append({"type": "image"})
            else:
                content.append({"type": "text", "text": p["text"]})
        chat.append({"role": "user", "content": content})
    rendered = render_chat(processor, chat, add_generation_prompt=True, where=where)
    kwargs: dict[str, Any] = {"text": [rendered.text], "return_tensors": "pt",
                              "add_special_tokens": rendered.add_special_tokens}
    if order:
        kwargs["images"] = [images[k].load() for k in order]
    inputs = dict(processor(**kwargs))
    counted = _counted_images(inputs)
    if counted is not None and counted != len(order):
        raise KoreBenchError(f"{where}: {type(processor).__name__} encoded {counted} of the prompt's "
                             f"{len(order)} images")
    return inputs


@torch.no_grad()
def converse(model, processor, sample: MultiImageSample, max_new_tokens: int) -> list[str]:
    """``chat_mt``: one greedy answer per user turn, each to the conversation so far (its own earlier
    answers included)."""
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = next(model.parameters()).device
    history: list[dict[str, Any]] = []
    answers: list[str] = []
    for turn in sample.turns:
        history.append({"role": "user", "content": turn})
        inputs = encode_turn(processor, history, sample.images, sample.source or sample.id)
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
        answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        answers.append(answer)
    return answers


def generate_dialogues(model, processor, samples: Sequence[MultiImageSample], max_new_tokens: int,
                       label: str = "evaluating") -> list[list[str]]:
    """Every sample's answers (one per user turn), one conversation at a time (a turn needs the answer
    before it); under a launcher each rank takes its share, and every rank gets all answers."""
    from .. import distributed
    from ..progress import Progress

    was_training = model.training
    model.eval()
    found: dict[int, list[str]] = {}
    bar = Progress(label, len(samples), unit="dialogues")
    try:
        for i, sample in distributed.shard(list(samples)):
            found[i] = converse(model, processor, sample, max_new_tokens)
            bar.advance(1)
    finally:
        bar.close()
        model.train(was_training)
    return distributed.gather(found, len(samples))
