"""``kore-bench report RUN``: one self-contained HTML file with the leaderboard, the per-category
table, the paired comparison, every plot of the run (inlined as base64 PNG) and its provenance
(the manifest's history of invocations, versions, base and data fingerprints).

It reads only stored results and needs nothing but a browser to open: no script, stylesheet or
image is fetched from anywhere (a few lines of inline script only mark each image once decoded,
for the rendering test).
"""
from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import KoreBenchError
from .report import (MAIN, categories, compare, compare_definitions, compare_table, header_lines, leaderboard,
                     tidy_scores, write_reports)
from .store import RunDir, atomic_write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
th { border-bottom: 2px solid #999; } td:first-child, th:first-child { text-align: left; }
td.std { color: #888; font-size: 0.85em; } tr.base td { background: #f6f6f6; }
tr.failed td { color: #b00; } .note { color: #555; font-size: 0.9em; } code { font-size: 0.9em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; } img { max-width: 100%; }
"""
MARK_IMAGES = """
window.addEventListener("load", function () {
  for (const img of document.images) {
    img.setAttribute("data-rendered", img.complete && img.naturalWidth > 0 ?
                     img.naturalWidth + "x" + img.naturalHeight : "no");
  }
});
"""


def write_html_report(run: Path, baseline: str | None = None, output: Path | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``output``) and return its path."""
    run = Path(run)
    if not run.is_dir() or not any(run.glob("*/seed*/*/result.json")):
        raise KoreBenchError(f"{run} holds no results (no */seed*/*/result.json); give a run directory")
    table = write_reports(run)  # refreshes scores.csv, leaderboard.* and adaptation_retention.png
    run_dir = RunDir(run)  # a garbled manifest is bookkeeping: provenance unknown, not a traceback
    manifest = run_dir.manifest() if run_dir.manifest_path.exists() else {}
    methods = [m for m in table.method if m != "base"]
    baseline = baseline or ("lora" if "lora" in methods else methods[0] if methods else None)
    parts = [f"<h1>kore-bench report — {_e(run.name)}</h1>",
             f"<p class=note>Run directory <code>{_e(run.resolve())}</code>; written "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')} from its stored results ({_split(run)} split).</p>",
             "<h2 id=leaderboard>Leaderboard</h2>",
             *[f"<p class=note><b>{_e(line)}</b></p>" for line in header_lines(table)], _leaderboard_html(table),
             "<p class=note>K.A: adaptation, the mean of CEM and F1 on the new knowledge; K.R: retention, the "
             "mean over the retention categories; Avg = (K.A + K.R) / 2; ΔK.R: retention change against the "
             "un-injected base. All ×100, mean over seeds; grey: std over seeds.</p>"]
    if categories(table):
        parts += ["<h2 id=categories>Retention per category</h2>", _categories_html(table)]
    parts += ["<h2 id=comparison>Paired comparison</h2>", _comparison_html(run, baseline)]
    parts += ["<h2 id=plots>Plots</h2>", _plots_html(run)]
    parts += ["<h2 id=provenance>Provenance</h2>", _provenance_html(manifest)]
    doc = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
           f"<title>kore-bench report — {_e(run.name)}</title><style>{STYLE}</style>"
           f"<script>{MARK_IMAGES}</script></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = Path(output) if output else run / "report.html"
    atomic_write_text(path, doc)
    return path


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, signed: bool = False) -> str:
    if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _split(run: Path) -> str:
    return ", ".join(sorted(set(tidy_scores(run).split))) or "no"


def _leaderboard_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{c}</th><th>±</th>" for c in MAIN)
    rows = []
    for _, r in table.iterrows():
        cells = "".join(f"<td>{_num(r[c])}</td><td class=std>{_num(r[f'{c}_std']) if r[f'{c}_std'] > 0 else ''}</td>"
                        for c in MAIN)
        cls = "base" if r.method == "base" else "failed" if str(r.status).startswith("failed") else ""
        rows.append(f"<tr class='{cls}'><td>{_e(r.method)}</td>{cells}<td>{_num(r['ΔK.R'], True)}</td>"
                    f"<td>{int(r.trainable_params or 0):,}</td><td>{r.train_seconds:.0f} s</td>"
                    f"<td>{int(r.seeds)}</td><td>{_e(r.status)}</td></tr>")
    return (f"<table id=leaderboard-table><tr><th>method</th>{head}<th>ΔK.R</th><th>trainable</th>"
            f"<th>train</th><th>seeds</th><th>status</th></tr>\n" + "\n".join(rows) + "</table>")


def _categories_html(table: pd.DataFrame) -> str:
    cats = categories(table)
    head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in cats)
    rows = [f"<tr><td>{_e(r.method)}</td>" + "".join(f"<td>{_num(r[c])}</td>" for c in cats) + "</tr>"
            for _, r in table.iterrows()]
    return f"<table id=categories-table><tr><th>method</th>{head}</tr>\n" + "\n".join(rows) + "</table>"


def _comparison_html(run: Path, baseline: str | None) -> str:
    rows = compare(run, baseline) if baseline else []
    if not rows:
        return f"<p class=note>No paired comparison: no method to compare with {_e(baseline or 'a baseline')}.</p>"
    t = compare_table(rows)
    cols = ["method", "suite", "task", "metric", "n", "seeds", "mean_a", "mean_b", "mean_diff", "ci_low",
            "ci_high", "p_value"]
    names = {"mean_a": "method", "mean_b": baseline, "mean_diff": "Δ", "ci_low": "95% CI low",
             "ci_high": "95% CI high", "p_value": "p"}
    head = "".join(f"<th>{_e(names.get(c, c))}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{_e(r[c])}</td>" for c in cols) + "</tr>" for _, r in t.iterrows())
    notes = "".join(f"<li>{_e(line)}</li>" for line in compare_definitions(rows))
    return (f"<p>Every method against <b>{_e(baseline)}</b>, per task and metric (scores ×100).</p>"
            f"<table id=comparison-table><tr>{head}</tr>\n{body}</table><ul class=note>{notes}</ul>")


