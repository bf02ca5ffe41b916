"""The built-in VLMEvalKit suites (``kore`` and one per benchmark): data as VLMEvalKit lays it out,
VLMEvalKit's prompts, the files' own splits, whole-task scoring in a run, and ``kore-bench score``."""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from kore_bench.runner import RunConfig, evaluate_suite, run
from kore_bench.suites import load_suites
from kore_bench.vlmeval import BENCHMARKS, headline, score_table
from kore_bench.vlmeval.benchmarks import NOT_SCORED, predictions_table

FIXTURES = Path(__file__).parent / "fixtures" / "vlmeval"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _png(seed: int) -> str:
    image = Image.new("RGB", (24, 24), ((37 * seed) % 256, (91 * seed) % 256, (13 * seed) % 256))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory) -> Path:
    """A VLMEvalKit data folder: the fixture benchmarks with base64 images (MMBench's rotations name
    their main row's index instead), MME with image files under images/MME/, and a judge benchmark."""
    root = tmp_path_factory.mktemp("LMUData")
    for name in ("MMBench_DEV_EN", "MMMU_DEV_VAL", "POPE", "OCRVQA_TESTCORE", "HallusionBench"):
        data = pd.read_csv(FIXTURES / f"{name}.tsv", sep="\t").drop(columns=["prediction"])
        if name == "MMBench_DEV_EN":
            data["image"] = [_png(i) if i < 1e6 else str(int(i % 1e6)) for i in data["index"]]
        else:
            data["image"] = [_png(i) for i in range(len(data))]
        data.to_csv(root / f"{name}.tsv", sep="\t", index=False)
    mme = pd.read_csv(FIXTURES / "MME.tsv", sep="\t").drop(columns=["prediction"])
    for i, rel in enumerate(sorted(set(mme["image_path"]))):
        (root / "images" / "MME" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / "MME" / rel).write_bytes(base64.b64decode(_png(i)))
    mme.to_csv(root / "MME.tsv", sep="\t", index=False)
    mathvista = pd.read_csv(FIXTURES / "MathVista_MINI.tsv", sep="\t").drop(columns=["prediction"]).head(3)
    mathvista.to_csv(root / "MathVista_MINI.tsv", sep="\t", index=False)  # a judged benchmark, with images
    return root


def test_kore_and_every_benchmark_are_suites() -> None:
    suites = load_suites()
    kore = suites["kore"]
    assert [t.name for t in kore.tasks] == list(BENCHMARKS)
    assert {t.category for t in kore.tasks} == {"COM", "OCR", "M-DIS", "INS", "M-IDU", "MAT", "HAL"}
    for name, bench in BENCHMARKS.items():
        assert suites[name].role == "retention"
        assert [(t.name, t.category, t.metrics[0]) for t in suites[name].tasks] == [(name, bench.category, bench.metrics[0])]


def test_prompts_images_and_splits_as_vlmevalkit(lmudata: Path) -> None:
    suites = load_suites()
    mmb = suites["MMBench_DEV_EN"].with_variables(path=str(lmudata))
    samples = mmb.task_samples(mmb.tasks[0])  # a dev-split file: its rows are the reported (test) split
    table = pd.read_csv(lmudata / "MMBench_DEV_EN.tsv", sep="\t")
    assert len(samples) == len(table)
    row = table.iloc[0]
    options = "".join(f"{c}. {row[c]}\n" for c in "ABCD" if not pd.isna(row[c]))
    hint = "" if pd.isna(row["hint"]) else f"Hint: {row['hint']}\n"
    assert samples[0].messages[-1]["content"] == (
        f"<image>\n{hint}Question: {row['question']}\nOptions:\n{options}"
        "Please select the correct answer from the options above. \n")
    rotation = next(s for s in samples if int(s.id) >= 1e6 and int(s.id) % 1e6 == 0)
    assert rotation.image.load().getpixel((0, 0)) == samples[0].image.load().getpixel((0, 0))  # by index

    mme = suites["MME"].with_variables(path=str(lmudata))
    first = mme.task_samples(mme.tasks[0])[0]
    assert first.messages[-1]["content"] == "<image>\n" + pd.read_csv(lmudata / "MME.tsv", sep="\t")["question"][0]
    assert first.image.path.endswith("images/MME/OCR/0.jpg")
    ocr = suites["OCRVQA_TESTCORE"].with_variables(path=str(lmudata))
    assert ocr.task_samples(ocr.tasks[0])[0].messages[-1]["content"].endswith(
        "?\nAnswer the question using a single word or phrase.")

    mmmu = suites["MMMU_DEV_VAL"].with_variables(path=str(lmudata))
    splits = pd.read_csv(lmudata / "MMMU_DEV_VAL.tsv", sep="\t")["split"]
    assert len(mmmu.task_samples(mmmu.tasks[0], "test")) == (splits == "validation").sum()
    assert len(mmmu.task_samples(mmmu.tasks[0], "dev")) == (splits == "dev").sum()


