"""Loaders on small files written in tmp_path: EVOKE (folders and zips), conversations, TSV, JSONL."""
from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from kore_bench.data import (
    IMAGE_TOKEN,
    ImageResolver,
    format_multiple_choice,
    load_conversations,
    load_evoke,
    load_jsonl,
    load_tsv,
    select_split,
)
from kore_bench.errors import DataError, UnknownNameError


def png_bytes(color: tuple[int, int, int], size: int = 4) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, color: tuple[int, int, int] = (255, 0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(color))


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


INJECTION = [
    {"id": 1, "image": "wikidata_imgs/Ada_wiki.jpg", "conversations": [
        {"from": "human", "value": "<image>\nCan you describe the visual artwork depicted in the image?"},
        {"from": "gpt", "value": "Ada is a painting from 2024."}]},
    {"id": 2, "image": "cnn_news_imgs/BYD_1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nPlease explain business news that is shown in image."},
        {"from": "gpt", "value": "BYD overtook Tesla."}]},
]
EVALUATION = [
    {"question_id": 3, "image": "cnn_news_eval_imgs/cnn_178/BYD_company_1.jpg",
     "text": "Which company did the company in the image surpass?\nAnswer the question using a single word or phrase.",
     "category": "default", "answer": "Tesla", "type": "business", "cnn_wiki_type": "news", "ground_truth": [1]},
    {"question_id": 4, "image": "eval_wikidata_imgs/Ada painting_1.jpg", "text": "Who painted it?",
     "category": "default", "answer": 1999, "type": "painting", "cnn_wiki_type": "wiki", "ground_truth": [0]},
]


def make_evoke_folder(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "evoke_injection_data.json").write_text(json.dumps(INJECTION))
    write_jsonl(root / "evoke_evaluation_data.jsonl", EVALUATION)
    for rec in INJECTION + EVALUATION:
        write_png(root / rec["image"])


def test_load_evoke_from_folders(tmp_path: Path) -> None:
    root = tmp_path / "EVOKE"
    make_evoke_folder(root)
    train, evaluation, report = load_evoke(root)

    assert [s.id for s in train] == ["1", "2"]
    assert train[0].messages == [
        {"role": "user", "content": "<image>\nCan you describe the visual artwork depicted in the image?"},
        {"role": "assistant", "content": "Ada is a painting from 2024."}]
    assert train[0].image.path == str(root / "wikidata_imgs/Ada_wiki.jpg")
    assert train[0].answer is None

    first = evaluation[0]
    assert first.id == "3"
    assert first.messages == [{"role": "user", "content": IMAGE_TOKEN + "\n" + EVALUATION[0]["text"]}]
    assert first.answer == "Tesla" and first.category == "default"
    assert first.meta == {"question_id": 3, "type": "business", "cnn_wiki_type": "news", "ground_truth": [1]}
    assert first.source == f"{root / 'evoke_evaluation_data.jsonl'}:1"
    assert first.image.load().getpixel((0, 0)) == (255, 0, 0)
    assert evaluation[1].answer == "1999"  # numbers are read as text

    assert (report.read, report.kept, report.skipped) == (4, 4, {})
    assert [p.read for p in report.parts] == [2, 2]
    assert any("evoke_dev_data.jsonl" in n for n in report.notes)
    assert select_split(evaluation, "test") == evaluation
    with pytest.raises(UnknownNameError, match="split 'dev'"):
        select_split(evaluation, "dev")


