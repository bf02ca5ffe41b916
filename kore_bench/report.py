"""Tables from stored results only: tidy scores, the leaderboard (md/csv/tex/rich), the plot.

Leaderboard contract (``leaderboard.csv``): one row per method including ``base``; columns
``method, CEM, F1, K.A, K.R, Avg`` (×100, mean over seeds) with ``*_std`` columns, then one
column per retention category, ``ΔK.R`` (retention change against base), ``K.R at chance`` (the
retention tasks the base scores within the seeded binomial interval of chance, or "-"), ``trainable_params``,
``train_seconds``, ``seeds`` and ``status``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Collection

import pandas as pd
from rich.console import Console
from rich.table import Table

from .errors import KoreBenchError
from .evaluate.metrics import ADAPTATION_METRICS, HEADLINE, check_retention_metric, headline, within_chance
from .store import atomic_write_text, read_result, recompute_hint, unit_of, verified_result

MAIN = list(HEADLINE)


def tidy_scores(run: Path, skip: Collection[str] = ()) -> pd.DataFrame:
    """One row per (method, seed, suite, task, metric) from every unit's result.json; ``skip``:
    units (``method/seedK/suite``) left out (see :func:`unreadable_units`)."""
    rows = []
    for path in result_files(run):
        if unit_of(path) in skip:
            continue
        r = verified_result(path)
        u = r["unit"]
        for task, t in r["tasks"].items():
            for metric, value in t["metrics"].items():
                rows.append({
                    "method": u["method"], "seed": u["seed"], "suite": u["suite"], "role": r["role"],
                    "task": task, "category": t["category"], "metric": metric, "primary": metric == t["primary_metric"],
                    "value": value, "higher_is_better": t["higher_is_better"][metric], "n": t["n"],
                    "split": r.get("split", "test"), "limited": r.get("limited", False),
                    "chance": t.get("chance"),
                })
    return pd.DataFrame(rows, columns=["method", "seed", "suite", "role", "task", "category", "metric",
                                       "primary", "value", "higher_is_better", "n", "split", "limited", "chance"])


NOT_MEASURABLE = "retention not measurable here"


def chance_level_tasks(scores: pd.DataFrame, seed: int = 0) -> list[str]:
    """Retention tasks on which the base's primary score (mean over seeds) lies within the seeded
    binomial interval of the task's chance level: they cannot show forgetting (NOT_MEASURABLE)."""
    rows = scores[(scores.method == "base") & (scores.role == "retention") & scores.primary]
    out = []
    for task, g in rows.groupby("task", sort=True):
        chance = g["chance"].dropna()
        if len(chance) and within_chance(g["value"].mean() / 100, int(g["n"].iloc[0]), float(chance.iloc[0]),
                                         seed=seed):
            out.append(task)
    return out


def unreadable_units(run: Path) -> dict[str, str]:
    """``method/seedK/suite`` → why, for every stored unit result of ``run`` that fails verification."""
    out = {}
    for path in sorted(Path(run).glob("*/seed*/*/result.json")):
        record, problem = read_result(path)
        if record is None:
            out[unit_of(path)] = problem
    return out


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
    """CEM, F1, K.A, categories, K.R and Avg for every (method, seed) (:func:`~.evaluate.metrics.headline`).

    A retention primary metric that is lower-is-better is refused before anything is averaged."""
    out = []
    for (method, seed), g in scores.groupby(["method", "seed"], sort=False):
        new = g[g.role == "new_knowledge"]
        ret = g[(g.role == "retention") & g.primary]
        for _, r in ret[~ret.higher_is_better.astype(bool)].iterrows():
            check_retention_metric(r.metric, False, f"{method} seed {seed}, suite {r.suite!r}, task {r.task!r}")
        cats = ret.groupby("category", sort=False).value.mean()
        # A category not scored (NaN: an LLM-judged benchmark without a judge) leaves K.R unscored too.
        parts = headline({m: new[new.metric == m].value.mean() for m in ADAPTATION_METRICS}, cats.to_dict())
        out.append({"method": method, "seed": seed, **{k: parts[k] for k in ("CEM", "F1", "K.A")},
                    **cats.to_dict(), "K.R": parts["K.R"], "Avg": parts["Avg"]})
    return pd.DataFrame(out)


