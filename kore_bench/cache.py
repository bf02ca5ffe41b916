"""Where built things live: exported worlds and base models, keyed by what produced them.

``$KORE_BENCH_CACHE`` (default ``~/.cache/kore-bench``) holds ``worlds/<preset>-seed<k>/`` and
``bases/<fingerprint>/``. Every entry is written elsewhere first and renamed into place, so an
entry that exists is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import KoreBenchError

CHECKSUMS = "checksums.json"


def cache_root() -> Path:
    return Path(os.environ.get("KORE_BENCH_CACHE", Path.home() / ".cache" / "kore-bench"))


def code_fingerprint(*relative_paths: str) -> str:
    """A hash of the named package sources (files or folders, relative to ``kore_bench/``)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in relative_paths:
        path = root / rel
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            h.update(rel.encode() + file.name.encode() + file.read_bytes())
    return h.hexdigest()[:10]


def world_code_fingerprint() -> str:
    """A changed world generator means a different world."""
    return code_fingerprint("world")


def world_dir(preset: str, seed: int | None = None) -> Path:
    """The exported world for (preset, seed, generator version), generated on first use."""
    from .world import PRESETS, export_world

    if preset not in PRESETS:
        from .errors import UnknownNameError

        raise UnknownNameError("world preset", preset, PRESETS)
    seed = PRESETS[preset].seed if seed is None else seed
    target = cache_root() / "worlds" / f"{preset}-seed{seed}-{world_code_fingerprint()}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        tmp.rmdir()  # export_world wants to create the directory itself
        export_world(preset, tmp, seed=seed)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def file_checksums(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != CHECKSUMS:
            out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def seal(directory: Path) -> None:
    """Record the checksum of every file so corruption is detected before loading."""
    (directory / CHECKSUMS).write_text(json.dumps(file_checksums(directory), indent=1, sort_keys=True))


def verify(directory: Path) -> str | None:
    """None when every sealed file is intact, else what is wrong."""
    sums = directory / CHECKSUMS
    if not sums.exists():
        return "no checksums"
    expected = json.loads(sums.read_text())
    actual = file_checksums(directory)
    for name, digest in expected.items():
        if actual.get(name) != digest:
            return f"{name} is {'missing' if name not in actual else 'corrupt'}"
    return None


def publish(tmp: Path, target: Path) -> None:
    """Seal ``tmp`` and move it to ``target`` (replacing a broken entry)."""
    seal(tmp)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def new_temp_dir(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}."))


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise KoreBenchError(f"{what} not found: {path}")
    return path
