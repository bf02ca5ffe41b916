"""Every supported architecture family trains and scores correctly (tiny models of the real classes).

Per family (``tests/families.py``): the labels are exactly each answer plus the end-of-turn token
the model must generate to stop, token by token, and the context before each answer is exactly
the prompt the evaluator builds (so no label is shifted and multi-turn data is prefix-stable);
one BOS; the projector is found; LoRA trains through the real trainer, saves, reloads and
evaluates to the same answers.
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image

import families
from kore_bench.data import IMAGE_TOKEN, ImageRef, Sample
from kore_bench.encoding import IGNORE_INDEX, check_supported, encode_for_training, encode_prompt
from kore_bench.errors import KoreBenchError
from kore_bench.evaluate.generation import generate
from kore_bench.method import BaseModelRef, TrainContext
from kore_bench.models import parts
from kore_bench.models.loading import load_model, save_model

NAMES = list(families.FAMILIES)
QA = [("What colour is the square?", "red"), ("And the circle?", "blue"), ("Who founded Acme?", "Alice Smith.")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> ImageRef:
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return ImageRef(path=str(path))


def dialogue(image: ImageRef, turns: int, answered: bool = True) -> Sample:
    """KORE's augmented multi-turn shape: the image in the first user turn, then Q/A turns."""
    messages = []
    for i, (q, a) in enumerate(QA[:turns]):
        messages.append({"role": "user", "content": (IMAGE_TOKEN + "\n" if i == 0 else "") + q})
        messages.append({"role": "assistant", "content": a})
    if not answered:
        messages = messages[:-1]
    return Sample(f"d{turns}", messages, image=image, answer=QA[turns - 1][1])


def runs(labels: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of learned positions."""
    on = (labels != IGNORE_INDEX).tolist() + [False]
    out, start = [], None
    for i, flag in enumerate(on):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.fixture(scope="module", params=NAMES)
def family(request):
    fam = families.FAMILIES[request.param]
    model, proc = families.build(fam.name)
    return fam, model, proc


@pytest.mark.parametrize("turns", [1, 3])
def test_labels_are_the_answers_and_the_stop_token(family, image, turns):
    fam, _, proc = family
    tok = proc.tokenizer
    eot = tok.convert_tokens_to_ids(fam.end_of_turn)
    f = encode_for_training(proc, dialogue(image, turns))
    ids, labels = f["input_ids"][0], f["labels"][0]
    assert labels.shape == ids.shape
    spans = runs(labels)
    assert len(spans) == turns
    for k, (start, end) in enumerate(spans):
        learned = ids[start:end].tolist()
        assert labels[start:end].tolist() == learned
        assert learned[-1] == eot, tok.convert_ids_to_tokens(learned)
        assert tok.decode(learned[:-1]) in (QA[k][1], " " + QA[k][1])  # a leading space belongs to the answer
        # the context before the answer is, token for token, the prompt generation starts from
        history = dialogue(image, k + 1, answered=False)
        prompt = encode_prompt(proc, history)["input_ids"][0]
        assert ids[:start].tolist() == prompt.tolist()


def test_one_bos(family, image):
    fam, _, proc = family
    tok = proc.tokenizer
    for f in (encode_for_training(proc, dialogue(image, 2)), encode_prompt(proc, dialogue(image, 1, answered=False))):
        ids = f["input_ids"][0].tolist()
        if fam.bos is None:
            assert tok.bos_token is None or tok.bos_token_id not in ids
        else:
            bos = tok.convert_tokens_to_ids(fam.bos)
            assert ids.count(bos) == 1
            first_text = next(i for i, t in enumerate(ids) if t != getattr(proc, "image_token_id", None))
            assert ids[first_text] == bos  # the BOS opens the text (PaliGemma: right after the image)


def test_projector_and_lora_targets_are_found(family):
    fam, model, _ = family
    assert parts.projector(model) is model.get_submodule(fam.projector)
    names = parts.decoder_linear_names(model)
    assert names and all(n.startswith(parts._name_of(model, parts.language_model(model))) for n in names)


def test_paligemma_matches_its_processor(image):
    """One turn is encoded exactly as PaliGemma's own prefix/suffix call (labels not shifted)."""
    _, proc = families.build("paligemma")
    f = encode_for_training(proc, dialogue(image, 1))
    ref = proc(text=[QA[0][0]], suffix=[QA[0][1]], images=[image.load()], return_tensors="pt")
    assert torch.equal(f["input_ids"], ref["input_ids"])
    assert torch.equal(f["labels"], torch.as_tensor(ref["labels"]))
    prompt = proc(text=[QA[0][0]], images=[image.load()], return_tensors="pt")
    assert torch.equal(encode_prompt(proc, dialogue(image, 1, answered=False))["input_ids"], prompt["input_ids"])


def test_train_save_reload_evaluate(family, image, tmp_path):
    from kore_bench.methods.lora import LoRA

    fam, model, proc = family
    base = save_model(model, proc, tmp_path / "base")
    reloaded, reproc = load_model(base)
    assert type(reloaded) is type(model)
    method = LoRA.from_overrides({"steps": 2, "batch_size": 2, "lr": 1e-2})
    ctx = TrainContext(BaseModelRef(str(base), fam.name), [dialogue(image, 1), dialogue(image, 3)], [], seed=0,
                       artifact_dir=tmp_path / "artifact", progress=False)
    trained = method.train(ctx)
    assert trained.info is not None and trained.info.steps == 2 and math.isfinite(trained.info.final_loss)
    questions = [dialogue(image, 1, answered=False), dialogue(image, 2, answered=False)]
    first = generate(trained.model, trained.processor, questions, max_new_tokens=4, batch_size=2)
    again = method.load(ctx)
    assert generate(again.model, again.processor, questions, max_new_tokens=4, batch_size=2) == first


def test_unsupported_processor_fails_at_start(image):
    _, proc = families.build("llava-1.5")
    proc.chat_template = None
    proc.tokenizer.chat_template = None
    with pytest.raises(KoreBenchError, match="no chat template"):
        check_supported(proc)
    from kore_bench.train import TrainConfig, train_model
    model, _ = families.build("llava-1.5")
    with pytest.raises(KoreBenchError, match="no chat template"):
        train_model(model, proc, [dialogue(image, 1)], TrainConfig(steps=1), seed=0, progress=False)
