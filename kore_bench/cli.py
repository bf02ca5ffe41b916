"""The ``kore-bench`` command line (also ``python -m kore_bench``)."""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import KoreBenchError, UnknownNameError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark knowledge injection into multimodal models: train every method the "
                       "same way, score every model the same way, compare.")
world_app = typer.Typer(no_args_is_help=True, help="The embedded synthetic world.")
base_app = typer.Typer(no_args_is_help=True, help="The kore-tiny base model.")
app.add_typer(world_app, name="world")
app.add_typer(base_app, name="base")
# Piped output (logs, CI) keeps wide tables whole instead of cutting them to 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


# Options shared by run, tune, frontier and diagnose: one definition each.
WorldOpt = Annotated[str, typer.Option(help="embedded world preset: micro, small, default")]
ArchOpt = Annotated[str, typer.Option(help="kore-tiny architecture: llava or qwen")]
ModelOpt = Annotated[Optional[str], typer.Option(help="a Hugging Face model id or path instead of kore-tiny")]
NewOpt = Annotated[str, typer.Option(help="new-knowledge suite, e.g. evoke:/data/EVOKE")]
DevShareOpt = Annotated[float, typer.Option(help="data without a dev split: seeded share held out as dev")]
OldDataOpt = Annotated[Optional[str], typer.Option(
    "--old-data", help="old-knowledge pool for replay and calibration (kore, corda, ewc, o-lora, sefe): a file "
                       "(conversations JSON/JSONL, or a JSONL/TSV of questions with answers) or a suite NAME[:/path]; "
                       "default: the retention suites' training pools, else their own dev items (never test items)")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")]
JudgeOpt = Annotated[Optional[str], typer.Option(
    help="LLM judge for the VLMEvalKit benchmarks scored by one (MathVista, MathVision, MIA-Bench) and "
         "VLMEvalKit's judge fallback for multiple choice and yes/no: URL,MODEL (an OpenAI-compatible "
         "endpoint; key from $KORE_BENCH_JUDGE_API_KEY or $OPENAI_API_KEY) or hf:PATH (a local "
         "transformers model). Without it those benchmarks are reported as not scored")]

# The run options of run, tune and frontier (RunConfig fields), declared once and added to each
# command's signature by @with_run_options: name → (annotation, default).
RUN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "world": (WorldOpt, "default"),
    "arch": (ArchOpt, "llava"),
    "model": (ModelOpt, None),
    "seeds": (Annotated[str, typer.Option(help="comma-separated training seeds (per trial or point in "
                                                "tune and frontier)")], "0"),
    "new": (NewOpt, "world-new"),
    "retention": (Annotated[str, typer.Option(help="comma-separated retention suites")], "world-retention"),
    "limit": (Annotated[Optional[int], typer.Option(help="evaluate at most N samples per task (smoke test)")], None),
    "batch_size": (Annotated[int, typer.Option(help="evaluation batch size")], 32),
    "include_path": (Annotated[list[Path], typer.Option(help="folder with extra methods (*.py) and suites "
                                                              "(*.yaml)")], []),
    "set_": (Annotated[list[str], typer.Option("--set", help="method setting, e.g. --set lora.lr=1e-3 "
                                                             "(repeatable; fixed in every trial or point)")], []),
    "device": (DeviceOpt, None),
    "progress": (Annotated[bool, typer.Option(help="show progress bars")], True),
    "old_data": (OldDataOpt, None),
    "judge": (JudgeOpt, None),
}


