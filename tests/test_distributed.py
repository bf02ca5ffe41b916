"""Several processes, one result.

* ``accelerate launch`` with 2 CPU processes (gloo) trains on shares of each global batch and
  evaluates shares of each task: the loss curves equal one process's at the same global batch,
  and every per-sample answer (``samples.jsonl``) is byte-identical.
* ``--shard i/n``: independent jobs fill one run directory without overlap; the last writes the
  leaderboard; a plain run afterwards finds everything done.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = Path(__file__).parents[1] / "configs" / "accelerate" / "cpu2.yaml"
RUN = ["run", "--world", "micro", "--methods", "lora,kore", "--limit", "6", "--no-progress",
       "--set", "lora.steps=4", "--set", "kore.steps=4", "--set", "lora.dropout=0", "--set", "lora.batch_size=4",
       "--set", "kore.batch_size=4"]


def _kore_bench(*args: str, launch: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    prefix = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "-m", "kore_bench"] \
        if launch else [sys.executable, "-m", "kore_bench"]
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _curve(run: Path, method: str) -> list[float]:
    return json.loads((run / method / "seed0" / "world-new" / "result.json").read_text())["train_info"]["loss_curve"]


def test_two_processes_train_and_evaluate_as_one(micro_base, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = _kore_bench(*RUN, "--output", str(one))
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _kore_bench(*RUN, "--output", str(two), launch=True)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("results:") == 1  # one rank writes and reports
    for method in ("lora", "kore"):
        assert _curve(two, method) == pytest.approx(_curve(one, method), abs=1e-3)
        assert len(set(_curve(one, method))) > 1  # it trained
    files = sorted(p.relative_to(one) for p in one.glob("*/seed0/*/samples.jsonl"))
    assert len(files) == 6
    for f in files:
        assert (two / f).read_bytes() == (one / f).read_bytes(), f
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["history"][-1]["processes"] == 2


def test_shards_fill_one_directory_and_a_plain_run_finds_everything_done(micro_base, tmp_path):
    run = tmp_path / "sharded"
    jobs = [subprocess.Popen([sys.executable, "-m", "kore_bench", *RUN, "--output", str(run), "--shard", f"{i}/2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}) for i in (1, 2)]
    outs = [j.communicate(timeout=600) for j in jobs]
    assert [j.returncode for j in jobs] == [0, 0], [o[1][-2000:] for o in outs]
    # units in order base, lora/0, kore/0: shard 1 takes base and kore, shard 2 lora
    assert "lora (seed 0): training" not in outs[0][1] and "lora (seed 0): training" in outs[1][1]
    assert "kore (seed 0): training" in outs[0][1] and "kore (seed 0): training" not in outs[1][1]
    assert (run / "leaderboard.csv").exists()  # the last shard to finish wrote it
    again = _kore_bench(*RUN, "--output", str(run))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "): training on" not in again.stderr and again.stderr.count("finished earlier, skipped") == 3
    history = json.loads((run / "manifest.json").read_text())["history"]
    assert len(history) == 3 and all(h.get("finished") for h in history)


def test_shard_bad_input_and_another_command_are_refused(tmp_path):
    bad = _kore_bench(*RUN, "--output", str(tmp_path / "x"), "--shard", "3/2")
    assert bad.returncode == 2 and "--shard '3/2'" in bad.stderr
    run = tmp_path / "held"
    run.mkdir()
    with open(run / ".lock", "a+") as f:  # a live shard of another command holds the directory
        fcntl.flock(f, fcntl.LOCK_SH)
        f.write("pid 1 since now, shards of command 0123456789abcdef")
        f.flush()
        other = _kore_bench(*RUN, "--output", str(run), "--shard", "1/2")
        assert other.returncode == 2 and "shards of another command" in other.stderr
        plain = _kore_bench(*RUN, "--output", str(run))
        assert plain.returncode == 2 and "in use by another kore-bench run" in plain.stderr
