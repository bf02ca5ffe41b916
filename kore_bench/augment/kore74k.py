"""The ``kore74k`` augmenter: the released KORE-74K training JSON, used as-is.

KORE-74K (``kailinjiang/KORE-74K``, ``KORE-74K-training_data.json``) is LLaVA conversation JSON;
its images come from the release's archives (files or zips under ``image_root``). The loaded
samples replace the input samples: the release already contains the injection knowledge.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data import Sample, load_conversations
from ..errors import KoreBenchError
from .core import AUGMENTERS, AugmentReport
from .world import WorldFacts


@AUGMENTERS.register("kore74k")
def kore74k(samples: list[Sample], world: WorldFacts | None, seed: int, report: AugmentReport, *,
            path: str | None = None, image_root: str | None = None) -> list[Sample]:
    """KORE-74K from ``path`` (or $KORE_BENCH_KORE74K); images under ``image_root`` (default: its folder)."""
    path = path or os.environ.get("KORE_BENCH_KORE74K")
    if not path:
        raise KoreBenchError("augmenter 'kore74k' needs path= (KORE-74K-training_data.json) or $KORE_BENCH_KORE74K")
    file = Path(path).expanduser().resolve()
    root = Path(image_root).expanduser().resolve() if image_root else None
    loaded, load_report = load_conversations(file, root)
    for s in loaded:
        s.meta.setdefault("augmenter", "kore74k")
    report.notes.append(f"replaced the {len(samples)} input samples by KORE-74K ({load_report})")
    for reason, n in load_report.skipped.items():
        report.reject(str(file), f"{n} records skipped by the loader: {reason}")
    report.count("kore74k", len(loaded))
    return loaded
