"""kore-tiny: real LLaVA / Qwen2.5-VL models at a few million parameters, built from config.

``build_tiny("llava", tok, "default", seed=0)`` gives a ``LlavaForConditionalGeneration`` (CLIP
vision tower + Llama decoder) with a ``LlavaProcessor``; ``"qwen"`` gives a
``Qwen2_5_VLForConditionalGeneration`` with an image-only ``Qwen2_5_VLProcessor``. Same classes
and code paths as ``llava-hf/llava-1.5-7b-hf`` and ``Qwen/Qwen2.5-VL-*``.

Parameter counts (vocab 1024, 32 px images, patch 8; "vision" excludes the projector) and the
time of one forward+backward pass on this 2-core CPU (2 threads, batch 32, 49 text tokens + the
image tokens; AdamW adds 0.01-0.02 s; +-20%):

    size     shape                  arch      total    vision  projector         LM  fwd+bwd
    micro    v64x2L  t128x2L i256   llava   532,096    80,640     24,832    426,624   0.09 s
    micro                           qwen    633,792   107,904     98,752    427,136   0.13 s
    small    v64x2L  t128x4L i384   llava 1,024,128    80,640     24,832    918,656   0.20 s
    small                           qwen  1,126,336   107,904     98,752    919,680   0.18 s
    default  v128x2L t256x4L i688   llava 3,555,584   292,352     98,816  3,164,416   0.47 s
    default                         qwen  3,940,224   379,648    394,112  3,166,464   0.46 s

Text: 4 heads, 2 kv heads; vision: 4 heads, MLP 2x hidden. Image tokens per 32 px image: llava 16
(one per 8 px patch, CLS dropped); qwen 4 (16 patches merged 2x2 by ``visual.merger``; 64 px images
give 16 tokens and cost ~30% more per step).

Deliberate deviations from the real models: the vision feature layer is the last one (LLaVA uses
the penultimate; with two layers that would leave one unused), word embeddings are tied, the LLaVA
template puts ``\n`` (not a space) after ``ASSISTANT:``, and the Qwen template has no default
system prompt (see ``CHAT_TEMPLATES``).
"""
from __future__ import annotations

import copy

import torch
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, GenerationConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                          PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLImageProcessorPil)

from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.models.loading import ImageOnlyQwen2_5_VLProcessor
from kore_bench.models.sizes import SIZES, TinyModelConfig

ARCHS = ("llava", "qwen")


def _user_parts(image: str) -> str:
    """Jinja that renders ``content`` (string, or list of image/text parts) in order."""
    return (
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{- '" + image + "' -}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
    )


_TEXT_ONLY = (
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
)

# LLaVA-1.5 ("vicuna_v1") layout: `[system ]USER: <image>\n{text} ASSISTANT:\n{answer}</s>USER: ...`.
# The byte-level BPE glues a space to the *next* word, so a generation prompt ending in
# "ASSISTANT: " would tokenise differently from the full turn; ending it in "\n" keeps both the
# string- and the token-prefix property. No bos in the template: the tokenizer adds `<s>`.
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}" + _TEXT_ONLY + "{{- ' ' -}}"
    "{%- elif message['role'] == 'user' -%}{{- 'USER: ' -}}" + _user_parts("<image>\\n") + "{{- ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'ASSISTANT:\\n' -}}"
    "{%- generation -%}" + _TEXT_ONLY + "{{- eos_token -}}{%- endgeneration -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:\\n' -}}{%- endif -%}"
)

# ChatML as in Qwen2.5-VL (without its default system prompt, to keep sequences short).
QWEN_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}" + _TEXT_ONLY + "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}" + _user_parts("<|vision_start|><|image_pad|><|vision_end|>") + "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

CHAT_TEMPLATES = {"llava": LLAVA_TEMPLATE, "qwen": QWEN_TEMPLATE}