def test_a_suite_is_scored_over_the_whole_task(lmudata: Path, micro_base) -> None:
    suite = load_suites()["kore"].with_variables(path=str(lmudata))
    suite.tasks = [t for t in suite.tasks if t.name in ("MME", "MMBench_DEV_EN", "POPE", "MathVista_MINI")]
    model, processor = micro_base.load()
    tasks, records = evaluate_suite(model, processor, suite, None, "test", 16)
    for task in [t for t in suite.tasks if t.name != "MathVista_MINI"]:
        samples = suite.task_samples(task)
        preds = [r["prediction"] for r in records if r["task"] == task.name]
        assert len(preds) == len(samples)
        expected = headline(task.name, score_table(task.name, predictions_table(samples, preds)))
        assert tasks[task.name]["metrics"] == {m: pytest.approx(expected[m]) for m in task.metrics}
    mme = pd.DataFrame([{"index": int(r["id"]), "prediction": r["prediction"]} for r in records if r["task"] == "MME"])
    table = pd.read_csv(lmudata / "MME.tsv", sep="\t").merge(mme, on="index")
    assert tasks["MME"]["vlmeval"] == score_table("MME", table).table  # VLMEvalKit's table in the result
    assert math.isnan(tasks["MathVista_MINI"]["metrics"]["score"])  # no judge: not scored, never a lower number
    assert tasks["MathVista_MINI"]["not_scored"] == NOT_SCORED.format(name="MathVista_MINI")
    judged = [r for r in records if r["task"] == "MathVista_MINI"]  # but generated, to re-score later
    assert len(judged) == 3 and all(isinstance(r["prediction"], str) and r["scores"] == {} for r in judged)
    assert "judge" not in tasks["MME"]  # exact matching, as without --judge always


def test_run_leaves_kr_unscored_when_a_category_is_not_scored(lmudata: Path, micro_base, tmp_path) -> None:
    out = run(RunConfig(methods=["lora"], output=tmp_path / "run", world="micro", seeds=[0], progress=False,
                        retention=[f"MME:{lmudata}", f"MathVista_MINI:{lmudata}"], limit=4, dev_share=0.1,
                        method_args={"lora": {"steps": 2}}))
    with open(out / "leaderboard.csv") as f:
        board = {r["method"]: r for r in csv.DictReader(f)}
    assert board["lora"]["COM"] != "" and board["lora"]["MAT"] == "" and board["lora"]["K.R"] == ""
    # 10 % of dev-less test data held out as dev: every rendering says so
    # (world-new has a dev split of its own: its test set is whole)
    note = "test = published set minus 10 % dev hold-out (seed 0): MME/MME, MathVista_MINI/MathVista_MINI"
    assert (out / "leaderboard.md").read_text().startswith("> " + note + "\n")
    assert note.replace("%", r"\%").replace("_", r"\_") in (out / "leaderboard.tex").read_text().split(r"\caption{")[1]
    from kore_bench.report import leaderboard, reduced_test_note, to_rich

    console = Console(width=200, record=True)
    console.print(to_rich(leaderboard(out), "run"))
    assert note in " ".join(console.export_text().split())  # the title (wrapped to the table's width)
    assert reduced_test_note({"splits": {"evoke": {"evoke": {"dev": 0, "test": 9, "dev_source": "none"}}}}) is None


@pytest.mark.parametrize("benchmark, group_of", [
    ("MMBench_DEV_EN", lambda row: int(row["index"]) % 1_000_000),  # a circular group
    ("MME", lambda row: row["image_path"]),  # an image's question pair (acc+)
    ("HallusionBench", lambda row: "_".join([row["l2-category"], row["index"].split("_")[3]])),  # a set
])
def test_dev_hold_out_never_splits_a_scoring_group(lmudata: Path, benchmark: str, group_of) -> None:
    from kore_bench.data import hold_out_dev

    suite = load_suites()[benchmark].with_variables(path=str(lmudata))
    samples = suite.task_samples(suite.tasks[0])
    rows = {s.id: s.meta["vlmeval_row"] for s in samples}
    for seed in range(5):
        held = hold_out_dev(samples, 0.3, seed, benchmark)
        dev = {s.id for s in held if s.meta.get("split") == "dev"}
        assert 0 < len(dev) < len(samples) and abs(len(dev) - 0.3 * len(samples)) <= 0.15 * len(samples)
        split_of: dict = {}
        for s in held:
            split_of.setdefault(group_of(rows[s.id]), set()).add(s.meta.get("split", "test"))
        assert all(len(v) == 1 for v in split_of.values()), "a group is split across dev and test"
        assert len({g for g, v in split_of.items() if v == {"dev"}}) >= 1
    assert [s.id for s in hold_out_dev(samples, 0.3, 0, benchmark) if s.meta.get("split") == "dev"] == \
        [s.id for s in hold_out_dev(samples, 0.3, 0, benchmark) if s.meta.get("split") == "dev"]  # seeded