def leaderboard(run: Path, skip: Collection[str] = ()) -> pd.DataFrame:
    """The contract table (see module docstring); ``skip``: unreadable units left out, each named in
    its method's status with the command that recomputes it."""
    run = Path(run)
    scores = tidy_scores(run, skip)
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
    every_invocation = [m for h in manifest.get("history", []) for m in (h.get("config") or {}).get("methods", [])]
    order = list(dict.fromkeys(["base", *every_invocation, *manifest.get("config", {}).get("methods", [])]))
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
        bad = [u for u in skip if u.split("/")[0] == method]
        if bad and not row["status"].startswith("failed"):
            row["status"] = (f"unreadable: {', '.join(u.split('/', 1)[1] for u in sorted(bad))} left out "
                             f"(recompute: {recompute_hint(run, sorted(bad))})")
        elif method in incomplete and not row["status"].startswith("failed"):
            row["status"] = "incomplete: " + "; ".join(incomplete[method])
        rows.append(row)
    table = pd.DataFrame(rows)
    base_kr = table.loc[table.method == "base", "K.R"]
    table.insert(table.columns.get_loc("Avg_std") + 1, "ΔK.R",
                 table["K.R"] - (base_kr.iloc[0] if len(base_kr) else math.nan))
    flagged = chance_level_tasks(scores) if len(scores) else []
    table.insert(table.columns.get_loc("ΔK.R") + 1, "K.R at chance", ", ".join(flagged) or "-")
    ordered = ["method"] + [c for m in MAIN for c in (m, f"{m}_std")] + ["ΔK.R", "K.R at chance"] + categories
    table = table[ordered + ["trainable_params", "train_seconds", "seeds", "status"]].copy()
    # header lines every rendering shows: a reduced test set, and what augmented each method's data
    table.attrs["test_note"] = reduced_test_note(manifest) if splits == ["test"] else None
    table.attrs["notes"] = augmentation_notes(info, methods)
    return table


def reduced_test_note(manifest: dict) -> str | None:
    """"test = published set minus 10 % dev hold-out (seed 0): evoke/evoke" when a task of the run
    had a seeded dev hold-out from its test data (the manifest's ``splits``), else None."""
    held: dict[tuple[float, int], list[str]] = {}
    for suite, tasks in (manifest.get("splits") or {}).items():
        for task, info in (tasks or {}).items():
            if isinstance(info, dict) and info.get("dev_source") == "held out":
                held.setdefault((float(info.get("dev_share", 0)), int(info.get("dev_seed", 0))), []).append(
                    f"{suite}/{task}")
    if not held:
        return None
    return "; ".join(f"test = published set minus {100 * share:g} % dev hold-out (seed {seed}): {', '.join(tasks)}"
                     for (share, seed), tasks in sorted(held.items()))


def augmentation_notes(info: dict[str, list[dict]], methods: list[str]) -> list[str]:
    """One line per method whose training data was augmented: which augmenter ran (and who chose it)."""
    notes = []
    for method in methods:
        ran = []
        for ti in info.get(method, []):
            aug = ti.get("augmentation")
            if isinstance(aug, dict):
                label = str(aug.get("augmenter"))
                details = [f"chosen by {aug['requested']}"] if aug.get("requested") not in (None, aug.get("augmenter")) else []
                details += [aug["scope"]] if aug.get("scope") else []  # a method that augments only part of its data
                if details:
                    label += f" ({'; '.join(details)})"
                ran.append(label)
        if ran:
            notes.append(f"{method}: training data augmented by {', '.join(dict.fromkeys(ran))}")
    return notes