def with_run_options(command: Callable) -> Callable:
    """Add the shared :data:`RUN_OPTIONS` to ``command``'s CLI signature; the command receives them
    as ``run_options``, a dict of :class:`~kore_bench.runner.RunConfig` fields (parsed)."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()
           if p.name != "run_options"]
    shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
              for n, (a, d) in RUN_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        opts = {n: kwargs.pop(n) for n in RUN_OPTIONS}
        run_options = dict(
            world=opts["world"], arch=opts["arch"], model=opts["model"], seeds=parse_seeds(opts["seeds"]),
            new=opts["new"], retention=_csv(opts["retention"]), limit=opts["limit"], batch_size=opts["batch_size"],
            include_paths=list(opts["include_path"]), method_args=_parse_sets(opts["set_"]), device=opts["device"],
            progress=opts["progress"], old_data=opts["old_data"], judge=opts["judge"])
        return command(**kwargs, run_options=run_options)

    wrapper.__signature__ = inspect.Signature([*own, *shared])
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    del wrapper.__wrapped__  # typer must read the new signature, not the command's
    return wrapper


def parse_seeds(value: str) -> list[int]:
    from .validate import seeds

    return seeds(value)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_sets(sets: list[str]) -> dict[str, dict]:
    """``--set lora.lr=1e-3`` → {"lora": {"lr": 0.001}}."""
    result: dict[str, dict] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        method, dot, field = key.partition(".")
        if not sep or not dot:
            raise KoreBenchError(f"--set {item!r}: expected METHOD.FIELD=VALUE, e.g. lora.lr=1e-3")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        result.setdefault(method, {})[field] = value
    return result


@app.command()
@with_run_options
def run(
    run_options: dict,
    methods: str = typer.Option("lora,full-ft,replay", help="comma-separated method keys (base is always added)"),
    output: Optional[Path] = typer.Option(None, help="run directory (default runs/<world>-<arch>)"),
    split: str = typer.Option("test", help="test (reported scores) or dev (selection only)"),
    dev_share: Annotated[float, typer.Option(help="hold out this seeded share of dev-less test data as dev "
                                                  "(default 0: test scores over the full published sets)")] = 0.0,
    dev_seed: int = typer.Option(0, help="seed of that hold-out"),
    tuned: Optional[str] = typer.Option(None, help="a `kore-bench tune` directory (or 'default'): use its winning "
                                                   "settings; --set still wins"),
    shard: Optional[str] = typer.Option(None, help="I/N: run only the I-th of N shares of the (method, seed) "
                                                   "units, so N jobs fill one run directory; the last writes "
                                                   "the leaderboard"),
) -> None:
    """Train every method from the same base, evaluate all uniformly, write the leaderboard."""
    from .runner import RunConfig
    from .runner import run as run_benchmark
    from .validate import parse_shard

    cfg = RunConfig(methods=_csv(methods), output=output or _default_output("", run_options), split=split,
                    dev_share=dev_share, dev_seed=dev_seed, tuned=_tuned_dir(tuned, run_options),
                    shard=parse_shard(shard), **run_options)
    path = run_benchmark(cfg, console)
    from . import distributed

    if distributed.is_main():  # under a launcher: one line, the main rank's
        out.print(f"results: {path}")
    _exit_on_failures(path)


def _default_output(kind: str, run_options: dict) -> Path:
    from .studies.tuned import default_output

    return default_output(kind, run_options["world"], run_options["arch"], run_options["model"])


def _exit_on_failures(path: Path) -> None:
    """Exit code 1 when a method (a trial, a point) failed in this run, or a stored unit it did not
    recompute fails verification (all that succeeded is written): the failures last."""
    from .store import RunDir

    manifest = RunDir(path).manifest()
    failed, unreadable = manifest.get("failed") or {}, manifest.get("unreadable") or {}
    for unit, reason in failed.items():
        console.print(f"[red]failed: {unit}: {reason}[/]", soft_wrap=True)
    for unit, reason in unreadable.items():
        console.print(f"[red]unreadable: {unit}: {reason}[/]", soft_wrap=True)
    if failed or unreadable:
        sys.exit(1)


def _tuned_dir(value: Optional[str], run_options: dict) -> Optional[Path]:
    if value is None:
        return None
    return _default_output("tune", run_options) if value == "default" else Path(value)


def _range(value: Optional[str]) -> Optional[tuple[float, float]]:
    if value is None:
        return None
    parts = _csv(value)
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise KoreBenchError(f"--range {value!r}: expected LOW,HIGH, e.g. 1e-4,1e-2") from None
    return low, high


@app.command()
@with_run_options
def tune(
    run_options: dict,
    methods: str = typer.Option(..., help="comma-separated method keys, each tuned with the same budget"),
    budget: int = typer.Option(8, help="trials per method (the same for every method)"),
    space: Optional[Path] = typer.Option(None, help="YAML overriding the methods' search spaces"),
    seed: int = typer.Option(0, help="seed of the trial design"),
    output: Optional[Path] = typer.Option(None, help="tune directory (default runs/tune-<world>-<arch>)"),
    dev_share: DevShareOpt = 0.1,
    dev_seed: int = typer.Option(0, help="seed of that hold-out"),
) -> None:
    """Equal-budget search on the dev split: the same number of trials per method, scored by dev Avg."""
    from .studies.tune import tune as run_tune

    path = run_tune(_csv(methods), budget, output or _default_output("tune", run_options), space_file=space,
                    seed=seed, console=console, dev_share=dev_share, dev_seed=dev_seed, **run_options)
    out.print(f"tuned settings: {path / 'tuned.json'} (use: kore-bench run --tuned {path} --dev-share {dev_share} "
              f"--dev-seed {dev_seed}, so the tested items are not those selection saw)")
    _exit_on_failures(path)


@app.command()
@with_run_options
def frontier(
    run_options: dict,
    methods: str = typer.Option(..., help="comma-separated method keys"),
    points: int = typer.Option(5, help="points per method along the swept setting"),
    param: str = typer.Option("lr", help="the swept setting (lr, steps, epochs ...)"),
    range_: Optional[str] = typer.Option(None, "--range", help="LOW,HIGH (log-spaced) instead of the "
                                                                "method's search-space range"),
    levels: Optional[str] = typer.Option(None, help="K.A levels for K.R at matched adaptation, e.g. 20,40,60"),
    split: str = typer.Option("test", help="test (a reported curve) or dev"),
    output: Optional[Path] = typer.Option(None, help="frontier directory (default runs/frontier-<world>-<arch>)"),
    tuned: Optional[str] = typer.Option(None, help="start from a tune directory's winners (the swept value wins)"),
    dev_share: Annotated[float, typer.Option(help="hold out this seeded share of dev-less test data as dev "
                                                  "(default 0: a test curve over the full published sets)")] = 0.0,
) -> None:
    """Sweep each method along its step size: K.A/K.R curves, their Pareto front, K.R at matched K.A."""
    from .studies.frontier import frontier as run_frontier

    try:
        level_values = [float(v) for v in _csv(levels)] if levels else None
    except ValueError:
        raise KoreBenchError(f"--levels {levels!r}: expected numbers, e.g. 20,40,60") from None
    path = run_frontier(
        _csv(methods), points, output or _default_output("frontier", run_options), param=param,
        value_range=_range(range_), levels=level_values, split=split, console=console,
        tuned=_tuned_dir(tuned, run_options), dev_share=dev_share, **run_options,
    )
    out.print(f"frontier: {path / 'frontier.png'}, {path / 'frontier.svg'}, {path / 'frontier.csv'}")
    _exit_on_failures(path)


@app.command()
def diagnose(
    world: WorldOpt = "default",
    arch: ArchOpt = "llava",
    model: ModelOpt = None,
    new: NewOpt = "world-new",
    retention: str = typer.Option("world-retention", help="comma-separated retention suites (old data)"),
    rank: Optional[int] = typer.Option(None, help="KORE rank (default: KORE's, matched to LoRA's budget)"),
    split: str = typer.Option("all", help="held-out old prompts from the dev, test or all evaluation items"),
    samples: int = typer.Option(256, help="at most N held-out old and N new prompts (seeded draw)"),
    calibration_samples: Optional[int] = typer.Option(None, help="calibration prompts (default: KORE's)"),
    augmenter: Optional[str] = typer.Option(None, help="diagnose the augmented new data (e.g. template), "
                                                       "as kore trains on it"),
    seed: int = typer.Option(0, help="calibration draw seed (KORE uses the training seed)"),
    threshold: float = typer.Option(2.0, help="new/old ratio from which the constraint separates the data"),
    output: Optional[Path] = typer.Option(None, help="output directory (default runs/diagnose-<world>-<arch>)"),
    include_path: Annotated[list[Path], typer.Option(help="folder with extra suites (*.yaml)")] = [],
    dev_share: DevShareOpt = 0.1,
    old_data: OldDataOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Per decoder linear: how much energy new vs held-out old data put into KORE's trainable subspace."""
    from .studies.diagnose import diagnose as run_diagnose

    from .studies.tuned import default_output

    path = run_diagnose(
        output or default_output("diagnose", world, arch, model), world=world, arch=arch, model=model, new=new,
        retention=_csv(retention), rank=rank, split=split, samples=samples,
        calibration_samples=calibration_samples, seed=seed, augmenter=augmenter,
        include_paths=list(include_path), dev_share=dev_share, device=device, threshold=threshold, console=console,
        old_data=old_data,
    )
    out.print(f"diagnostic: {path / 'diagnose.csv'}, {path / 'diagnose.json'}")


