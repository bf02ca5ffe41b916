"""The newcomer's view: progress in logs, quiet libraries, tables that fit, compare's definitions,
the HTML report rendered in headless Chromium, the manifest's history, README links that resolve."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_NOISE = ("Loading weights", "Writing model shards", "Loading checkpoint shards", "FutureWarning", "it/s]")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kore_bench", *args], capture_output=True, text=True, cwd=ROOT)


# -- progress ---------------------------------------------------------------------------------
def _capture(monkeypatch, terminal: bool) -> io.StringIO:
    from kore_bench import progress

    buf = io.StringIO()
    monkeypatch.setattr(progress, "_console", Console(file=buf, force_terminal=terminal, width=100))
    return buf


def test_progress_prints_a_line_per_tenth_in_logs(monkeypatch):
    from kore_bench import progress

    buf = _capture(monkeypatch, terminal=False)
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    with progress.Progress("base: vision stage", 50, unit="steps", loss=float("nan")) as bar:
        for i in range(50):
            bar.advance(loss=1.0 / (i + 1))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10  # one per 10 %, never one per step
    assert lines[0].strip().startswith("base: vision stage: 5/50 steps  loss 0.200")
    assert "50/50 steps" in lines[-1] and "left" not in lines[-1]
    # a batch that crosses several tenths at once prints one line, not one per tenth
    buf.truncate(0), buf.seek(0)
    with progress.Progress("evaluating", 100, unit="samples") as bar:
        bar.advance(64), bar.advance(36)
    assert [line.split(":", 1)[1].split()[0] for line in buf.getvalue().splitlines()] == ["64/100", "100/100"]


def test_progress_is_quiet_when_short_or_disabled_and_a_bar_on_a_terminal(monkeypatch):
    from kore_bench import progress

    buf = _capture(monkeypatch, terminal=False)
    with progress.Progress("training", 20) as bar:  # a phase shorter than LINE_INTERVAL_S says nothing
        for _ in range(20):
            bar.advance()
    with progress.progress_enabled(False):
        monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
        assert list(progress.track(range(5), "calibration")) == list(range(5))
    assert progress._state["enabled"] is True  # restored after the block
    assert buf.getvalue() == ""
    buf = _capture(monkeypatch, terminal=True)
    bar = progress.Progress("training", 20, loss=0.0)
    assert bar.bar is not None  # a rich bar (transient: it is gone once the phase ends)
    bar.advance(20, loss=0.5)
    bar.close()
    assert "training" in buf.getvalue()


def test_quiet_libraries_silences_bars_and_only_the_known_warning():
    from transformers.utils import logging as hf_logging

    from kore_bench import progress
    from kore_bench.progress import quiet_libraries

    quiet_libraries()
    assert not hf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        progress._state["quiet"] = False
        quiet_libraries()  # filters go on top of "default"
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


# -- tables -----------------------------------------------------------------------------------
def _table() -> pd.DataFrame:
    methods = ["base", "lora", "full-ft", "replay", "kore", "kore-aug", "kore-constraint", "corda"]
    cats = ["old_knowledge", "perception", "counting", "ocr", "hallucination", "reasoning", "dialogue", "instruction"]
    rows = []
    for i, m in enumerate(methods):
        row = {"method": m}
        for c in ("CEM", "F1", "K.A", "K.R", "Avg"):
            row[c], row[f"{c}_std"] = 10.0 + i, (0.0 if m == "base" else 1.234)
        row["ΔK.R"] = -float(i)
        row.update({c: 50.0 + i for c in cats})
        row.update(trainable_params=247_000 * (m != "base"), train_seconds=30.0, seeds=1 if m == "base" else 3,
                   status="ok")
        rows.append(row)
    return pd.DataFrame(rows)


def test_terminal_leaderboard_fits_120_columns_with_std_apart():
    from kore_bench.report import categories_rich, to_rich

    console = Console(width=250, record=True, file=io.StringIO())
    console.print(to_rich(_table(), "kore-bench — runs/default-llava"))
    console.print(categories_rich(_table()))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "old knowledge" in text and "hallucination" in text and "…" not in text  # headers whole
    lora = next(line for line in text.splitlines() if line.startswith("│ lora "))
    assert "11.00 │ 1.23 │" in lora  # the mean and its std in their own cells, on one line
    wide = Console(width=250, record=True, file=io.StringIO())
    wide.print(to_rich(_table(), wide=True))
    wide_text = wide.export_text()
    assert "CEM" in wide_text and "old_knowledge" in wide_text


def test_latex_has_a_caption_and_std_on_request():
    from kore_bench.report import to_latex

    plain, with_std = to_latex(_table()), to_latex(_table(), std=True)
    assert r"\caption{" in plain and "mean over 3 seeds" in plain and r"\begin{table}" in plain
    assert r"\pm" not in plain
    assert r"\textbf{17.00} {\scriptsize $\pm$ 1.23}" in with_std  # corda's K.A, the best: bold, ± std
    assert r"\underline{16.00} {\scriptsize $\pm$ 1.23}" in with_std
    assert "base & 10.00 & 10.00" in with_std  # base: no std, never ranked


def test_method_colours_are_fixed_and_distinct():
    from kore_bench.plotstyle import method_colour

    names = ["base", "lora", "full-ft", "replay", "kore", "kore-aug", "kore-constraint", "corda"]
    assert len({method_colour(m) for m in names}) == len(names)
    assert method_colour("my-method") == method_colour("my-method")


# -- compare ----------------------------------------------------------------------------------
def _write_samples(run: Path, method: str, seed: int, values: list[float]) -> None:
    from kore_bench.store import RunDir, Unit

    records = [{"task": "ocr", "id": f"ocr-{i}", "scores": {"exact_match": v}} for i, v in enumerate(values)]
    result = {"unit": {"method": method, "seed": seed, "suite": "world-retention"}, "tasks": {}}
    RunDir(run).write_unit(Unit(method, seed, "world-retention"), result, records)  # sealed, as a run writes it


def test_compare_pairs_the_base_with_every_seed_and_says_so(tmp_path):
    from kore_bench.report import compare, compare_definitions

    _write_samples(tmp_path, "base", 0, [1, 1, 1, 1])
    _write_samples(tmp_path, "lora", 0, [0, 0, 1, 1])
    _write_samples(tmp_path, "lora", 1, [0, 1, 1, 1])
    _write_samples(tmp_path, "kore", 0, [1, 0, 0, 0])
    rows = {r["method"]: r for r in compare(tmp_path, baseline="lora")}
    # the once-evaluated base pairs with both of lora's seeds; kore (one seed) only with lora's seed 0
    assert rows["base"]["n"] == 8 and rows["base"]["seeds"] == 2
    assert rows["base"]["mean_diff"] == pytest.approx(3 / 8)
    assert rows["kore"]["n"] == 4 and rows["kore"]["mean_diff"] == pytest.approx(-1 / 4)
    text = " ".join(compare_definitions(list(rows.values())))
    assert "Δ = method − lora" in text and "×100" in text and "sign-flip permutation" in text
    r = _cli("compare", str(tmp_path), "--baseline", "lora")
    assert r.returncode == 0 and "Δ = method − lora" in r.stdout and "paired with each seed" in r.stdout


# -- a real run: history, logs, report --------------------------------------------------------
@pytest.fixture(scope="module")
def two_invocations(micro_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("ux") / "run"
    common = ["--world", "micro", "--output", str(out), "--set", "lora.steps=4", "--limit", "4"]
    first = _cli("run", "--methods", "lora", "--seeds", "0,1", *common)
    assert first.returncode == 0, first.stderr[-2000:]
    second = _cli("run", "--methods", "lora", "--seeds", "0", *common)
    assert second.returncode == 0, second.stderr[-2000:]
    return out, first, second


def test_logs_say_what_happens_without_library_noise(two_invocations):
    _, first, second = two_invocations
    log = first.stderr + first.stdout
    assert "base: evaluating the base model" in log and "base (seed 0): training" not in log
    assert "lora (seed 1): training on" in log
    for noise in LIBRARY_NOISE:
        assert noise not in log + second.stderr, noise


def test_manifest_keeps_every_invocation(two_invocations):
    out, _, _ = two_invocations
    m = json.loads((out / "manifest.json").read_text())
    history = m["history"]
    assert len(history) == 2
    assert history[0]["config"]["seeds"] == [0, 1] and history[1]["config"]["seeds"] == [0]
    assert history[0]["units"]["lora/seed1/world-new"] == "done"
    assert history[1]["units"] == {"base/seed0": "skipped (finished earlier)",
                                   "lora/seed0": "skipped (finished earlier)"}
    for h in history:
        assert h["argv"][1:3] == ["run", "--methods"] and h["versions"]["torch"] and h["started"] <= h["finished"]
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.set_index("method").loc["lora", "seeds"] == 2  # both seeds still reported, and recorded


def test_table_command_fits_120_columns(two_invocations):
    out, _, _ = two_invocations
    r = _cli("table", str(out))
    assert r.returncode == 0 and max(len(line) for line in r.stdout.splitlines()) <= 120
    latex = _cli("table", str(out), "--format", "latex", "--std")
    assert r"\caption{" in latex.stdout and r"$\pm$" in latex.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_chromium(two_invocations, tmp_path):
    out, _, _ = two_invocations
    r = _cli("report", str(out))
    assert r.returncode == 0, r.stderr
    page = out / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    browser = _chromium()
    if browser is None:
        if os.environ.get("KORE_BENCH_REQUIRE_CHROMIUM"):  # CI sets it: a missing browser fails, never skips
            pytest.fail("KORE_BENCH_REQUIRE_CHROMIUM is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it (.ci/run)")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for table in ("leaderboard-table", "categories-table", "comparison-table", "provenance-table", "history-table"):
        assert f'id="{table}"' in dom, table
    rendered = re.findall(r'data-rendered="([^"]+)"', dom)
    assert rendered and all(re.fullmatch(r"\d+x\d+", r) for r in rendered), rendered  # every image decoded
    assert "lora" in dom and "Δ = method − lora" in dom and "--seeds 0,1" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*args, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_report_refuses_a_directory_without_results(tmp_path):
    r = _cli("report", str(tmp_path))
    assert r.returncode == 2 and "holds no results" in r.stderr


# -- README -----------------------------------------------------------------------------------
def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _markdown_files() -> list[str]:
    """Every Markdown file of the project (README, docs, results, bench ...), not the venv's."""
    skip = (".venv", ".git", ".ci-cache", "runs", "node_modules")
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.md") if not set(p.relative_to(ROOT).parts) & set(skip))


