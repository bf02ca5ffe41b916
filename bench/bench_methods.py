"""Training step time of each new method against LoRA at (nearly) equal trainable parameters.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_methods.py --world micro --steps 12

Each method trains ``--steps`` steps on the world's new-knowledge data through its own ``train``;
the per-step time is the median interval between the trainer's progress ticks after the first
two steps (setup such as the Fisher or covariances is excluded). MKS2's stage 1 (the memory,
a different parameter set) is reported on its own line. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import kore_bench.train as trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="micro")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--methods", default="lora,ewc,lwf,moelora,o-lora,sefe,mks2")
    args = ap.parse_args()
    from kore_bench.base import build_base
    from kore_bench.cache import world_dir
    from kore_bench.method import TrainContext
    from kore_bench.registry import load_methods
    from kore_bench.suites import load_suites

    wd = world_dir(args.world)
    suites = load_suites()
    suite = suites["world-new"].with_variables(world=str(wd))
    new = suite.train_samples()
    old = suites["world-retention"].with_variables(world=str(wd)).train_samples()
    base = build_base(args.world, "llava")
    segments: list[list[float]] = []
    original = trainer._progress.advance

    def advance(self, loss):  # record a timestamp per optimiser step
        if self.done == 0:
            segments.append([])
        segments[-1].append(time.perf_counter())
        original(self, loss)

    trainer._progress.advance = advance
    rows = {}
    for key in args.methods.split(","):
        cls = load_methods().get(key)
        overrides = {"steps": args.steps, "calibration_samples": 32, "fisher_samples": 32, "stage1_steps": args.steps}
        names = {f for f in cls.Config.__dataclass_fields__}
        method = cls.from_overrides({k: v for k, v in overrides.items() if k in names})
        segments.clear()
        with tempfile.TemporaryDirectory() as tmp:
            info = method.train(TrainContext(base, new, old, 0, Path(tmp) / "a", suite, progress=True)).info
        times = [statistics.median([b - a for a, b in zip(s[2:], s[3:])]) for s in segments]
        if key == "mks2":
            rows["mks2 stage 1"] = (times[0], method.declared_stage1(base.load()[0]))
        rows[key] = (times[-1], info.trainable_params)
    lora = rows["lora"][0]
    print(f"{'method':14} {'step s':>8} {'× lora':>7} {'trainable':>10}")
    for key, (t, n) in rows.items():
        print(f"{key:14} {t:8.4f} {t / lora:7.2f} {n:10d}")


if __name__ == "__main__":
    main()
