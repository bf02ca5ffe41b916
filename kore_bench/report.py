"""Tables from stored results only: tidy scores, the leaderboard (md/csv/tex/rich), the plot.

Leaderboard contract (``leaderboard.csv``): one row per method including ``base``; columns
``method, CEM, F1, K.A, K.R, Avg`` (×100, mean over seeds) with ``*_std`` columns, then one
column per retention category, ``ΔK.R`` (retention change against base), ``trainable_params``,
``train_seconds``, ``seeds`` and ``status``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from .errors import KoreBenchError
from .store import atomic_write_text, verified_result

MAIN = ["CEM", "F1", "K.A", "K.R", "Avg"]


def tidy_scores(run: Path) -> pd.DataFrame:
    """One row per (method, seed, suite, task, metric) from every unit's result.json."""
    rows = []
    for path in result_files(run):
        r = verified_result(path)
        u = r["unit"]
        for task, t in r["tasks"].items():
            for metric, value in t["metrics"].items():
                rows.append({
                    "method": u["method"], "seed": u["seed"], "suite": u["suite"], "role": r["role"],
                    "task": task, "category": t["category"], "metric": metric, "primary": metric == t["primary_metric"],
                    "value": value, "higher_is_better": t["higher_is_better"][metric], "n": t["n"],
                    "split": r.get("split", "test"), "limited": r.get("limited", False),
                })
    return pd.DataFrame(rows, columns=["method", "seed", "suite", "role", "task", "category", "metric",
                                       "primary", "value", "higher_is_better", "n", "split", "limited"])


def result_files(run: Path) -> list[Path]:
    """The unit results of a run directory; KoreBenchError when ``run`` is not a readable run."""
    run = Path(run)
    if not run.is_dir():
        raise KoreBenchError(f"{run}: no such run directory")
    files = sorted(run.glob("*/seed*/*/result.json"))
    if not files:
        raise KoreBenchError(f"{run}: not a run directory, or no unit has finished yet (no */seed*/*/result.json)")
    return files


def per_seed(scores: pd.DataFrame) -> pd.DataFrame:
    """CEM, F1, K.A, categories, K.R and Avg for every (method, seed)."""
    out = []
    for (method, seed), g in scores.groupby(["method", "seed"], sort=False):
        new = g[g.role == "new_knowledge"]
        row: dict[str, Any] = {"method": method, "seed": seed}
        row["CEM"] = new[new.metric == "cem"].value.mean()
        row["F1"] = new[new.metric == "f1"].value.mean()
        row["K.A"] = (row["CEM"] + row["F1"]) / 2
        ret = g[(g.role == "retention") & g.primary]
        cats = ret.groupby("category", sort=False).value.mean()
        row.update(cats.to_dict())
        row["K.R"] = cats.mean() if len(cats) else math.nan
        row["Avg"] = (row["K.A"] + row["K.R"]) / 2
        out.append(row)
    return pd.DataFrame(out)