def header_lines(table: pd.DataFrame) -> list[str]:
    """The leaderboard's header lines: the reduced-test note first, then the augmentation notes."""
    note = table.attrs.get("test_note")
    return ([note] if note else []) + list(table.attrs.get("notes") or [])


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
    header = header_lines(table)
    lines = [f"> {line}" for line in header] + ([""] if header else [])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [_fmt(r[c], r.get(f"{c}_std")) if c in MAIN else _fmt(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LATEX_CAPTION = (
    "Knowledge injection results ({seeds}). K.A: adaptation, the mean of CEM and F1 on the new "
    "knowledge; K.R: retention, the mean over the retention categories; Avg $=$ (K.A $+$ K.R)$/2$; "
    "$\\Delta$K.R: retention change against the un-injected base. All $\\times 100${std}. Per column, "
    "the best method is in bold and the second underlined (base excluded)."
)


def to_latex(table: pd.DataFrame, std: bool = False, caption: str | None = None) -> str:
    """A booktabs ``table`` with a caption; per score column the best value bold, the second
    underlined (base excluded); ``std``: K.A, K.R, Avg ... as mean $\\pm$ std over seeds."""
    score_cols = [c for c in table.columns if c not in ("method", "trainable_params", "train_seconds", "seeds", "status",
                                                        "K.R at chance")
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
    seeds = sorted({int(n) for n in table.loc[table.method != "base", "seeds"] if n}) if "seeds" in table else []
    seed_text = ("mean over " + "/".join(map(str, seeds)) + (" seed" if seeds == [1] else " seeds")) if seeds else "no seeds"
    text = caption or LATEX_CAPTION.format(seeds=seed_text, std=", mean $\\pm$ std over seeds" if std else "")
    if table.attrs.get("test_note"):
        text += " Scores on a reduced test set: " + esc(table.attrs["test_note"]) + "."
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(score_cols) + 1) + "}", r"\toprule",
             " & ".join(["Method", *map(esc, score_cols), "\\#Params"]) + r" \\", r"\midrule"]
    for i, r in table.iterrows():
        cells = [esc(str(r.method))]
        for c in score_cols:
            v = r[c]
            s = "--" if isinstance(v, float) and math.isnan(v) else f"{v:.2f}"
            mark = marks.get((i, c))
            s = r"\textbf{" + s + "}" if mark == "best" else r"\underline{" + s + "}" if mark == "second" else s
            sd = r.get(f"{c}_std")
            if std and c in MAIN and isinstance(sd, float) and not math.isnan(sd) and sd > 0:
                s += r" {\scriptsize $\pm$ " + f"{sd:.2f}" + "}"
            cells.append(s)
        cells.append(_params(r.trainable_params))
        lines.append(" & ".join(cells) + r" \\")
        if r.method == "base":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + text + "}", r"\label{tab:kore-bench}",
              r"\end{table}"]
    flagged = table["K.R at chance"].iloc[0] if "K.R at chance" in table and len(table) else "-"
    if flagged != "-":
        lines.append(f"% {NOT_MEASURABLE} (base within the binomial interval of chance): {esc(flagged)}")
    lines += [f"% {line}" for line in table.attrs.get("notes") or []]
    return "\n".join(lines) + "\n"


def _params(n: Any) -> str:
    n = int(n or 0)
    return "--" if n == 0 else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


COMPACT = ["K.A", "K.R", "Avg"]  # each followed by its std in a dim column


def to_rich(table: pd.DataFrame, title: str = "", wide: bool = False) -> Table:
    """The leaderboard for a terminal: K.A, K.R, Avg (std in dim columns), ΔK.R, parameters, time;
    ``wide``: every column (CEM, F1 and the categories too) in one table."""
    if wide:
        return _rich_wide(table, title)
    caption = "×100, mean over seeds; ± : std over seeds; ΔK.R: against base"
    flagged = table["K.R at chance"].iloc[0] if "K.R at chance" in table and len(table) else "-"
    if flagged != "-":
        caption += f"\nat chance on the base ({NOT_MEASURABLE}): {flagged}"
    caption += "".join(f"\n{line}" for line in table.attrs.get("notes") or [])
    t = Table(title=_titled(title, table), caption=caption, caption_justify="left")
    t.add_column("method", justify="left", no_wrap=True)
    for c in COMPACT:
        t.add_column(c, justify="right")
        t.add_column("±", justify="right", style="dim")
    for c in ("ΔK.R", "params", "train", "seeds"):
        t.add_column(c, justify="right")
    for _, r in table.iterrows():
        cells = [str(r.method)]
        for c in COMPACT:
            sd = r.get(f"{c}_std")
            cells += [_fmt(r[c]), _fmt(sd) if isinstance(sd, float) and not math.isnan(sd) and sd > 0 else ""]
        cells += [_fmt_signed(r["ΔK.R"]), _params(r.trainable_params), f"{r.train_seconds:.0f} s", str(r.seeds)]
        t.add_row(*cells, style="red" if str(r.status).startswith("failed") else None)
    return t


