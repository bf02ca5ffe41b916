"""One home for how plots look: a fixed colour per method (the same in every plot), iso-Avg lines.

Known methods have fixed colours from matplotlib's colour-blind friendly ``tab10`` order; any
other method gets a colour from a stable hash of its name, so ``lora`` is the same blue in the
leaderboard plot, the frontier and the HTML report of every run.
"""
from __future__ import annotations

import hashlib
from typing import Any

# tab10, in order; base is grey everywhere.
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
          "#17becf", "#7f7f7f"]
_EXTRA = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#00897b", "#e6550d", "#31a354",
          "#756bb1", "#636363"]
FIXED = {
    "base": "#7f7f7f", "lora": _TAB10[0], "full-ft": _TAB10[1], "replay": _TAB10[2], "kore": _TAB10[3],
    "kore-aug": _TAB10[4], "kore-constraint": _TAB10[5], "corda": _TAB10[6], "kore-v1": _TAB10[7],
    "vanilla": _TAB10[8], "ewc": _EXTRA[0], "lwf": _EXTRA[1], "moelora": _EXTRA[2], "o-lora": _EXTRA[3],
    "sefe": _EXTRA[4], "mks2": _EXTRA[5],
}


def method_colour(method: str) -> str:
    """The colour of ``method`` in every kore-bench plot."""
    if method in FIXED:
        return FIXED[method]
    return _EXTRA[int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(_EXTRA)]


def iso_avg_lines(ax: Any, step: float = 5.0) -> None:
    """Dashed lines of equal Avg = (K.A + K.R) / 2 across the current axes, each labelled."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    lo, hi = (x0 + y0) / 2, (x1 + y1) / 2
    span = hi - lo
    if span / step > 8:
        step = step * 2 if span / (step * 2) <= 8 else step * 4
    c = step * (int(lo // step) + 1)
    while c < hi:
        xs = [x0, x1]
        ys = [2 * c - x for x in xs]
        ax.plot(xs, ys, linestyle=":", color="#b0b0b0", linewidth=0.8, zorder=0)
        # label where the line enters the axes at the top (or the left edge)
        x_label = max(x0, 2 * c - y1)
        y_label = 2 * c - x_label
        if x_label <= x1 and y0 <= y_label <= y1:
            ax.annotate(f"Avg {c:g}", (x_label, y_label), fontsize=6, color="#909090", ha="left", va="top",
                        xytext=(2, -2), textcoords="offset points")
        c += step
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
