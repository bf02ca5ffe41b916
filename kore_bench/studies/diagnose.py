"""``kore-bench diagnose``: can KORE's null-space constraint separate new knowledge from old?

KORE trains, per decoder linear, only along ``Q`` = the eigenvectors of the ``r`` smallest
eigenvalues of the calibration covariance ``C_calib`` (old-knowledge prompts). An input ``x``
reaches the trainable part only through ``Qᵀx``, so the share of a data set's activation energy
that falls into that subspace,

    share(C) = tr(Qᵀ C Q) / tr(C)        (C: the data set's uncentred input covariance),

says how much of it the adapter can learn from (new data) or disturb (old data). The constraint
helps only when the new-knowledge training prompts put clearly more energy there than held-out
old prompts do; a ratio new/old of about 1 means it slows learning and forgetting together
(reference/derisk.md). Covariances come from :func:`kore_bench.adapters.covariance.collect_covariances`
(KORE's own prompt-only, per-sample-scaled statistics); the calibration draw and the rank are
KORE's defaults unless given.

Per layer group (linears sharing an input share a covariance) the table lists the shares of the
calibration set, held-out old data and new data, the ratio new/old, the uniform reference r/n,
and the calibration spectrum: condition number λmax/max(λmin, floor) with the numerical floor
``λmax·n·eps``, numerical rank, and the top eigenvalue's share of the energy.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from ..adapters.covariance import Covariances, collect_covariances, draw_calibration
from ..data import Sample
from ..errors import KoreBenchError
from ..store import atomic_write_json, atomic_write_text, environment

SEPARATES = 2.0  # new/old ratio from which the constraint can tell new inputs from old ones
FEW_PROMPTS = 32  # below this many prompts in a set, shares are noisy estimates
SPLITS = ("dev", "test", "all")


def energy_share(cov: torch.Tensor, basis: torch.Tensor) -> float:
    """tr(Qᵀ C Q) / tr(C): the share of ``cov``'s energy in the span of ``basis``'s columns."""
    cov = cov.to(torch.float64)
    q = basis.to(cov.device, torch.float64)
    total = float(torch.trace(cov))
    if total <= 0:
        return math.nan
    return float(torch.einsum("ij,ik,kj->", q, cov, q)) / total


def spectrum_summary(cov: torch.Tensor, rank: int) -> dict[str, float]:
    """Condition number (with a numerical floor), numerical rank and energy shares of ``cov``."""
    eig = torch.linalg.eigvalsh(cov.to(torch.float64)).clamp_min(0)  # ascending
    n = eig.numel()
    top = float(eig[-1])
    floor = top * n * torch.finfo(torch.float64).eps
    total = float(eig.sum())
    return {
        "condition": top / max(float(eig[0]), floor) if top > 0 else math.nan,
        "numerical_rank": int((eig > floor).sum()),
        "smallest_r_energy": float(eig[:rank].sum()) / total if total > 0 else math.nan,
        "top_energy": top / total if total > 0 else math.nan,
    }


def layer_diagnostics(calibration: torch.Tensor, rank: int, others: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Shares of ``calibration`` and each of ``others`` in KORE's subspace at ``rank`` + the spectrum."""
    from ..adapters.nullspace import null_space_basis

    n = calibration.shape[0]
    if not 1 <= rank < n:
        raise KoreBenchError(f"rank {rank} must be between 1 and the input dimension {n} (exclusive)")
    q = null_space_basis(calibration, rank)
    out: dict[str, Any] = {"d_in": n, "rank": rank, "uniform": rank / n, "calibration": energy_share(calibration, q)}
    out.update({name: energy_share(c, q) for name, c in others.items()})
    out.update(spectrum_summary(calibration, rank))
    return out


def ratio(new: float, old: float) -> float:
    if not (math.isfinite(new) and math.isfinite(old)):
        return math.nan
    if old <= 0:
        return math.inf if new > 0 else math.nan
    return new / old


def group_label(names: Sequence[str]) -> str:
    """``0 q_proj/k_proj/v_proj``: the block index and the linears sharing one input."""
    first = names[0]
    block = first[first.find("layers.") + len("layers."):].split(".", 1)[0] if "layers." in first else ""
    leaves = "/".join(n.rsplit(".", 1)[-1] for n in names)
    return f"{block} {leaves}" if block.isdigit() else leaves


