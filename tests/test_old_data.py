"""The old-knowledge pool (replay, calibration) without retention training data: the default (the
retention suites' own dev items, never test items), ``--old-data`` (a file or a suite) and the error
naming the option when there is none."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from kore_bench import old_data
from kore_bench.adapters.covariance import draw_calibration
from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.method import TrainContext
from kore_bench.methods.replay import Replay
from kore_bench.runner import RunConfig, prepare
from kore_bench.suites import load_suites

FIXTURES = Path(__file__).parent / "fixtures" / "vlmeval"


def _png(seed: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), ((37 * seed) % 256, (91 * seed) % 256, 7)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory) -> Path:
    """VLMEvalKit's MMMU_DEV_VAL (dev and validation rows) and MME (test only), base64 images."""
    root = tmp_path_factory.mktemp("LMUData")
    for name in ("MMMU_DEV_VAL", "MME"):
        data = pd.read_csv(FIXTURES / f"{name}.tsv", sep="\t").drop(columns=["prediction"])
        data["image"] = [_png(i) for i in range(len(data))]
        data.to_csv(root / f"{name}.tsv", sep="\t", index=False)
    return root


def _suite(name: str, path: Path):
    return load_suites()[name].with_variables(path=str(path))


def test_default_pool_is_the_retention_suites_own_dev_items(lmudata: Path) -> None:
    mmmu = _suite("MMMU_DEV_VAL", lmudata)
    table = pd.read_csv(lmudata / "MMMU_DEV_VAL.tsv", sep="\t")
    dev, test = table[table.split == "dev"], table[table.split == "validation"]
    pool, record = old_data.default_pool([mmmu, _suite("MME", lmudata)])
    assert len(pool) == len(dev) and record["samples"] == len(dev)
    assert record["suites"] == {"MMMU_DEV_VAL": {"from": "dev items", "samples": len(dev)},
                                "MME": {"from": "dev items", "samples": 0}}
    tested = {s.id for s in mmmu.task_samples(mmmu.tasks[0], "test")}
    assert len(tested) == len(test)
    for s in pool:  # a training conversation: the question as asked, then the gold answer
        assert s.messages[-1]["role"] == "assistant" and s.answer is None
        assert s.id.split(":")[-1] not in tested
        row = table[table["index"].astype(str) == s.id.split(":")[-1]].iloc[0]
        assert s.messages[-1]["content"] == str(row["answer"]) and row["split"] == "dev"
    held = mmmu.with_dev_holdout(0.5, 0)  # the seeded hold-out of test items never joins the pool
    assert [s.id for s in old_data.default_pool([held])[0]] == [s.id for s in pool]


def test_without_old_data_the_methods_name_the_option(lmudata: Path, tmp_path: Path) -> None:
    pool, record = old_data.default_pool([_suite("MME", lmudata)])
    assert pool == [] and record["samples"] == 0
    with pytest.raises(KoreBenchError, match="calibration set is empty.*give --old-data FILE"):
        draw_calibration(pool, 8, 0)
    ctx = TrainContext(None, [], pool, 0, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(KoreBenchError, match=r"replay needs old-knowledge data.*--retention kore:/data/LMUData.*"
                                             r"--old-data SUITE"):
        Replay().memory(ctx)


def test_old_data_from_files(lmudata: Path, tmp_path: Path) -> None:
    suites = load_suites()
    image = tmp_path / "a.png"
    image.write_bytes(base64.b64decode(_png(1)))
    conversations = tmp_path / "old.json"
    conversations.write_text(json.dumps([{"id": "c1", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]}]))
    questions = tmp_path / "old.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": "2+2?", "answer": "4"}) + "\n")
    samples, record = old_data.load(str(conversations), suites)
    assert [s.id for s in samples] == ["c1"] and samples[0].image.path == str(image)
    assert record["source"] == f"--old-data {conversations.resolve()}" and record["samples"] == 1
    samples, _ = old_data.load(str(questions), suites)
    assert samples[0].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    samples, _ = old_data.load(str(lmudata / "MME.tsv"), suites)  # a TSV is used whole (the user's choice)
    assert len(samples) == len(pd.read_csv(lmudata / "MME.tsv", sep="\t"))
    assert all(s.messages[-1]["role"] == "assistant" for s in samples)
    samples, record = old_data.load(f"MMMU_DEV_VAL:{lmudata}", suites)  # a suite: its own dev items
    assert record["suites"]["MMMU_DEV_VAL"]["from"] == "dev items" and len(samples) == 23
    with pytest.raises(KoreBenchError, match=r"--old-data MME:.*no old-knowledge samples"):
        old_data.load(f"MME:{lmudata}", suites)
    with pytest.raises(UnknownNameError, match="did you mean 'MMMU_DEV_VAL'"):
        old_data.load("MMMU_DEV_VL", suites)
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(KoreBenchError, match=r"expected a \.json, \.jsonl or \.tsv file"):
        old_data.load(str(tmp_path / "old.txt"), suites)


def test_the_run_takes_its_pool_from_old_data_and_keys_training_on_it(lmudata: Path, micro_base, tmp_path) -> None:
    console = Console(stderr=True, quiet=True)

    def prep(**options):
        return prepare(RunConfig(methods=["replay"], output=tmp_path / "run", world="micro", progress=False,
                                 retention=[f"MME:{lmudata}"], **options), console)

    none = prep()
    assert none.old_pool == [] and none.old_source["samples"] == 0
    from_suite = prep(old_data=f"MMMU_DEV_VAL:{lmudata}")
    assert len(from_suite.old_pool) == 23 and from_suite.old_source["source"] == f"--old-data MMMU_DEV_VAL:{lmudata}"
    world = prep(old_data="world-retention")  # a world suite: the world is exported for it
    assert world.world_dir is not None and world.old_source["suites"]["world-retention"]["from"] == "training pool"
    assert len({none.train_data, from_suite.train_data, world.train_data}) == 3  # the pool is in the unit key
