"""``kore-bench run``: every method trained the same way from the same base, every model scored
the same way, each (method, seed, suite) unit stored as it finishes, finished units skipped.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import kore_bench

from . import integrity, unit_key, validate
from .base import build_base, external_base
from .data import Sample
from .errors import KoreBenchError
from .evaluate.backends import evaluate_suite
from .method import BaseModelRef, Method, TrainContext, TrainedModel
from .progress import progress_enabled, quiet_libraries
from .registry import load_methods
from .store import RunDir, Unit, atomic_write_json, environment, fingerprint
from .suites import Suite, load_suites, resolve_suite

REFERENCE_METHOD = "base"  # the un-injected row every retention change is measured against


@dataclass
class RunConfig:
    methods: list[str]
    output: Path
    world: str = "default"
    arch: str = "llava"
    model: str | None = None  # a Hugging Face id or path instead of kore-tiny
    seeds: list[int] = field(default_factory=lambda: [0])
    new: str = "world-new"
    retention: list[str] = field(default_factory=lambda: ["world-retention"])
    limit: int | None = None
    split: str = "test"  # test: reported scores; dev: selection (tune) only
    dev_share: float = 0.1  # evaluation data without a dev split: seeded share held out as dev, not tested
    dev_seed: int = 0
    tuned: Path | None = None  # a `kore-bench tune` directory whose winning settings the methods use
    reference: bool = True  # also evaluate the un-injected base (tuning trials skip it)
    batch_size: int = 32
    include_paths: list[Path] = field(default_factory=list)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str | None = None
    progress: bool = True
    judge: str | None = None  # LLM judge for VLMEvalKit's judged scoring: "URL,MODEL" or "hf:PATH"


@dataclass
class Prepared:
    """Everything resolved before any training starts (so bad input fails fast)."""

    methods: dict[str, Method]
    suites: list[Suite]
    base: BaseModelRef
    new_train: list[Sample]
    old_pool: list[Sample]
    world_dir: Path | None
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # suite → task → dev/test counts
    tuned: dict[str, Any] | None = None  # what --tuned applied, with its provenance
    base_weights: str = ""  # hash of the base model's files (unit_key.weights_hash)
    train_data: str = ""  # content hash of new_train + old_pool
    eval_data: dict[str, str] = field(default_factory=dict)  # suite → content hash of what it scores
    judge: Any = None  # the LLM judge (kore_bench.vlmeval.Judge) when --judge is given


SPLITS = ("dev", "test")


def prepare(cfg: RunConfig, console: Console) -> Prepared:
    if cfg.split not in SPLITS:
        raise KoreBenchError(f"split must be one of {', '.join(SPLITS)}, not {cfg.split!r}")
    validate.run_settings(cfg)  # everything typed, before anything is loaded
    registry = load_methods(cfg.include_paths)
    names = list(dict.fromkeys([REFERENCE_METHOD, *cfg.methods] if cfg.reference else cfg.methods))
    for n in names:
        registry.get(n)
    for n in cfg.method_args:
        registry.get(n)  # a typo in --set is an error too
    method_args, tuned = cfg.method_args, None
    if cfg.tuned is not None:
        from .studies.tune import apply_tuned

        method_args, tuned = apply_tuned(cfg.tuned, [n for n in names if registry.get(n).space()], cfg.method_args)
    methods = {n: registry.get(n).from_overrides(method_args.get(n, {})) for n in names}
    available = load_suites(cfg.include_paths)
    suites = [resolve_suite(cfg.new, available, "new_knowledge")]
    suites += [resolve_suite(r, available, "retention") for r in cfg.retention]
    suites = [s.with_dev_holdout(cfg.dev_share, cfg.dev_seed) for s in suites]
    world_dir = None
    if any("world" in s.needs for s in suites):
        from .cache import world_dir as export

        world_dir = export(cfg.world, console=console)
        suites = [s.with_variables(world=str(world_dir)) for s in suites]
    new_train = suites[0].train_samples()
    if not new_train:
        raise KoreBenchError(f"suite {suites[0].name!r} has no training data to inject")
    old_pool = [s for suite in suites[1:] for s in suite.train_samples()]
    validate.samples_readable(new_train + old_pool, "training data")
    eval_data = {s.name: _evaluation_data(s, cfg) for s in suites}  # read and checked before the base is built
    judge = None
    if cfg.judge:
        from .vlmeval import parse_judge

        judge = parse_judge(cfg.judge)
        if any(_judged(s) for s in suites):
            judge.check()  # an endpoint that cannot answer fails now, not after training
        else:
            console.print(f"[yellow]warning:[/] --judge {cfg.judge}: no suite of this run uses a judge "
                          "(only VLMEvalKit benchmarks do)")
    splits = {s.name: s.split_summary() for s in suites}
    base = external_base(cfg.model) if cfg.model else build_base(cfg.world, cfg.arch, console=console)
    if tuned is not None and tuned["base_fingerprints"] - {base.fingerprint}:
        console.print(f"[yellow]warning:[/] the settings in {cfg.tuned} were tuned on another base model "
                      f"({', '.join(sorted(tuned['base_fingerprints']))}, this run: {base.fingerprint})")
        tuned["other_base"] = True
    if tuned is not None:
        tuned["base_fingerprints"] = sorted(tuned["base_fingerprints"])
    return Prepared(methods, suites, base, new_train, old_pool, world_dir, splits, tuned,
                    base_weights=unit_key.weights_hash(base.path), train_data=unit_key.samples_hash(new_train + old_pool),
                    eval_data=eval_data, judge=judge)


def _judged(suite: Suite) -> bool:
    """Whether the judge can change the suite's scores (its VLMEvalKit tasks)."""
    from . import vlmeval

    return any(vlmeval.is_vlmeval(suite.source(t)) for t in suite.tasks)


