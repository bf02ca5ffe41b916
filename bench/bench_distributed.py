"""Two CPU processes (accelerate launch, gloo) against one, on the same micro run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_distributed.py --steps 40

Trains LoRA ``--steps`` steps on the micro world's new knowledge and evaluates the retention suite,
once in one process and once under ``accelerate launch`` with 2 processes (configs/accelerate/cpu2.yaml),
each into a fresh run directory sharing the cached base, ``--repeats`` times interleaved (the fastest
of each counts: the machine is shared). Reports training steps/s and evaluation
samples/s from each run's stored timings, their ratios (2 processes / 1: ideally 2x on two idle
cores), and whether every per-sample answer is identical. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(out: Path, steps: int, launch: bool) -> dict:
    prefix = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "configs/accelerate/cpu2.yaml"), "-m", "kore_bench"] if launch else [sys.executable, "-m", "kore_bench"]
    cmd = [*prefix, "run", "--world", "micro", "--methods", "lora", "--no-progress", "--output", str(out),
           "--set", f"lora.steps={steps}", "--set", "lora.dropout=0", "--set", "lora.batch_size=8"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    unit = json.loads((out / "lora/seed0/world-retention/result.json").read_text())
    info = unit["train_info"]
    n = sum(t["n"] for t in unit["tasks"].values())
    return {"steps/s": info["steps"] / info["seconds"], "eval samples/s": n / unit["eval_seconds"],
            "answers": (out / "lora/seed0/world-retention/samples.jsonl").read_bytes()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    ones, twos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            ones.append(run(Path(tmp) / f"one{r}", args.steps, launch=False))
            twos.append(run(Path(tmp) / f"two{r}", args.steps, launch=True))
    one = {k: max(o[k] for o in ones) if k != "answers" else ones[0][k] for k in ones[0]}
    two = {k: max(t[k] for t in twos) if k != "answers" else twos[0][k] for k in twos[0]}
    for key in ("steps/s", "eval samples/s"):
        print(f"{key:>15}: 1 process {one[key]:.2f}, 2 processes {two[key]:.2f}, ratio {two[key] / one[key]:.2f}x "
              "(2 idle cores: at most 2x)")
    print("answers identical:", one["answers"] == two["answers"])


if __name__ == "__main__":
    main()
