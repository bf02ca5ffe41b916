"""The unit key: one hash of everything that can change a unit's numbers, so a finished unit is
reused exactly when recomputing it would give the same numbers.

A *training* unit (method, seed) is keyed by the code that trains (the method's modules, the
trainer, the encoding, model loading, the augmenters, :mod:`kore_bench.method`), the method's
config (and, for an ``auto`` augmenter, the environment it chooses by), the base model's
**weights** (a hash of every file of its folder, cached by path, size and mtime), the **content** of the training samples (text, answers, image bytes — not paths, so moving
data or the cache changes nothing) and the seed. An *evaluation* unit (method, seed, suite) adds the
code that scores (the evaluator, the metrics, the encoding, the lm-eval bridge; for a suite with
VLMEvalKit tasks also their scoring and the judge's client), the suite's task
definitions, the content of the samples it scores and the settings that can change a score (split,
``--limit``, batch size; the LLM judge's identity for suites it scores). Keys keep their parts, so a
rerun says what changed.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import KoreBenchError
from .store import atomic_write_json, fingerprint

if TYPE_CHECKING:
    from .data import ImageRef, Sample
    from .method import Method
    from .suites import Suite

TRAINING_CODE = ("kore_bench.train", "kore_bench.encoding", "kore_bench.models", "kore_bench.augment",
                 "kore_bench.llm_client", "kore_bench.method", "kore_bench.adapters")
# the evaluate package holds the generation, the backends, the metrics and the lm-eval bridge
EVALUATION_CODE = ("kore_bench.evaluate", "kore_bench.encoding")
# what a suite with VLMEvalKit tasks adds: the benchmarks' prompts and scoring, and the chat client
# that carries the LLM judge's calls (no other suite runs this code, so editing it reruns no other)
VLMEVAL_CODE = ("kore_bench.vlmeval", "kore_bench.llm_client")
WEIGHT_HASHES = "weight-hashes.json"  # in the cache root: path → (size, mtime, sha256) per file


@dataclass(frozen=True)
class UnitKey:
    """A unit's key and the parts it is made of (stored beside the result)."""

    kind: str  # "training" or "evaluation"
    parts: dict[str, str]

    @property
    def value(self) -> str:
        return fingerprint(self.kind, self.parts)

    def changes(self, stored: Any) -> str:
        """Why a unit stored under ``stored`` parts is recomputed, e.g. "code (evaluation) changed"."""
        if not isinstance(stored, dict):
            return "no unit key stored (written by an older kore-bench)"
        changed = [k for k in self.parts if stored.get(k) != self.parts[k]]
        names = [f"{k} ({self.kind})" if k == "code" else k for k in changed]
        return (", ".join(names) + " changed") if names else "stored key does not match"


def unit_key(method_name: str, method: Method, base_weights: str, train_data: str, seed: int,
             suite: Suite | None = None, eval_data: str | None = None,
             settings: dict[str, Any] | None = None) -> UnitKey:
    """The key of the training unit (no ``suite``) or of the evaluation unit of ``suite``."""
    config = method.config_dict()
    parts = {
        "code": code_hash([*TRAINING_CODE, *_method_modules(method)]),
        "config": fingerprint(method_name, config),
        "weights": base_weights,
        "data": train_data,
        "seed": str(seed),
    }
    if config.get("augmenter") == "auto":  # auto chooses by the environment: a changed choice retrains
        from .augment.auto import environment

        parts["augmenter_environment"] = fingerprint(environment())
    train = UnitKey("training", parts)
    if suite is None:
        return train
    return UnitKey("evaluation", {
        "training": train.value,
        "code": code_hash(list(evaluation_code(suite))),
        "suite": fingerprint(suite.name, suite.role, [t.__dict__ for t in suite.tasks]),
        "data": eval_data or "",
        "settings": fingerprint(settings or {}),
    })


def evaluation_code(suite: Suite) -> tuple[str, ...]:
    """The modules whose source can change ``suite``'s scores."""
    from .vlmeval import LOADER

    uses_vlmeval = any(t.output_type == LOADER for t in suite.tasks)
    return EVALUATION_CODE + VLMEVAL_CODE if uses_vlmeval else EVALUATION_CODE


def _method_modules(method: Method) -> list[str]:
    return [cls.__module__ for cls in type(method).__mro__ if cls.__module__ not in ("abc", "builtins")]


_CODE: dict[str, str] = {}


def code_hash(modules: list[str]) -> str:
    """A hash of the source files of ``modules`` (a package: every ``*.py`` under it)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        if name not in _CODE:
            module = sys.modules.get(name) or importlib.import_module(name)
            file = Path(inspect.getfile(module))
            files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
            _CODE[name] = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()
        h.update(name.encode() + _CODE[name].encode())
    return h.hexdigest()[:16]


# -- content of samples ------------------------------------------------------------------------------
_FILE_HASHES: dict[tuple, str] = {}


def _file_hash(path: Path, member: str | None = None) -> str:
    st = path.stat()
    key = (str(path), member, st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        if member is None:
            from .integrity import sha256_file

            _FILE_HASHES[key] = sha256_file(path)
        else:
            with zipfile.ZipFile(path) as zf:
                _FILE_HASHES[key] = hashlib.sha256(zf.read(member)).hexdigest()
    return _FILE_HASHES[key]


def image_hash(ref: ImageRef | None) -> str | None:
    """The sha256 of an image's bytes (file, zip member or inline data)."""
    if ref is None:
        return None
    if ref.data is not None:
        return hashlib.sha256(ref.data).hexdigest()
    try:
        return _file_hash(Path(ref.path), ref.member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        from .errors import DataError

        raise DataError(f"unreadable image {ref.key}: {e}") from e


def samples_hash(samples: list[Sample]) -> str:
    """A content hash of samples: ids, messages, answers, choices, category, meta and image bytes."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s.id, s.messages, s.answer, s.choices, s.category, s.meta, image_hash(s.image)],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# -- base model weights ------------------------------------------------------------------------------
def weights_hash(model: str) -> str:
    """A hash of every file of a model folder (weights, config, tokenizer), each file's hash cached
    in the cache root by path, size and mtime; a hub id is resolved to its local snapshot."""
    from .cache import cache_root

    folder = resolve_model_dir(model)
    store = cache_root() / WEIGHT_HASHES
    try:
        known = json.loads(store.read_text()) if store.is_file() else {}
        if not isinstance(known, dict):
            known = {}
    except (ValueError, OSError):
        known = {}  # a damaged hash cache is rebuilt, never trusted
    h, changed = hashlib.sha256(), False
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts)):
        st = f.stat()
        entry = known.get(str(f.resolve()))
        if not (isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns]):
            from .integrity import sha256_file

            entry = [st.st_size, st.st_mtime_ns, sha256_file(f)]
            known[str(f.resolve())] = entry
            changed = True
        h.update(str(f.relative_to(folder)).encode() + str(entry[2]).encode())
    if changed:
        try:
            atomic_write_json(store, known)
        except OSError:
            pass  # an unwritable cache only costs rehashing next time
    return h.hexdigest()[:16]


def resolve_model_dir(model: str) -> Path:
    """A local model folder, or the local snapshot of a Hugging Face id (downloaded if needed)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model.startswith((".", "/", "~")) or os.sep + os.sep in model:
        raise KoreBenchError(f"--model {model}: not a model folder")
    try:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(model, local_files_only=True))
        except Exception:
            return Path(snapshot_download(model))
    except Exception as e:
        raise KoreBenchError(f"--model {model}: no such folder, and not found on the Hugging Face hub "
                             f"({type(e).__name__})") from None