def categories_rich(table: pd.DataFrame, title: str = "retention per category (×100, mean over seeds)") -> Table:
    """The second terminal table: retention per category, one column each."""
    cats = categories(table)
    t = Table(title=title)
    t.add_column("method", justify="left", no_wrap=True)
    for c in cats:
        t.add_column(c.replace("_", " "), justify="right")
    for _, r in table.iterrows():
        t.add_row(str(r.method), *[_fmt(r[c]) for c in cats])
    return t


def categories(table: pd.DataFrame) -> list[str]:
    """The leaderboard's retention-category columns (between ΔK.R and the bookkeeping columns)."""
    cols = list(table.columns)
    return [c for c in cols[cols.index("ΔK.R") + 1 : cols.index("trainable_params")] if c != "K.R at chance"]


def _fmt_signed(v: Any) -> str:
    return "—" if not isinstance(v, float) or math.isnan(v) else f"{v:+.2f}"


def _titled(title: str, table: pd.DataFrame) -> str | None:
    """The terminal title with the reduced-test note under it."""
    note = table.attrs.get("test_note")
    return "\n".join(x for x in (title, note) if x) or None


def _rich_wide(table: pd.DataFrame, title: str) -> Table:
    cols = [c for c in table.columns if not c.endswith("_std") and c != "status"]
    notes = table.attrs.get("notes") or []
    t = Table(title=_titled(title, table), caption="\n".join(notes) or None, caption_justify="left")
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


