"""Suites, the base cache, reports and CLI errors — the engine's small parts."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kore_bench import cache
from kore_bench.data import on_injection_images
from kore_bench.errors import DataError, KoreBenchError, UnknownNameError
from kore_bench.suites import load_source, load_suites, parse_suite, resolve_suite


def test_builtin_suites_and_roles():
    suites = load_suites()
    assert {"world-new", "world-new-seen-image", "world-retention", "evoke"} <= set(suites)
    assert suites["world-new"].role == "new_knowledge"
    retention = suites["world-retention"]
    assert {t.category for t in retention.tasks} == {
        "old_knowledge", "perception", "counting", "ocr", "reasoning", "instruction"}  # README: two dropped
    with pytest.raises(KoreBenchError, match="role 'retention', expected 'new_knowledge'"):
        resolve_suite("world-retention", suites, "new_knowledge")
    with pytest.raises(UnknownNameError, match="did you mean 'world-new'"):
        resolve_suite("world-neww", suites, "new_knowledge")


def test_user_suite_from_include_path(tmp_path, micro_world):
    (tmp_path / "mine.yaml").write_text(
        "suite: my-counting\nrole: retention\ntasks:\n"
        "  - task: count\n    category: counting\n"
        f"    source: {{loader: jsonl, path: '{micro_world}/retention/counting.jsonl', image_root: '{micro_world}'}}\n"
        "    metrics: [exact_match]\n")
    suite = load_suites([tmp_path])["my-counting"]
    samples = suite.task_samples(suite.tasks[0])
    assert samples and all(s.answer.isdigit() for s in samples)
    assert all(s.meta.get("split", "test") == "test" for s in samples)


def test_seen_image_suite_asks_world_new_questions_on_the_injection_image(micro_world):
    suites = load_suites()
    unseen, seen = (suites[n].with_variables(world=str(micro_world)) for n in ("world-new", "world-new-seen-image"))
    asked = unseen.task_samples(unseen.tasks[0])
    on_injection = seen.task_samples(seen.tasks[0])
    entities = {json.loads(line)["entity"] for line in (micro_world / "evoke_evaluation_data.jsonl").open()}
    views = {r["image"].split("_v")[0]: r["image"] for r in json.loads(
        (micro_world / "evoke_injection_data.json").read_text())}
    assert len(entities) == len(views) > 1
    assert [(s.id, s.messages, s.answer) for s in on_injection] == [(s.id, s.messages, s.answer) for s in asked]
    for s, u in zip(on_injection, asked):
        assert s.image.path == str(micro_world / views[f"images/entities/{s.meta['entity']}"])
        assert u.image.path != s.image.path  # world-new asks on unseen views

    broken = [dataclasses.replace(asked[0], meta={**asked[0].meta, "ground_truth": [len(views)]})]
    with pytest.raises(DataError, match=r"evoke_evaluation_data.jsonl:1: ground_truth must be \[index\]"):
        on_injection_images(broken, unseen.train_samples())
    with pytest.raises(UnknownNameError, match="did you mean 'injection'"):
        load_source({"loader": "evoke", "path": str(micro_world), "image": "injected"})


def test_suite_path_variable_is_required():
    evoke = load_suites()["evoke"]
    with pytest.raises(KoreBenchError, match="needs path"):
        evoke.train_samples()


def test_bad_suite_names_file_and_field(tmp_path):
    with pytest.raises(DataError, match="mine.yaml: missing field 'role'"):
        parse_suite({"suite": "x", "tasks": []}, tmp_path / "mine.yaml")
    with pytest.raises(DataError, match="output_type"):
        parse_suite({"suite": "x", "role": "retention", "tasks": [
            {"task": "t", "source": {}, "metrics": ["cem"], "output_type": "essay"}]}, tmp_path / "mine.yaml")


def test_corrupt_base_is_detected_and_rebuilt(tmp_path, monkeypatch):
    from kore_bench import base

    monkeypatch.setenv("KORE_BENCH_CACHE", str(tmp_path))
    builds = []

    def fake_build(world, arch, seed, target, console):
        tmp = cache.new_temp_dir(target.parent, target.name)
        (tmp / "model").mkdir()
        (tmp / "model" / "weights.bin").write_bytes(b"\x01" * 64)
        cache.publish(tmp, target)
        builds.append(target)

    monkeypatch.setattr(base, "_build", fake_build)
    monkeypatch.setattr(cache, "world_code_fingerprint", lambda: "fixed")
    base.build_base("micro")
    base.build_base("micro")
    assert len(builds) == 1  # intact cache: loaded, not rebuilt
    weights = builds[0] / "model" / "weights.bin"
    weights.write_bytes(b"\x01" * 63 + b"\x02")
    assert "corrupt" in cache.verify(builds[0])
    base.build_base("micro")
    assert len(builds) == 2 and cache.verify(builds[0]) is None


def test_latex_marks_best_and_second():
    from kore_bench.report import to_latex

    table = pd.DataFrame({"method": ["base", "a", "b", "c"], "K.A": [1.0, 30.0, 50.0, 40.0],
                          "trainable_params": [0, 10, 10, 10], "train_seconds": [0, 1, 1, 1],
                          "seeds": [1, 1, 1, 1], "status": ["ok"] * 4})
    tex = to_latex(table)
    assert r"\textbf{50.00}" in tex and r"\underline{40.00}" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert "1.00" in tex and r"\textbf{1.00}" not in tex  # base is the reference, never ranked


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kore_bench", *args], capture_output=True, text=True)


def test_cli_unknown_names_exit_nonzero_with_suggestion(tmp_path):
    r = _cli("world", "export", "--world", "mikro", "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "did you mean 'micro'" in r.stderr and "default" in r.stderr
    assert not (tmp_path / "w").exists()
    r = _cli("base", "info", "--world", "micro", "--arch", "gpt")
    assert r.returncode == 2 and "unknown architecture 'gpt'" in r.stderr


def test_cli_world_export_refuses_non_empty_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    r = _cli("world", "export", "--world", "micro", "--out", str(tmp_path))
    assert r.returncode == 2 and "not empty" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_length_grouped_batches_cover_each_sample_once_with_little_padding():
    import random

    from kore_bench.train import length_grouped_batches

    rng = random.Random(0)
    lengths = [rng.choice([20, 40, 60, 150]) + rng.randint(0, 5) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) == 32 for b in batches[:-1] if len(b) != 1000 % 32) and len(batches) == 32

    def padded(bs):
        return sum(max(lengths[i] for i in b) * len(b) for b in bs)

    order = list(range(1000))
    random.Random(1).shuffle(order)
    uniform = [order[k:k + 32] for k in range(0, 1000, 32)]
    assert padded(batches) < 0.7 * padded(uniform)
    assert padded(batches) < 1.15 * sum(lengths)
    assert batches != length_grouped_batches(lengths, 32, random.Random(2))  # the seed reorders


def _write_samples(run: Path, method: str, seed: int, task_scores: dict[str, list[float]]) -> None:
    from kore_bench.store import RunDir, Unit

    records = [{"task": task, "id": f"{task}-{i}", "scores": {"exact_match": v}}
               for task, values in task_scores.items() for i, v in enumerate(values)]
    result = {"unit": {"method": method, "seed": seed, "suite": "world-retention"}, "tasks": {}}
    RunDir(run).write_unit(Unit(method, seed, "world-retention"), result, records)  # sealed, as a run writes it


def test_compare_pairs_samples_per_task_across_seeds(tmp_path):
    from kore_bench.report import compare, compare_table

    _write_samples(tmp_path, "base", 0, {"ocr": [1, 1, 1, 1], "counting": [0, 0, 1, 1]})
    _write_samples(tmp_path, "lora", 0, {"ocr": [0, 0, 1, 1], "counting": [0, 0, 1, 1]})
    _write_samples(tmp_path, "lora", 1, {"ocr": [0, 1, 1, 1], "counting": [1, 1, 1, 1]})
    rows = {r["task"]: r for r in compare(tmp_path, baseline="base")}
    # tasks sharing a metric stay apart; the once-evaluated base pairs with each of lora's seeds
    assert set(rows) == {"ocr", "counting"}
    assert rows["ocr"]["n"] == 8 and rows["ocr"]["seeds"] == 2
    assert rows["ocr"]["mean_diff"] == pytest.approx(-3 / 8)
    assert rows["counting"]["mean_diff"] == pytest.approx(2 / 8)
    table = compare_table(list(rows.values()))
    assert table.loc[table.task == "ocr", "mean_diff"].item() == -37.5