def resolve_size(size: str | TinyModelConfig) -> TinyModelConfig:
    """A preset name from ``SIZES`` or a config, as a config."""
    if isinstance(size, TinyModelConfig):
        return size
    if size not in SIZES:
        raise UnknownNameError("model size", size, SIZES)
    return SIZES[size]


def build_tiny(arch: str, tokenizer: PreTrainedTokenizerBase, size: str | TinyModelConfig = "default",
               seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a randomly initialised kore-tiny model and its processor.

    ``tokenizer`` is copied (the processor gets its own chat template and image token). The
    weights depend only on ``(arch, tokenizer size, size, seed)``; the global RNG is untouched.
    """
    if arch not in ARCHS:
        raise UnknownNameError("architecture", arch, ARCHS)
    cfg = resolve_size(size)
    tok = copy.deepcopy(tokenizer)
    vocab = cfg.vocab_size or len(tok)
    if vocab < len(tok):
        raise KoreBenchError(f"vocab_size {vocab} is smaller than the tokenizer ({len(tok)} tokens)")
    tok.chat_template = CHAT_TEMPLATES[arch]
    make = _build_llava if arch == "llava" else _build_qwen
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = make(cfg, tok, vocab)
    processor.chat_template = CHAT_TEMPLATES[arch]
    ids = tok.convert_tokens_to_ids
    eos = [tok.eos_token_id] if arch == "llava" else [ids("<|im_end|>"), tok.eos_token_id]
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id,
        do_sample=False, max_new_tokens=32)
    return model.eval(), processor


def _text_config(cfg: TinyModelConfig, tok: PreTrainedTokenizerBase, vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                num_key_value_heads=cfg.text_kv_heads, max_position_embeddings=cfg.max_positions,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=True)


def _build_llava(cfg: TinyModelConfig, tok: PreTrainedTokenizerBase,
                 vocab: int) -> tuple[PreTrainedModel, ProcessorMixin]:
    vision = CLIPVisionConfig(image_size=cfg.image_size, patch_size=cfg.patch_size,
                              hidden_size=cfg.vision_hidden, intermediate_size=2 * cfg.vision_hidden,
                              num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                              projection_dim=cfg.vision_hidden)
    n_image_tokens = (cfg.image_size // cfg.patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**_text_config(cfg, tok, vocab)),
                         image_token_index=tok.convert_tokens_to_ids("<image>"),
                         image_seq_length=n_image_tokens, vision_feature_select_strategy="default",
                         vision_feature_layer=-1, tie_word_embeddings=True)
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": cfg.image_size},
                                            crop_size={"height": cfg.image_size, "width": cfg.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=cfg.patch_size,
                               vision_feature_select_strategy="default", image_token="<image>",
                               num_additional_image_tokens=1)  # CLIP's CLS token
    return model, processor


def _build_qwen(cfg: TinyModelConfig, tok: PreTrainedTokenizerBase,
                vocab: int) -> tuple[PreTrainedModel, ProcessorMixin]:
    head_dim = cfg.text_hidden // cfg.text_heads
    half = head_dim // 2  # M-RoPE sections (time, height, width) must sum to head_dim / 2
    sections = [half - 2 * (half // 3), half // 3, half // 3]
    text = _text_config(cfg, tok, vocab)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections}
    vision = dict(depth=cfg.vision_layers, hidden_size=cfg.vision_hidden,
                  intermediate_size=2 * cfg.vision_hidden, num_heads=cfg.vision_heads,
                  patch_size=cfg.patch_size, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=cfg.text_hidden, window_size=cfg.image_size,
                  fullatt_block_indexes=[cfg.vision_layers - 1])
    ids = tok.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text,
                              image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                              vision_start_token_id=ids("<|vision_start|>"),
                              vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(config)
    pixels = cfg.image_size * cfg.image_size
    image_processor = Qwen2VLImageProcessorPil(patch_size=cfg.patch_size, merge_size=2, temporal_patch_size=2,
                                               min_pixels=pixels, max_pixels=pixels)
    tok.image_token, tok.video_token = "<|image_pad|>", "<|video_pad|>"
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok)
    return model, processor