def diagnose_covariances(calibration: Covariances, old: Covariances, new: Covariances, rank: int) -> pd.DataFrame:
    """One row per layer group: shares of calibration, old held-out and new data, ratio, spectrum."""
    rows = []
    for names in calibration.groups():
        name = names[0]
        d = layer_diagnostics(calibration[name], rank, {"old": old[name], "new": new[name]})
        rows.append({"layer": group_label(names), "linears": " ".join(names), "d_in": d["d_in"], "rank": rank,
                     "old_share": d["old"], "new_share": d["new"],
                     "ratio_new_old": ratio(d["new"], d["old"]), "uniform_share": d["uniform"],
                     "condition": d["condition"], "numerical_rank": d["numerical_rank"],
                     "smallest_r_energy": d["smallest_r_energy"], "top_energy": d["top_energy"]})
    return pd.DataFrame(rows)


def verdict(rows: pd.DataFrame, threshold: float = SEPARATES) -> dict[str, Any]:
    """Median new/old ratio over layer groups and what it means for the constraint."""
    ratios = [r for r in rows["ratio_new_old"] if not math.isnan(r)]
    if not ratios:
        return {"median_ratio": math.nan, "separating_layers": 0, "layers": len(rows), "separates": False,
                "text": "no layer has finite shares: nothing to conclude"}
    median = statistics.median(ratios)
    above = sum(r >= threshold for r in ratios)
    if median >= threshold:
        text = (f"new data puts {median:.3g}x the energy of held-out old data into KORE's subspace (median over "
                f"layers): the constraint can separate them")
    elif median > 1 / threshold:
        text = (f"new/old ratio {median:.3g} (median over layers) is about 1: the constraint cannot separate new "
                f"from old data; it slows learning and forgetting together")
    else:
        text = (f"new data puts less energy into KORE's subspace than held-out old data (median ratio {median:.3g}): "
                f"KORE will learn slowly and still disturb old inputs")
    return {"median_ratio": median, "separating_layers": above, "layers": len(ratios),
            "separates": median >= threshold, "threshold": threshold, "text": text}


def prompts(samples: Sequence[Sample], n: int, seed: int, salt: str) -> list[Sample]:
    """At most ``n`` samples, a seeded draw when there are more."""
    samples = list(samples)
    return samples if len(samples) <= n else random.Random(f"{seed}:{salt}").sample(samples, n)