def _evaluation_data(suite: Suite, cfg: RunConfig) -> str:
    """The content hash of what ``suite`` scores under ``cfg`` (each task's samples of the split,
    within ``--limit``); a task without samples or with an unreadable image is reported here."""
    parts = []
    for task in suite.tasks:
        samples = suite.task_samples(task, cfg.split)[: cfg.limit or None]
        if not samples:
            where = suite.source(task).get("path") or suite.source(task).get("task", "")
            raise KoreBenchError(f"suite {suite.name!r}, task {task.name!r}: no {cfg.split} samples in {where}")
        validate.samples_readable(samples, f"suite {suite.name!r}, task {task.name!r}")
        parts.append((task.name, unit_key.samples_hash(samples)))
    return fingerprint(parts)


def run(cfg: RunConfig, console: Console | None = None) -> Path:
    """Run (or resume) the benchmark into ``cfg.output``; returns the run directory."""
    console = console or Console(stderr=True)
    quiet_libraries()
    with progress_enabled(cfg.progress):
        return _run(cfg, console)


def _run(cfg: RunConfig, console: Console) -> Path:
    prep = prepare(cfg, console)
    run_dir = RunDir(cfg.output)
    data_fp = prep.train_data
    with run_dir.locked():
        earlier = run_dir.manifest().get("config", {}).get("split")
        if earlier and earlier != cfg.split:
            raise KoreBenchError(f"{run_dir.path} holds {earlier} results; write {cfg.split} results to another "
                                 "--output (dev and test scores never share a run)")
        started, config = time.strftime("%Y-%m-%dT%H:%M:%S"), {k: (str(v) if isinstance(v, Path) else v)
                                                                for k, v in vars(cfg).items()}
        run_dir.begin_invocation({"started": started, "kore_bench": kore_bench.__version__, "config": config,
                                  **environment()})
        run_dir.update_manifest(  # the latest invocation; every one is kept in "history"
            kore_bench=kore_bench.__version__, started=started, config=config,
            base={"path": prep.base.path, "fingerprint": prep.base.fingerprint, "description": prep.base.description},
            world_dir=str(prep.world_dir) if prep.world_dir else None, data_fingerprint=data_fp,
            suites=[s.name for s in prep.suites], splits=prep.splits, tuned=prep.tuned, **environment(),
        )
        failures = {}
        for name, method in prep.methods.items():
            seeds = cfg.seeds if getattr(method, "seed_dependent", True) else cfg.seeds[:1]
            for seed in seeds:
                try:
                    _run_method(cfg, prep, run_dir, name, method, seed, data_fp, console)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # a failing method must not take the others down
                    reason = f"{type(e).__name__}: {e}"
                    failures[f"{name}/seed{seed}"] = reason
                    run_dir.set_status(f"{name}/seed{seed}", "failed", reason=reason,
                                       traceback=traceback.format_exc(limit=8))
                    console.print(f"[red]{name} (seed {seed}) failed:[/] {reason}")
        from .report import write_reports

        if any(run_dir.path.glob("*/seed*/*/result.json")):
            write_reports(run_dir.path, console=console)
        finished = time.strftime("%Y-%m-%dT%H:%M:%S")
        run_dir.update_manifest(finished=finished, failed=failures)
        run_dir.end_invocation(finished=finished, failed=failures)
    return run_dir.path


