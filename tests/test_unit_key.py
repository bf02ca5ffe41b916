"""The unit key (kore_bench/unit_key.py): each of its parts changes with what it stands for, and
only with that. No training: keys are computed on a copy of the package, a folder of fake weights
and a copy of the micro world.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from kore_bench import unit_key


@pytest.fixture(scope="module")
def lora():
    from kore_bench.registry import load_methods

    return load_methods([]).get("lora").from_overrides({})


@pytest.fixture(scope="module")
def retention_suite():
    from kore_bench.suites import load_suites

    return load_suites()["world-retention"]


def _keys(method, suite, weights="w", train_data="d", eval_data="e"):
    train = unit_key.unit_key("lora", method, weights, train_data, 0)
    evaluation = unit_key.unit_key("lora", method, weights, train_data, 0, suite, eval_data, {"split": "test"})
    return train, evaluation


def _touch(path: Path) -> None:
    """A later mtime, as any real edit gives (hashes are cached by path, size and mtime)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# -- code ---------------------------------------------------------------------------------------------
@pytest.fixture
def code_copy(tmp_path, monkeypatch):
    """A copy of the package and of methods/ that code_hash reads instead of the real files."""
    import inspect

    import kore_bench
    import kore_bench.methods

    roots = {}
    for name, module in (("kore_bench", kore_bench), ("methods", kore_bench.methods)):
        src = Path(module.__file__).resolve().parent
        roots[src] = tmp_path / name
        shutil.copytree(src, roots[src], ignore=shutil.ignore_patterns("__pycache__"))

    def getfile(module):
        real = Path(inspect.getfile(module)).resolve()
        for src, dst in roots.items():
            if real.is_relative_to(src):
                return str(dst / real.relative_to(src))
        return str(real)

    monkeypatch.setattr(unit_key, "inspect", SimpleNamespace(getfile=getfile))
    monkeypatch.setattr(unit_key, "_CODE", {})
    return tmp_path


@pytest.mark.parametrize("edited,training,evaluation", [
    ("kore_bench/train.py", True, False),
    ("kore_bench/models/loading.py", True, False),
    ("kore_bench/augment/__init__.py", True, False),
    ("methods/lora.py", True, False),
    ("kore_bench/encoding.py", True, True),
    ("kore_bench/evaluate/metrics.py", False, True),
    ("kore_bench/evaluate/generation.py", False, True),
    ("kore_bench/report.py", False, False),  # tables only: no number of a unit changes
    ("kore_bench/vlmeval/score.py", False, False),  # VLMEvalKit scoring: not the world suite's code
    ("kore_bench/llm_client.py", True, False),  # the llm augmenter's client trains; the judge scores no world task
])
def test_editing_code_changes_the_key_it_belongs_to(code_copy, lora, retention_suite, edited, training, evaluation):
    train0, eval0 = _keys(lora, retention_suite)
    path = code_copy / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    unit_key._CODE.clear()
    train1, eval1 = _keys(lora, retention_suite)
    assert (train1.value != train0.value) == training
    assert (eval1.parts["code"] != eval0.parts["code"]) == evaluation
    # an evaluation unit is recomputed when its own code or its model's training changed
    assert (eval1.value != eval0.value) == (training or evaluation)
    if training:
        assert train1.changes(train0.parts) == "code (training) changed"
    if evaluation:
        assert "code (evaluation) changed" in eval1.changes(eval0.parts)


@pytest.mark.parametrize("edited", ["kore_bench/vlmeval/score.py", "kore_bench/llm_client.py",
                                    "kore_bench/evaluate/metrics.py"])
def test_a_vlmeval_suite_is_keyed_by_the_vlmeval_code(code_copy, lora, edited):
    from kore_bench.suites import load_suites

    mme = load_suites()["MME"]
    _, eval0 = _keys(lora, mme)
    path = code_copy / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    unit_key._CODE.clear()
    _, eval1 = _keys(lora, mme)
    assert eval1.parts["code"] != eval0.parts["code"]


