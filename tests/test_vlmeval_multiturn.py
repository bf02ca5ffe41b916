"""Rows with several images and MMDU's dialogues (kore_bench/vlmeval/multiturn.py) on tiny random-weight
models of real transformers classes with their real chat templates (tests/families.py): every image is
fed, each turn sees the model's own earlier answers, MMDU is scored from the judge as VLMEvalKit scores
it, and a model that cannot take several images is refused naming the rows."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import families
from judge_helpers import FIXTURES, FakeJudge
from kore_bench.errors import KoreBenchError
from kore_bench.vlmeval import parse_judge
from kore_bench.vlmeval.benchmarks import load_samples
from kore_bench.vlmeval.judge import parse_mmdu_reply
from kore_bench.vlmeval.multiturn import MultiImageSample
from kore_bench.vlmeval.task import evaluate

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["judged"]["MMDU"]


def _png(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


RED, BLUE = _png((255, 0, 0)), _png((0, 0, 255))


@pytest.fixture
def lmudata(tmp_path) -> Path:
    """MMDU: a 2-image, 2-turn dialogue; MMMU: a row naming two images (<image 1>, <image 2>), and a
    one-image row (unchanged: a plain Sample)."""
    pd.DataFrame([{"index": 7, "image": str([RED, BLUE]),
                   "question": str(["<ImageHere><ImageHere>What differs between the two pictures?",
                                    "Which one is warmer?"]),
                   "answer": str(["The colour.", "The first."])}]).to_csv(tmp_path / "MMDU.tsv", sep="\t", index=False)
    pd.DataFrame([{"index": 1, "image": str([RED, BLUE]), "question": "Compare <image 1> with <image 2>.",
                   "A": "same", "B": "different", "answer": "B", "category": "Art", "split": "validation"},
                  {"index": 2, "image": RED, "question": "What is <image 1>?", "A": "red", "B": "blue",
                   "answer": "A", "category": "Art", "split": "validation"}]
                 ).to_csv(tmp_path / "MMMU_DEV_VAL.tsv", sep="\t", index=False)
    return tmp_path


def _recording(model):
    """model.generate, recording the inputs of every call."""
    calls, original = [], model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    model.generate = generate
    return calls


def _llava():
    model, processor = families.build("llava-1.5")
    model.generation_config.eos_token_id = None  # random weights: never stop early, so an answer has text
    return model, processor


def test_mmdu_dialogue_feeds_every_image_and_the_models_own_answers(lmudata: Path) -> None:
    (sample,) = load_samples(lmudata, "MMDU")
    assert isinstance(sample, MultiImageSample) and len(sample.images) == 2
    assert sample.turns == [[{"type": "image", "image": 0}, {"type": "image", "image": 1},
                             {"type": "text", "text": "What differs between the two pictures?"}],
                            [{"type": "text", "text": "Which one is warmer?"}]]
    model, processor = _llava()
    calls = _recording(model)
    _, _, records, extra = evaluate(model, processor, {"benchmark": "MMDU"}, "MMDU", [sample], ["score"],
                                    {"max_new_tokens": 6}, 4)
    assert extra["not_scored"].startswith("not scored: VLMEvalKit scores MMDU with an LLM judge")
    answers = eval(records[0]["prediction"])  # noqa: S307 - VLMEvalKit's format: a Python list literal
    assert len(calls) == 2 and len(answers) == 2 and answers[0] != ""
    tok = processor.tokenizer
    image_id = model.config.image_token_index
    for call in calls:  # both images, in every turn: 2 pixel rows, 2 x 16 image tokens
        assert call["pixel_values"].shape[0] == 2
        assert int((call["input_ids"] == image_id).sum()) == 2 * 16
    first = tok.decode(calls[0]["input_ids"][0], skip_special_tokens=True)
    second = tok.decode(calls[1]["input_ids"][0], skip_special_tokens=True)
    assert answers[0] not in first and "Which one is warmer?" not in first
    assert second.index("What differs") < second.index(answers[0]) < second.index("Which one is warmer?")
    assert second.startswith(first.rstrip())  # the second prompt extends the first conversation


def test_mmdu_from_the_judge_as_vlmevalkit(lmudata: Path, tmp_path) -> None:
    """With a judge, the dialogue's turns are judged; the aggregate is VLMEvalKit's (expected.json
    holds MMDUDataset.evaluate's table on the fixture's canned replies, checked in test_vlmeval_judge)."""
    (sample,) = load_samples(lmudata, "MMDU")
    model, processor = _llava()
    reply = "Fine.\n{'Creativity': 4, 'Richness': 12, 'Visual Perception': '6', 'Logical Coherence': 5.7, " \
            "'Answer Accuracy': None, 'Image Relationship Understanding': 3, 'Overall Score': 5}"
    server = FakeJudge()
    import judge_helpers

    original = judge_helpers.default_reply
    judge_helpers.default_reply = lambda prompt: reply if "[The Start of Assistant’s Answer]" in prompt else original(prompt)
    try:
        judge = parse_judge(f"{server.url},fake", cache_dir=tmp_path / "cache")
        means, _, records, extra = evaluate(model, processor, {"benchmark": "MMDU"}, "MMDU", [sample], ["score"],
                                            {"max_new_tokens": 4}, 4, judge)
    finally:
        judge_helpers.default_reply = original
        server.close()
    assert len(server.requests) == 2  # one judge call per turn
    answers = eval(records[0]["prediction"])  # noqa: S307
    assert server.requests[1]["prompt"].endswith("[The Start of Assistant’s Answer]\n" + answers[1]
                                                  + "\n[The End of Assistant’s Answer]")
    assert means == {"score": 50.0} and records[0]["scores"] == {"score": 50.0}
    all_, valid = extra["vlmeval"]
    assert all_ == {"set": "all", "Creativity": 40.0, "Richness": 100.0, "Visual Perception": 60.0,
                    "Logical Coherence": 50.0, "Answer Accuracy": 0.0, "Image Relationship Understanding": 30.0,
                    "Overall Score": 50.0}
    assert math.isnan(valid["Answer Accuracy"]) and valid["Overall Score"] == 50.0
    assert {r["set"] for r in EXPECTED} == {"all", "valid"}


def test_mmdu_reply_reading() -> None:
    assert parse_mmdu_reply("x {'Creativity': 1 + 1, 'Overall Score': 9/10} y") == {"Creativity": 2,
                                                                                  "Overall Score": 0.9}
    for bad in ("no dict", "{'a': null}", "{'a': 1} and {'b': 2}", "{1, 2}"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_mmdu_reply(bad)


@pytest.mark.parametrize("family", ["llava-1.5", "qwen2-vl"])
def test_mmmu_row_with_two_images_feeds_both(lmudata: Path, family: str) -> None:
    two, one = load_samples(lmudata, "MMMU_DEV_VAL")
    assert isinstance(two, MultiImageSample) and not isinstance(one, MultiImageSample)
    assert one.messages[0]["content"].startswith("Question: What is <image>?")  # one image: as before
    assert [p["type"] for p in two.turns[0]] == ["text", "image", "text", "image", "text"]  # split_MMMU
    assert two.turns[0][:3] == [{"type": "text", "text": "Question: Compare "}, {"type": "image", "image": 0},
                                {"type": "text", "text": " with "}]
    model, processor = families.build(family)
    calls = _recording(model)
    _, _, records, _ = evaluate(model, processor, {"benchmark": "MMMU_DEV_VAL"}, "MMMU", [two, one], ["Overall"],
                                {"max_new_tokens": 3}, 4)
    assert [r["id"] for r in records] == ["1", "2"] and all(isinstance(r["prediction"], str) for r in records)
    multi = calls[0]  # the two-image row first, alone; then the one-image row through the batched path
    if family == "qwen2-vl":
        assert multi["image_grid_thw"].shape[0] == 2
        image_id = model.config.image_token_id
        per_image = int(multi["image_grid_thw"][0].prod()) // 4  # merge_size 2 x 2
    else:
        assert multi["pixel_values"].shape[0] == 2
        image_id, per_image = model.config.image_token_index, 16
    assert int((multi["input_ids"] == image_id).sum()) == 2 * per_image
    text = processor.tokenizer.decode(multi["input_ids"][0])
    if family == "qwen2-vl":  # an interleaving template: each image where its tag was
        assert text.index("Compare") < text.index("<|vision_start|>") < text.index(" with ")
    assert int((calls[1]["input_ids"] == image_id).sum()) == per_image


def test_a_model_that_cannot_take_several_images_is_refused(lmudata: Path) -> None:
    two, _ = load_samples(lmudata, "MMMU_DEV_VAL")
    model, processor = families.build("paligemma")
    with pytest.raises(KoreBenchError, match=r"MMMU_DEV_VAL: rows 1 need several images .*PaliGemmaProcessor"):
        evaluate(model, processor, {"benchmark": "MMMU_DEV_VAL"}, "MMMU", [two], ["Overall"], {"max_new_tokens": 2}, 4)