def leaderboard(run: Path) -> pd.DataFrame:
    """The contract table (see module docstring)."""
    run = Path(run)
    scores = tidy_scores(run)
    splits = sorted(set(scores.split))
    if len(splits) > 1:
        raise KoreBenchError(f"{run} mixes results of the {' and '.join(splits)} splits; a leaderboard reports "
                             "one split (dev scores select settings, test scores are reported)")
    # a (method, seed) missing one of the run's suites would mix seeds inside one row (K.A from one
    # seed, K.R from two): it is left out of the row, and the row says so
    suites = set(scores.suite)
    have = scores.groupby(["method", "seed"]).suite.agg(set)
    incomplete: dict[str, list[str]] = {}
    for (m, seed), got in have.items():
        if got != suites:
            incomplete.setdefault(m, []).append(f"seed {seed} lacks {', '.join(sorted(suites - got))}")
            scores = scores[~((scores.method == m) & (scores.seed == seed))]
    seeds = per_seed(scores)
    from .store import RunDir

    manifest = RunDir(run).manifest()
    order = list(dict.fromkeys(["base", *manifest.get("config", {}).get("methods", [])]))
    info = _train_info(run)
    categories = [c for c in seeds.columns if c not in ["method", "seed", *MAIN]]
    rows = []
    methods = order + [m for m in seeds.method.unique() if m not in order] if len(seeds) else order
    for method in methods:
        g = seeds[seeds.method == method] if len(seeds) else seeds
        row: dict[str, Any] = {"method": method}
        for col in MAIN:
            vals = g[col].dropna() if col in g else pd.Series(dtype=float)
            row[col] = vals.mean() if len(vals) else math.nan
            row[f"{col}_std"] = vals.std(ddof=1) if len(vals) > 1 else (0.0 if len(vals) else math.nan)
        for c in categories:
            row[c] = g[c].mean() if len(g) else math.nan
        row["seeds"] = len(g)
        ti = info.get(method, [])
        row["trainable_params"] = max((t.get("trainable_params", 0) for t in ti), default=0)
        row["train_seconds"] = sum(t.get("seconds", 0.0) for t in ti) / len(ti) if ti else 0.0
        row["status"] = _status(manifest, method)
        if method in incomplete and not row["status"].startswith("failed"):
            row["status"] = "incomplete: " + "; ".join(incomplete[method])
        rows.append(row)
    table = pd.DataFrame(rows)
    base_kr = table.loc[table.method == "base", "K.R"]
    table.insert(table.columns.get_loc("Avg_std") + 1, "ΔK.R",
                 table["K.R"] - (base_kr.iloc[0] if len(base_kr) else math.nan))
    ordered = ["method"] + [c for m in MAIN for c in (m, f"{m}_std")] + ["ΔK.R"] + categories
    return table[ordered + ["trainable_params", "train_seconds", "seeds", "status"]]