PLOT_CAPTIONS = {
    "adaptation_retention.png": "Adaptation (K.A) against retention (K.R) per method, mean over seeds; error bars "
                                "±1 std over seeds; dotted: equal Avg.",
    "frontier.png": "Adaptation–retention frontier: each method swept along one setting; dashed: Pareto front.",
}


def _plots_html(run: Path) -> str:
    pngs = sorted(run.glob("*.png"))
    if not pngs:
        return "<p class=note>No plots in this run directory.</p>"
    out = []
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = PLOT_CAPTIONS.get(png.name, png.name)
        out.append(f"<figure><img alt='{_e(png.stem)}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{_e(caption)} (<code>{_e(png.name)}</code>)</figcaption></figure>")
    return "\n".join(out)


def _provenance_html(manifest: dict[str, Any]) -> str:
    if not manifest:
        return "<p class=note>No manifest.json: provenance unknown.</p>"
    if manifest.get("rebuilt"):
        return ("<p class=note>manifest.json is unreadable: provenance unknown (the next <code>kore-bench run</code> "
                "on this directory rebuilds it).</p>")
    base = manifest.get("base") or {}
    facts = [("base model", base.get("description")), ("base fingerprint", base.get("fingerprint")),
             ("data fingerprint", manifest.get("data_fingerprint")), ("suites", ", ".join(manifest.get("suites", []))),
             ("git commit (latest invocation)", manifest.get("git_hash")), ("platform", manifest.get("platform"))]
    versions = manifest.get("versions") or {}
    facts += [(f"version: {k}", v) for k, v in versions.items()]
    rows = "".join(f"<tr><td>{_e(k)}</td><td style='text-align:left'>{_e(v)}</td></tr>" for k, v in facts if v)
    history = manifest.get("history") or []
    hrows = []
    for i, h in enumerate(history, 1):
        units = h.get("units") or {}
        touched = ", ".join(f"{k} ({v})" for k, v in units.items()) or "—"
        command = " ".join(h.get("argv") or []) or "—"
        hrows.append(f"<tr><td>{i}</td><td>{_e(h.get('started', '—'))}</td><td>{_e(h.get('finished', '—'))}</td>"
                     f"<td style='text-align:left'><code>{_e(command)}</code></td>"
                     f"<td style='text-align:left'>{_e(touched)}</td><td>{_e((h.get('git_hash') or '—')[:10])}</td></tr>")
    history_html = ("<h3>Invocations</h3><table id=history-table><tr><th>#</th><th>started</th><th>finished</th>"
                    "<th>command</th><th>units touched</th><th>git</th></tr>" + "".join(hrows) + "</table>"
                    if hrows else "<p class=note>The manifest keeps no history (written before history was kept).</p>")
    return f"<table id=provenance-table>{rows}</table>{history_html}"
