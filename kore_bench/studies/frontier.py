"""``kore-bench frontier``: each method swept along its step size (or another setting), K.A and K.R
at every point, the curves with their Pareto front, and a table that compares methods at equal
adaptation.

Layout of a frontier directory::

    DIR/frontier.csv                  one row per point: method, param, value, K.A, K.R, Avg, pareto ...
    DIR/frontier.png, frontier.svg    K.R against K.A, one line per method, the Pareto front, the base
    DIR/frontier_summary.{csv,md}     best Avg per method and K.R at matched K.A (interpolated)
    DIR/frontier.json                 what was swept, levels, provenance
    DIR/points/<method>/<value>/      each point: an ordinary run directory (resumable)
    DIR/points/base/                  the un-injected base (the reference marker)
    DIR/manifest.json                 what failed at the points ("failed", "unreadable"): exit code 1

The sweep is a reported curve, not a selection, so it is scored on the test split by default.
Points are ``K`` values spread over the parameter's search-space range, geometrically for a
log-uniform range (both ends included).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from ..errors import KoreBenchError
from ..registry import load_methods
from ..runner import REFERENCE_METHOD, run
from ..search import LogUniform, Param, at_range_edge
from ..store import RunDir, atomic_write_json, atomic_write_text, environment, read_json
from .trials import record_failures, run_status, score_run, trial_template

COLUMNS = ["method", "param", "value", "CEM", "F1", "K.A", "K.R", "Avg", "pareto", "status", "dir"]


def sweep_param(method_cls, param: str, value_range: tuple[float, float] | None) -> Param:
    """The range a method is swept over: ``value_range`` (log-spaced), else its search space's."""
    fields = {f.name: f for f in dataclasses.fields(method_cls.Config)}
    if param not in fields:
        from ..errors import UnknownNameError

        raise UnknownNameError(f"setting of method {method_cls.name!r}", param, fields)
    if value_range is not None:
        default = fields[param].default
        integer = param == "steps" or (isinstance(default, int) and not isinstance(default, bool))
        return LogUniform(*value_range, integer=integer)
    space = method_cls.space()
    if param not in space:
        raise KoreBenchError(f"method {method_cls.name!r} declares no range for {param!r} "
                             f"(its search space: {', '.join(space) or 'empty'}); give --range LOW,HIGH")
    return space[param]