@app.command()
def plan(
    model: str = typer.Option(..., help="a config.json, a model directory or a locally cached hub id "
                                        "(only the config is read; weights stay on the meta device)"),
    methods: str = typer.Option("lora,kore,full-ft", help="comma-separated method keys"),
    set_: list[str] = typer.Option([], "--set", help="method setting as for run, e.g. --set lora.rank=128"),
    gpus: int = typer.Option(1, help="GPUs (processes) per machine"),
    gpu_memory: str = typer.Option("80GB", help="memory of one GPU, e.g. 80GB, 141GiB"),
    seq_len: int = typer.Option(2048, help="tokens per training sequence, image tokens included"),
    dtype: str = typer.Option("bf16", help="weight and activation precision: bf16, fp16, fp32"),
    gradient_checkpointing: bool = typer.Option(True, help="recompute each decoder block in the backward pass"),
    grad_accum: int = typer.Option(1, help="gradient accumulation steps (the global batch stays the method's)"),
    accelerate_config: Optional[Path] = typer.Option(None, help="plan only the mode of this accelerate config "
                                                                "(configs/accelerate/*.yaml)"),
    include_path: Annotated[list[Path], typer.Option(help="folder with extra methods (*.py)")] = [],
) -> None:
    """Trainable parameters, optimizer state, activations, calibration memory and fit per sharding mode."""
    from .plan import MODES, Settings, gb, millions, parse_memory, read_accelerate_config
    from .plan import plan as make_plan
    from .registry import load_methods

    registry = load_methods(include_path)
    args = _parse_sets(set_)
    names = _csv(methods)
    for n in [*names, *args]:
        registry.get(n)
    modes = MODES
    if accelerate_config is not None:
        modes = (read_accelerate_config(accelerate_config, gpus)[0],)
    settings = Settings(gpus=gpus, gpu_memory=parse_memory(gpu_memory), seq_len=seq_len, dtype=dtype,
                        gradient_checkpointing=gradient_checkpointing, grad_accum=grad_accum, modes=modes)
    plans = make_plan(model, {n: registry.get(n).from_overrides(args.get(n, {})) for n in names}, settings)
    t = Table("method", "parameters", "trainable", "optimizer state", "activations / GPU", "calibration",
              *(f"{m} / GPU" for m in modes),
              title=f"{Path(model).name}: {gpus} x {gb(settings.gpu_memory)}, {dtype}, seq {seq_len}, "
                    f"checkpointing {'on' if gradient_checkpointing else 'off'} (fits: under 90 %)")
    for p in plans:
        cal = "-"
        if p.calibration is not None:
            c = p.calibration
            cal = (f"{c.matrices} matrices, {gb(c.bytes_all_layers)}; {c.strategy} "
                   f"(peak {gb(c.peak_all_layers if c.strategy == 'all layers at once' else c.peak_streaming)})")
        cells = []
        for m in modes:
            f = p.modes[m]
            cells.append("refused" if f.refused else f"{gb(f.total)} {'fits' if f.fits else 'does not fit'}")
        t.add_row(p.method, millions(p.total_params), f"{millions(p.trainable_params)} ({p.trainable_params:,})",
                  gb(p.optimizer_state), f"{gb(p.activations)} (batch {p.micro_batch})", cal, *cells)
    out.print(t)
    for p in plans:
        for m in modes:
            if p.modes[m].refused:
                out.print(f"{p.method} under {m}: refused: {p.modes[m].refused}")
        if p.calibration is not None and p.calibration.strategy != "all layers at once":
            out.print(f"{p.method}: calibration needs {p.calibration.strategy}; kore-bench's calibration holds "
                      "every layer's matrices at once (streaming is not implemented)")


