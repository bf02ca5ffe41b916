"""Turning Samples into model inputs: one home for chat templating, label masking and padding.

Everything goes through the processor's chat template: answers are located by character span in
the rendered text, each learned together with the end-of-turn token after it (the tokenizer's EOS
is put there when the template writes none, as LLaVA-1.5's), the BOS is added once (not again
when the template writes it, as Gemma3's), and the context before every answer must tokenise as
the evaluator's prompt. PaliGemma, which has no chat template, uses its prefix/suffix layout.
Tested per family in tests/test_families.py (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL,
Idefics3, SmolVLM, Gemma3, PaliGemma).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import Sample
from .errors import KoreBenchError

IGNORE_INDEX = -100
# Per-token tensors are padded; every other tensor (pixel values, grids) is concatenated.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


# A marker no chat template alters (private-use code points survive ``trim`` and ``capitalize``
# does not touch them): assistant contents are rendered as markers and spliced back afterwards,
# which gives the exact character span of every answer in the rendered conversation.
_MARKER = "\ue000{}\ue001"
# End-of-turn tokens that real templates write right after an answer (ChatML / Qwen, Gemma,
# Idefics3 / SmolVLM, Llama-3, Phi); the tokenizer's EOS is always one too.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<end_of_utterance>", "<|eot_id|>", "<|end|>")
# llava-hf's LLaVA-NeXT (Mistral) template writes the literal text ``<\s>`` where Mistral's
# ``</s>`` belongs; after an answer it is read as the EOS token it stands for.
_EOS_TYPOS = ("<\\s>",)


@dataclass
class Rendered:
    """A conversation rendered for the model, with the character span of every target.

    ``spans`` cover each assistant answer plus the end-of-turn token that follows it (the model
    must generate that token to stop). ``add_special_tokens`` is False when the template writes
    the BOS itself (Gemma3, SmolVLM), so the tokenizer must not add a second one.
    """

    text: str
    spans: list[tuple[int, int]]
    add_special_tokens: bool


def uses_prefix_suffix(processor) -> bool:
    """True for processors that encode ``prefix`` / ``suffix`` themselves instead of a chat (PaliGemma)."""
    from transformers import PaliGemmaProcessor
    return isinstance(processor, PaliGemmaProcessor)


def check_supported(processor) -> None:
    """Refuse, with the reason, a processor whose conversations cannot be encoded correctly.

    Called before training so that an unsupported architecture fails at start, not with wrong
    labels: it needs a chat template (or PaliGemma's prefix/suffix encoding) and a tokenizer that
    reports token offsets (a "fast" tokenizer).
    """
    name = type(processor).__name__
    if uses_prefix_suffix(processor):
        return
    tok = _tokenizer(processor)
    if getattr(processor, "chat_template", None) is None and getattr(tok, "chat_template", None) is None:
        raise KoreBenchError(f"{name} has no chat template: cannot tell prompt from answer "
                             "(set processor.chat_template to the model's template)")
    if not getattr(tok, "is_fast", False):
        raise KoreBenchError(f"{name}: the tokenizer {type(tok).__name__} reports no token offsets "
                             "(a fast tokenizer is needed to place the labels)")
    if tok.eos_token is None:
        raise KoreBenchError(f"{name}: the tokenizer has no EOS token, so the model cannot learn to stop")


def _stop_tokens(tok) -> list[str]:
    special = set(getattr(tok, "all_special_tokens", ()))
    special |= set(getattr(tok, "added_tokens_encoder", {}))
    stops = [t for t in END_OF_TURN_TOKENS if t in special]
    return [tok.eos_token, *stops] if tok.eos_token else stops


def _text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content.strip()
    return "".join(p.get("text", "") for p in content if p.get("type") == "text").strip()


def render_chat(processor, chat: list[dict[str, Any]], add_generation_prompt: bool,
                where: str = "") -> Rendered:
    """Render ``chat`` with the processor's template and locate every answer and its stop token.

    When the template writes no end-of-turn token after an answer (LLaVA-1.5's, which ends a
    turn with a space; LLaVA-NeXT-Mistral's, which writes ``<\\s>``), the tokenizer's EOS is
    put right after the answer: that is the token LLaVA was trained to stop with, and the same
    text is used for prompts with history, so training and evaluation see one format.
    """
    tok = _tokenizer(processor)
    answers: list[str] = []
    masked = []
    for m in chat:
        if m["role"] == "assistant":
            masked.append({"role": "assistant", "content": [{"type": "text", "text": _MARKER.format(len(answers))}]})
            answers.append(_text_of(m))
        else:
            masked.append(m)
    template = processor.apply_chat_template(masked, add_generation_prompt=add_generation_prompt, tokenize=False)
    stops = _stop_tokens(tok)
    out: list[str] = []
    size = 0
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, answer in enumerate(answers):
        marker = _MARKER.format(i)
        at = template.find(marker, pos)
        if at < 0 or template.count(marker) != 1:
            raise KoreBenchError(f"{where}: the chat template of {type(processor).__name__} does not render "
                                 "each assistant message once and verbatim; cannot place the labels")
        out.append(template[pos:at])
        size += at - pos
        rest_at = at + len(marker)
        rest = template[rest_at:]
        gap = len(rest) - len(rest.lstrip(" "))
        stop = next((s for s in stops if rest[gap:].startswith(s)), None)
        typo = next((t for t in _EOS_TYPOS if rest[gap:].startswith(t)), None)
        if stop is not None:
            piece = answer + rest[:gap] + stop
            pos = rest_at + gap + len(stop)
        else:
            piece = answer + tok.eos_token
            pos = rest_at + (gap + len(typo) if typo is not None else 0)
        out.append(piece)
        spans.append((size, size + len(piece)))
        size += len(piece)
    out.append(template[pos:])
    text = "".join(out)
    bos = getattr(tok, "bos_token", None)
    return Rendered(text, spans, add_special_tokens=not (bos and text.startswith(bos)))


def _process(processor, rendered: Rendered, sample: Sample) -> dict[str, torch.Tensor]:
    images = [sample.image.load()] if sample.image is not None else None
    kwargs: dict[str, Any] = {"text": [rendered.text], "return_tensors": "pt",
                              "add_special_tokens": rendered.add_special_tokens}
    if images is not None:
        kwargs["images"] = images
    return dict(processor(**kwargs))


def render(processor, sample: Sample, add_generation_prompt: bool) -> Rendered:
    """The sample's conversation rendered for the model (see :func:`render_chat`)."""
    return render_chat(processor, sample.chat(), add_generation_prompt, sample.source or sample.id)


def encode_for_training(processor, sample: Sample, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Model inputs with ``labels`` covering exactly each answer and the end-of-turn token after it.

    Labels are placed by character spans (token offsets of the rendered text), so no template
    needs to be prefix-stable; what is checked is what generation relies on: for every assistant
    turn, the prompt the evaluator would build (history + generation prompt) tokenises exactly
    as the training context before that answer. PaliGemma goes through its prefix/suffix path.
    """
    where = sample.source or sample.id
    if uses_prefix_suffix(processor):
        features = _prefix_suffix(processor, sample, training=True)
    else:
        chat = sample.chat()
        tok = _tokenizer(processor)
        rendered = render_chat(processor, chat, False, where)
        features = _process(processor, rendered, sample)
        ids = features["input_ids"][0]
        enc = tok(rendered.text, add_special_tokens=rendered.add_special_tokens, return_offsets_mapping=True)
        plain, offsets = enc["input_ids"], enc["offset_mapping"]
        targets: list[int] = []
        turn = 0
        for k, message in enumerate(chat):
            if message["role"] != "assistant":
                continue
            lo, hi = rendered.spans[turn]
            turn += 1
            inside = [i for i, (s, e) in enumerate(offsets) if e > lo and s < hi and e > s]
            prompt = render_chat(processor, chat[:k], True, where)
            prompt_ids = tok(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"]
            if not inside or inside[0] != len(prompt_ids) or plain[: len(prompt_ids)] != prompt_ids:
                raise KoreBenchError(
                    f"{where}: the chat template is not prefix-stable (the prompt for assistant turn "
                    f"{turn} tokenises differently from the same text inside the conversation)")
            targets += inside
        # The processor only expands image placeholders, all of which sit before the first answer:
        # from there on its ids are the plain ids shifted by the expansion.
        shift = len(ids) - len(plain)
        tail = ids[shift + targets[0]:].tolist() if targets else []
        if shift < 0 or tail != plain[targets[0]:]:
            raise KoreBenchError(f"{where}: {type(processor).__name__} changes the text after the image "
                                 "(only images in the first user turn are supported)")
        labels = torch.full_like(ids, IGNORE_INDEX)
        index = torch.tensor(targets, dtype=torch.long) + shift
        labels[index] = ids[index]
        features["labels"] = labels[None]
    ids = features["input_ids"][0]
    if not (features["labels"] != IGNORE_INDEX).any():
        raise KoreBenchError(f"{where}: no assistant turn to learn from")
    if max_length is not None and ids.shape[0] > max_length:
        raise KoreBenchError(f"{where}: {ids.shape[0]} tokens exceed max_length {max_length}")
    return features


def _prefix_suffix(processor, sample: Sample, training: bool) -> dict[str, torch.Tensor]:
    """PaliGemma's own layout: ``<image>*N <bos> prefix \\n`` then ``suffix <eos>`` (the suffix learned).

    The processor tokenises prefix and suffix separately and masks by ``token_type_ids``; this
    builds the same ids for one turn (checked against the processor in the tests) and extends
    it to multi-turn data as ``u1\\n a1<eos> u2\\n a2<eos>``, every answer and its EOS learned.
    Without an image there is nothing to encode (PaliGemma needs one).
    """
    where = sample.source or sample.id
    if sample.image is None:
        raise KoreBenchError(f"{where}: PaliGemma needs an image in every sample")
    tok = _tokenizer(processor)
    chat = sample.chat()
    if not training and chat and chat[-1]["role"] == "assistant":
        chat = chat[:-1]
    pieces: list[tuple[list[int], int]] = [([processor.image_token_id] * processor.image_seq_length + [tok.bos_token_id], 0)]
    for m in chat:
        if m["role"] == "assistant":
            pieces.append((tok(_text_of(m) + tok.eos_token, add_special_tokens=False)["input_ids"], 1))
        elif m["role"] == "user":
            pieces.append((tok(_text_of(m) + "\n", add_special_tokens=False)["input_ids"], 0))
        else:
            raise KoreBenchError(f"{where}: PaliGemma has no {m['role']!r} role")
    ids = [t for p, _ in pieces for t in p]
    types = [k for p, k in pieces for _ in p]
    pixels = processor.image_processor(images=[sample.image.load()], return_tensors="pt")["pixel_values"]
    out = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
           "token_type_ids": torch.tensor([types]), "pixel_values": pixels}
    if training:
        labels = torch.tensor([ids])
        labels[torch.tensor([types]) == 0] = IGNORE_INDEX
        out["labels"] = labels
    return out


def encode_prompt(processor, sample: Sample) -> dict[str, torch.Tensor]:
    """Model inputs for generation: the conversation so far plus the assistant generation prompt."""
    if uses_prefix_suffix(processor):
        return _prefix_suffix(processor, sample, training=False)
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