@pytest.mark.parametrize("doc", _markdown_files())
def test_every_relative_link_resolves(doc):
    path = ROOT / doc
    text = path.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    assert links or doc != "README.md", doc
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not checked offline
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{doc}: {link} does not exist"
        if anchor and file.suffix == ".md":
            headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
            assert anchor in headings, f"{doc}: {link}: no heading #{anchor} in {file.name}"
    assert "reference/derisk.md" not in text and "DESIGN §" not in text


def test_the_leaderboard_plot_is_titled_and_coloured_per_method(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.colors import to_hex

    from kore_bench.plotstyle import method_colour
    from kore_bench.report import _plot

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    table = pd.DataFrame({"method": ["base", "lora", "kore", "ewc"], "K.A": [3.0, 7.0, 22.0, 6.0],
                          "K.R": [60.0, 48.0, 39.0, 50.0], "K.A_std": [float("nan"), 1.0, 2.0, 1.5],
                          "K.R_std": [float("nan"), 0.5, 1.0, 0.7], "seeds": [1, 3, 3, 3]})
    _plot(table, tmp_path / "plot.png")
    (ax,) = figures[0].axes
    assert ax.get_title() and "×100" in ax.get_xlabel() and "×100" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "error bars: ±1 std over seeds" in legend and any("equal Avg" in k for k in legend)
    points = {c.get_label(): c.lines[0] for c in ax.containers}  # one errorbar per method
    for method in ("base", "lora", "kore", "ewc"):
        label = next(k for k in points if k.startswith(f"{method} (n="))
        assert label in legend and to_hex(points[label].get_color()) == method_colour(method)
    assert len({method_colour(m) for m in ("base", "lora", "kore", "ewc")}) == 4
    assert (tmp_path / "plot.png").stat().st_size > 5_000
