"""``kore-bench run``: every method trained the same way from the same base, every model scored
the same way, each (method, seed, suite) unit stored as it finishes, finished units skipped.
"""
from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import kore_bench

from . import distributed, integrity, unit_key, validate
from .base import build_base, external_base
from .data import Sample
from .errors import KoreBenchError
from .evaluate.backends import evaluate_suite
from .method import BaseModelRef, Method, TrainContext, TrainedModel
from .progress import progress_enabled, quiet_libraries
from .registry import load_methods
from .store import RunDir, Unit, atomic_write_json, environment, fingerprint, recompute_hint
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
    dev_share: float = 0.0  # evaluation data without a dev split: seeded share held out as dev, not tested
    dev_seed: int = 0
    old_data: str | None = None  # the old-knowledge pool: a file or a suite (kore_bench.old_data); None: default
    tuned: Path | None = None  # a `kore-bench tune` directory whose winning settings the methods use
    reference: bool = True  # also evaluate the un-injected base (tuning trials skip it)
    batch_size: int = 32
    include_paths: list[Path] = field(default_factory=list)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str | None = None
    progress: bool = True
    shard: tuple[int, int] | None = None  # (i, n): the i-th of n shares of the run's units (``--shard i/n``)
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
    device: str  # where every method trains and every model is evaluated (--device, else CUDA if present)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # suite → task → dev/test counts
    tuned: dict[str, Any] | None = None  # what --tuned applied, with its provenance
    old_source: dict[str, Any] = field(default_factory=dict)  # where old_pool came from (manifest)
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
        from .studies.tuned import apply_tuned

        method_args, tuned = apply_tuned(cfg.tuned, [n for n in names if registry.get(n).space()], cfg.method_args)
    methods = {n: registry.get(n).from_overrides(method_args.get(n, {})) for n in names}
    from .plan import check_sharding, sharding_mode_from_env

    check_sharding(methods, sharding_mode_from_env())  # refused here, not half-way through training
    distributed.check_devices()
    if distributed.launched() and cfg.shard is not None:
        raise KoreBenchError("--shard splits a run over independent jobs; under accelerate launch the processes "
                             "already share every unit: use one or the other")
    available = load_suites(cfg.include_paths)
    suites = [resolve_suite(cfg.new, available, "new_knowledge")]
    suites += [resolve_suite(r, available, "retention") for r in cfg.retention]
    suites = [s.with_dev_holdout(cfg.dev_share, cfg.dev_seed) for s in suites]
    world_dir = None
    from . import old_data

    if any("world" in s.needs for s in suites) or old_data.needs_world(cfg.old_data, available):
        from .cache import world_dir as export

        world_dir = export(cfg.world, console=console)
        suites = [s.with_variables(world=str(world_dir)) for s in suites]
    new_train = suites[0].train_samples()
    if not new_train:
        raise KoreBenchError(f"suite {suites[0].name!r} has no training data to inject")
    if cfg.old_data:
        old_pool, old_source = old_data.load(cfg.old_data, available,
                                             {"world": str(world_dir)} if world_dir else {})
    else:
        old_pool, old_source = old_data.default_pool(suites[1:])
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
    with distributed.main_first():  # under a launcher the main rank builds the base, the others then load it
        base = external_base(cfg.model) if cfg.model else build_base(cfg.world, cfg.arch, console=console)
    if tuned is not None and tuned["base_fingerprints"] - {base.fingerprint}:
        console.print(f"[yellow]warning:[/] the settings in {cfg.tuned} were tuned on another base model "
                      f"({', '.join(sorted(tuned['base_fingerprints']))}, this run: {base.fingerprint})")
        tuned["other_base"] = True
    if tuned is not None:
        tuned["base_fingerprints"] = sorted(tuned["base_fingerprints"])
    return Prepared(methods, suites, base, new_train, old_pool, world_dir, resolve_device(cfg.device), splits, tuned,
                    old_source,
                    base_weights=unit_key.weights_hash(base.path), train_data=unit_key.samples_hash(new_train + old_pool),
                    eval_data=eval_data, judge=judge)