def value_label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def frontier(methods: list[str], points: int, output: Path, *, param: str = "lr",
             value_range: tuple[float, float] | None = None, levels: list[float] | None = None,
             split: str = "test", console: Console | None = None, **run_options: Any) -> Path:
    """Sweep ``methods`` over ``points`` values of ``param``; returns ``output``.

    ``run_options`` are :class:`~kore_bench.runner.RunConfig` fields shared by every point
    (world, arch, seeds, limit, method_args, tuned, ...); the swept value wins over them.
    """
    console = console or Console(stderr=True)
    output = Path(output)
    methods, template = trial_template("frontier", methods, ("points", points), output, split, (), run_options,
                                       "nothing to sweep: give --methods")
    registry = load_methods(template.include_paths)
    ranges = {m: sweep_param(registry.get(m), param, value_range) for m in methods}
    values = {m: ranges[m].grid(points) for m in methods}
    for m in methods:
        for v in values[m]:
            registry.get(m).from_overrides({**template.method_args.get(m, {}), param: v})

    rows: list[dict[str, Any]] = []
    study = RunDir(output)
    with study.locked():
        base_dir = run(dataclasses.replace(template, output=output / "points" / REFERENCE_METHOD, reference=True),
                       console)
        manifest = read_json(base_dir / "manifest.json")
        rows.append({"method": REFERENCE_METHOD, "param": None, "value": None, **score_run(base_dir, REFERENCE_METHOD),
                     "status": run_status(base_dir, REFERENCE_METHOD), "dir": str(base_dir.relative_to(output))})
        for m in methods:
            for v in values[m]:
                console.print(f"[bold]frontier {m}[/] {param}={value_label(v)}")
                args = {**template.method_args, m: {**template.method_args.get(m, {}), param: v}}
                point_dir = run(dataclasses.replace(template, methods=[m], method_args=args,
                                                    output=output / "points" / m / value_label(v)), console)
                rows.append({"method": m, "param": param, "value": v, **score_run(point_dir, m),
                             "status": run_status(point_dir, m), "dir": str(point_dir.relative_to(output))})
        table = pd.DataFrame(rows)
        table["pareto"] = pareto_mask(table)
        table = table[COLUMNS]
        atomic_write_text(output / "frontier.csv", table.to_csv(index=False, float_format="%.6g"))
        curves = table[table.method != REFERENCE_METHOD]
        levels = list(levels) if levels else default_levels(curves)
        summary = summarise(table, levels)
        atomic_write_text(output / "frontier_summary.csv", summary.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(output / "frontier_summary.md", summary_markdown(summary, levels))
        plot(table, output / "frontier.png", output / "frontier.svg", param, split)
        atomic_write_json(output / "frontier.json", {
            "methods": methods, "param": param, "points": points,
            "values": {m: values[m] for m in methods},
            "ranges": {m: ranges[m].to_dict() for m in methods}, "split": split, "levels": levels,
            "seeds": template.seeds, "world": template.world, "arch": template.arch, "model": template.model,
            "new": template.new, "retention": template.retention, "limit": template.limit,
            "method_args": template.method_args, "tuned": str(template.tuned) if template.tuned else None,
            "base_fingerprint": manifest["base"]["fingerprint"], "data_fingerprint": manifest.get("data_fingerprint"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **environment(),
        })
        record_failures(study, [output / d for d in table["dir"]])
    console.print(summary_table(summary, levels, f"frontier — {output} ({split} split)"))
    for _, r in summary[summary.best_at_edge.astype(bool)].iterrows():
        console.print(f"[yellow]note:[/] {r.method}'s best Avg is at an end of its swept range ({param}="
                      f"{value_label(r.best_value)}); the optimum may lie beyond it (--range)")
    return output


def pareto_mask(table: pd.DataFrame) -> list[bool]:
    """True for method points no other method point beats on both K.A and K.R (the base excluded)."""
    pts = [(i, r["K.A"], r["K.R"]) for i, r in table.iterrows()
           if r.method != REFERENCE_METHOD and math.isfinite(r["K.A"]) and math.isfinite(r["K.R"])]
    front = set()
    for i, a, b in pts:
        if not any((a2 >= a and b2 >= b) and (a2 > a or b2 > b) for _, a2, b2 in pts):
            front.add(i)
    return [i in front for i in table.index]


def default_levels(curves: pd.DataFrame) -> list[float]:
    """Three K.A levels at 25/50/75 % of the range all curves span together."""
    ka = curves["K.A"].dropna()
    if ka.empty:
        return []
    lo, hi = float(ka.min()), float(ka.max())
    if hi - lo < 1e-9:
        return [round(lo, 1)]
    return [round(lo + f * (hi - lo), 1) for f in (0.25, 0.5, 0.75)]


def kr_at_ka(curve: pd.DataFrame, level: float) -> tuple[float, str]:
    """K.R at K.A = ``level`` by linear interpolation between neighbouring points of a curve
    (ordered by the swept value), on its rising branch: from the smallest value up to the point of
    highest K.A. Past that peak a larger step adapts less (it diverges), so a crossing there says
    nothing about the trade-off at matched adaptation; the best K.R where the branch crosses the
    level more than once. Returns (value, "") or (NaN, why): "not reached" (the curve stays
    below) or "always above" (the branch starts above the level and never comes down to it)."""
    pts = [(a, b) for a, b in zip(curve["K.A"], curve["K.R"]) if math.isfinite(a) and math.isfinite(b)]
    if not pts:
        return math.nan, "no points"
    peak = max(range(len(pts)), key=lambda i: pts[i][0])
    rising = pts[:peak + 1]
    hits = [b for a, b in rising if abs(a - level) < 1e-9]
    for (a1, b1), (a2, b2) in zip(rising, rising[1:]):
        if min(a1, a2) <= level <= max(a1, a2) and a1 != a2:
            hits.append(b1 + (level - a1) / (a2 - a1) * (b2 - b1))
    if hits:
        return max(hits), ""
    return math.nan, "not reached" if level > rising[-1][0] else "always above"


def level_column(level: float) -> str:
    return f"K.R@K.A={level:g}"


def summarise(table: pd.DataFrame, levels: list[float]) -> pd.DataFrame:
    """Per method: points, best Avg (its value, K.A, K.R), K.R at each matched K.A level."""
    rows = []
    for m, g in table.groupby("method", sort=False):
        g = g.sort_values("value") if m != REFERENCE_METHOD else g
        ok = g[g["Avg"].notna()]
        row: dict[str, Any] = {"method": m, "points": len(g)}
        if len(ok):
            best = ok.loc[ok["Avg"].idxmax()]
            row.update({"best_Avg": best["Avg"], "best_value": best["value"], "best_K.A": best["K.A"],
                        "best_K.R": best["K.R"]})
            row["best_at_edge"] = m != REFERENCE_METHOD and at_range_edge(best["value"], list(ok["value"]))
        else:
            row.update({"best_Avg": math.nan, "best_value": None, "best_K.A": math.nan, "best_K.R": math.nan,
                        "best_at_edge": False})
        row["pareto_points"] = int(g["pareto"].sum())
        for level in levels:
            value, why = kr_at_ka(g, level) if m != REFERENCE_METHOD else (math.nan, "reference")
            row[level_column(level)] = value
            row[level_column(level) + " note"] = why
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(row: pd.Series, level: float) -> str:
    value, why = row[level_column(level)], row[level_column(level) + " note"]
    return f"{value:.2f}" if isinstance(value, float) and math.isfinite(value) else (why or "—")


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "—"


def summary_markdown(summary: pd.DataFrame, levels: list[float]) -> str:
    cols = ["method", "points", "best Avg", "at", "K.A", "K.R", "Pareto pts", *map(level_column, levels)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        at = "—" if r.best_value is None or (isinstance(r.best_value, float) and math.isnan(r.best_value)) \
            else value_label(r.best_value) + (" (edge)" if r.best_at_edge else "")
        cells = [str(r.method), str(r.points), _num(r.best_Avg), at, _num(r["best_K.A"]), _num(r["best_K.R"]),
                 str(r.pareto_points), *(_cell(r, lv) for lv in levels)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_table(summary: pd.DataFrame, levels: list[float], title: str) -> Table:
    t = Table(title=title)
    for c in ["method", "points", "best Avg", "at", "K.A", "K.R", "Pareto pts", *map(level_column, levels)]:
        t.add_column(c, justify="left" if c == "method" else "right")
    for line in summary_markdown(summary, levels).splitlines()[2:]:
        t.add_row(*[c.strip() for c in line.strip("|").split("|")])
    return t


def plot(table: pd.DataFrame, png: Path, svg: Path, param: str, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotstyle import iso_avg_lines, method_colour

    fig, ax = plt.subplots(figsize=(7.6, 4.8))
    curves = table[(table.method != REFERENCE_METHOD)].dropna(subset=["K.A", "K.R"])
    for m, g in curves.groupby("method", sort=False):
        g = g.sort_values("value")
        (line,) = ax.plot(g["K.A"], g["K.R"], marker="o", label=m, color=method_colour(str(m)))
        for _, r in (g.iloc[[0, -1]] if len(g) > 1 else g).iterrows():  # the swept range's ends only
            ax.annotate(value_label(r.value), (r["K.A"], r["K.R"]), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color=line.get_color())
    front = curves[curves.pareto].sort_values("K.A")
    if len(front):
        ax.plot(front["K.A"], front["K.R"], linestyle="--", color="black", linewidth=1, zorder=1,
                label="Pareto front")
        ax.scatter(front["K.A"], front["K.R"], s=140, facecolors="none", edgecolors="black", zorder=3)
    base = table[table.method == REFERENCE_METHOD].dropna(subset=["K.A", "K.R"])
    if len(base):
        ax.scatter(base["K.A"], base["K.R"], marker="*", s=160, color=method_colour("base"), zorder=4,
                   label="base")
    iso_avg_lines(ax)
    ax.plot([], [], linestyle=":", color="#b0b0b0", label="equal Avg = (K.A + K.R) / 2")
    ax.set_xlabel("K.A: adaptation to new knowledge (score ×100)")
    ax.set_ylabel("K.R: retention of old knowledge (score ×100)")
    ax.set_title(f"adaptation–retention frontier ({param} sweep, {split} split; {param} labelled at each "
                 "curve's ends)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)  # outside: covers no point
    fig.tight_layout()
    fig.savefig(png, dpi=150)
    fig.savefig(svg)
    plt.close(fig)