def write_reports(run: Path, console: Console | None = None, skip: Collection[str] = ()) -> pd.DataFrame:
    """scores.csv, leaderboard.{csv,md,tex} and the adaptation/retention plot; prints the table.
    ``skip``: units left out (unreadable ones a run did not recompute; their rows say so)."""
    run = Path(run)
    scores = tidy_scores(run, skip)
    atomic_write_text(run / "scores.csv", scores.to_csv(index=False))
    table = leaderboard(run, skip)
    atomic_write_text(run / "leaderboard.csv", table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(run / "leaderboard.md", to_markdown(table))
    atomic_write_text(run / "leaderboard.tex", to_latex(table))
    _plot(table, run / "adaptation_retention.png", f"Adaptation vs. retention — {run.name}")
    if console is not None:
        split = set(scores.split)
        note = " (dev split: for selection, not a test score)" if split == {"dev"} else ""
        console.print(to_rich(table, title=f"kore-bench — {run}{note}"))
        if categories(table):
            console.print(categories_rich(table))
        failed = table[table.status.str.startswith("failed")]
        for _, r in failed.iterrows():
            console.print(f"[red]{r.method}: {r.status}[/]")
    return table


def _plot(table: pd.DataFrame, path: Path, title: str = "") -> None:
    """Adaptation against retention: one colour per method (as in every plot), ±1 std error bars
    over seeds, dotted lines of equal Avg, the legend outside the axes so no label covers a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotstyle import iso_avg_lines, method_colour

    ok = table.dropna(subset=["K.A", "K.R"])
    if ok.empty:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for _, r in ok.iterrows():
        seeds = int(r.seeds) if "seeds" in r and r.seeds == r.seeds else 0
        xerr, yerr = _nz(r.get("K.A_std")), _nz(r.get("K.R_std"))
        marker = "*" if r.method == "base" else "o"
        label = f"{r.method} (n={seeds} seed{'s' if seeds != 1 else ''})"
        ax.errorbar(r["K.A"], r["K.R"], xerr=xerr, yerr=yerr, fmt=marker, color=method_colour(r.method),
                    markersize=11 if marker == "*" else 6, capsize=3, elinewidth=1, label=label, zorder=3)
    pad_x = max(2.0, 0.1 * (ok["K.A"].max() - ok["K.A"].min()))
    pad_y = max(2.0, 0.1 * (ok["K.R"].max() - ok["K.R"].min()))
    ax.set_xlim(max(0.0, ok["K.A"].min() - pad_x - ok["K.A_std"].fillna(0).max()),
                min(100.0, ok["K.A"].max() + pad_x + ok["K.A_std"].fillna(0).max()))
    ax.set_ylim(max(0.0, ok["K.R"].min() - pad_y - ok["K.R_std"].fillna(0).max()),
                min(100.0, ok["K.R"].max() + pad_y + ok["K.R_std"].fillna(0).max()))
    iso_avg_lines(ax)
    ax.plot([], [], linestyle=":", color="#b0b0b0", label="equal Avg = (K.A + K.R) / 2")
    ax.errorbar([], [], xerr=[], yerr=[], fmt="none", color="black", capsize=3, label="error bars: ±1 std over seeds")
    ax.set_xlabel("K.A: adaptation to new knowledge (score ×100)")
    ax.set_ylabel("K.R: retention of old knowledge (score ×100)")
    ax.set_title(title or "Adaptation vs. retention (mean over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _nz(v: Any) -> float:
    return float(v) if isinstance(v, float) and not math.isnan(v) else 0.0


def compare(run: Path, baseline: str, method: str | None = None) -> list[dict[str, Any]]:
    """Paired per-sample comparison of each method against ``baseline``, per task and metric.

    Samples are paired on (seed, task, id); a side evaluated once (``base``, seed-independent)
    against a side with several seeds pairs with each of those seeds, whichever side it is on, so
    the base row has as many pairs as every other row. See :func:`compare_definitions`.
    """
    from .evaluate.metrics import paired_test

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
        vals, base_vals = _pair_once_evaluated(vals, base_vals, m == ONCE_EVALUATED, baseline == ONCE_EVALUATED)
        keys = sorted(set(vals) & set(base_vals))
        if keys:
            stats = paired_test([vals[k] for k in keys], [base_vals[k] for k in keys])
            out.append({"method": m, "baseline": baseline, "suite": suite, "task": task, "metric": metric,
                        "n": len(keys), "seeds": len({k[0] for k in keys}), **stats})
    return out


ONCE_EVALUATED = "base"  # the seed-independent reference row: evaluated once, whatever the seeds


def _pair_once_evaluated(a: dict[tuple[int, str], float], b: dict[tuple[int, str], float], a_once: bool,
                         b_once: bool) -> tuple[dict[tuple[int, str], float], dict[tuple[int, str], float]]:
    """A seed-independent side (evaluated once) is repeated for each seed of the other side;
    any other pair of methods is paired on the seeds both have."""
    seeds_a, seeds_b = {k[0] for k in a}, {k[0] for k in b}
    if b_once and len(seeds_b) == 1:
        by_item = {k[1]: v for k, v in b.items()}
        b = {k: by_item[k[1]] for k in a if k[1] in by_item}
    elif a_once and len(seeds_a) == 1:
        by_item = {k[1]: v for k, v in a.items()}
        a = {k: by_item[k[1]] for k in b if k[1] in by_item}
    return a, b


def compare_definitions(rows: list[dict[str, Any]]) -> list[str]:
    """What ``compare``'s columns mean, printed with every comparison."""
    from .evaluate.metrics import _EXACT_MAX_N

    baseline = rows[0]["baseline"] if rows else "the baseline"
    methods = sorted({r["p_method"] for r in rows if "p_method" in r})
    lines = [
        f"Δ = method − {baseline}: the mean over paired samples of the per-sample score difference, ×100 "
        "(percentage points); > 0: the method scores higher.",
        "95% CI: paired percentile bootstrap of that mean (10,000 resamples of the pairs, seed 0).",
        "p: two-sided paired sign-flip permutation test of the mean difference (exact over all sign patterns "
        f"with at most {_EXACT_MAX_N} non-zero differences, else 10,000 random flips"
        + (f"; used here: {', '.join(methods)}" if methods else "") + ").",
        "n: paired samples = test items × seeds both sides have, paired on (seed, item). The base model, "
        "evaluated once (it is not trained, so seed-independent), is paired with each seed of the other "
        "side, so its n equals the other rows'; 'seeds' says how many seeds the pairs span.",
    ]
    return lines


def compare_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``compare``'s rows as a table: differences and intervals ×100, rounded for reading."""
    t = pd.DataFrame(rows)
    for col in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high"):
        t[col] = (100 * t[col]).round(2)
    t["p_value"] = t["p_value"].map(lambda p: f"{p:.3g}")
    return t[["method", "baseline", "suite", "task", "metric", "n", "seeds", "mean_a", "mean_b",
              "mean_diff", "ci_low", "ci_high", "p_value"]]