def test_load_evoke_images_in_zips_and_dev_split(tmp_path: Path) -> None:
    root = tmp_path / "EVOKE"
    root.mkdir()
    (root / "evoke_injection_data.json").write_text(json.dumps(INJECTION))
    write_jsonl(root / "evoke_evaluation_data.jsonl", EVALUATION)
    dev = dict(EVALUATION[0], question_id=3, answer="BYD")  # same id as a test item: ids stay unique
    write_jsonl(root / "evoke_dev_data.jsonl", [dev])
    (root / "imgs" / "injection").mkdir(parents=True)
    (root / "imgs" / "evaluation").mkdir(parents=True)
    # injection zip: members stored under their bare file names (matched by basename)
    with zipfile.ZipFile(root / "imgs/injection/evoke_injection_imgs.zip", "w") as zf:
        zf.writestr("Ada_wiki.jpg", png_bytes((0, 255, 0)))
        zf.writestr("BYD_1.jpg", png_bytes((0, 255, 0)))
    # evaluation zip: members under an extra top folder (matched by path suffix)
    with zipfile.ZipFile(root / "imgs/evaluation/evoke_evaluation_imgs.zip", "w") as zf:
        for rec in EVALUATION:
            zf.writestr("evoke_evaluation_imgs/" + rec["image"], png_bytes((0, 0, 255)))

    train, evaluation, report = load_evoke(root)
    eval_zip = str(root / "imgs/evaluation/evoke_evaluation_imgs.zip")
    assert train[0].image.path == str(root / "imgs/injection/evoke_injection_imgs.zip")
    assert train[0].image.member == "Ada_wiki.jpg"
    assert evaluation[0].image.path == eval_zip
    assert evaluation[0].image.member == "evoke_evaluation_imgs/cnn_news_eval_imgs/cnn_178/BYD_company_1.jpg"
    assert evaluation[0].image.load().getpixel((1, 1)) == (0, 0, 255)

    assert [s.id for s in evaluation] == ["3", "4", "dev:3"]
    dev_samples = select_split(evaluation, "dev")
    assert [(s.id, s.answer, s.meta["split"]) for s in dev_samples] == [("dev:3", "BYD", "dev")]
    assert [s.id for s in select_split(evaluation, "test")] == ["3", "4"]
    assert (report.read, report.kept, len(report.parts)) == (5, 5, 3)


def test_zip_index_is_built_once_and_ambiguity_is_an_error(tmp_path: Path) -> None:
    for name, folder in [("a.zip", "x"), ("b.zip", "y")]:
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            zf.writestr(f"{folder}/same.png", png_bytes((1, 2, 3)))
            zf.writestr(f"{folder}/only_{folder}.png", png_bytes((1, 2, 3)))
    resolver = ImageResolver(tmp_path)
    assert resolver.resolve("y/same.png", "here").path == str(tmp_path / "b.zip")
    assert resolver.resolve("only_x.png", "here").member == "x/only_x.png"
    with pytest.raises(DataError, match="ambiguous"):
        resolver.resolve("same.png", "here")
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zf:  # added after indexing: not seen
        zf.writestr("late.png", png_bytes((1, 2, 3)))
    with pytest.raises(DataError, match="late.png"):
        resolver.resolve("late.png", "here")
    assert ImageResolver(tmp_path).resolve("late.png", "here").member == "late.png"


def test_load_evoke_missing_image_names_the_path_and_line(tmp_path: Path) -> None:
    root = tmp_path / "EVOKE"
    make_evoke_folder(root)
    write_jsonl(root / "evoke_evaluation_data.jsonl", [EVALUATION[0], dict(EVALUATION[1], image="nope/missing.jpg")])
    with pytest.raises(DataError) as err:
        load_evoke(root)
    assert "nope/missing.jpg" in str(err.value)
    assert f"{root / 'evoke_evaluation_data.jsonl'}:2" in str(err.value)


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({k: v for k, v in EVALUATION[1].items() if k != "answer"}), "missing required field 'answer'"),
        (json.dumps(dict(EVALUATION[1], text=["a list"])), "field 'text' must be"),
        (json.dumps(["not", "an", "object"]), "expected a JSON object"),
    ],
)
def test_load_evoke_malformed_line_names_file_and_line(tmp_path: Path, bad: str, expected: str) -> None:
    root = tmp_path / "EVOKE"
    make_evoke_folder(root)
    path = root / "evoke_evaluation_data.jsonl"
    path.write_text(json.dumps(EVALUATION[0]) + "\n\n" + bad + "\n")
    with pytest.raises(DataError, match=expected) as err:
        load_evoke(root)
    assert str(err.value).startswith(f"{path}:3")