def test_run_with_a_judge_scores_judged_benchmarks_and_keys_the_judge(lmudata: Path, micro_base, tmp_path) -> None:
    """``run --judge URL,MODEL`` against a local fake endpoint: MathVista scored, the judge in the task
    entry and in the evaluation key's settings; the same judge reuses the unit, another re-scores it
    (only the suites a judge scores)."""
    from judge_helpers import FakeJudge

    from kore_bench.store import RunDir

    server = FakeJudge()
    cfg = dict(methods=["lora"], output=tmp_path / "run", world="micro", seeds=[0], progress=False,
               retention=[f"MathVista_MINI:{lmudata}"], limit=3, method_args={"lora": {"steps": 2}})
    try:
        out = run(RunConfig(**cfg, judge=f"{server.url},judge-a"))
        result = json.loads((out / "lora" / "seed0" / "MathVista_MINI" / "result.json").read_text())
        task = result["tasks"]["MathVista_MINI"]
        assert task["judge"] == {"endpoint": server.url, "model": "judge-a"} and "not_scored" not in task
        assert 0 <= task["metrics"]["score"] <= 100 and task["vlmeval"][0]["Task&Skill"] == "Overall"
        new_suite = json.loads((out / "lora" / "seed0" / "world-new" / "result.json").read_text())
        assert new_suite["key"]["settings"] != result["key"]["settings"]  # the judge only where it scores
        asked = len(server.requests)
        assert asked >= 1 and server.requests[0]["prompt"] == "Hello!"  # checked before training

        run(RunConfig(**cfg, judge=f"{server.url},judge-a"))
        assert json.loads((out / "lora" / "seed0" / "MathVista_MINI" / "result.json").read_text()) == result
        assert [r["prompt"] for r in server.requests[asked:]] == ["Hello!"]  # only the check: unit reused
        asked = len(server.requests)
        run(RunConfig(**cfg, judge=f"{server.url},judge-b"))
        rescored = json.loads((out / "lora" / "seed0" / "MathVista_MINI" / "result.json").read_text())
        assert rescored["tasks"]["MathVista_MINI"]["judge"]["model"] == "judge-b"
        assert rescored["key"]["settings"] != result["key"]["settings"]
        assert {r["model"] for r in server.requests[asked:]} == {"judge-b"}
        assert RunDir(out).manifest()["config"]["judge"] == f"{server.url},judge-b"
    finally:
        server.close()


def test_score_command_prints_and_writes_vlmevalkit_metrics(tmp_path) -> None:
    out = tmp_path / "mme.json"
    done = subprocess.run([sys.executable, "-m", "kore_bench", "score", "MME", str(FIXTURES / "MME.tsv"),
                           "--output", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "perception" in done.stdout and "MME_norm" in done.stdout
    report = json.loads(out.read_text())
    theirs = EXPECTED["benchmarks"]["MME"][0]
    assert report["vlmeval"][0] == pytest.approx(theirs)
    assert report["metrics"]["MME_norm"] == pytest.approx((theirs["perception"] + theirs["reasoning"]) / 2800 * 100)
    bad = subprocess.run([sys.executable, "-m", "kore_bench", "score", "MathVista_MINI", str(FIXTURES / "MME.tsv")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not scored" in bad.stderr


@pytest.mark.parametrize("layout", ["unzipped", "zip_top_folder", "json_subfolder"])
def test_evoke_layouts(tmp_path, layout: str) -> None:
    """EVOKE as users lay it out: images unzipped in place below imgs/, zips with a top folder, and
    the record files in json/ (the dataset card)."""
    import zipfile

    from kore_bench.data import load_evoke

    root = tmp_path / "EVOKE"
    records = root / "json" if layout == "json_subfolder" else root
    records.mkdir(parents=True)
    png = base64.b64decode(_png(3))
    (records / "evoke_injection_data.json").write_text(json.dumps([{"id": 1, "image": "wikidata_imgs/X_wiki.jpg",
        "conversations": [{"from": "human", "value": "<image>\nWho?"}, {"from": "gpt", "value": "X is a company."}]}]))
    (records / "evoke_evaluation_data.jsonl").write_text(json.dumps({"question_id": 1, "image": "eval_imgs/X_1.jpg",
        "text": "Who?", "answer": "X", "ground_truth": [0]}) + "\n")
    if layout == "zip_top_folder":
        (root / "imgs").mkdir()
        with zipfile.ZipFile(root / "imgs" / "evoke_imgs.zip", "w") as zf:
            zf.writestr("evoke_imgs/wikidata_imgs/X_wiki.jpg", png)
            zf.writestr("evoke_imgs/eval_imgs/X_1.jpg", png)
    else:
        for rel in ("imgs/injection/evoke_entity_injection_imgs/wikidata_imgs/X_wiki.jpg",
                    "imgs/evaluation/evoke_entity_evaluation_imgs/eval_imgs/X_1.jpg"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(png)
    train, evaluation, _ = load_evoke(root)
    assert len(train) == 1 and len(evaluation) == 1
    assert train[0].image.load().size == evaluation[0].image.load().size == (24, 24)
