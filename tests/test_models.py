"""kore_bench.models: tokenizer, kore-tiny builders, chat templates, loading, parts; the evaluator's
batched generation on both architectures."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
import re

import pytest
import torch
from PIL import Image
from transformers import (LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)

from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.models import parts, tiny
from kore_bench.data import IMAGE_TOKEN, ImageRef, Sample
from kore_bench.encoding import collate, encode_for_training
from kore_bench.evaluate.generation import generate
from kore_bench.models.loading import ImageOnlyQwen2_5_VLProcessor, load_model, save_model
from kore_bench.models.tiny import SIZES, TinyModelConfig, build_tiny
from kore_bench.models.tokenizer import SPECIAL_TOKENS, train_tokenizer

ARCHS = ["llava", "qwen"]
CORPUS = ["The colour is red.", "The colour is blue.", "What is 12 + 30? It is 42.",
          "what colour is this?", "Alice Smith works at Acme in Paris since 1999."] * 4
RED = Image.new("RGB", (32, 32), (220, 20, 20))
BLUE = Image.new("RGB", (32, 32), (20, 20, 220))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Micro models gain nothing from two intra-op threads, and on a busy 2-core machine two
    threads made the training steps ~15x slower (spinning workers); one thread does not suffer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, 400)


@pytest.fixture(scope="module", params=ARCHS)
def built(request, tok):
    return request.param, *build_tiny(request.param, tok, "micro", seed=0)


def conv(question: str, image: bool, answer: str | None = None) -> list[dict]:
    msgs = [{"role": "user", "content": ([{"type": "image"}] if image else [])
             + [{"type": "text", "text": question}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


# --- tokenizer ---------------------------------------------------------------------------------

def test_tokenizer_is_deterministic(tok):
    again = train_tokenizer(iter(CORPUS), 400)  # an iterator, not a list: same result
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    text = "Alice Smith works at Acme, 1999."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert train_tokenizer(CORPUS[:3], 400).backend_tokenizer.to_str() != tok.backend_tokenizer.to_str()


def test_tokenizer_splits_digits(tok):
    # "1999", "12", "30", "42" are frequent in the corpus, yet no token holds two digits
    assert not [t for t in tok.get_vocab() if sum(c.isdigit() for c in t) > 1]
    pieces = tok.convert_ids_to_tokens(tok("12345", add_special_tokens=False)["input_ids"])
    assert pieces == ["1", "2", "3", "4", "5"]
    assert tok.decode(tok("in 1999 it was 42")["input_ids"], skip_special_tokens=True) == "in 1999 it was 42"


def test_tokenizer_special_tokens(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    ids = tok("hi <image><|im_end|>")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.convert_tokens_to_ids("<image>") in ids
    with pytest.raises(KoreBenchError, match="vocab_size"):
        train_tokenizer(CORPUS, 100)


# --- building ----------------------------------------------------------------------------------

def test_build_classes(built):
    arch, model, processor = built
    cls = LlavaForConditionalGeneration if arch == "llava" else Qwen2_5_VLForConditionalGeneration
    assert type(model) is cls
    assert isinstance(processor, LlavaProcessor if arch == "llava" else ImageOnlyQwen2_5_VLProcessor)
    assert model.lm_head.weight is parts.language_model(model).embed_tokens.weight  # tied
    eos = processor.tokenizer.convert_tokens_to_ids("</s>" if arch == "llava" else "<|im_end|>")
    assert eos in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == processor.tokenizer.pad_token_id


def test_unknown_arch_and_size(tok):
    with pytest.raises(UnknownNameError, match="did you mean 'llava'"):
        build_tiny("lava", tok, "micro", 0)
    with pytest.raises(KoreBenchError, match="model size"):
        build_tiny("qwen", tok, "huge", 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_init_is_deterministic_and_leaves_global_rng(tok, arch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = build_tiny(arch, tok, "micro", seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, _ = build_tiny(arch, tok, "micro", seed=1)
    c, _ = build_tiny(arch, tok, "micro", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_default_parameter_count_matches_docstring(tok):
    counts = {arch: sum(p.numel() for p in build_tiny(arch, tok, SIZES["default"].replace(vocab_size=1024))[0]
                        .parameters()) for arch in ARCHS}
    rows = [line for line in tiny.__doc__.splitlines() if line.lstrip().startswith("default ")]
    assert f"{counts['llava']:,}" in rows[0] and f"{counts['qwen']:,}" in rows[1]
    assert 3e6 < counts["llava"] < 5e6


def test_custom_config_and_vocab_padding(tok):
    cfg = TinyModelConfig(text_layers=1, vocab_size=512)
    model, _ = build_tiny("llava", tok, cfg, 0)
    assert model.config.text_config.vocab_size == 512 and model.config.text_config.num_hidden_layers == 1
    with pytest.raises(KoreBenchError, match="smaller than the tokenizer"):
        build_tiny("llava", tok, cfg.replace(vocab_size=100), 0)


# --- chat templates ----------------------------------------------------------------------------

MULTI_TURN = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "who is this?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Alice Smith"}]},
    {"role": "user", "content": "And 12 + 30?"},
    {"role": "assistant", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "where"}, {"type": "image"},
                                 {"type": "text", "text": " is it?"}]},
    {"role": "assistant", "content": "Paris."},
]


def _batch(processor, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
    """Chat-templated texts with their images, tokenised the way a processor does it."""
    return dict(processor(text=texts, images=images or None, return_tensors="pt", padding=True))


def _images_in(messages: list[dict]) -> list[Image.Image]:
    return [RED for m in messages if not isinstance(m["content"], str)
            for part in m["content"] if part["type"] == "image"]


def test_chat_template_prefix_contract(built):
    arch, _, processor = built
    end = "</s>" if arch == "llava" else "<|im_end|>"
    turns = [k for k, m in enumerate(MULTI_TURN) if m["role"] == "assistant"]
    assert len(turns) == 3
    for k in turns:
        answer = MULTI_TURN[k]["content"]
        answer = answer if isinstance(answer, str) else answer[0]["text"]
        for render in (processor.apply_chat_template, processor.tokenizer.apply_chat_template):
            prefix = render(MULTI_TURN[:k], add_generation_prompt=True, tokenize=False)
            full = render(MULTI_TURN[:k + 1], tokenize=False)
            assert full.startswith(prefix)
            assert full[len(prefix):].startswith(answer + end)
        # token prefix, both for the bare tokenizer and through the processor (image expansion)
        tk = processor.tokenizer
        assert tk(full)["input_ids"][:len(tk(prefix)["input_ids"])] == tk(prefix)["input_ids"]
        p_ids = _batch(processor, [prefix], _images_in(MULTI_TURN[:k]))["input_ids"][0]
        f_ids = _batch(processor, [full], _images_in(MULTI_TURN[:k + 1]))["input_ids"][0]
        assert torch.equal(f_ids[:len(p_ids)], p_ids)
        rest = tk.convert_ids_to_tokens(f_ids[len(p_ids):].tolist())
        assert end in rest and tk.convert_tokens_to_string(rest[:rest.index(end)]) == answer


def test_chat_template_layout(built):
    arch, _, processor = built
    text = processor.apply_chat_template(conv("who is this?", True, "Alice"))
    if arch == "llava":
        assert text == "USER: <image>\nwho is this? ASSISTANT:\nAlice</s>"
    else:
        assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>who is this?<|im_end|>\n"
                        "<|im_start|>assistant\nAlice<|im_end|>\n")
    # assistant mask ({% generation %}) covers exactly the answers and their end tokens
    out = processor.tokenizer.apply_chat_template(MULTI_TURN, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    end = "</s>" if arch == "llava" else "<|im_end|>"
    assert processor.tokenizer.decode(masked) == f"Alice Smith{end}42{end}Paris.{end}"


# --- save / load -------------------------------------------------------------------------------

def test_save_and_reload_identical(built, tmp_path):
    arch, model, processor = built
    save_model(model, processor, tmp_path / "m")
    model2, processor2 = load_model(tmp_path / "m")
    assert type(model2) is type(model)
    assert isinstance(processor2, LlavaProcessor if arch == "llava" else ImageOnlyQwen2_5_VLProcessor)
    assert processor2.chat_template == processor.chat_template
    assert model2.generation_config.eos_token_id == model.generation_config.eos_token_id
    prompts = [processor.apply_chat_template(conv("who is this?", True), add_generation_prompt=True)]
    b1, b2 = _batch(processor, prompts, [RED]), _batch(processor2, prompts, [RED])
    assert b1.keys() == b2.keys() and all(torch.equal(b1[k], b2[k]) for k in b1)
    with torch.no_grad():
        assert torch.equal(model(**b1).logits, model2(**b2).logits)
    model3, _ = load_model(str(tmp_path / "m"), dtype=torch.bfloat16)
    assert model3.dtype == torch.bfloat16


def test_load_missing_path_is_clear(tmp_path):
    with pytest.raises(KoreBenchError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KoreBenchError, match="cannot load"):
        load_model(tmp_path / "empty")


# --- generation --------------------------------------------------------------------------------

def _sample(i: int, question: str, image: Image.Image | None, answer: str, train: bool) -> Sample:
    ref = None
    if image is not None:
        png = io.BytesIO()
        image.save(png, format="PNG")
        ref = ImageRef(data=png.getvalue())
    messages = [{"role": "user", "content": f"{IMAGE_TOKEN}\n{question}" if image is not None else question}]
    if train:
        messages.append({"role": "assistant", "content": answer})
    return Sample(f"s{i}", messages, ref, None if train else answer)


def _overfit(model, processor, data, steps: int = 50) -> None:
    """Teach the model three answers through the project's own encoding (loss on the answers)."""
    pad = processor.tokenizer.pad_token_id
    batch = collate([encode_for_training(processor, _sample(i, *d, train=True)) for i, d in enumerate(data)], pad)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(steps):
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_generate_mixes_image_and_text_prompts(tok, arch):
    """The evaluator's generation (left padding, KV cache) on both architectures: a batch mixing
    image and text-only prompts of different lengths gives each prompt its own answer."""
    model, processor = build_tiny(arch, tok, "micro", seed=0)
    data = [("what colour is this?", RED, "red"), ("what colour is this?", BLUE, "blue"),
            ("What is 12 + 30?", None, "42")]
    _overfit(model, processor, data)
    prompts = [_sample(i, *d, train=False) for i, d in enumerate(data)]
    answers = [a for _, _, a in data]
    lengths = {len(processor.tokenizer(processor.apply_chat_template(p.chat(), add_generation_prompt=True,
                                                                     tokenize=False))["input_ids"]) for p in prompts}
    assert len(lengths) > 1  # left padding is exercised
    assert generate(model, processor, prompts, max_new_tokens=8) == answers
    assert generate(model, processor, prompts[::-1], max_new_tokens=8) == answers[::-1]
    assert [generate(model, processor, [p], max_new_tokens=8)[0] for p in prompts] == answers