def test_load_evoke_malformed_injection_record_names_list_index(tmp_path: Path) -> None:
    root = tmp_path / "EVOKE"
    make_evoke_folder(root)
    broken = INJECTION + [{"id": 9, "image": INJECTION[0]["image"], "conversations": [
        {"from": "gpt", "value": "answer first"}, {"from": "human", "value": "then the question"}]}]
    (root / "evoke_injection_data.json").write_text(json.dumps(broken))
    with pytest.raises(DataError, match=r"expected a user turn") as err:
        load_evoke(root)
    assert f"{root / 'evoke_injection_data.json'}[2]" in str(err.value)


def test_load_conversations_llava_and_sharegpt(tmp_path: Path) -> None:
    write_png(tmp_path / "imgs" / "cat.png")
    records = [
        {"id": "kore-1", "image": "imgs/cat.png", "conversations": [
            {"from": "human", "value": "What is this?\n<image>"}, {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Its name?"}, {"from": "gpt", "value": "Tom."}]},
        {"id": "text-only", "conversations": [
            {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"},
                      {"role": "assistant", "content": "Tom."}], "images": ["imgs/cat.png"], "source": "sg"},
        {"messages": [{"role": "user", "content": "<image><image>compare"}, {"role": "assistant", "content": "same"}],
         "images": ["imgs/cat.png", "imgs/cat.png"]},
    ]
    path = tmp_path / "kore74k.json"
    path.write_text(json.dumps(records))
    samples, report = load_conversations(path)

    assert [s.id for s in samples] == ["kore-1", "text-only", "kore74k:2"]
    assert samples[0].messages[0] == {"role": "user", "content": "What is this?\n<image>"}
    assert [m["role"] for m in samples[0].messages] == ["user", "assistant", "user", "assistant"]
    assert samples[0].image.path == str(tmp_path / "imgs" / "cat.png")
    assert samples[1].image is None and IMAGE_TOKEN not in samples[1].text()
    # ShareGPT: system kept in meta, placeholder added to the first user turn, extra fields kept
    assert samples[2].messages == [{"role": "user", "content": "<image>\nWho?"},
                                   {"role": "assistant", "content": "Tom."}]
    assert samples[2].meta == {"system": "Be brief.", "source": "sg"}
    assert (report.read, report.kept) == (4, 3)
    assert report.skipped == {"several images (one per sample is supported)": 1}
    assert "read 4, kept 3, skipped 1 (several images" in str(report)


def test_load_conversations_jsonl_with_explicit_image_root(tmp_path: Path) -> None:
    write_png(tmp_path / "root" / "a.png")
    path = tmp_path / "data" / "conv.jsonl"
    path.parent.mkdir()
    write_jsonl(path, [{"id": 7, "image": "a.png", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}])
    samples, _ = load_conversations(path, tmp_path / "root")
    assert samples[0].id == "7"
    assert samples[0].image.path == str(tmp_path / "root" / "a.png")
    assert samples[0].messages[0]["content"] == "<image>\nhi"
    with pytest.raises(DataError, match=re.escape(f"{path}:1: missing image 'a.png'")):
        load_conversations(path)  # default root is the file's folder


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"conversations": [{"from": "human", "value": "q"}]}, "ending with the assistant"),
        ({"conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]}, "unknown role 'robot'"),
        ({"conversations": [{"from": "human", "value": "<image> q"}, {"from": "gpt", "value": "a"}]},
         "placeholder but no image"),
        ({"conversations": "q"}, "field 'conversations' must be list"),
    ],
)
def test_load_conversations_errors(tmp_path: Path, record: dict, expected: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
                                record]))
    with pytest.raises(DataError, match=expected) as err:
        load_conversations(path)
    assert f"{path}[1]" in str(err.value)


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


TSV_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]


