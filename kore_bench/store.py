"""The run directory: manifest, one result per (method, seed, suite) unit, atomic writes, a lock.

Layout::

    RUN/manifest.json                          command, versions, git hash, seeds, unit status
    RUN/<method>/seed<k>/<suite>/result.json   scores of one unit (+ its fingerprint)
    RUN/<method>/seed<k>/<suite>/samples.jsonl per-sample predictions and scores
    RUN/<method>/seed<k>/artifact/             trained adapter or weights (+ fingerprint.json)
    RUN/scores.csv, leaderboard.{md,csv,tex}, frontier.png ...
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from .errors import KoreBenchError

PACKAGES = ("kore-bench", "torch", "transformers", "peft", "accelerate", "tokenizers", "lm_eval")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def git_hash() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class Unit:
    """One (method, seed, suite) cell of a run."""

    method: str
    seed: int
    suite: str

    @property
    def key(self) -> str:
        return f"{self.method}/seed{self.seed}/{self.suite}"


class RunDir:
    """A run directory held under an exclusive lock for the lifetime of the ``with`` block."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock_file = None
        self._invocation: int | None = None  # index of this process's record in manifest["history"]

    @contextmanager
    def locked(self) -> Iterator["RunDir"]:
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / ".lock"
        f = open(lock_path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise KoreBenchError(
                f"{self.path} is in use by another kore-bench run ({holder}); "
                "wait for it to finish or choose another --output"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._lock_file = f
        try:
            yield self
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            self._lock_file = None

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {"units": {}}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        m = self.manifest()
        m.update(fields)
        atomic_write_json(self.manifest_path, m)
        return m

    def set_status(self, key: str, status: str, **info: Any) -> None:
        m = self.manifest()
        m.setdefault("units", {})[key] = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self._touch(m, key, status)
        atomic_write_json(self.manifest_path, m)

    # -- history: one record per invocation, appended, never rewritten by a later one ----------
    def begin_invocation(self, record: dict[str, Any]) -> None:
        """Append this invocation's record (command, config, versions, time) to ``history``.

        A manifest written before history was kept gets its top-level record moved into
        ``history`` first, so the earlier invocation is not lost either.
        """
        m = self.manifest()
        history = m.setdefault("history", [])
        if not history and "config" in m:
            history.append({"argv": m.get("argv"), "config": m.get("config"), "versions": m.get("versions"),
                            "git_hash": m.get("git_hash"), "started": m.get("started"),
                            "finished": m.get("finished"), "units": {}, "note": "recorded before history was kept"})
        history.append({**record, "units": {}})
        self._invocation = len(history) - 1
        atomic_write_json(self.manifest_path, m)

    def note_unit(self, key: str, status: str) -> None:
        """Record in this invocation's history what it did to ``key`` (e.g. skipped it)."""
        m = self.manifest()
        self._touch(m, key, status)
        atomic_write_json(self.manifest_path, m)

    def end_invocation(self, **fields: Any) -> None:
        if self._invocation is None:
            return
        m = self.manifest()
        m["history"][self._invocation].update(fields)
        atomic_write_json(self.manifest_path, m)

    def _touch(self, m: dict[str, Any], key: str, status: str) -> None:
        if self._invocation is not None and len(m.get("history", [])) > self._invocation:
            m["history"][self._invocation]["units"][key] = status

    # -- units ------------------------------------------------------------------------------
    def unit_dir(self, unit: Unit) -> Path:
        return self.path / unit.method / f"seed{unit.seed}" / unit.suite

    def artifact_dir(self, method: str, seed: int) -> Path:
        return self.path / method / f"seed{seed}" / "artifact"

    def finished(self, unit: Unit, fp: str) -> bool:
        """True when the unit's result exists and was produced under fingerprint ``fp``."""
        path = self.unit_dir(unit) / "result.json"
        if not path.exists():
            return False
        try:
            return read_json(path).get("fingerprint") == fp
        except json.JSONDecodeError:
            return False

    def write_unit(self, unit: Unit, result: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        """Samples first, result last: a result.json only exists for a complete unit."""
        d = self.unit_dir(unit)
        atomic_write_text(d / "samples.jsonl", "".join(json.dumps(s, default=str) + "\n" for s in samples))
        atomic_write_json(d / "result.json", result)

    def results(self) -> list[dict[str, Any]]:
        """Every unit result in the run, in a stable order."""
        return [read_json(p) for p in sorted(self.path.glob("*/seed*/*/result.json"))]


def environment() -> dict[str, Any]:
    """Versions and provenance recorded in every manifest."""
    return {
        "argv": sys.argv,
        "versions": package_versions(),
        "git_hash": git_hash(),
        "platform": platform.platform(),
    }