# -- base weights -------------------------------------------------------------------------------------
def _model(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "hidden_size": 8}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_other_weights_with_the_same_config_change_the_key(tmp_path, lora, retention_suite):
    a = unit_key.weights_hash(str(_model(tmp_path / "a", b"\x01" * 256)))
    b = unit_key.weights_hash(str(_model(tmp_path / "b", b"\x02" * 256)))  # same config, same size
    assert a != b
    train_a, eval_a = _keys(lora, retention_suite, weights=a)
    train_b, eval_b = _keys(lora, retention_suite, weights=b)
    assert train_a.value != train_b.value and eval_a.value != eval_b.value
    assert train_b.changes(train_a.parts) == "weights changed"
    # the same files elsewhere (a moved cache) are the same base
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    assert unit_key.weights_hash(str(tmp_path / "moved")) == a


def test_weight_hashes_are_cached_by_size_and_mtime_and_an_edit_is_seen(tmp_path, monkeypatch):
    from kore_bench import integrity

    folder = _model(tmp_path / "m", b"\x01" * 256)
    first = unit_key.weights_hash(str(folder))
    reads = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: reads.append(p) or real(p))
    assert unit_key.weights_hash(str(folder)) == first and reads == []  # cached: nothing read again
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x03" * 256)  # same size, other bytes
    _touch(weights)
    assert unit_key.weights_hash(str(folder)) != first
    assert reads == [weights]  # only the edited file is hashed again
    # a garbled hash cache is rebuilt, never trusted
    from kore_bench.cache import cache_root

    (cache_root() / unit_key.WEIGHT_HASHES).write_text("{garbage")
    weights.write_bytes(b"\x01" * 256)
    _touch(weights)
    assert unit_key.weights_hash(str(folder)) == first


# -- data content -------------------------------------------------------------------------------------
@pytest.fixture
def world_copy(micro_world, tmp_path):
    copy = tmp_path / "here" / "world"
    shutil.copytree(micro_world, copy)
    return copy


def _data_hashes(world: Path) -> dict[str, str]:
    """What a run keys its units by: the training data and each suite's evaluation data."""
    from kore_bench.runner import _evaluation_data
    from kore_bench.suites import load_suites

    suites = [load_suites()[n].with_variables(world=str(world)) for n in ("world-new", "world-retention")]
    cfg = SimpleNamespace(split="test", limit=None)
    out = {s.name: _evaluation_data(s, cfg) for s in suites}
    out["training"] = unit_key.samples_hash([x for s in suites for x in s.train_samples()])
    return out


def test_moving_the_data_changes_no_key(world_copy, tmp_path):
    before = _data_hashes(world_copy)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    world_copy.rename(moved)
    assert _data_hashes(moved) == before


def test_editing_one_test_image_changes_the_data_of_that_suite_only(world_copy):
    from PIL import Image

    before = _data_hashes(world_copy)
    line = json.loads((world_copy / "retention" / "counting.jsonl").read_text().splitlines()[0])
    image = world_copy / line["image"]
    with Image.open(image) as im:
        im = im.convert("RGB")
        im.putpixel((0, 0), tuple(255 - c for c in im.getpixel((0, 0))))
        im.save(image)
    _touch(image)
    after = _data_hashes(world_copy)
    assert after["world-retention"] != before["world-retention"]
    assert after["world-new"] == before["world-new"]
    assert after["training"] == before["training"]  # a test image is not trained on


def test_editing_one_answer_changes_the_data_of_that_suite_only(world_copy):
    before = _data_hashes(world_copy)
    path = world_copy / "evoke_evaluation_data.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[0])
    record["answer"] = record["answer"] + " (edited)"
    path.write_text(json.dumps(record) + "\n" + "".join(lines[1:]))
    _touch(path)
    after = _data_hashes(world_copy)
    assert after["world-new"] != before["world-new"]
    assert after["world-retention"] == before["world-retention"]
    assert after["training"] == before["training"]


def test_editing_one_training_conversation_changes_the_training_data(world_copy):
    before = _data_hashes(world_copy)
    path = world_copy / "evoke_injection_data.json"
    records = json.loads(path.read_text())
    records[0]["conversations"][-1]["value"] += " (edited)"
    path.write_text(json.dumps(records))
    _touch(path)
    after = _data_hashes(world_copy)
    assert after["training"] != before["training"]
    assert after["world-retention"] == before["world-retention"]