def diagnose(output: Path, *, world: str = "default", arch: str = "llava", model: str | None = None,
             new: str = "world-new", retention: Sequence[str] = ("world-retention",), rank: int | None = None,
             split: str = "all", samples: int = 256, calibration_samples: int | None = None, seed: int = 0,
             augmenter: str | None = None, include_paths: Sequence[Path] = (), dev_share: float = 0.1,
             dev_seed: int = 0, device: str | None = None, threshold: float = SEPARATES,
             console: Console | None = None, old_data: str | None = None) -> Path:
    """Run the diagnostic and write ``diagnose.csv`` and ``diagnose.json`` to ``output``."""
    from ..adapters.nullspace import check_rank, resolve_rank
    from ..cache import cache_root
    from ..runner import RunConfig, prepare

    console = console or Console(stderr=True)
    if split not in SPLITS:
        raise KoreBenchError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    from ..registry import load_methods

    kore = load_methods(include_paths).get("kore-constraint").Config()  # KORE's calibration defaults
    cfg = RunConfig(methods=[], output=Path(output), world=world, arch=arch, model=model, new=new,
                    retention=list(retention), include_paths=list(include_paths), dev_share=dev_share,
                    dev_seed=dev_seed, device=device, reference=False, old_data=old_data)
    prep = prepare(cfg, console)
    retention_suites = prep.suites[1:]
    if not retention_suites:
        raise KoreBenchError("the diagnostic needs at least one retention suite (held-out old data)")
    held_out = [s for suite in retention_suites for task in suite.tasks
                for sp in (("dev", "test") if split == "all" else (split,))
                for s in _split_or_empty(suite, task, sp)]
    if not held_out:
        raise KoreBenchError(f"the retention suites have no {split} samples")
    new_samples = list(prep.new_train)
    if augmenter:
        from ..augment import augment

        new_samples = augment(augmenter, new_samples, prep.suites[0].facts_dir(), seed)
    calibration = draw_calibration(prep.old_pool, calibration_samples or kore.calibration_samples, seed)
    old_samples = prompts(held_out, samples, seed, "old")
    new_samples = prompts(new_samples, samples, seed, "new")

    model_, processor = prep.base.load(device)
    r = resolve_rank(model_, rank)
    check_rank(model_, r)
    dtype = getattr(torch, kore.covariance_dtype)
    cache = cache_root() / "covariances"
    started = time.perf_counter()

    def covs(data: list[Sample]) -> Covariances:
        return collect_covariances(model_, processor, data, kore.calibration_batch_size, dtype, cache_dir=cache,
                                   model_fingerprint=prep.base.fingerprint)

    c_cal, c_old, c_new = covs(calibration), covs(old_samples), covs(new_samples)
    rows = diagnose_covariances(c_cal, c_old, c_new, r)
    summary = verdict(rows, threshold)
    few = [name for name, n in (("new", len(new_samples)), ("held-out old", len(old_samples))) if n < FEW_PROMPTS]
    if few:
        summary["caution"] = (f"only {len(new_samples)} new / {len(old_samples)} held-out old prompts: the shares are "
                              f"noisy estimates ({' and '.join(few)} below {FEW_PROMPTS})"
                              + ("; --augmenter diagnoses the augmented data KORE trains on" if not augmenter else ""))
    output = Path(output)
    atomic_write_text(output / "diagnose.csv", rows.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(output / "diagnose.json", {
        "verdict": summary, "rank": r, "rank_source": "--rank" if rank is not None else "KORE default (matched to LoRA)",
        "samples": {"calibration": len(calibration), "old_held_out": len(old_samples), "new": len(new_samples)},
        "old_split": split, "new_data": f"{new} training prompts" + (f" (augmented: {augmenter})" if augmenter else ""),
        "calibration": {"pool": "retention suites' training pool", "seed": seed,
                        "covariance": c_cal.settings, "fingerprint": c_cal.fingerprint},
        "world": world, "arch": arch, "model": model, "new": new, "retention": list(retention),
        "base_fingerprint": prep.base.fingerprint, "splits": prep.splits,
        "seconds": round(time.perf_counter() - started, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "layers": rows.to_dict(orient="records"), **environment(),
    })
    console.print(diagnose_table(rows, f"null-space diagnostic: energy shares in KORE's rank-{r} subspace "
                                       f"({len(old_samples)} old / {len(new_samples)} new / {len(calibration)} "
                                       "calibration prompts; uniform share = r/d_in)"))
    console.print(("[green]" if summary["separates"] else "[yellow]") + "verdict:[/] " + summary["text"]
                  + f" ({summary['separating_layers']}/{summary['layers']} layer groups at ≥ {threshold:g}x)")
    if "caution" in summary:
        console.print(f"[yellow]caution:[/] {summary['caution']}")
    return output


def _split_or_empty(suite, task, split: str) -> list[Sample]:
    from ..errors import UnknownNameError

    try:
        return suite.task_samples(task, split)
    except UnknownNameError:  # a task without that split
        return []


def _g(v: float) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return "—" if isinstance(v, float) and math.isnan(v) else f"{v:.3g}"


def diagnose_table(rows: pd.DataFrame, title: str) -> Table:
    t = Table(title=title)
    cols = [("layer", "layer"), ("d_in", "d_in"), ("calib", "smallest_r_energy"), ("old", "old_share"),
            ("new", "new_share"), ("new/old", "ratio_new_old"), ("cond", "condition"), ("rank", "numerical_rank"),
            ("top λ", "top_energy")]
    for head, _ in cols:
        t.add_column(head, justify="left" if head == "layer" else "right")
    for _, r in rows.iterrows():
        t.add_row(*[str(r[c]) if c in ("layer", "d_in", "numerical_rank") else _g(float(r[c])) for _, c in cols],
                  style="green" if r["ratio_new_old"] >= SEPARATES else None)
    return t
