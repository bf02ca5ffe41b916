"""``kore-bench tune``: every method gets the same number of trials over its own search space,
scored on the dev split by dev Avg; the winners are stored with their provenance.

Layout of a tune directory::

    DIR/tuned.json                    {method: {settings, dev_avg, trials: [...], provenance}}
    DIR/trials/<method>/<k>/          trial k: an ordinary run directory (split "dev"), resumable
    DIR/trials/base/                  the un-injected base on the dev split (the reference row)
    DIR/manifest.json                 what failed in the trials ("failed", "unreadable"): exit code 1

A trial is :func:`kore_bench.runner.run` with ``split="dev"`` and the trial's settings as
``method_args``, so the runner's fingerprints make a repeated ``tune`` skip finished trials.
``kore-bench run --tuned DIR`` applies the winners (explicit ``--set`` values win) and records
where they came from in its manifest. Dev scores are never part of a test leaderboard.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import KoreBenchError
from ..registry import load_methods
from ..runner import REFERENCE_METHOD, run
from ..search import Space, check_space, design, load_space_file, merge_space, space_to_dict
from ..store import RunDir, atomic_write_json, environment, read_json
from .trials import record_failures, run_status, score_run, trial_template
from .tuned import TUNED

DESIGN = "centred Latin hypercube (kore_bench.search.design)"


def method_spaces(methods: list[str], space_file: Path | None = None, fixed: dict[str, dict] | None = None,
                  include_paths: list[Path] = ()) -> dict[str, Space]:
    """Each method's search space: its declared one, overridden by ``space_file``, minus the
    settings fixed with ``--set``. A method with nothing left to search is an error."""
    registry = load_methods(include_paths)
    overrides = load_space_file(space_file) if space_file else {}
    for name in overrides:
        registry.get(name)  # a typo in the file is an error
    spaces = {}
    for name in methods:
        cls = registry.get(name)
        space = check_space(merge_space(cls.space(), overrides.get(name)), cls.Config, name)
        space = {k: p for k, p in space.items() if k not in (fixed or {}).get(name, {})}
        if not space:
            raise KoreBenchError(f"method {name!r} has nothing to tune (empty search space"
                                 f"{' after --set' if (fixed or {}).get(name) else ''})")
        spaces[name] = space
    return spaces


def tune(methods: list[str], budget: int, output: Path, *, space_file: Path | None = None, seed: int = 0,
         console: Console | None = None, **run_options: Any) -> Path:
    """Tune ``methods`` with ``budget`` trials each on the dev split; returns ``output``.

    ``run_options`` are :class:`~kore_bench.runner.RunConfig` fields (world, arch, seeds, limit,
    method_args, ...) shared by every trial.
    """
    console = console or Console(stderr=True)
    output = Path(output)
    methods, template = trial_template(
        "tune", methods, ("budget", budget), output, "dev", ("tuned",), run_options,
        "nothing to tune: give --methods (the base model has no settings)")
    fixed = template.method_args
    spaces = method_spaces(methods, space_file, fixed, template.include_paths)
    plans = {m: [{**fixed.get(m, {}), **s} for s in design(spaces[m], budget, seed)] for m in methods}
    registry = load_methods(template.include_paths)
    for m, plan in plans.items():  # every setting is checked before anything trains
        for settings in plan:
            registry.get(m).from_overrides(settings)

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    tune_dir = RunDir(output)
    with tune_dir.locked():
        reference_dir = run(dataclasses.replace(template, output=output / "trials" / REFERENCE_METHOD,
                                                reference=True), console)
        reference = score_run(reference_dir, REFERENCE_METHOD)
        manifest = read_json(reference_dir / "manifest.json")
        results: dict[str, Any] = {}
        for m in methods:
            trials = []
            for k, settings in enumerate(plans[m]):
                console.print(f"[bold]tune {m}[/] trial {k + 1}/{budget}: {settings}")
                trial_dir = run(dataclasses.replace(template, methods=[m], output=output / "trials" / m / str(k),
                                                    method_args={**fixed, m: settings}), console)
                trials.append({"trial": k, "settings": settings, "dev": score_run(trial_dir, m),
                               "status": run_status(trial_dir, m), "dir": str(trial_dir.relative_to(output))})
            results[m] = _winner(trials) | {
                "trials": trials,
                "provenance": {
                    "budget": budget, "space": space_to_dict(spaces[m]), "fixed": fixed.get(m, {}),
                    "design": DESIGN, "seed": seed, "selected_by": "dev Avg (mean over seeds)",
                    "split": "dev", "dev_share": template.dev_share, "dev_seed": template.dev_seed,
                    "dev_reference": reference, "seeds": template.seeds, "world": template.world,
                    "arch": template.arch, "model": template.model, "new": template.new,
                    "retention": template.retention, "limit": template.limit,
                    "base_fingerprint": manifest["base"]["fingerprint"],
                    "data_fingerprint": manifest.get("data_fingerprint"), "splits": manifest.get("splits"),
                    "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "space_file": str(space_file) if space_file else None, **environment(),
                },
            }
        path = output / TUNED
        stored = read_json(path) if path.exists() else {}
        atomic_write_json(path, {**stored, **results})
        record_failures(tune_dir, [reference_dir, *(output / t["dir"] for r in results.values() for t in r["trials"])])
    console.print(tuned_table(results, reference))
    for m, r in results.items():
        edge = at_edge(r, spaces[m])
        if edge:
            console.print(f"[yellow]note:[/] {m}'s winner is at the end of the tried values of {', '.join(edge)}: "
                          "the optimum may lie outside the search space (widen it with --space)")
    for m, r in results.items():
        if r.get("dev_ka") is not None and r["dev_ka"] <= reference["K.A"]:
            console.print(f"[yellow]note:[/] {m}'s best dev Avg is at a setting that learned nothing beyond the base "
                          f"(dev K.A {r['dev_ka']:.2f} ≤ {reference['K.A']:.2f}): every setting that adapted lost more "
                          "K.R than it gained K.A; a wider range or more steps may be needed, and `kore-bench "
                          "frontier` shows the whole trade-off")
    return output


def _winner(trials: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [t for t in trials if t["status"] == "ok" and math.isfinite(t["dev"]["Avg"])]
    if not scored:
        return {"settings": None, "dev_avg": None, "error": "every trial failed"}
    best = max(scored, key=lambda t: (t["dev"]["Avg"], -t["trial"]))  # ties: the earlier trial
    return {"settings": best["settings"], "trial": best["trial"], "dev_avg": best["dev"]["Avg"],
            "dev_ka": best["dev"]["K.A"], "dev_kr": best["dev"]["K.R"]}


def at_edge(entry: dict[str, Any], space: Space) -> list[str]:
    """Range settings whose winning value is the smallest or largest tried (with 3+ distinct values
    tried, :func:`kore_bench.search.at_range_edge`): the optimum may lie outside the searched range."""
    from ..search import Choice, at_range_edge

    trials = [t for t in entry.get("trials", []) if t["status"] == "ok"]
    if entry.get("settings") is None:
        return []
    return [key for key, param in space.items() if not isinstance(param, Choice)
            and at_range_edge(entry["settings"][key], [t["settings"][key] for t in trials])]


def tuned_table(results: dict[str, Any], reference: dict[str, float] | None = None) -> Table:
    t = Table("method", "trial", "settings", "dev K.A", "dev K.R", "dev Avg", title="tuning (dev split)")
    if reference:
        t.add_row("base", "—", "—", *(f"{reference[k]:.2f}" for k in ("K.A", "K.R", "Avg")), style="dim")
    for m, r in results.items():
        for trial in r["trials"]:
            won = trial["trial"] == r.get("trial")
            d = trial["dev"]
            scores = [f"{d[k]:.2f}" if math.isfinite(d[k]) else "—" for k in ("K.A", "K.R", "Avg")]
            settings = ", ".join(f"{k}={v}" for k, v in trial["settings"].items())
            t.add_row(m, str(trial["trial"]) + (" *" if won else ""), settings, *scores,
                      style="bold" if won else ("red" if trial["status"] != "ok" else None))
    return t