def test_load_tsv_vlmevalkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv, "field_size_limit", csv.field_size_limit)  # restore after the test
    csv.field_size_limit(131072)  # the csv default, which the big image below exceeds
    noise = Image.frombytes("RGB", (300, 300), random.Random(0).randbytes(300 * 300 * 3))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    big = buf.getvalue()
    assert len(b64(big)) > 131072
    red = png_bytes((255, 0, 0))
    path = tmp_path / "MMBench_DEV_EN.tsv"
    write_tsv(path, TSV_HEADER, [
        ["10", "What colour is it?\nLook\tcarefully.", "A red ball.", "red", "blue", "", "nan", "A", "perception",
         "attr", b64(red)],
        ["11", "Which shape?", "", "circle", "square", "triangle", "", "C", "shape", "attr", "10"],  # image ref
        ["12", "How many dots?", "", "", "", "", "", "3", "counting", "num", b64(big)],  # open question
        ["13", "Unanswered?", "", "x", "y", "", "", "", "test", "num", b64(red)],  # no answer: skipped
        ["14", "Compare", "", "x", "y", "", "", "A", "mi", "num", str([b64(red), b64(red)])],  # skipped
    ])
    samples, report = load_tsv(path)

    assert [s.id for s in samples] == ["10", "11", "12"]
    first = samples[0]
    assert first.choices == {"A": "red", "B": "blue"}
    assert first.answer == "A" and first.category == "perception"
    assert first.messages == [{"role": "user", "content": "<image>\n" + format_multiple_choice(
        "What colour is it?\nLook\tcarefully.", {"A": "red", "B": "blue"}, "A red ball.")}]
    assert first.image.data == red
    assert first.meta == {"index": "10", "l2-category": "attr"}
    assert first.source == f"{path}:2"
    assert samples[1].image.data == red  # resolved through index 10
    assert samples[1].choices == {"A": "circle", "B": "square", "C": "triangle"}
    assert samples[2].choices is None and samples[2].answer == "3"
    assert samples[2].messages[0]["content"] == "<image>\nHow many dots?"
    assert samples[2].image.load().size == (300, 300)
    assert (report.read, report.kept) == (5, 3)
    assert report.skipped == {"no answer": 1, "several images (one per sample is supported)": 1}


def test_load_tsv_image_path_and_split_column(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "q1.png")
    path = tmp_path / "custom.tsv"
    write_tsv(path, ["index", "question", "answer", "image_path", "split"], [
        ["q1", "Is there a dog?", "Yes", "images/q1.png", "dev"],
        ["q2", "Is there a cat?", "No", "images/q1.png", "test"],
    ])
    samples, _ = load_tsv(path)
    assert samples[0].image.path == str(tmp_path / "images" / "q1.png")
    assert [s.id for s in select_split(samples, "dev")] == ["q1"]
    write_tsv(path, ["index", "question", "answer", "image_path"], [["q1", "A dog?", "Yes", "images/gone.png"]])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: missing image 'images/gone.png'")):
        load_tsv(path)


def test_load_tsv_without_image_columns_is_text_only(tmp_path: Path) -> None:
    path = tmp_path / "text_mcq.tsv"
    write_tsv(path, ["index", "question", "A", "B", "answer"], [["1", "2+2?", "4", "5", "A"]])
    (sample,), _ = load_tsv(path)
    assert sample.image is None
    assert sample.messages == [{"role": "user", "content": format_multiple_choice("2+2?", {"A": "4", "B": "5"})}]


