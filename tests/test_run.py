"""`kore-bench run` end to end on the micro world: contract files, resume, locking, failures, plugins."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.runner import RunConfig, run
from kore_bench.store import RunDir

CONTRACT = ["method", "CEM", "F1", "K.A", "K.R", "Avg"]
SEEDS = [0, 1]


def _cfg(output: Path, methods=("lora", "full-ft"), **kw) -> RunConfig:
    return RunConfig(methods=list(methods), output=output, world="micro", seeds=kw.pop("seeds", SEEDS),
                     progress=False, **kw)


def _board(run_dir: Path) -> dict[str, dict[str, str]]:
    with open(run_dir / "leaderboard.csv") as f:
        return {r["method"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def reference_run(micro_base, tmp_path_factory) -> Path:
    return run(_cfg(tmp_path_factory.mktemp("runs") / "ref"))


def test_run_writes_the_contract_files(reference_run):
    for name in ("manifest.json", "scores.csv", "leaderboard.md", "leaderboard.tex", "leaderboard.csv"):
        assert (reference_run / name).is_file(), name
    for method in ("lora", "full-ft"):
        for seed in SEEDS:
            for suite in ("world-new", "world-retention"):
                unit = reference_run / method / f"seed{seed}" / suite
                assert (unit / "result.json").is_file() and (unit / "samples.jsonl").is_file()
    with open(reference_run / "leaderboard.csv") as f:
        header = next(csv.reader(f))
    main = [c for c in header if not c.endswith("_std")]
    assert main[: len(CONTRACT)] == CONTRACT
    for col in ("CEM_std", "K.A_std", "Avg_std", "ΔK.R", "trainable_params", "train_seconds", "old_knowledge"):
        assert col in header
    board = _board(reference_run)
    assert set(board) == {"base", "lora", "full-ft"}
    # the aggregates follow the paper's formulas
    for r in board.values():
        ka, kr, avg = float(r["K.A"]), float(r["K.R"]), float(r["Avg"])
        assert abs(ka - (float(r["CEM"]) + float(r["F1"])) / 2) < 1e-3  # the csv keeps 4 decimals
        assert abs(avg - (ka + kr) / 2) < 1e-3  # the csv keeps 4 decimals


def test_injection_stores_the_knowledge_and_costs_retention(reference_run, micro_base, micro_world, tmp_path):
    """Training on the injection set makes the model reproduce the injected knowledge (reliability),
    and the run records what that cost in retention against the base."""
    from kore_bench.data import Sample
    from kore_bench.evaluate.generation import generate
    from kore_bench.method import TrainContext
    from kore_bench.evaluate.metrics import f1
    from kore_bench.registry import load_methods
    from kore_bench.suites import load_suites

    new = load_suites()["world-new"].with_variables(world=str(micro_world)).train_samples()
    prompts = [Sample(s.id, s.messages[:1], s.image, s.messages[1]["content"]) for s in new]

    def reliability(model, processor) -> float:
        answers = generate(model, processor, prompts, max_new_tokens=40)
        return sum(f1(a, p.answer) for a, p in zip(answers, prompts)) / len(prompts)

    before = reliability(*micro_base.load())
    trained = load_methods().get("full-ft")().train(
        TrainContext(micro_base, new, [], 0, tmp_path / "artifact", progress=False))
    after = reliability(trained.model, trained.processor)
    assert after > before + 0.3, (before, after)

    board = _board(reference_run)
    for method in ("lora", "full-ft"):
        assert float(board[method]["ΔK.R"]) < 0, (method, board[method]["ΔK.R"])
    assert int(board["lora"]["trainable_params"]) < int(board["full-ft"]["trainable_params"])


def test_rerun_skips_finished_units(reference_run):
    def stamps():
        files = [*reference_run.glob("*/seed*/*/result.json"), *reference_run.glob("*/seed*/artifact/*")]
        return {p: p.stat().st_mtime_ns for p in files}

    before = stamps()
    started = time.perf_counter()
    run(_cfg(reference_run))
    assert stamps() == before  # nothing retrained, nothing re-evaluated
    assert time.perf_counter() - started < 30


def test_killed_run_resumes_without_redoing_units(reference_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "kore_bench", "run", "--methods", "lora,full-ft", "--world", "micro",
           "--seeds", ",".join(map(str, SEEDS)), "--output", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("lora/seed*/*/result.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/*/result.json")}
    assert done, "the run was killed before finishing any unit"
    assert not (out / "leaderboard.csv").exists(), "the run finished before it could be killed"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was redone"
    ref, resumed = _board(reference_run), _board(out)
    for method in ("base", "lora", "full-ft"):
        for col in CONTRACT[1:]:
            assert float(resumed[method][col]) == pytest.approx(float(ref[method][col]), abs=1e-6), (method, col)


def test_second_concurrent_run_is_refused(micro_base, tmp_path):
    out = tmp_path / "busy"
    with RunDir(out).locked():
        with pytest.raises(KoreBenchError, match="in use by another kore-bench run"):
            run(_cfg(out, seeds=[0]))


def _held_exclusively(directory: Path, holder: str):
    """The run directory's lock file, held exclusively with ``holder`` as its holder line."""
    import fcntl

    directory.mkdir()
    f = open(directory / ".lock", "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(holder)
    f.flush()
    return f


def test_a_shard_started_beside_the_first_joins_it_and_another_run_is_refused_at_once(tmp_path):
    """Two --shard jobs started together: the first holds the lock alone for a moment before sharing
    it; the second waits that out instead of failing. A plain run's lock is refused within a second."""
    import fcntl
    import threading

    with _held_exclusively(tmp_path / "shards", "pid 1 since now, shards of command abc") as f:
        threading.Timer(0.4, fcntl.flock, (f, fcntl.LOCK_SH)).start()
        start = time.monotonic()
        with RunDir(tmp_path / "shards").locked(shared_by="abc"):
            assert 0.35 < time.monotonic() - start < 5

    with _held_exclusively(tmp_path / "plain", "pid 1 since now"):
        start = time.monotonic()
        with pytest.raises(KoreBenchError, match="in use by another kore-bench run"):
            with RunDir(tmp_path / "plain").locked(shared_by="abc"):
                pass
        assert time.monotonic() - start < 3


def test_unknown_method_suggests_nearest(micro_base, tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'lora'"):
        run(_cfg(tmp_path / "x", methods=["lorra"]))


PLUGINS = '''
from dataclasses import dataclass
from kore_bench.method import Method, MethodConfig, TrainedModel, projector_groups, register_method
from kore_bench.train import train_model


@dataclass
class ProjectorOnlyConfig(MethodConfig):
    lr: float = 1e-3
    epochs: float = 5.0


@register_method("projector-only")
class ProjectorOnly(Method):
    """Trains the projector only: a method that lives outside the package."""
    Config = ProjectorOnlyConfig

    def train(self, ctx):
        model, processor = ctx.base.load()
        model.requires_grad_(False)
        groups = projector_groups(model, self.config.lr)
        info = train_model(model, processor, ctx.new_data, self.config, ctx.seed, groups, progress=False)
        self.save(model, ctx.artifact_dir)
        return TrainedModel(model, processor, info)


@register_method("poisoned")
class Poisoned(Method):
    """A projector full of NaN: the loss is NaN from the first step."""
    Config = ProjectorOnlyConfig

    def train(self, ctx):
        import torch
        from kore_bench.models.parts import projector

        model, processor = ctx.base.load()
        with torch.no_grad():
            for p in projector(model).parameters():
                p.fill_(float("nan"))
        train_model(model, processor, ctx.new_data, self.config, ctx.seed,
                    projector_groups(model, self.config.lr), progress=False)
        raise AssertionError("training on NaN weights should have stopped")


@register_method("broken")
class Broken(Method):
    def train(self, ctx):
        raise RuntimeError("deliberately broken")
'''


def test_outside_method_runs_and_failures_are_isolated(micro_base, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "my_methods.py").write_text(textwrap.dedent(PLUGINS))
    out = run(_cfg(tmp_path / "run", methods=["projector-only", "broken", "poisoned"], seeds=[0],
                   include_paths=[plugins]))
    board = _board(out)
    assert board["broken"]["status"].startswith("failed: RuntimeError: deliberately broken")
    assert board["poisoned"]["status"].startswith("failed: TrainingDiverged: loss became nan")
    assert board["projector-only"]["status"] == "ok"
    assert float(board["projector-only"]["K.R"]) > 0
    assert (out / "projector-only" / "seed0" / "world-new" / "result.json").is_file()
    # the projector-only artifact holds only projector tensors
    from safetensors.torch import load_file

    tensors = load_file(out / "projector-only" / "seed0" / "artifact" / "trained.safetensors")
    assert tensors and all("multi_modal_projector" in k for k in tensors)