@app.command("ls")
def ls(
    what: str = typer.Argument(..., help="methods | suites | metrics | augmenters"),
    include_path: list[Path] = typer.Option([], help="folder with extra methods and suites"),
) -> None:
    """List what is registered."""
    if what == "methods":
        from .method import MethodConfig
        from .registry import load_methods
        from .search import describe_space

        reg = load_methods(include_path)
        shared = {f.name for f in dataclasses.fields(MethodConfig)} - {"lr", "steps", "projector_lr"}
        t = Table("method", "class", "settings (default)", "search space (tune, frontier)")
        for name in reg.names():
            cls = reg.get(name)
            own = {k: v[0] for k, v in cls.Config.field_help().items() if k not in shared}
            t.add_row(name, cls.__name__, ", ".join(f"{k}={v}" for k, v in own.items()), describe_space(cls.space()))
        out.print(t)
    elif what == "suites":
        from .suites import load_suites

        t = Table("suite", "role", "tasks", "description")
        for name, s in sorted(load_suites(include_path).items()):
            t.add_row(name, s.role, ", ".join(task.name for task in s.tasks), s.description)
        out.print(t)
    elif what == "metrics":
        from .evaluate.metrics import METRICS

        t = Table("metric", "protocol", "higher is better")
        for name, m in sorted(METRICS.items()):
            t.add_row(name, m.protocol, str(m.higher_is_better))
        out.print(t)
    elif what == "augmenters":
        from .augment import AUGMENTERS, augmenter_options

        t = Table("augmenter", "what it does", "options (default)")
        for name in AUGMENTERS.names():
            doc = (AUGMENTERS.get(name).__doc__ or "").strip().split("\n\n")[0]
            t.add_row(name, " ".join(doc.split()), ", ".join(f"{k}={v}" for k, v in augmenter_options(name).items()))
        out.print(t)
    else:
        raise UnknownNameError("listing", what, ["methods", "suites", "metrics", "augmenters"])


