"""Fair comparison: dev/test splits, equal-budget tuning, frontiers and the null-space diagnostic."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from kore_bench.cli import app
from kore_bench.adapters.covariance import Covariances
from kore_bench.data import Sample, hold_out_dev, select_split
from kore_bench.errors import KoreBenchError
from kore_bench.search import (Choice, LogUniform, Uniform, at_range_edge, design, latin_hypercube, load_space_file,
                               merge_space)
from kore_bench.store import read_json
from kore_bench.suites import load_suites, parse_suite

# every training is a handful of steps and every task a few items: these tests check plumbing
FAST = ["--world", "micro", "--limit", "2", "--no-progress"]
TINY_STEPS = ["--set", "lora.steps=2", "--set", "kore.steps=2"]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"kore-bench {' '.join(args)} failed:\n{result.output}\n{result.exception!r}")
    return result.output


# ------------------------------------------------------------------------------------ dev splits


def _image_digest(sample: Sample) -> str | None:
    return hashlib.sha256(sample.image.load().tobytes()).hexdigest() if sample.image else None


KNOWLEDGE = {"new_knowledge", "old_knowledge"}  # held-out phrasings: the question texts differ too


def test_world_dev_and_test_splits_are_disjoint(micro_world):
    suites = load_suites()
    for name in ("world-new", "world-retention"):
        suite = suites[name].with_variables(world=str(micro_world))
        for task in suite.tasks:
            dev, test = suite.task_samples(task, "dev"), suite.task_samples(task, "test")
            assert dev and test, (name, task.name)
            assert not {s.id for s in dev} & {s.id for s in test}, (name, task.name)
            dev_images = {_image_digest(s) for s in dev} - {None}
            assert not dev_images & ({_image_digest(s) for s in test} - {None}), (name, task.name)
            # whole items (conversation + image) never repeat across the splits
            assert not ({(s.text(), _image_digest(s)) for s in dev} & {(s.text(), _image_digest(s)) for s in test})
            # knowledge questions use held-out phrasings per split; text-only items differ in text
            texts = lambda xs: {s.messages[-1]["content"] for s in xs  # noqa: E731
                                if task.category in KNOWLEDGE or s.image is None}
            assert not texts(dev) & texts(test), (name, task.name)


def _samples(n: int, split: str | None = None) -> list[Sample]:
    return [Sample(f"q{i}", [{"role": "user", "content": f"question {i}"}], answer=str(i),
                   meta={"split": split} if split else {}) for i in range(n)]


def test_dev_holdout_is_seeded_disjoint_and_recorded(tmp_path):
    samples = _samples(50)
    held = hold_out_dev(samples, 0.2, seed=0, salt="suite/task")
    dev, test = select_split(held, "dev"), select_split(held, "test")
    assert len(dev) == 10 and len(test) == 40
    assert {s.id for s in dev}.isdisjoint({s.id for s in test}) and len(dev) + len(test) == 50
    assert [s.id for s in dev] == [s.id for s in select_split(hold_out_dev(samples[::-1], 0.2, 0, "suite/task"), "dev")][::-1]
    assert {s.id for s in dev} != {s.id for s in select_split(hold_out_dev(samples, 0.2, 1, "suite/task"), "dev")}
    assert all("split" not in s.meta for s in samples)  # the loaded (cached) samples are not changed
    # data with its own dev split and a share of 0 stay as they are
    own = _samples(4, "test") + [Sample("d", [{"role": "user", "content": "x"}], answer="y", meta={"split": "dev"})]
    assert hold_out_dev(own, 0.5, 0) == own
    assert hold_out_dev(samples, 0.0, 0) == samples

    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": f"i{k}", "question": f"q {k}?", "answer": "a"}) + "\n" for k in range(20)))
    suite = parse_suite({"suite": "mine", "role": "retention", "tasks": [
        {"task": "t", "source": {"loader": "jsonl", "path": str(data)}, "metrics": ["exact_match"]}]})
    summary = suite.with_dev_holdout(0.1, 3).split_summary()["t"]
    assert summary["dev"] == 2 and summary["test"] == 18 and summary["dev_source"] == "held out"
    assert summary["dev_share"] == 0.1 and summary["dev_seed"] == 3 and summary["dev_ids_sha"]
    assert suite.split_summary()["t"] == {"dev": 0, "test": 20, "dev_source": "none"}


def test_leaderboard_refuses_to_mix_splits(tmp_path):
    from kore_bench.report import leaderboard

    for method, split in (("lora", "test"), ("kore", "dev")):
        unit = tmp_path / method / "seed0" / "world-new"
        unit.mkdir(parents=True)
        (unit / "result.json").write_text(json.dumps({
            "unit": {"method": method, "seed": 0, "suite": "world-new"}, "role": "new_knowledge", "split": split,
            "tasks": {"world-new": {"category": "new_knowledge", "primary_metric": "cem", "metrics": {"cem": 1.0},
                                    "higher_is_better": {"cem": True}, "n": 1}}}))
    with pytest.raises(KoreBenchError, match="mixes results of the dev and test splits"):
        leaderboard(tmp_path)


# ------------------------------------------------------------------------------------ search spaces


def test_design_is_deterministic_and_covers_every_stratum():
    space = {"lr": LogUniform(1e-4, 1e-2), "rank": Choice([4, 8, 16, 32]), "ratio": Uniform(0.0, 1.0)}
    trials = design(space, 4, seed=7)
    assert trials == design(space, 4, seed=7) and len(trials) == 4
    assert [t["lr"] for t in trials] == sorted(t["lr"] for t in trials)  # the first setting increases
    assert sorted(t["rank"] for t in trials) == [4, 8, 16, 32]  # one value per stratum
    assert sorted(t["ratio"] for t in trials) == [0.125, 0.375, 0.625, 0.875]
    assert all(1e-4 <= t["lr"] <= 1e-2 for t in trials)
    points = latin_hypercube(5, 3, seed=1)
    for j in range(3):
        assert sorted(p[j] for p in points) == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert design({}, 3, 0) == [{}, {}, {}]
    assert LogUniform(1e-3, 1e-1).grid(3) == [1e-3, 1e-2, 1e-1]


def test_range_edge_rule_shared_by_tune_and_frontier():
    from kore_bench.studies.tune import at_edge

    assert at_range_edge(1e-2, [1e-3, 1e-2, 3e-3]) and at_range_edge(1e-3, [1e-2, 3e-3, 1e-3])
    assert not at_range_edge(3e-3, [1e-3, 1e-2, 3e-3])
    assert not at_range_edge(1e-3, [1e-3, 1e-3, 1e-2])  # two distinct values are no range
    space = {"lr": LogUniform(1e-4, 1e-2), "rank": Choice([4, 8, 16])}
    trials = [{"status": "ok", "settings": {"lr": lr, "rank": r}} for lr, r in ((1e-4, 4), (1e-3, 8), (1e-2, 16))]
    assert at_edge({"settings": {"lr": 1e-2, "rank": 16}, "trials": trials}, space) == ["lr"]  # choices never
    assert at_edge({"settings": {"lr": 1e-3, "rank": 4}, "trials": trials}, space) == []
    assert at_edge({"settings": {"lr": 1e-2, "rank": 16}, "trials": trials[:2]}, space) == []


def test_ls_methods_shows_each_methods_own_settings_and_space():
    rows: dict[str, str] = {}
    name = ""
    for line in _cli("ls", "methods").splitlines():
        if "│" in line:  # a table line; a cell that wraps continues under an empty method cell
            name = line.split("│")[1].strip() or name
            rows[name] = rows.get(name, "") + " ".join(c.strip() for c in line.split("│")[2:]) + " "
    assert "steps=200" in rows["lora"] and "epochs" not in rows["lora"]  # the budget that is used
    assert "ratio=0.1" in rows["replay"] and "memory_batch_size=None" in rows["replay"]
    assert "ratio" not in rows["lora"] and "train_A=False" in rows["kore"]
    assert "ratio ∈ log[0.02, 0.5]" in rows["replay"]


def test_methods_declare_search_spaces_and_files_override_them(tmp_path):
    from kore_bench.registry import load_methods

    reg = load_methods()
    lora, kore, replay = (reg.get(m).space() for m in ("lora", "kore", "replay"))
    assert "rank" in lora and "ratio" in replay and set(kore) == {"lr"}
    assert kore["lr"].low >= 10 * lora["lr"].low  # B-only training needs a larger step size
    for name in reg.names():
        space = reg.get(name).space()
        assert name == "base" or "lr" in space, name
        if "lr" in space:
            assert space["lr"].low <= reg.get(name).Config().lr <= space["lr"].high, name
    file = tmp_path / "space.yaml"
    file.write_text("lora:\n  lr: {log_uniform: [1e-5, 1e-3]}\n  rank: null\nkore:\n  rank: {choice: [4, 8]}\n")
    overrides = load_space_file(file)
    merged = merge_space(lora, overrides["lora"])
    assert merged == {"lr": LogUniform(1e-5, 1e-3)}
    assert merge_space(kore, overrides["kore"])["rank"] == Choice([4, 8])
    file.write_text("lora:\n  lr: {normal: [0, 1]}\n")
    with pytest.raises(KoreBenchError, match="expected one of log_uniform"):
        load_space_file(file)


# ------------------------------------------------------------------------------------ tune / run --tuned


@pytest.fixture(scope="module")
def tuned_dir(micro_base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tune") / "tune"
    _cli("tune", "--methods", "lora,kore", "--budget", "2", "--output", str(out), *FAST, *TINY_STEPS)
    return out


def test_tune_gives_every_method_the_same_number_of_trials(tuned_dir):
    tuned = read_json(tuned_dir / "tuned.json")
    assert set(tuned) == {"lora", "kore"}
    for method, entry in tuned.items():
        assert len(entry["trials"]) == entry["provenance"]["budget"] == 2, method
        assert entry["settings"] in [t["settings"] for t in entry["trials"]]
        assert entry["settings"]["steps"] == 2  # --set values are part of every trial
        assert math.isfinite(entry["dev_avg"]) and entry["provenance"]["split"] == "dev"
        assert entry["provenance"]["base_fingerprint"]
        space = entry["provenance"]["space"]["lr"]["log_uniform"]
        lrs = [t["settings"]["lr"] for t in entry["trials"]]
        assert all(space[0] <= lr <= space[1] for lr in lrs) and len(set(lrs)) == 2
        for trial in entry["trials"]:
            results = list((tuned_dir / trial["dir"]).glob("*/seed*/*/result.json"))
            assert results and all(read_json(r)["split"] == "dev" for r in results)
            assert {r.parts[-4] for r in results} == {method}  # trials do not re-evaluate the base
    # KORE's range sits above LoRA's: B-only training needs the larger step
    assert min(t["settings"]["lr"] for t in tuned["kore"]["trials"]) > min(t["settings"]["lr"] for t in tuned["lora"]["trials"])


def test_run_tuned_applies_the_winners_and_records_them(tuned_dir, tmp_path):
    tuned = read_json(tuned_dir / "tuned.json")
    out = tmp_path / "run"
    _cli("run", "--methods", "lora,kore", "--tuned", str(tuned_dir), "--output", str(out), *FAST,
         "--set", "kore.lr=0.05")
    manifest = read_json(out / "manifest.json")
    assert manifest["tuned"]["path"] == str(tuned_dir / "tuned.json")
    assert manifest["tuned"]["methods"]["lora"]["provenance"]["budget"] == 2
    assert manifest["tuned"]["methods"]["kore"]["overridden_by_set"] == ["lr"]
    lora = read_json(out / "lora" / "seed0" / "world-new" / "result.json")
    assert lora["split"] == "test"
    for key, value in tuned["lora"]["settings"].items():
        assert lora["method_config"][key] == value
    kore = read_json(out / "kore" / "seed0" / "world-new" / "result.json")
    assert kore["method_config"]["lr"] == 0.05  # an explicit --set wins over the tuned value
    assert kore["method_config"]["steps"] == 2
    with open(out / "leaderboard.csv") as f:
        assert {r["method"] for r in csv.DictReader(f)} == {"base", "lora", "kore"}
    # a method that was not tuned is refused rather than silently run at its defaults
    with pytest.raises(AssertionError, match="no tuned settings for full-ft"):
        _cli("run", "--methods", "full-ft", "--tuned", str(tuned_dir), "--output", str(tmp_path / "r2"), *FAST)
    # dev results never go into a test run directory
    with pytest.raises(AssertionError, match="holds test results"):
        _cli("run", "--methods", "lora", "--split", "dev", "--output", str(out), *FAST, "--set", "lora.steps=2")


# ------------------------------------------------------------------------------------ frontier


def test_frontier_writes_points_curves_and_summary(micro_base, tmp_path):
    out = tmp_path / "frontier"
    _cli("frontier", "--methods", "lora,kore", "--points", "3", "--output", str(out), *FAST, *TINY_STEPS)
    for name in ("frontier.csv", "frontier.png", "frontier.svg", "frontier_summary.csv", "frontier_summary.md",
                 "frontier.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    points = pd.read_csv(out / "frontier.csv")
    assert points.groupby("method").size().to_dict() == {"base": 1, "lora": 3, "kore": 3}
    lora = sorted(points[points.method == "lora"].value)
    assert lora[0] == pytest.approx(3e-4) and lora[-1] == pytest.approx(1e-2)  # the space's whole range
    assert points[points.method != "base"]["pareto"].any()
    assert (out / "frontier.svg").read_text().lstrip().startswith("<?xml")
    summary = pd.read_csv(out / "frontier_summary.csv")
    assert {"best_Avg", "best_value"} <= set(summary.columns)
    assert any(c.startswith("K.R@K.A=") for c in summary.columns)
    result = read_json(next((out / "points" / "lora").glob("*/lora/seed0/world-new/result.json")))
    assert result["split"] == "test"


def test_kr_at_matched_ka_interpolates_and_marks_unreached_levels():
    from kore_bench.studies.frontier import kr_at_ka, pareto_mask

    curve = pd.DataFrame({"K.A": [10.0, 30.0, 50.0], "K.R": [80.0, 60.0, 20.0]})
    assert kr_at_ka(curve, 20.0) == (pytest.approx(70.0), "")
    assert kr_at_ka(curve, 40.0) == (pytest.approx(40.0), "")
    value, why = kr_at_ka(curve, 70.0)
    assert math.isnan(value) and why == "not reached"
    value, why = kr_at_ka(curve, 5.0)
    assert math.isnan(value) and why == "always above"
    # Past its K.A peak the curve diverges: a level below its smallest step's K.A is not matched there.
    diverging = pd.DataFrame({"K.A": [10.0, 30.0, 5.0], "K.R": [80.0, 60.0, 12.0]})
    value, why = kr_at_ka(diverging, 7.0)
    assert math.isnan(value) and why == "always above"
    assert kr_at_ka(diverging, 20.0) == (pytest.approx(70.0), "")
    wiggly = pd.DataFrame({"K.A": [10.0, 30.0, 20.0, 40.0], "K.R": [80.0, 60.0, 70.0, 30.0]})
    assert kr_at_ka(wiggly, 25.0) == (pytest.approx(65.0), "")  # best of three crossings on the way up
    table = pd.DataFrame({"method": ["base", "a", "a", "b"], "K.A": [0.0, 10.0, 50.0, 30.0],
                          "K.R": [99.0, 80.0, 20.0, 10.0]})
    assert pareto_mask(table) == [False, True, True, False]


# ------------------------------------------------------------------------------------ diagnostic


def _cov(basis: torch.Tensor, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Uncentred covariance of ``n`` random activations in the span of ``basis``'s columns."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, basis.shape[1], generator=g, dtype=torch.float64) @ basis.T
    return x.T @ x / n


def test_diagnostic_on_activations_confined_to_known_subspaces():
    from kore_bench.studies.diagnose import diagnose_covariances, layer_diagnostics, verdict

    eye = torch.eye(8, dtype=torch.float64)
    old_space, new_space = eye[:, :4], eye[:, 4:]  # old data in span(e1..e4), new in span(e5..e8)
    calibration, old, new = _cov(old_space, seed=0), _cov(old_space, seed=1), _cov(new_space, seed=2)
    d = layer_diagnostics(calibration, 4, {"old": old, "new": new})
    assert d["new"] == pytest.approx(1.0, abs=1e-9)  # KORE's subspace is exactly span(e5..e8)
    assert d["old"] == pytest.approx(0.0, abs=1e-9) and d["calibration"] == pytest.approx(0.0, abs=1e-9)
    assert d["numerical_rank"] == 4 and d["smallest_r_energy"] == pytest.approx(0.0, abs=1e-9)
    assert d["uniform"] == 0.5 and d["condition"] > 1e12  # rank deficient: capped by the numerical floor

    mixed = _cov(eye, seed=3)  # new data spread evenly: half of it falls into the 4 free directions
    assert layer_diagnostics(calibration, 4, {"new": mixed})["new"] == pytest.approx(0.5, abs=0.1)

    # the same through Covariances with shared matrices (q/k/v share one input)
    cal = Covariances({"layers.0.q": calibration, "layers.0.k": calibration}, 1)
    rows = diagnose_covariances(cal, Covariances({"layers.0.q": old, "layers.0.k": old}, 1),
                                Covariances({"layers.0.q": new, "layers.0.k": new}, 1), 4)
    assert len(rows) == 1 and rows.loc[0, "layer"] == "0 q/k"
    assert rows.loc[0, "ratio_new_old"] > 1e6
    assert verdict(rows)["separates"]
    # new data like old data: ratio about 1, the constraint cannot separate them
    same = diagnose_covariances(Covariances({"l": _cov(eye, seed=4)}, 1), Covariances({"l": _cov(eye, seed=5)}, 1),
                                Covariances({"l": _cov(eye, seed=6)}, 1), 4)
    assert 0.5 < same.loc[0, "ratio_new_old"] < 2 and not verdict(same)["separates"]


def test_diagnose_cli_on_the_micro_world(micro_base, tmp_path):
    out = tmp_path / "diag"
    _cli("diagnose", "--world", "micro", "--samples", "32", "--calibration-samples", "64", "--output", str(out))
    rows = pd.read_csv(out / "diagnose.csv")
    report = read_json(out / "diagnose.json")
    assert len(rows) == 4 * 2  # kore-tiny micro: 2 blocks x (q/k/v, o, gate/up, down)
    assert {"old_share", "new_share", "ratio_new_old", "condition", "smallest_r_energy"} <= set(rows.columns)
    assert ((rows.old_share >= 0) & (rows.old_share <= 1) & (rows.new_share >= 0) & (rows.new_share <= 1)).all()
    assert report["rank"] == rows["rank"].iloc[0] and report["verdict"]["text"]
    assert report["samples"]["calibration"] == 64 and report["samples"]["old_held_out"] == 32
