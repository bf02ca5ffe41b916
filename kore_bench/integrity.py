"""Integrity of everything a run or the cache reuses: checksums sealed at write, verified at reuse,
locks around cache builds, clean-up of what a killed process left behind, and fault points.

A *sealed directory* (base model, cached world, trained artifact) holds ``checksums.json``: the
sha256 of every other file. A *sealed record* (a unit's ``result.json``, an artifact's
``fingerprint.json``) carries ``"checksum"``: the sha256 of its own canonical JSON without that
field, and may name other files with theirs (``result.json`` → ``samples.jsonl``). Verification
returns ``None`` or a one-line reason; a garbled checksum file is a reason like any other, never
a traceback: whoever reuses the thing recomputes it.

Fault points: ``KORE_BENCH_FAULT=<point>`` makes the process SIGKILL itself when it reaches the
named point (:func:`fault_point`), so tests can kill a run at an exact moment without sleeping.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKSUMS = "checksums.json"
FAULT_ENV = "KORE_BENCH_FAULT"
# the named points at which the runner, the cache and the store call fault_point()
FAULT_POINTS = ("after-train-save", "after-artifact-seal", "after-samples", "after-result",
                "world-export", "base-publish", "manifest-write")


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``$KORE_BENCH_FAULT`` names this point (tests only)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- sealed directories ---------------------------------------------------------------------------
def dir_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the checksum file itself."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != CHECKSUMS}


def seal_dir(directory: Path) -> None:
    """Record the checksum of every file of ``directory`` (written atomically)."""
    from .store import atomic_write_text

    atomic_write_text(directory / CHECKSUMS, json.dumps(dir_checksums(directory), indent=1, sort_keys=True))


def verify_dir(directory: Path) -> str | None:
    """None when every sealed file is intact, else what is wrong (one line; never raises)."""
    sums = directory / CHECKSUMS
    if not directory.is_dir():
        return "missing"
    if not sums.is_file():
        return "no checksums"
    try:
        expected = json.loads(sums.read_text())
        if not isinstance(expected, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        return f"{CHECKSUMS} is unreadable"
    actual = dir_checksums(directory)
    for name, digest in expected.items():
        if actual.get(name) != digest:
            return f"{name} is {'missing' if name not in actual else 'corrupt'}"
    return None


# -- sealed records -------------------------------------------------------------------------------
def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "checksum"}, sort_keys=True, default=str).encode()


def seal_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its own checksum added (see the module docstring)."""
    return {**record, "checksum": sha256_bytes(_canonical(record))}


def read_sealed(path: Path, files: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) when ``path`` parses, matches its checksum and the files it names (by key in
    ``record["files"]``, relative to its folder) match theirs; else (None, reason)."""
    if not path.is_file():
        return None, "missing"
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None, f"{path.name} is unreadable"
    if not isinstance(record, dict) or "checksum" not in record:
        return None, f"{path.name} carries no checksum"
    try:
        # JSON floats do not round-trip bit for bit through every writer; compare the canonical form
        if record["checksum"] != sha256_bytes(_canonical(json.loads(json.dumps(record)))):
            return None, f"{path.name} fails its checksum (edited or damaged)"
    except (TypeError, ValueError):
        return None, f"{path.name} is unreadable"
    sums = record.get("files") or {}
    for name in files:
        other = path.parent / name
        if name not in sums:
            return None, f"{path.name} names no checksum for {name}"
        if not other.is_file():
            return None, f"{name} is missing"
        if sha256_file(other) != sums[name]:
            return None, f"{name} fails its checksum (edited or damaged)"
    return record, None


# -- cache locks and stale temporaries -------------------------------------------------------------
@contextmanager
def build_lock(target: Path, console=None) -> Iterator[None]:
    """Hold an exclusive lock for building ``target`` (a cache entry); another process building the
    same entry waits here instead of building it a second time. On entry, temporaries a killed
    build of the same entry left behind (``.<name>.*`` beside it) are removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if console is not None:
                console.print(f"[dim]{target.name}: being built by another process; waiting[/]")
            started = time.perf_counter()
            fcntl.flock(f, fcntl.LOCK_EX)
            if console is not None:
                console.print(f"[dim]{target.name}: waited {time.perf_counter() - started:.0f} s[/]")
        try:
            clean_stale(target)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clean_stale_if_idle(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` a killed build left behind, when no process is building
    it now (its lock is free; never waits). Called where an intact entry is reused without taking
    the lock, so a killed ``--force`` rebuild does not leave a model-sized folder forever."""
    if not any(p.name != f".{target.name}.lock" for p in target.parent.glob(f".{target.name}.*")):
        return []
    with open(target.parent / f".{target.name}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # being built: its temporaries are in use
        try:
            return clean_stale(target)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clean_stale(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` (``.<name>.*`` but not its lock); call under its lock."""
    removed = []
    for p in target.parent.glob(f".{target.name}.*"):
        if p.name == f".{target.name}.lock":
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def clean_temp_files(root: Path) -> list[Path]:
    """Remove atomic-write temporaries (``.<name>.*.tmp``) under a run directory (call under its lock)."""
    removed = [p for p in root.rglob(".*.tmp") if p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