@world_app.command("export")
def world_export(
    world: str = typer.Option(..., help="preset: micro, small, default"),
    out_dir: Path = typer.Option(..., "--out", help="an empty or new directory"),
    seed: Optional[int] = typer.Option(None, help="world seed (default: the preset's)"),
) -> None:
    """Write the world as EVOKE files, retention suites (JSONL/TSV) and world.json."""
    from .world import export_world

    export_world(world, out_dir, seed=seed)
    out.print(f"world {world!r} written to {out_dir}")


@base_app.command("build")
def base_build(
    world: WorldOpt = "default",
    arch: ArchOpt = "llava",
    force: bool = typer.Option(False, help="rebuild even if cached"),
) -> None:
    """Pre-train (or fetch from the cache) kore-tiny on the old world and report its scores."""
    from .base import base_info, build_base, evaluate_base

    ref = build_base(world, arch, force=force, console=console)
    evaluate_base(world, arch, console=console)
    _print_info(base_info(world, arch))
    out.print(f"base: {ref.path}")


@base_app.command("info")
def base_info_cmd(
    world: WorldOpt = "default",
    arch: ArchOpt = "llava",
) -> None:
    """What is cached for the base of a world: fingerprint, size, build time, scores."""
    from .base import base_info

    info = base_info(world, arch)
    if info is None:
        raise KoreBenchError(f"no base built for world {world!r} ({arch}); run: kore-bench base build --world {world}")
    _print_info(info)


def _print_info(info: dict | None) -> None:
    if info is None:
        return
    t = Table("field", "value", title="kore-tiny base")
    for k in ("path", "fingerprint", "arch", "world", "parameters", "build_seconds", "torch_threads", "intact"):
        t.add_row(k, str(info.get(k)))
    for k, v in (info.get("vision_stage") or {}).items():
        t.add_row(f"vision stage, held out: {k}", f"{v:.1f}")
    for name, key in (("knowledge stage", "knowledge_stage"), ("language stage", "train")):
        if stage := info.get(key):
            t.add_row(f"{name}: steps, final loss", f"{stage['steps']}, {stage['final_loss']:.3f}")
    at_chance = set(info.get("at_chance") or [])
    for k, v in (info.get("scores") or {}).items():
        flag = "  (at chance: retention not measurable here)" if k.split(" ")[0] in at_chance else ""
        t.add_row(f"score: {k}", f"{v:.1f}{flag}")
    out.print(t)