def _run_method(cfg: RunConfig, prep: Prepared, run_dir: RunDir, name: str, method: Method,
                seed: int, data_fp: str, console: Console) -> None:
    train_key = unit_key.unit_key(name, method, prep.base_weights, prep.train_data, seed)
    units = {Unit(name, seed, s.name): s for s in prep.suites}
    settings = {"split": cfg.split, "limit": cfg.limit, "batch_size": cfg.batch_size}

    def suite_settings(suite: Suite) -> dict[str, Any]:  # the judge only where it scores, so adding one
        if prep.judge is None or not _judged(suite):     # re-scores the VLMEvalKit suites alone
            return settings
        return {**settings, "judge": prep.judge.identity}

    keys = {u: unit_key.unit_key(name, method, prep.base_weights, prep.train_data, seed, s, prep.eval_data[s.name],
                                 suite_settings(s)) for u, s in units.items()}
    todo = []
    for u in units:
        stored, problem = run_dir.stored_result(u)
        if stored is not None and stored.get("fingerprint") == keys[u].value:
            if run_dir.manifest().get("units", {}).get(u.key, {}).get("status") != "done":
                run_dir.set_status(u.key, "done")  # finished before a kill, not yet marked
            continue
        if problem != "missing":
            why = problem if stored is None else keys[u].changes(stored.get("key"))
            console.print(f"[yellow]rerun {u.key}: {why}[/]")
        for f in ("result.json", "samples.jsonl"):  # a stale number never outlives its recomputation
            (run_dir.unit_dir(u) / f).unlink(missing_ok=True)
        todo.append(u)
    if not todo:
        console.print(f"[dim]{name}{'' if name == REFERENCE_METHOD else f' (seed {seed})'}: finished earlier, skipped[/]")
        run_dir.note_unit(f"{name}/seed{seed}", "skipped (finished earlier)")
        if run_dir.manifest().get("units", {}).get(f"{name}/seed{seed}", {}).get("status") != "done":
            run_dir.set_status(f"{name}/seed{seed}", "done")
        return
    artifact = run_dir.artifact_dir(name, seed)
    ctx = TrainContext(prep.base, prep.new_train, prep.old_pool, seed, artifact, prep.world_dir,
                       cfg.device, cfg.progress)
    stamp = artifact / "fingerprint.json"
    stored, problem = integrity.read_sealed(stamp)
    if stored is not None:
        problem = integrity.verify_dir(artifact)
        if problem is None and stored.get("fingerprint") != train_key.value:
            problem = train_key.changes(stored.get("key"))
    if problem is None:
        console.print(f"{name} (seed {seed}): loading the trained artifact")
        trained = method.load(ctx)
        train_info = stored.get("train_info")
    else:
        if artifact.exists():
            if problem != "missing":
                console.print(f"[yellow]retrain {name}/seed{seed}: {problem}[/]")
            shutil.rmtree(artifact)  # nothing of an unverified artifact is reused
        run_dir.set_status(f"{name}/seed{seed}", "training")
        if name == REFERENCE_METHOD:
            console.print(f"[bold]{name}[/]: evaluating the base model (not trained; once, whatever the seeds)")
        else:
            console.print(f"[bold]{name}[/] (seed {seed}): training on {len(prep.new_train)} samples")
        import torch

        torch.manual_seed(seed)  # adapter inits (LoRA's A ...) happen before the trainer seeds
        trained = method.train(ctx)
        train_info = trained.info.to_dict() if trained.info else None
        artifact.mkdir(parents=True, exist_ok=True)
        integrity.fault_point("after-train-save")
        integrity.seal_dir(artifact)
        integrity.fault_point("after-artifact-seal")
        atomic_write_json(stamp, integrity.seal_record({"fingerprint": train_key.value, "key": train_key.parts,
                                                        "train_info": train_info}))
    _evaluate_units(cfg, run_dir, todo, units, keys, trained, method, train_info, console, prep.judge)
    run_dir.set_status(f"{name}/seed{seed}", "done")


def _evaluate_units(cfg, run_dir, todo, units, unit_fp, trained: TrainedModel, method: Method,
                    train_info, console: Console, judge=None) -> None:
    for unit in todo:
        suite = units[unit]
        run_dir.set_status(unit.key, "evaluating")
        started = time.perf_counter()
        tasks, records = evaluate_suite(trained.model, trained.processor, suite, cfg.limit, cfg.split, cfg.batch_size,
                                        judge)
        result = {
            "unit": {"method": unit.method, "seed": unit.seed, "suite": unit.suite},
            "fingerprint": unit_fp[unit].value, "key": unit_fp[unit].parts, "role": suite.role, "split": cfg.split, "tasks": tasks,
            "method_config": method.config_dict(), "train_info": train_info,
            "limited": cfg.limit is not None, "eval_seconds": round(time.perf_counter() - started, 2),
        }
        run_dir.write_unit(unit, result, records)
        run_dir.set_status(unit.key, "done")
        summary = ", ".join(f"{t}: {v['metrics'][v['primary_metric']]:.1f}" for t, v in tasks.items())
        console.print(f"  {unit.key}: {summary}")
