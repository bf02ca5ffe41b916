"""Where built things live: exported worlds and base models, keyed by what produced them.

``$KORE_BENCH_CACHE`` (default ``~/.cache/kore-bench``) holds ``worlds/<preset>-seed<k>/`` and
``bases/<fingerprint>/``. Every entry is written elsewhere first and renamed into place, so an
entry that exists is complete.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from . import integrity
from .errors import KoreBenchError

CHECKSUMS = integrity.CHECKSUMS


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


def world_dir(preset: str, seed: int | None = None, console=None) -> Path:
    """The exported world for (preset, seed, generator version), generated on first use.

    The entry is sealed with checksums; one that fails verification (a file cut or edited) is
    exported again with a notice. Builds hold a lock, so concurrent runs export it once."""
    from .world import PRESETS, export_world

    if preset not in PRESETS:
        from .errors import UnknownNameError

        raise UnknownNameError("world preset", preset, PRESETS)
    seed = PRESETS[preset].seed if seed is None else seed
    target = cache_root() / "worlds" / f"{preset}-seed{seed}-{world_code_fingerprint()}"
    if target in _VERIFIED:
        return target
    problem = verify(target) if target.exists() else None
    if target.exists() and problem is None:
        integrity.clean_stale_if_idle(target)
        _VERIFIED.add(target)
        return target
    with integrity.build_lock(target, console):
        problem = verify(target) if target.exists() else None
        if target.exists() and problem is not None:
            _notice(console, f"cached world {target.name}: {problem}; exporting it again")
        if not target.exists() or problem is not None:
            tmp = new_temp_dir(target.parent, target.name)
            tmp.rmdir()  # export_world wants to create the directory itself
            export_world(preset, tmp, seed=seed)
            integrity.fault_point("world-export")
            publish(tmp, target)
    _VERIFIED.add(target)
    return target


_VERIFIED: set[Path] = set()  # entries verified by this process (a run asks for its world several times)


def _notice(console, text: str) -> None:
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    console.print(f"[yellow]{text}[/]")


def file_checksums(directory: Path) -> dict[str, str]:
    return integrity.dir_checksums(directory)


def seal(directory: Path) -> None:
    """Record the checksum of every file so corruption is detected before loading."""
    integrity.seal_dir(directory)


def verify(directory: Path) -> str | None:
    """None when every sealed file is intact, else what is wrong (never raises)."""
    return integrity.verify_dir(directory)


def publish(tmp: Path, target: Path) -> None:
    """Seal ``tmp`` and move it to ``target`` (replacing a broken entry). Call under
    :func:`kore_bench.integrity.build_lock` of ``target``, so no other process is using it."""
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