@app.command()
def table(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    format: str = typer.Option("rich", help="rich | md | latex | csv"),
    wide: bool = typer.Option(False, help="rich: every column in one table (CEM, F1, categories) instead of two "
                                          "tables that fit 120 columns"),
    std: bool = typer.Option(False, help="latex: K.A, K.R, Avg ... as mean ± std over seeds"),
) -> None:
    """Print the leaderboard of a stored run (reads only stored results)."""
    from .report import categories, categories_rich, leaderboard, to_latex, to_markdown, to_rich

    t = leaderboard(run_dir)
    if format == "rich":
        out.print(to_rich(t, str(run_dir), wide=wide))
        if not wide and categories(t):
            out.print(categories_rich(t))
    elif format == "md":
        print(to_markdown(t), end="")
    elif format == "latex":
        print(to_latex(t, std=std), end="")
    elif format == "csv":
        print(t.to_csv(index=False, float_format="%.4f"), end="")
    else:
        raise UnknownNameError("format", format, ["rich", "md", "latex", "csv"])


@app.command()
def compare(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    baseline: str = typer.Option("lora", help="method to compare against"),
    method: Optional[str] = typer.Option(None, help="only this method"),
    format: str = typer.Option("rich", help="rich | md | csv"),
) -> None:
    """Paired per-sample comparison against a baseline, per task (mean difference, bootstrap CI, p)."""
    from .report import compare as compare_runs
    from .report import compare_definitions, compare_table, to_markdown

    if format not in ("rich", "md", "csv"):
        raise UnknownNameError("format", format, ["rich", "md", "csv"])
    rows = compare_runs(run_dir, baseline, method)
    if not rows:
        raise KoreBenchError(f"nothing to compare with {baseline!r} in {run_dir}")
    notes = compare_definitions(rows)
    if format == "md":
        print(to_markdown(compare_table(rows)) + "\n" + "".join(f"- {line}\n" for line in notes), end="")
        return
    if format == "csv":
        print(compare_table(rows).to_csv(index=False), end="")
        for line in notes:  # the data stays machine-readable on stdout
            console.print(line, highlight=False)
        return
    t = Table("method", "suite", "task", "metric", "n", "seeds", "Δ (×100)", "95% CI", "p",
              title=f"paired comparison against {baseline}")
    for r in rows:
        t.add_row(r["method"], r["suite"], r["task"], r["metric"], str(r["n"]), str(r["seeds"]),
                  f"{100 * r['mean_diff']:+.2f}", f"[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]",
                  f"{r['p_value']:.3g}")
    out.print(t)
    for line in notes:
        out.print(line, highlight=False)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    baseline: Optional[str] = typer.Option(None, help="method of the paired comparison (default: lora if present)"),
    output: Optional[Path] = typer.Option(None, help="HTML file (default RUN/report.html)"),
) -> None:
    """One self-contained HTML file: leaderboard, categories, paired comparison, plots, provenance."""
    from .htmlreport import write_html_report

    out.print(f"report: {write_html_report(run_dir, baseline, output)}")


@app.command()
def score(
    benchmark: str = typer.Argument(..., help="VLMEvalKit benchmark name, e.g. MME, MMBench_DEV_EN, POPE"),
    predictions: Path = typer.Argument(..., help="prediction file: the benchmark TSV plus a 'prediction' column"),
    output: Optional[Path] = typer.Option(None, help="also write the metrics to this JSON file"),
    judge: JudgeOpt = None,
    data: Optional[Path] = typer.Option(None, help="the LMUData folder holding the benchmark TSV: the images "
                                                   "MIA-Bench's judge sees, when the prediction file has none"),
) -> None:
    """Re-score stored predictions as VLMEvalKit does: exact matching, or with --judge its LLM judge."""
    from .vlmeval import parse_judge
    from .vlmeval.task import score_file

    for t in score_file(benchmark, predictions, output, parse_judge(judge) if judge else None, data)[1]:
        out.print(t)


def main() -> None:
    from .progress import quiet_libraries

    quiet_libraries()
    try:
        app()
    except KoreBenchError as e:
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)  # one line: a command in it can be copied
        sys.exit(2)


if __name__ == "__main__":
    main()