# --- parts -------------------------------------------------------------------------------------

def test_parts_on_tiny(built):
    arch, model, _ = built
    names = parts.decoder_linear_names(model)
    assert len(names) == model.config.text_config.num_hidden_layers * 7
    vision_q = [n for n, _ in model.named_modules() if n.endswith(("q_proj", "up_proj"))
                and "language_model" not in n]
    assert vision_q and not set(vision_q) & set(names)
    assert not [n for n in names if "lm_head" in n or "embed" in n]
    regex = re.compile(parts.lm_linear_regex(model))
    assert {n for n, _ in model.named_modules() if regex.fullmatch(n)} == set(names)
    assert parts.projector(model) is (model.model.multi_modal_projector if arch == "llava"
                                      else model.model.visual.merger)
    assert parts.vision_tower(model) is (model.model.vision_tower if arch == "llava" else model.model.visual)
    assert parts.language_model(model) is model.model.language_model


def test_parts_through_peft(tok):
    from peft import LoraConfig, get_peft_model
    model, _ = build_tiny("qwen", tok, "micro", seed=0)
    regex = parts.lm_linear_regex(model)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=regex))
    names = parts.decoder_linear_names(peft_model)
    assert len(names) == 2 * 7 and all(n.startswith("base_model.model.model.language_model.") for n in names)
    assert all(hasattr(peft_model.get_submodule(n), "base_layer") for n in names)
    assert parts.lm_linear_regex(peft_model) == regex
    assert sum(1 for n, _ in peft_model.named_modules() if n.endswith("lora_A")) == 14
    assert parts.vision_tower(peft_model) is model.model.visual


@pytest.mark.parametrize("config_cls,model_cls,layers", [
    (LlavaConfig, LlavaForConditionalGeneration, 32),           # llava-1.5-7b-hf shapes
    (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, 80),  # Qwen2.5-VL default shapes
])
def test_parts_on_real_layouts(config_cls, model_cls, layers):
    with torch.device("meta"):
        model = model_cls(config_cls())
    names = parts.decoder_linear_names(model)
    assert len(names) == layers * 7
    assert all(n.startswith("model.language_model.layers.") for n in names)
    assert parts.projector(model) is not None and parts.vision_tower(model) is not None


def test_parts_error_on_unknown_layout():
    with pytest.raises(KoreBenchError, match="language model"):
        parts.language_model(torch.nn.Linear(2, 2))
