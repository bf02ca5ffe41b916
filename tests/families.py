"""Tiny random-weight models of the real transformers classes of every supported family.

Each builder returns the real model class (tiny config) with the real processor class and the
family's chat template transcribed from its hub checkpoint (``chat_template.json`` /
``tokenizer_config.json``); the tokenizer is a byte-level BPE trained here on a small corpus with
the family's special tokens and BOS behaviour (nothing is downloaded). Used by
``tests/test_families.py``.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from kore_bench.models.loading import image_only_processor_class

CORPUS = ["What colour is the square? red", "And the circle? blue", "Who founded Acme? Alice Smith.",
          "Alice Smith founded Acme in Paris in 1999.", "What is shown in the image? A red square.",
          "Describe the picture. The picture shows a blue circle on a white ground."] * 8

# --- chat templates, as shipped with the checkpoints --------------------------------------------

# llava-hf/llava-1.5-7b-hf (chat_template.json): no EOS after an answer, turns end with a space.
LLAVA15 = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# llava-hf/llava-v1.6-mistral-7b-hf (chat_template.json), with its literal "<\s> " after answers.
LLAVA_NEXT_MISTRAL = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '<\\\\s> '}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
# Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2.5-VL-*-Instruct (same template, default system prompt).
QWEN_VL = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# HuggingFaceTB/SmolVLM-Instruct and Idefics3 (processor DEFAULT_CHAT_TEMPLATE): "Assistant:" with no space.
IDEFICS3 = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# google/gemma-3-4b-it (chat_template.json): the template itself writes the BOS.
GEMMA3 = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


def make_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, unk: str | None = None,
                   add_bos: bool = True, **extra: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE with ``specials`` (in order) that adds ``bos`` in front when ``add_bos``."""
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(specials) + 256 + 120, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if add_bos and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B:1", special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    kw = dict(bos_token=bos, eos_token=eos, pad_token=pad, clean_up_tokenization_spaces=False)
    if unk:
        kw["unk_token"] = unk
    if extra:
        kw["extra_special_tokens"] = extra
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


def _text(tok, hidden: int = 64, layers: int = 2, **kw) -> dict:
    return dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kw)


def _clip(image: int = 32, patch: int = 8) -> tf.CLIPVisionConfig:
    return tf.CLIPVisionConfig(image_size=image, patch_size=patch, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=4, projection_dim=32)


def _siglip(image: int = 32, patch: int = 8) -> tf.SiglipVisionConfig:
    return tf.SiglipVisionConfig(image_size=image, patch_size=patch, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4)


LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def llava15():
    tok = make_tokenizer(LLAMA_SPECIALS, "<s>", "</s>", "<pad>", "<unk>", image_token="<image>")
    config = tf.LlavaConfig(vision_config=_clip(), text_config=tf.LlamaConfig(**_text(tok)),
                            image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=16,
                            vision_feature_select_strategy="default", vision_feature_layer=-2)
    model = tf.LlavaForConditionalGeneration(config)
    ip = tf.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = tf.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                             image_token="<image>", num_additional_image_tokens=1, chat_template=LLAVA15)
    return model, proc, [tok.eos_token_id]


def llava_next():
    tok = make_tokenizer(LLAMA_SPECIALS, "<s>", "</s>", "<pad>", "<unk>", image_token="<image>")
    pinpoints = [[32, 32]]
    config = tf.LlavaNextConfig(vision_config=_clip(), text_config=tf.MistralConfig(**_text(tok)),
                                image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
                                vision_feature_select_strategy="default", vision_feature_layer=-2)
    model = tf.LlavaNextForConditionalGeneration(config)
    ip = tf.LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                       image_grid_pinpoints=pinpoints)
    proc = tf.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                                 image_token="<image>", num_additional_image_tokens=1, chat_template=LLAVA_NEXT_MISTRAL)
    return model, proc, [tok.eos_token_id]


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]


def _qwen(config_cls, model_cls, processor_cls, vision: dict):
    tok = make_tokenizer(QWEN_SPECIALS, None, "<|im_end|>", "<|endoftext|>", add_bos=False,
                         image_token="<|image_pad|>", video_token="<|video_pad|>")
    text = _text(tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]})
    ids = tok.convert_tokens_to_ids
    config = config_cls(vision_config=vision, text_config=text, image_token_id=ids("<|image_pad|>"),
                        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                        vision_end_token_id=ids("<|vision_end|>"))
    model = model_cls(config)
    ip = tf.Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2,
                                     min_pixels=32 * 32, max_pixels=32 * 32)
    proc = image_only_processor_class(processor_cls)(image_processor=ip, tokenizer=tok, chat_template=QWEN_VL)
    return model, proc, [ids("<|im_end|>"), ids("<|endoftext|>")]