def _judged(suite: Suite) -> bool:
    """Whether the judge can change the suite's scores (its VLMEvalKit tasks)."""
    from . import vlmeval

    return any(vlmeval.is_vlmeval(suite.source(t)) for t in suite.tasks)


def resolve_device(device: str | None) -> str:
    """``--device`` as given (validated), else CUDA when available, else the CPU."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    """Run (or resume) the benchmark into ``cfg.output``; returns the run directory.

    Under ``accelerate launch`` every rank runs this: the main rank decides and writes, every rank
    trains on its share of each batch and evaluates its share of each task (:mod:`.distributed`).
    """
    distributed.init()
    console = console or Console(stderr=True)
    if not distributed.is_main():
        console = Console(quiet=True)  # one log, the main rank's
    quiet_libraries()
    with progress_enabled(cfg.progress and distributed.is_main()):
        return _run(cfg, console)


def run_units(cfg: RunConfig, methods: dict[str, Method]) -> list[tuple[str, int]]:
    """The run's (method, seed) units in order; with ``--shard i/n`` the i-th of n deterministic
    shares (every n-th unit), so n independent jobs fill one run directory without overlap."""
    units = [(name, seed) for name, m in methods.items() for seed in (cfg.seeds if m.seed_dependent else cfg.seeds[:1])]
    if cfg.shard is None:
        return units
    i, n = cfg.shard
    return [u for k, u in enumerate(units) if k % n == i - 1]


def _run(cfg: RunConfig, console: Console) -> Path:
    prep = prepare(cfg, console)
    run_dir = RunDir(cfg.output)
    main = distributed.is_main()
    command = _command_fingerprint(cfg, prep)
    with (run_dir.locked(shared_by=command if cfg.shard else None) if main else contextlib.nullcontext()):
        if main:
            _begin(cfg, prep, run_dir)
        failures = {}
        for name, seed in run_units(cfg, prep.methods):
            try:
                _run_method(cfg, prep, run_dir, name, prep.methods[name], seed, console)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a failing method must not take the others down
                reason = f"{type(e).__name__}: {e}" + (f" (rank {distributed.rank()})" if distributed.active() else "")
                failures[f"{name}/seed{seed}"] = reason
                if main:
                    run_dir.set_status(f"{name}/seed{seed}", "failed", reason=reason,
                                       traceback=traceback.format_exc(limit=8))
                console.print(f"[red]{name} (seed {seed}) failed:[/] {reason}")
        if main:
            _finish(cfg, prep, run_dir, failures, console)
    distributed.barrier()
    return run_dir.path


def _command_fingerprint(cfg: RunConfig, prep: Prepared) -> str:
    """What shards of one command share (methods, settings, seeds, suites, data, split, evaluation
    settings); a shard of another command into the same directory is refused."""
    return fingerprint([sorted((n, m.config_dict()) for n, m in prep.methods.items()), cfg.seeds,
                        [s.name for s in prep.suites], prep.train_data, prep.eval_data, prep.base_weights,
                        cfg.split, cfg.limit, cfg.batch_size])


def _begin(cfg: RunConfig, prep: Prepared, run_dir: RunDir) -> None:
    earlier = run_dir.manifest().get("config", {}).get("split")
    if earlier and earlier != cfg.split:
        raise KoreBenchError(f"{run_dir.path} holds {earlier} results; write {cfg.split} results to another "
                             "--output (dev and test scores never share a run)")
    started, config = time.strftime("%Y-%m-%dT%H:%M:%S"), {k: (str(v) if isinstance(v, Path) else v)
                                                            for k, v in vars(cfg).items()}
    run_dir.begin_invocation({"started": started, "kore_bench": kore_bench.__version__, "config": config,
                              "device": prep.device, "processes": distributed.world_size(), **environment()})
    run_dir.update_manifest(  # the latest invocation; every one is kept in "history"
        kore_bench=kore_bench.__version__, started=started, config=config,
        base={"path": prep.base.path, "fingerprint": prep.base.fingerprint, "description": prep.base.description},
        world_dir=str(prep.world_dir) if prep.world_dir else None, data_fingerprint=prep.train_data,
        suites=[s.name for s in prep.suites], splits=prep.splits, old_data=prep.old_source, tuned=prep.tuned,
        device=prep.device,
        processes=distributed.world_size(), **environment(),
    )


def _finish(cfg: RunConfig, prep: Prepared, run_dir: RunDir, failures: dict[str, str], console: Console) -> None:
    from .report import unreadable_units, write_reports

    everything = RunConfig(**{**vars(cfg), "shard": None})
    left = [f"{n}/seed{s}" for n, s in run_units(everything, prep.methods)
            if not all(_finished(run_dir, Unit(n, s, suite.name), key) for suite, key in
                       zip(prep.suites, _unit_keys(cfg, prep, n, prep.methods[n], s).values()))]
    unreadable: dict[str, str] = {}
    if cfg.shard is not None and left:
        console.print(f"shard {cfg.shard[0]}/{cfg.shard[1]} done; {len(left)} unit(s) of this command are not "
                      f"finished yet ({', '.join(left[:4])}{' ...' if len(left) > 4 else ''}): the last shard to "
                      "finish writes the leaderboard")
    elif results := list(run_dir.path.glob("*/seed*/*/result.json")):
        with run_dir.manifest_lock():  # two shards finishing together write the reports one after the other
            # every unit of this command was verified or recomputed; a stored unit that still fails
            # verification belongs to a method, seed or suite this command was not asked for
            unreadable = unreadable_units(run_dir.path)
            if len(unreadable) < len(results):
                write_reports(run_dir.path, console=console, skip=unreadable)
    if unreadable:
        unreadable = {u: f"{why}; left out of the reports (recompute: {recompute_hint(run_dir.path, [u])})"
                      for u, why in unreadable.items()}
        console.print(f"[red]{len(unreadable)} stored unit(s) of this run directory fail verification and are not "
                      f"part of this invocation (--methods {','.join(cfg.methods)}): {', '.join(unreadable)}; they "
                      f"are left out of the reports. Recompute them with: "
                      f"{recompute_hint(run_dir.path, list(unreadable))}[/]", soft_wrap=True)
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    run_dir.update_manifest(finished=finished, failed=failures, unreadable=unreadable)
    run_dir.end_invocation(finished=finished, failed=failures, unreadable=unreadable)


def _finished(run_dir: RunDir, unit: Unit, key) -> bool:
    stored, _ = run_dir.stored_result(unit)
    return stored is not None and stored.get("fingerprint") == key.value


def _unit_keys(cfg: RunConfig, prep: Prepared, name: str, method: Method, seed: int) -> dict:
    settings = {"split": cfg.split, "limit": cfg.limit, "batch_size": cfg.batch_size, "device": prep.device}

    def suite_settings(suite: Suite) -> dict[str, Any]:  # the judge only where it scores, so adding one
        if prep.judge is None or not _judged(suite):     # re-scores the VLMEvalKit suites alone
            return settings
        return {**settings, "judge": prep.judge.identity}

    return {Unit(name, seed, s.name): unit_key.unit_key(name, method, prep.base_weights, prep.train_data, seed, s,
                                                        prep.eval_data[s.name], suite_settings(s))
            for s in prep.suites}


def _run_method(cfg: RunConfig, prep: Prepared, run_dir: RunDir, name: str, method: Method,
                seed: int, console: Console) -> None:
    """Train (or load) one (method, seed) and evaluate its unfinished suites. Under a launcher the
    main rank decides what to do and writes; every rank trains and evaluates."""
    train_key = unit_key.unit_key(name, method, prep.base_weights, prep.train_data, seed)
    keys = _unit_keys(cfg, prep, name, method, seed)
    units = {u: s for u, s in zip(keys, prep.suites)}
    with (run_dir.unit_lock(name, seed) if distributed.is_main() else contextlib.nullcontext()) as held:
        plan = distributed.on_main(lambda: _plan_method(run_dir, name, seed, keys, train_key, console, held))
        if plan is None:
            return
        todo, load, train_info = plan
        artifact = run_dir.artifact_dir(name, seed)
        ctx = TrainContext(prep.base, prep.new_train, prep.old_pool, seed, artifact, prep.suites[0],
                           prep.device, cfg.progress and distributed.is_main())
        if load:
            console.print(f"{name} (seed {seed}): loading the trained artifact")
            trained = method.load(ctx)
        else:
            if name == REFERENCE_METHOD:
                console.print(f"[bold]{name}[/]: evaluating the base model (not trained; once, whatever the seeds)")
            else:
                console.print(f"[bold]{name}[/] (seed {seed}): training on {len(prep.new_train)} samples")
            import torch

            torch.manual_seed(seed)  # adapter inits (LoRA's A ...) happen before the trainer seeds
            trained = method.train(ctx)
            train_info = trained.info.to_dict() if trained.info else None
            if distributed.is_main():
                artifact.mkdir(parents=True, exist_ok=True)
                integrity.fault_point("after-train-save")
                integrity.seal_dir(artifact)
                integrity.fault_point("after-artifact-seal")
                atomic_write_json(artifact / "fingerprint.json", integrity.seal_record(
                    {"fingerprint": train_key.value, "key": train_key.parts, "train_info": train_info}))
        _evaluate_units(cfg, run_dir, [u for u in units if u.key in todo], units, keys, trained, method,
                        train_info, console, prep.judge)
        if distributed.is_main():
            run_dir.set_status(f"{name}/seed{seed}", "done")


def _plan_method(run_dir: RunDir, name: str, seed: int, keys: dict, train_key, console: Console,
                 held: bool | None) -> tuple[list[str], bool, dict | None] | None:
    """On the main rank: which suites to (re)evaluate, and whether the artifact verifies and loads
    (else it is removed, to be retrained); None when nothing is left to do."""
    if held is False:
        console.print(f"[dim]{name} (seed {seed}): being run by another job on this directory, skipped[/]")
        return None
    todo = []
    for u, key in keys.items():
        stored, problem = run_dir.stored_result(u)
        if stored is not None and stored.get("fingerprint") == key.value:
            if run_dir.manifest().get("units", {}).get(u.key, {}).get("status") != "done":
                run_dir.set_status(u.key, "done")  # finished before a kill, not yet marked
            continue
        if problem != "missing":
            why = problem if stored is None else key.changes(stored.get("key"))
            console.print(f"[yellow]rerun {u.key}: {why}[/]")
        for f in ("result.json", "samples.jsonl"):  # a stale number never outlives its recomputation
            (run_dir.unit_dir(u) / f).unlink(missing_ok=True)
        todo.append(u.key)
    if not todo:
        console.print(f"[dim]{name}{'' if name == REFERENCE_METHOD else f' (seed {seed})'}: finished earlier, skipped[/]")
        run_dir.note_unit(f"{name}/seed{seed}", "skipped (finished earlier)")
        if run_dir.manifest().get("units", {}).get(f"{name}/seed{seed}", {}).get("status") != "done":
            run_dir.set_status(f"{name}/seed{seed}", "done")
        return None
    artifact = run_dir.artifact_dir(name, seed)
    stored, problem = integrity.read_sealed(artifact / "fingerprint.json")
    if stored is not None:
        problem = integrity.verify_dir(artifact)
        if problem is None and stored.get("fingerprint") != train_key.value:
            problem = train_key.changes(stored.get("key"))
    if problem is None:
        return todo, True, stored.get("train_info")
    if artifact.exists():
        if problem != "missing":
            console.print(f"[yellow]retrain {name}/seed{seed}: {problem}[/]")
        shutil.rmtree(artifact)  # nothing of an unverified artifact is reused
    run_dir.set_status(f"{name}/seed{seed}", "training")
    return todo, False, None


def _evaluate_units(cfg, run_dir, todo, units, unit_fp, trained: TrainedModel, method: Method,
                    train_info, console: Console, judge=None) -> None:
    main = distributed.is_main()
    for unit in todo:
        suite = units[unit]
        if main:
            run_dir.set_status(unit.key, "evaluating")
        started = time.perf_counter()
        # the judge scores on the main rank only (the others' scores are not written)
        tasks, records = evaluate_suite(trained.model, trained.processor, suite, cfg.limit, cfg.split, cfg.batch_size,
                                        judge if main else None)
        if not main:
            continue
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