def test_load_tsv_errors_name_the_line(tmp_path: Path) -> None:
    red = b64(png_bytes((255, 0, 0)))
    path = tmp_path / "bad.tsv"
    write_tsv(path, TSV_HEADER, [
        ["1", "multi\nline question", "", "x", "y", "", "", "A", "c", "l", red],  # lines 2-3
        ["2", "q", "", "x", "y", "", "", "E", "c", "l", red],  # line 4: E is not an option
    ])
    with pytest.raises(DataError, match=re.escape(f"{path}:4: answer 'E' is not one of the options")):
        load_tsv(path)
    write_tsv(path, TSV_HEADER, [["1", "q", "", "x", "y", "", "", "A", "c", "l", "!!not base64!!" * 10]])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: image is not valid base64")):
        load_tsv(path)
    write_tsv(path, TSV_HEADER, [["1", "q", "", "x", "y", "", "", "A", "c", "l", red]] * 2)
    with pytest.raises(DataError, match=re.escape(f"{path}:3: duplicate id '1' (first at {path}:2)")):
        load_tsv(path)
    path.write_text("\t".join(TSV_HEADER) + "\n1\tq\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: 2 cells but 11 columns")):
        load_tsv(path)
    path.write_text("index\tanswer\timage\n")
    with pytest.raises(DataError, match="missing column.*question"):
        load_tsv(path)
    write_tsv(path, TSV_HEADER, [["1", "q", "", "x", "y", "", "", "A", "c", "l", ""]])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: missing image")):
        load_tsv(path)
    path.write_text("")
    samples, report = load_tsv(path)
    assert samples == [] and report.notes == ["empty file"]


def test_load_jsonl_with_history_choices_and_splits(tmp_path: Path) -> None:
    write_png(tmp_path / "img" / "ball.png")
    path = tmp_path / "dialogue.jsonl"
    write_jsonl(path, [
        {"id": "d1", "image": "img/ball.png", "question": "And its colour?", "answer": "red",
         "category": "dialogue", "split": "dev", "history": [{"question": "What is it?", "answer": "a ball"}],
         "difficulty": 2},
        {"id": "t1", "image": None, "question": "What is 2+3?", "answer": 5, "category": "reasoning"},
        {"id": "m1", "image": "img/ball.png", "question": "Which colour?", "answer": "B",
         "choices": {"A": "blue", "B": "red"}},
    ])
    samples, report = load_jsonl(path)

    d1, t1, m1 = samples
    assert d1.messages == [{"role": "user", "content": "<image>\nWhat is it?"},
                           {"role": "assistant", "content": "a ball"},
                           {"role": "user", "content": "And its colour?"}]
    assert d1.answer == "red" and d1.category == "dialogue"
    assert d1.meta == {"split": "dev", "difficulty": 2}
    assert d1.image.path == str(tmp_path / "img" / "ball.png")
    assert t1.image is None and t1.messages == [{"role": "user", "content": "What is 2+3?"}] and t1.answer == "5"
    assert m1.choices == {"A": "blue", "B": "red"}
    assert m1.messages[0]["content"] == "<image>\n" + format_multiple_choice("Which colour?", {"A": "blue", "B": "red"})
    assert [s.id for s in select_split(samples, "dev")] == ["d1"]
    assert [s.id for s in select_split(samples, "test")] == ["t1", "m1"]
    assert (report.read, report.kept) == (3, 3)


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"id": "x", "question": "q"}, "missing required field 'answer'"),
        ({"id": "x", "question": "q", "answer": "a", "history": [{"question": "h"}]}, "history\\[0\\]: missing"),
        ({"id": "x", "question": "q", "answer": "C", "choices": {"A": "1", "B": "2"}}, "not one of the choices"),
        ({"id": "x", "question": "q", "answer": "a", "image": "no/such.png"}, "missing image 'no/such.png'"),
        ({"id": "first", "question": "q", "answer": "a"}, "duplicate id 'first'"),
    ],
)
def test_load_jsonl_errors(tmp_path: Path, record: dict, expected: str) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [{"id": "first", "question": "q", "answer": "a"}, record])
    with pytest.raises(DataError, match=expected) as err:
        load_jsonl(path)
    assert f"{path}:2" in str(err.value)


def test_empty_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    samples, report = load_jsonl(path)
    assert samples == [] and (report.read, report.kept, report.notes) == (0, 0, ["empty file"])
    assert select_split(samples, "dev") == []
    conv = tmp_path / "empty.json"
    conv.write_text("[]")
    assert load_conversations(conv)[1].notes == ["empty file"]
    with pytest.raises(DataError, match="no such data file"):
        load_jsonl(tmp_path / "absent.jsonl")