def qwen2_vl():
    vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=4, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2)
    return _qwen(tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor, vision)


def qwen25_vl():
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=8, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, window_size=32, fullatt_block_indexes=[1])
    return _qwen(tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor, vision)


IDEFICS_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                    "<global-img>"]


def _idefics(config_cls, vision_cls, model_cls, ip_cls, proc_cls):
    tok = make_tokenizer(IDEFICS_SPECIALS, "<|im_start|>", "<end_of_utterance>", "<|endoftext|>", add_bos=False)
    config = config_cls(vision_config=vision_cls(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=4),
                        text_config=tf.LlamaConfig(**_text(tok)), scale_factor=2,
                        image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = model_cls(config)
    ip = ip_cls(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    extra = {"video_processor": None} if proc_cls.__name__.endswith("SmolVLMProcessor") else {}
    proc = proc_cls(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3, **extra)
    return model, proc, [tok.eos_token_id]


def idefics3():
    return _idefics(tf.Idefics3Config, tf.Idefics3VisionConfig, tf.Idefics3ForConditionalGeneration,
                    tf.Idefics3ImageProcessorPil, tf.Idefics3Processor)


def smolvlm():
    return _idefics(tf.SmolVLMConfig, tf.SmolVLMVisionConfig, tf.SmolVLMForConditionalGeneration,
                    tf.SmolVLMImageProcessorPil, image_only_processor_class(tf.SmolVLMProcessor))


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                  "<end_of_image>", "<image_soft_token>"]


def gemma3():
    tok = make_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "<unk>", boi_token="<start_of_image>",
                         eoi_token="<end_of_image>", image_token="<image_soft_token>")
    ids = tok.convert_tokens_to_ids
    text = tf.Gemma3TextConfig(**_text(tok, head_dim=16, sliding_window=64))
    config = tf.Gemma3Config(text_config=text, vision_config=_siglip(), mm_tokens_per_image=4,
                             boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                             image_token_index=ids("<image_soft_token>"))
    model = tf.Gemma3ForConditionalGeneration(config)
    ip = tf.Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    proc = tf.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=GEMMA3)
    return model, proc, [ids("<eos>"), ids("<end_of_turn>")]


def paligemma():
    tok = make_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], "<bos>", "<eos>", "<pad>", "<unk>",
                         image_token="<image>")
    config = tf.PaliGemmaConfig(text_config=tf.GemmaConfig(**_text(tok, head_dim=16)).to_dict(),
                                vision_config=_siglip().to_dict(), projection_dim=64,
                                image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = tf.PaliGemmaForConditionalGeneration(config)
    ip = tf.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    proc = tf.PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    return model, proc, [tok.eos_token_id]


@dataclass(frozen=True)
class Family:
    """One architecture family: how to build it, and what its encoding must look like."""

    name: str
    build: Callable
    end_of_turn: str  # the token the model must generate to stop after an answer
    bos: str | None  # the single BOS every sequence starts with (None: the family has none)
    projector: str  # module path of the projector


FAMILIES = {f.name: f for f in [
    Family("llava-1.5", llava15, "</s>", "<s>", "model.multi_modal_projector"),
    Family("llava-next-mistral", llava_next, "</s>", "<s>", "model.multi_modal_projector"),
    Family("qwen2-vl", qwen2_vl, "<|im_end|>", None, "model.visual.merger"),
    Family("qwen2.5-vl", qwen25_vl, "<|im_end|>", None, "model.visual.merger"),
    Family("idefics3", idefics3, "<end_of_utterance>", "<|im_start|>", "model.connector"),
    Family("smolvlm", smolvlm, "<end_of_utterance>", "<|im_start|>", "model.connector"),
    Family("gemma3", gemma3, "<end_of_turn>", "<bos>", "model.multi_modal_projector"),
    Family("paligemma", paligemma, "<eos>", "<bos>", "model.multi_modal_projector"),
]}


@functools.cache
def _built(name: str):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, proc, eos = FAMILIES[name].build()
    tok = getattr(proc, "tokenizer", proc)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, do_sample=False,
                                               max_new_tokens=8)
    return model.eval(), proc


def build(name: str):
    """``(model, processor)`` of family ``name``: a fresh copy of a cached build."""
    model, proc = _built(name)
    return copy.deepcopy(model), copy.deepcopy(proc)