def _train_info(run: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for stamp in sorted(run.glob("*/seed*/artifact/fingerprint.json")):
        from .integrity import read_sealed

        record, _ = read_sealed(stamp)
        ti = record.get("train_info") if record else None
        if ti:
            out.setdefault(stamp.parts[-4], []).append(ti)
    return out


def _status(manifest: dict, method: str) -> str:
    states = [v for k, v in manifest.get("units", {}).items() if k.split("/")[0] == method and k.count("/") == 1]
    failed = [s for s in states if s["status"] == "failed"]
    if failed:
        return "failed: " + failed[0].get("reason", "")[:120]
    return "ok" if states else "—"


def _fmt(v: Any, std: Any = None) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        s = f"{v:.2f}"
        return s + (f" ± {std:.2f}" if std is not None and not math.isnan(std) and std > 0 else "")
    return str(v)


def to_markdown(table: pd.DataFrame) -> str:
    cols = [c for c in table.columns if not c.endswith("_std")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [_fmt(r[c], r.get(f"{c}_std")) if c in MAIN else _fmt(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """booktabs table; per score column the best value bold, the second underlined (base excluded)."""
    score_cols = [c for c in table.columns if c not in ("method", "trainable_params", "train_seconds", "seeds", "status")
                  and not c.endswith("_std")]
    ranked = table[table.method != "base"]
    marks: dict[tuple[int, str], str] = {}
    for c in score_cols:
        vals = ranked[c].dropna().sort_values(ascending=False)
        if len(vals) > 1:
            marks[(vals.index[0], c)] = "best"
            marks[(vals.index[1], c)] = "second"
    def esc(s: str) -> str:
        return s.replace("_", r"\_").replace("%", r"\%").replace("Δ", r"$\Delta$")
    lines = [r"\begin{tabular}{l" + "r" * (len(score_cols) + 1) + "}", r"\toprule",
             " & ".join(["Method", *map(esc, score_cols), "\\#Params"]) + r" \\", r"\midrule"]
    for i, r in table.iterrows():
        cells = [esc(str(r.method))]
        for c in score_cols:
            v = r[c]
            s = "--" if isinstance(v, float) and math.isnan(v) else f"{v:.2f}"
            mark = marks.get((i, c))
            cells.append(r"\textbf{" + s + "}" if mark == "best" else r"\underline{" + s + "}" if mark == "second" else s)
        cells.append(_params(r.trainable_params))
        lines.append(" & ".join(cells) + r" \\")
        if r.method == "base":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _params(n: Any) -> str:
    n = int(n or 0)
    return "--" if n == 0 else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def to_rich(table: pd.DataFrame, title: str = "") -> Table:
    cols = [c for c in table.columns if not c.endswith("_std") and c != "status"]
    t = Table(title=title or None)
    for c in cols:
        t.add_column(c, justify="left" if c == "method" else "right")
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            if c == "trainable_params":
                cells.append(_params(r[c]))
            elif c == "train_seconds":
                cells.append(f"{r[c]:.0f}s")
            else:
                cells.append(_fmt(r[c], r.get(f"{c}_std")) if c in MAIN else _fmt(r[c]))
        style = "red" if str(r.status).startswith("failed") else None
        t.add_row(*cells, style=style)
    return t


def write_reports(run: Path, console: Console | None = None) -> pd.DataFrame:
    """scores.csv, leaderboard.{csv,md,tex} and the adaptation/retention plot; prints the table."""
    run = Path(run)
    scores = tidy_scores(run)
    atomic_write_text(run / "scores.csv", scores.to_csv(index=False))
    table = leaderboard(run)
    atomic_write_text(run / "leaderboard.csv", table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(run / "leaderboard.md", to_markdown(table))
    atomic_write_text(run / "leaderboard.tex", to_latex(table))
    _plot(table, run / "adaptation_retention.png")
    if console is not None:
        split = set(scores.split)
        note = " (dev split: for selection, not a test score)" if split == {"dev"} else ""
        console.print(to_rich(table, title=f"kore-bench — {run}{note}"))
        failed = table[table.status.str.startswith("failed")]
        for _, r in failed.iterrows():
            console.print(f"[red]{r.method}: {r.status}[/]")
    return table


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table.dropna(subset=["K.A", "K.R"])
    if ok.empty:
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.errorbar(ok["K.A"], ok["K.R"], xerr=ok["K.A_std"].fillna(0), yerr=ok["K.R_std"].fillna(0), fmt="o")
    for _, r in ok.iterrows():
        ax.annotate(r.method, (r["K.A"], r["K.R"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("K.A (adaptation)")
    ax.set_ylabel("K.R (retention)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(run: Path, baseline: str, method: str | None = None) -> list[dict[str, Any]]:
    """Paired per-sample comparison of each method against ``baseline``, per task and metric.

    Samples are paired on (seed, task, id); a baseline evaluated once (``base``) pairs with every
    seed of the other method.
    """
    from .metrics import paired_test

    run = Path(run)
    samples: dict[tuple[str, str, str, str], dict[tuple[int, str], float]] = {}
    for result in result_files(run):
        verified_result(result)  # samples.jsonl matches the checksum its result.json sealed
        path = result.parent / "samples.jsonl"
        m, seed, suite = path.parts[-4], int(path.parts[-3][4:]), path.parts[-2]
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            try:
                rec = json.loads(line)
                scores = rec["scores"].items()
                rec["task"], rec["id"]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise KoreBenchError(f"{path}:{lineno}: not a per-sample record") from None
            for metric, v in scores:
                samples.setdefault((m, suite, rec["task"], metric), {})[(seed, rec["id"])] = v
    out = []
    for (m, suite, task, metric), vals in sorted(samples.items()):
        if m == baseline or (method and m != method):
            continue
        base_vals = samples.get((baseline, suite, task, metric))
        if not base_vals:
            continue
        if len({k[0] for k in base_vals}) == 1:  # a seed-independent baseline pairs with every seed
            by_item = {k[1]: v for k, v in base_vals.items()}
            base_vals = {k: by_item[k[1]] for k in vals if k[1] in by_item}
        keys = sorted(set(vals) & set(base_vals))
        if keys:
            stats = paired_test([vals[k] for k in keys], [base_vals[k] for k in keys])
            out.append({"method": m, "baseline": baseline, "suite": suite, "task": task, "metric": metric,
                        "n": len(keys), "seeds": len({k[0] for k in keys}), **stats})
    return out


def compare_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``compare``'s rows as a table: differences and intervals ×100, rounded for reading."""
    t = pd.DataFrame(rows)
    for col in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high"):
        t[col] = (100 * t[col]).round(2)
    t["p_value"] = t["p_value"].map(lambda p: f"{p:.3g}")
    return t[["method", "baseline", "suite", "task", "metric", "n", "seeds", "mean_a", "mean_b",
              "mean_diff", "ci_low", "ci_high", "p_value"]]
