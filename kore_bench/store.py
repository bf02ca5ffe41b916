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


def _try_flock(f, mode: int) -> bool:
    try:
        fcntl.flock(f, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _shards_of(holder: str, command: str | None) -> bool:
    """Whether a run directory's holder line is that of the shards of ``command``."""
    return holder.endswith(f"command {command}")


_MANIFEST_LOCKS: dict[Path, list] = {}  # path -> [open lock file, depth]: re-entrant within a process


class RunDir:
    """A run directory held under a lock for the lifetime of the ``with`` block: exclusive for a
    run, shared by the shards of one command (``--shard i/n``); the manifest's read-modify-writes
    and each (method, seed) unit take short locks of their own, so shards never lose an update."""

    SHARD_JOIN_WAIT_S = 30.0  # a sibling shard's exclusive start (holder line, clearing half-written files)
    OTHER_HOLDER_GRACE_S = 1.0  # a holder line of another run that lasts this long is not a stale one

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock_file = None
        self._invocation: int | None = None  # index of this process's record in manifest["history"]

    @staticmethod
    def _join_shards(f, shared_by: str) -> bool:
        """Take the shared lock beside the other shards of command ``shared_by``. The first shard holds
        the lock exclusively while it writes its holder line and clears half-written files, then
        downgrades: a shard started side by side waits that out (polling) instead of being refused.
        False when another run holds it (its holder line says so for a second) or after the wait."""
        start = time.monotonic()
        other_since = None
        while not _try_flock(f, fcntl.LOCK_SH):
            f.seek(0)
            holder = f.read().strip()
            now = time.monotonic()
            other_since = (other_since or now) if holder and not _shards_of(holder, shared_by) else None
            if now - start > RunDir.SHARD_JOIN_WAIT_S or (other_since and now - other_since > RunDir.OTHER_HOLDER_GRACE_S):
                return False
            time.sleep(0.05)
        return True

    @contextmanager
    def locked(self, shared_by: str | None = None) -> Iterator["RunDir"]:
        """Hold the directory. ``shared_by`` (a command fingerprint): a shard of that command, which
        other shards of the same command may join; a shard of another command is refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / ".lock"
        f = open(lock_path, "a+")
        alone = _try_flock(f, fcntl.LOCK_EX)
        if not alone and (shared_by is None or not self._join_shards(f, shared_by)):
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise KoreBenchError(
                f"{self.path} is in use by another kore-bench run ({holder}); "
                "wait for it to finish or choose another --output"
            ) from None
        f.seek(0)
        held_by = f.read().strip()
        if not alone and not _shards_of(held_by, shared_by):
            f.close()
            raise KoreBenchError(f"{self.path} is in use by shards of another command ({held_by}); --shard jobs "
                                 "filling one directory must run the same command")
        if alone:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                    + (f", shards of command {shared_by}" if shared_by else ""))
            f.flush()
            from .integrity import clean_temp_files

            clean_temp_files(self.path)  # half-written files of a killed run (the lock says none is running)
            if shared_by:
                fcntl.flock(f, fcntl.LOCK_SH)  # let the command's other shards in
        self._lock_file = f
        try:
            yield self
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            self._lock_file = None

    @contextmanager
    def manifest_lock(self) -> Iterator[None]:
        """A short exclusive lock around a read-modify-write of the manifest (re-entrant)."""
        key = self.path.resolve()
        entry = _MANIFEST_LOCKS.get(key)
        if entry is None:
            self.path.mkdir(parents=True, exist_ok=True)
            f = open(self.path / ".manifest.lock", "a+")
            fcntl.flock(f, fcntl.LOCK_EX)
            entry = _MANIFEST_LOCKS[key] = [f, 0]
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del _MANIFEST_LOCKS[key]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                entry[0].close()

    @contextmanager
    def unit_lock(self, method: str, seed: int) -> Iterator[bool]:
        """Hold one (method, seed) unit; yields False (and holds nothing) when another job holds it."""
        folder = self.path / method / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / ".lock", "a+")
        got = _try_flock(f, fcntl.LOCK_EX)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        """The manifest; an unreadable one is bookkeeping only and is rebuilt (results carry their own
        keys and checksums), with a notice."""
        if not self.manifest_path.exists():
            return {"units": {}}
        try:
            m = read_json(self.manifest_path)
            if not isinstance(m, dict) or not isinstance(m.get("units", {}), dict):
                raise ValueError
            return m
        except (ValueError, UnicodeDecodeError):
            if self.manifest_path not in _NOTICED:
                _NOTICED.add(self.manifest_path)
                print(f"notice: {self.manifest_path} is unreadable; rebuilding it", file=sys.stderr)
            return {"units": {}, "rebuilt": True}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        with self.manifest_lock():
            m = self.manifest()
            m.update(fields)
            self._write_manifest(m)
        return m

    def set_status(self, key: str, status: str, **info: Any) -> None:
        with self.manifest_lock():
            m = self.manifest()
            m.setdefault("units", {})[key] = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
            self._touch(m, key, status)
            self._write_manifest(m)

    def _write_manifest(self, m: dict[str, Any]) -> None:
        from .integrity import fault_point

        fault_point("manifest-write")  # a kill here leaves the old manifest and a temporary behind
        atomic_write_json(self.manifest_path, m)

    # -- history: one record per invocation, appended, never rewritten by a later one ----------
    def begin_invocation(self, record: dict[str, Any]) -> None:
        """Append this invocation's record (command, config, versions, time) to ``history``.

        A manifest written before history was kept gets its top-level record moved into
        ``history`` first, so the earlier invocation is not lost either.
        """
        with self.manifest_lock():
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
        with self.manifest_lock():
            m = self.manifest()
            self._touch(m, key, status)
            atomic_write_json(self.manifest_path, m)

    def end_invocation(self, **fields: Any) -> None:
        if self._invocation is None:
            return
        with self.manifest_lock():
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

    def stored_result(self, unit: Unit) -> tuple[dict[str, Any] | None, str | None]:
        """(result, None) when the unit's result.json and samples.jsonl verify against their
        checksums; else (None, why)."""
        from .integrity import read_sealed

        record, problem = read_sealed(self.unit_dir(unit) / "result.json", files=(SAMPLES,))
        if record is not None and (problem := not_a_result(record)):
            return None, problem
        return record, problem

    def write_unit(self, unit: Unit, result: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        """Samples first, result last (sealed with both checksums): a result.json that verifies only
        exists for a complete unit."""
        from .integrity import fault_point, seal_record, sha256_bytes

        d = self.unit_dir(unit)
        text = "".join(json.dumps(s, default=str) + "\n" for s in samples)
        atomic_write_text(d / SAMPLES, text)
        fault_point("after-samples")
        result = json.loads(json.dumps(result, default=str))  # what will be read back
        atomic_write_json(d / "result.json", seal_record({**result, "files": {SAMPLES: sha256_bytes(text.encode())}}))
        fault_point("after-result")

    def results(self) -> list[dict[str, Any]]:
        """Every unit result in the run, in a stable order (each verified against its checksums)."""
        return [verified_result(p) for p in sorted(self.path.glob("*/seed*/*/result.json"))]


SAMPLES = "samples.jsonl"
_NOTICED: set[Path] = set()


def not_a_result(record: dict[str, Any]) -> str | None:
    """Why a (checksum-valid) record is not a unit result, or None."""
    if not isinstance(record.get("tasks"), dict) or not isinstance(record.get("unit"), dict):
        return "result.json is not a unit result (no tasks)"
    return None


def read_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a readable unit result: sealed and intact with its samples, or written
    before results were sealed (read as it is, with a notice; ``run`` never reuses it); else (None, why)."""
    from .integrity import read_sealed

    record, problem = read_sealed(path, files=(SAMPLES,))
    if record is None and problem.endswith("carries no checksum"):
        legacy = read_json(path)
        if path.parent.parent.parent not in _NOTICED:
            _NOTICED.add(path.parent.parent.parent)
            print(f"notice: {path.parent.parent.parent} holds results written before checksums; they are "
                  "read as they are (`kore-bench run` recomputes them)", file=sys.stderr)
        record, problem = (legacy, None) if isinstance(legacy, dict) else (None, f"{path.name} is unreadable")
    if record is not None and (problem := not_a_result(record)):
        record = None
    return record, problem


def unit_of(path: Path) -> str:
    """``method/seedK/suite`` of a unit's result.json."""
    return "/".join(path.parts[-4:-1])


def recompute_hint(run: Path, units: list[str]) -> str:
    """The command that recomputes ``units`` (``method/seedK/suite``) of the run directory ``run``."""
    methods = list(dict.fromkeys(u.split("/")[0] for u in units))
    seeds = list(dict.fromkeys(u.split("/")[1].removeprefix("seed") for u in units))
    return (f"kore-bench run --methods {','.join(methods)} --seeds {','.join(seeds)} --output {run} "
            "(with the other options they were run with)")


def verified_result(path: Path) -> dict[str, Any]:
    """A unit's result.json, verified with its samples; KoreBenchError naming the unit and the
    command that recomputes it otherwise."""
    record, problem = read_result(path)
    if record is None:
        run = path.parent.parent.parent.parent
        raise KoreBenchError(f"{path.parent}: {problem}; recompute it with: {recompute_hint(run, [unit_of(path)])}")
    return record


def environment() -> dict[str, Any]:
    """Versions and provenance recorded in every manifest."""
    return {
        "argv": sys.argv,
        "versions": package_versions(),
        "git_hash": git_hash(),
        "platform": platform.platform(),
    }
