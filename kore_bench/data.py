"""Samples and the loaders that turn real data formats into them.

A :class:`Sample` is the one currency between suites, methods, the trainer and the evaluator.
Text uses the LLaVA convention: the placeholder ``<image>`` in a user turn marks where the
(single) image goes; :meth:`Sample.chat` turns that into Hugging Face structured chat messages.
"""
from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import random
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from .errors import DataError, UnknownNameError

IMAGE_TOKEN = "<image>"
Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ImageRef:
    """A lazily loaded image: a file path, a member of a zip archive, or raw bytes (TSV base64)."""

    path: str | None = None
    member: str | None = None  # member name inside the zip archive at ``path``
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        """The encoded image as stored; a missing file raises DataError naming the path."""
        if self.data is not None:
            return self.data
        try:
            if self.member is not None:
                with zipfile.ZipFile(self.path) as zf:
                    return zf.read(self.member)
            return Path(self.path).read_bytes()
        except (FileNotFoundError, KeyError) as e:
            where = f"{self.path}::{self.member}" if self.member else str(self.path)
            raise DataError(f"missing image: {where}") from e
        except OSError as e:
            raise DataError(f"unreadable image {self.key}: {e}") from e

    def load(self) -> Image.Image:
        """The image as RGB; a missing file raises DataError naming the path."""
        raw = self.read_bytes()
        try:
            with Image.open(io.BytesIO(raw)) as im:
                return im.convert("RGB")
        except OSError as e:
            raise DataError(f"unreadable image {self.key}: {e}") from e

    @property
    def key(self) -> str:
        """A stable identity for hashing and logs."""
        if self.data is not None:
            return "sha256:" + hashlib.sha256(self.data).hexdigest()[:16]
        return f"{self.path}::{self.member}" if self.member else str(self.path)


@dataclass
class Sample:
    """One conversation, for training (all assistant turns are targets) or evaluation.

    For evaluation ``messages`` ends with a user turn and ``answer`` holds the gold answer.
    """

    id: str
    messages: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": str}]
    image: ImageRef | None = None
    answer: str | None = None
    choices: dict[str, str] | None = None  # multiple choice: {"A": "...", "B": "..."}
    category: str | None = None
    source: str = ""  # "file:line" provenance, for error messages
    meta: dict[str, Any] = field(default_factory=dict)

    def chat(self) -> list[dict[str, Any]]:
        """Messages in Hugging Face structured form ({"type": "image"} / {"type": "text"})."""
        out = []
        for m in self.messages:
            parts: list[dict[str, Any]] = []
            text = m["content"]
            if m["role"] == "user" and IMAGE_TOKEN in text:
                before, after = text.split(IMAGE_TOKEN, 1)
                if before.strip():
                    parts.append({"type": "text", "text": before.strip()})
                parts.append({"type": "image"})
                text = after.lstrip("\n")
            if text or not parts:
                parts.append({"type": "text", "text": text})
            out.append({"role": m["role"], "content": parts})
        return out

    def text(self) -> str:
        """All text of the conversation (for hashing, tokenizer corpora)."""
        return "\n".join(m["content"] for m in self.messages)


SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."
MC_SUFFIX = "Answer with the option's letter from the given choices directly."


def format_multiple_choice(question: str, choices: dict[str, str], hint: str | None = None) -> str:
    """The canonical multiple-choice prompt (LLaVA's MMBench single-prediction format).

    Training data and evaluation must both use this, so the model sees one format.
    """
    lines = [f"Hint: {hint}"] if hint else []
    lines.append(question)
    lines += [f"{letter}. {text}" for letter, text in choices.items()]
    lines.append(MC_SUFFIX)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Loaders. Each returns its samples with a LoadReport; a malformed record raises DataError naming
# "file:line" (JSONL, TSV), "file[index]" (JSON list), and a missing image raises at load time.


@dataclass
class LoadReport:
    """What a loader read from a file, kept, and skipped (with reasons); nothing is dropped silently."""

    path: str
    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    notes: list[str] = field(default_factory=list)
    parts: list[LoadReport] = field(default_factory=list)  # per-file reports of a multi-file loader

    def skip(self, reason: str) -> None:
        """Count one record that was read but not kept."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @classmethod
    def combine(cls, path: str, parts: list[LoadReport], notes: list[str] | None = None) -> LoadReport:
        """A report summing ``parts`` (kept inside it)."""
        skipped: dict[str, int] = {}
        for part in parts:
            for reason, n in part.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
        return cls(path, sum(p.read for p in parts), sum(p.kept for p in parts), skipped,
                   list(notes or []), list(parts))

    def __str__(self) -> str:
        text = f"{self.path}: read {self.read}, kept {self.kept}"
        if self.skipped:
            text += ", skipped " + ", ".join(f"{n} ({reason})" for reason, n in sorted(self.skipped.items()))
        return text + "".join(f"; {note}" for note in self.notes)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class ImageResolver:
    """Finds images named by relative paths under ``root``: as files, else as zip members.

    A path is looked up as ``root/path`` (or as given, if absolute); failing that, in every
    ``*.zip`` under ``root`` (indexed once, on the first miss): a member equal to the path or
    ending in ``/path`` wins, else the only member with the same file name. Several candidates
    raise DataError, as does a path found nowhere.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, list[tuple[Path, str]]] | None = None

    def _index(self) -> dict[str, list[tuple[Path, str]]]:
        if self._by_name is None:
            self._by_name = {}
            for archive in sorted(self.root.rglob("*.zip")):
                try:
                    with zipfile.ZipFile(archive) as zf:
                        names = [n for n in zf.namelist() if not n.endswith("/")]
                except zipfile.BadZipFile as e:
                    raise DataError(f"unreadable zip archive {archive}: {e}") from e
                for name in names:
                    self._by_name.setdefault(name.rsplit("/", 1)[-1], []).append((archive, name))
            # Images unzipped in place (EVOKE's imgs/evaluation/<zip name>/...): loose files, member None.
            for file in sorted(self.root.rglob("*")):
                if file.suffix.lower() in _IMAGE_SUFFIXES and file.is_file():
                    rel = file.relative_to(self.root).as_posix()
                    self._by_name.setdefault(file.name, []).append((file, rel))
        return self._by_name

    def resolve(self, rel: str, where: str) -> ImageRef:
        """The image ``rel`` as an ImageRef; ``where`` (file:line) prefixes error messages."""
        rel = rel.replace("\\", "/")
        direct = Path(rel) if Path(rel).is_absolute() else self.root / rel
        if direct.is_file():
            return ImageRef(path=str(direct))
        candidates = self._index().get(rel.rsplit("/", 1)[-1], [])
        exact = [(a, m) for a, m in candidates if m == rel or m.endswith("/" + rel.lstrip("/"))]
        found = exact or candidates
        loose = [(a, m) for a, m in found if a.suffix.lower() != ".zip"]
        if len(found) > 1 and len(loose) == 1:  # a zip and its unzipped copy: the file
            found = loose
        if len(found) == 1:
            archive, member = found[0]
            if archive.suffix.lower() != ".zip":
                return ImageRef(path=str(archive))
            return ImageRef(path=str(archive), member=member)
        if not found:
            raise DataError(f"{where}: missing image {rel!r}: no file {direct} and no such member "
                            f"in the zip archives under {self.root}")
        listed = ", ".join(f"{a}::{m}" for a, m in found[:4])
        raise DataError(f"{where}: image {rel!r} is ambiguous, it matches {len(found)} zip members ({listed})")


def _as_resolver(image_root: str | Path | ImageResolver | None, default: Path) -> ImageResolver:
    if isinstance(image_root, ImageResolver):
        return image_root
    return ImageResolver(default if image_root is None else Path(image_root))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e


def _json_records(path: Path, report: LoadReport) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs of a JSON list (``file[i]``) or a JSONL file (``file:line``)."""
    text = _read_text(path)
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from e
            report.read += 1
            yield where, rec
    elif text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        for i, rec in enumerate(data):
            report.read += 1
            yield f"{path}[{i}]", rec
    if report.read == 0:
        report.notes.append("empty file")


def _get(rec: Any, key: str, where: str, types: type | tuple[type, ...], required: bool = True) -> Any:
    """``rec[key]`` checked against ``types`` (None allowed when not required)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    value = rec.get(key)
    if value is None:
        if required:
            raise DataError(f"{where}: missing required field {key!r}")
        return None
    if not isinstance(value, types) or isinstance(value, bool):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DataError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _text(rec: Any, key: str, where: str, required: bool = True) -> str | None:
    """A string field; numbers (e.g. a year given as an answer) become their string."""
    value = _get(rec, key, where, (str, int, float), required)
    return None if value is None else str(value)


def _with_image_token(messages: list[dict[str, str]], has_image: bool, where: str) -> list[dict[str, str]]:
    """Puts ``<image>`` at the start of the first user turn if an image has no placeholder yet."""
    count = sum(m["content"].count(IMAGE_TOKEN) for m in messages)
    if count > 1:
        raise DataError(f"{where}: {count} {IMAGE_TOKEN} placeholders; one image per sample is supported")
    if count and not has_image:
        raise DataError(f"{where}: {IMAGE_TOKEN} placeholder but no image")
    if has_image and not count:
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first] = {"role": "user", "content": IMAGE_TOKEN + "\n" + messages[first]["content"]}
    return messages


_CONVERSATION_KEYS = {"id", "image", "images", "conversations", "messages", "system"}
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _conversation(rec: dict[str, Any], where: str) -> tuple[list[dict[str, str]], str | None]:
    """Alternating user/assistant messages (ending with the assistant) and an optional system text."""
    key = "conversations" if "conversations" in rec or "messages" not in rec else "messages"
    if isinstance(rec, dict) and key not in rec:
        raise DataError(f"{where}: missing required field 'conversations' (or 'messages')")
    turns = _get(rec, key, where, list)
    system = _text(rec, "system", where, required=False)
    messages = []
    for j, turn in enumerate(turns):
        at = f"{where} {key}[{j}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at}: expected an object, got {type(turn).__name__}")
        role_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
        role = _ROLES.get(_get(turn, role_key, at, str))
        if role is None:
            raise DataError(f"{at}: unknown role {turn[role_key]!r} (expected one of {', '.join(_ROLES)})")
        text = _get(turn, text_key, at, str)
        if role == "system":
            if j != 0 or system is not None:
                raise DataError(f"{at}: a system message may only come first, once")
            system = text
            continue
        expected = "user" if len(messages) % 2 == 0 else "assistant"
        if role != expected:
            raise DataError(f"{at}: expected a {expected} turn, got {role} (turns must alternate, user first)")
        messages.append({"role": role, "content": text})
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: a conversation needs user/assistant pairs ending with the assistant")
    return messages, system


def _record_image(rec: dict[str, Any], where: str, resolver: ImageResolver) -> tuple[ImageRef | None, bool]:
    """The record's single image (``image`` or a one-element ``images``); (None, False) for several."""
    images = _get(rec, "images", where, list, required=False)
    if images is None:
        rel = _get(rec, "image", where, str, required=False)
        images = [rel] if rel else []
    if len(images) > 1:
        return None, False
    if images and not isinstance(images[0], str):
        raise DataError(f"{where}: image paths must be strings, got {type(images[0]).__name__}")
    return (resolver.resolve(images[0], where) if images else None), True


def _conversation_samples(path: Path, resolver: ImageResolver, report: LoadReport,
                          id_required: bool) -> list[Sample]:
    samples = []
    for i, (where, rec) in enumerate(_json_records(path, report)):
        rid = _get(rec, "id", where, (str, int), required=id_required)
        messages, system = _conversation(rec, where)
        image, single = _record_image(rec, where, resolver)
        if not single:
            report.skip("several images (one per sample is supported)")
            continue
        meta = {k: v for k, v in rec.items() if k not in _CONVERSATION_KEYS}
        if system is not None:
            meta["system"] = system
        samples.append(Sample(id=f"{path.stem}:{i}" if rid is None else str(rid),
                              messages=_with_image_token(messages, image is not None, where),
                              image=image, source=where, meta=meta))
    report.kept += len(samples)
    return samples


def load_conversations(path: str | Path, image_root: str | Path | ImageResolver | None = None
                       ) -> tuple[list[Sample], LoadReport]:
    """Training conversations: LLaVA/KORE-74K JSON or ShareGPT, as a list (.json) or JSONL.

    Records: ``{"id"?, "image"? | "images"?: [...], "conversations": [{"from", "value"}...]}`` or
    ``{"messages": [{"role", "content"}...]}``; roles human/user, gpt/assistant and a leading
    system message (kept in ``meta["system"]``). Text-only records have no image. Images are
    relative to ``image_root`` (default: the file's folder); a record with several images is
    skipped and counted. An image without a ``<image>`` placeholder gets one in the first user turn.
    """
    path = Path(path)
    report = LoadReport(str(path))
    samples = _conversation_samples(path, _as_resolver(image_root, path.parent), report, id_required=False)
    return samples, report


_EVOKE_TRAIN = "evoke_injection_data.json"
_EVOKE_EVAL = "evoke_evaluation_data.jsonl"
_EVOKE_DEV = "evoke_dev_data.jsonl"


def _evoke_eval_samples(path: Path, resolver: ImageResolver, report: LoadReport, split: str) -> list[Sample]:
    samples = []
    for where, rec in _json_records(path, report):
        qid = _get(rec, "question_id", where, (str, int))
        rel = _get(rec, "image", where, str)
        text = _text(rec, "text", where)
        answer = _text(rec, "answer", where)
        meta = {k: v for k, v in rec.items() if k not in {"image", "text", "answer", "category"}}
        if split != "test":
            meta["split"] = split
        samples.append(Sample(id=str(qid) if split == "test" else f"{split}:{qid}",
                              messages=[{"role": "user", "content": IMAGE_TOKEN + "\n" + text}],
                              image=resolver.resolve(rel, where), answer=answer,
                              category=_text(rec, "category", where, required=False),
                              source=where, meta=meta))
    report.kept += len(samples)
    return samples


def load_evoke(root: str | Path) -> tuple[list[Sample], list[Sample], LoadReport]:
    """EVOKE (or data in its layout): (training samples, evaluation samples, report).

    ``evoke_injection_data.json`` gives the training conversations, ``evoke_evaluation_data.jsonl``
    the test questions (prompt ``"<image>\\n" + text``, gold ``answer``; ``question_id``, ``type``,
    ``cnn_wiki_type``, ``ground_truth`` and any other field in ``meta``) and the optional
    ``evoke_dev_data.jsonl`` dev questions (``meta["split"] == "dev"``, ids ``dev:<question_id>``).
    Images are files under ``root`` (as the records name them, or unzipped anywhere below it, found
    by path suffix or file name) or members of zip archives under it (with or without a top folder).
    The two record files may also lie in ``root/json/`` (the dataset card's layout).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"EVOKE root {root} is not a directory")
    resolver = ImageResolver(root)
    files = root
    if not (root / _EVOKE_TRAIN).is_file() and (root / "json" / _EVOKE_TRAIN).is_file():
        files = root / "json"  # the dataset card's layout: the records in json/, images beside it
    train_report = LoadReport(str(files / _EVOKE_TRAIN))
    train = _conversation_samples(files / _EVOKE_TRAIN, resolver, train_report, id_required=True)
    parts, notes = [train_report], []
    evaluation = []
    for name, split in [(_EVOKE_EVAL, "test"), (_EVOKE_DEV, "dev")]:
        if split == "dev" and not (files / name).exists():
            notes.append(f"no {name} (no dev split)")
            continue
        part = LoadReport(str(files / name))
        evaluation += _evoke_eval_samples(files / name, resolver, part, split)
        parts.append(part)
    _check_unique_ids(evaluation)
    return train, evaluation, LoadReport.combine(str(root), parts, notes)


def on_injection_images(evaluation: Sequence[Sample], injection: Sequence[Sample]) -> list[Sample]:
    """Evaluation questions asked on the image of the injection record they are about.

    EVOKE links a question to its knowledge item by ``ground_truth`` (here: the 0-based index into
    ``evoke_injection_data.json``, as the embedded world writes it). Scored beside the usual
    evaluation images, this separates recognising the subject in a new image from recalling what
    was injected.
    """
    out = []
    for s in evaluation:
        link = s.meta.get("ground_truth")
        if not (isinstance(link, list) and link and isinstance(link[0], int) and 0 <= link[0] < len(injection)):
            raise DataError(f"{s.source}: ground_truth must be [index] of one of the {len(injection)} injection "
                            f"records, got {link!r}")
        out.append(replace(s, image=injection[link[0]].image))
    return out


def _check_unique_ids(samples: Sequence[Sample]) -> None:
    seen: dict[str, str] = {}
    for s in samples:
        if s.id in seen:
            raise DataError(f"{s.source}: duplicate id {s.id!r} (first at {seen[s.id]})")
        seen[s.id] = s.source


def load_jsonl(path: str | Path, image_root: str | Path | ImageResolver | None = None
               ) -> tuple[list[Sample], LoadReport]:
    """kore-bench evaluation JSONL: one question per line.

    ``{"id", "question", "answer", "image"?: path|null, "category"?, "split"?, "choices"?: {letter:
    text}, "history"?: [{"question", "answer"}...]}``; other fields go to ``meta``. History becomes
    earlier user/assistant turns and the ``<image>`` placeholder opens the first user turn. With
    ``choices`` the question is rendered by :func:`format_multiple_choice` and ``answer`` must be
    one of the letters. Images are relative to ``image_root`` (default: the file's folder).
    """
    path = Path(path)
    report = LoadReport(str(path))
    resolver = _as_resolver(image_root, path.parent)
    samples = []
    for where, rec in _json_records(path, report):
        rid = _get(rec, "id", where, (str, int))
        question = _text(rec, "question", where)
        answer = _text(rec, "answer", where)
        choices = _get(rec, "choices", where, dict, required=False)
        if choices is not None:
            choices = {str(k): str(v) for k, v in choices.items()}
            if answer not in choices:
                raise DataError(f"{where}: answer {answer!r} is not one of the choices {sorted(choices)}")
            question = format_multiple_choice(question, choices)
        messages = []
        for j, turn in enumerate(_get(rec, "history", where, list, required=False) or []):
            at = f"{where} history[{j}]"
            messages += [{"role": "user", "content": _text(turn, "question", at)},
                         {"role": "assistant", "content": _text(turn, "answer", at)}]
        messages.append({"role": "user", "content": question})
        rel = _get(rec, "image", where, str, required=False)
        image = resolver.resolve(rel, where) if rel else None
        meta = {k: v for k, v in rec.items()
                if k not in {"id", "question", "answer", "image", "category", "choices", "history"}}
        samples.append(Sample(id=str(rid), messages=_with_image_token(messages, image is not None, where),
                              image=image, answer=answer, choices=choices,
                              category=_text(rec, "category", where, required=False), source=where, meta=meta))
    _check_unique_ids(samples)
    report.kept = len(samples)
    return samples, report


_TSV_KNOWN = {"index", "image", "image_path", "question", "answer", "category", "hint"}


def _tsv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (first line number, cells) of each row; quoted cells may span lines."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        rows, line = [], reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((line, cells))
            line = reader.line_num + 1
    return header or [], rows


def _is_blank(value: str | None) -> bool:
    return value is None or value.strip() in {"", "nan", "NaN", "None"}


def _b64_image(value: str, where: str) -> ImageRef:
    try:
        return ImageRef(data=base64.b64decode("".join(value.split()), validate=True))
    except (binascii.Error, ValueError) as e:
        raise DataError(f"{where}: image is not valid base64 ({e})") from e


def _tsv_image(row: dict[str, str], images: dict[str, str], resolver: ImageResolver, where: str) -> ImageRef:
    """A row's image: base64 ``image`` (or another row's, by index), else the ``image_path`` file."""
    raw = row.get("image", "")
    if not _is_blank(raw) and len(raw) <= 64:  # a reference to another row's image (MMBench)
        if len(images.get(raw, "")) <= 64:
            raise DataError(f"{where}: image refers to index {raw!r}, which has no image data")
        raw = images[raw]
    if not _is_blank(raw):
        return _b64_image(raw, where)
    if not _is_blank(row.get("image_path")):
        return resolver.resolve(row["image_path"], where)
    raise DataError(f"{where}: missing image (empty image and image_path)")


def load_tsv(path: str | Path) -> tuple[list[Sample], LoadReport]:
    """A VLMEvalKit benchmark TSV.

    Columns: ``index``, ``question``, ``image`` (base64; a value of at most 64 characters names the
    ``index`` of the row holding the image, as in MMBench) or ``image_path`` (relative to the
    file's folder, files or zips), option columns ``A``, ``B``, ... (empty/NaN cells skipped),
    ``answer``, ``category``, ``hint``; other columns go to ``meta`` (``index`` too; ``split``,
    if present, feeds :func:`select_split`). Rows with options become multiple-choice samples
    (prompt ``"<image>\\n" + format_multiple_choice(...)``, answer = letter); rows without options
    become open questions (``"<image>\\n"`` + hint line + question, answer as given). A file with
    neither image column holds text-only questions (no placeholder). Rows with no answer or several
    images are skipped and counted.
    """
    path = Path(path)
    report = LoadReport(str(path))
    header, rows = _tsv_rows(path)
    if not header:
        report.notes.append("empty file")
        return [], report
    missing = {"index", "question", "answer"} - set(header)
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(sorted(missing))} (header: {header})")
    letters = sorted(c for c in header if len(c) == 1 and c.isupper())
    records = []
    for line, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path}:{line}: {len(cells)} cells but {len(header)} columns")
        records.append((f"{path}:{line}", dict(zip(header, cells))))
    images = {r["index"]: r.get("image", "") for _, r in records}
    resolver = ImageResolver(path.parent)
    has_images = bool({"image", "image_path"} & set(header))
    samples = []
    for where, r in records:
        report.read += 1
        if _is_blank(r.get("answer")):
            report.skip("no answer")
            continue
        if r.get("image", "").lstrip().startswith("[") or r.get("image_path", "").lstrip().startswith("["):
            report.skip("several images (one per sample is supported)")
            continue
        image = _tsv_image(r, images, resolver, where) if has_images else None
        hint = None if _is_blank(r.get("hint")) else r["hint"]
        choices = {c: r[c] for c in letters if not _is_blank(r[c])}
        answer = r["answer"].strip()
        if choices:
            if answer not in choices:
                raise DataError(f"{where}: answer {answer!r} is not one of the options {list(choices)}")
            prompt = format_multiple_choice(r["question"], choices, hint)
        else:
            prompt = (f"Hint: {hint}\n" if hint else "") + r["question"]
        meta = {k: v for k, v in r.items() if (k not in _TSV_KNOWN or k == "index") and k not in letters}
        if image is not None:
            prompt = IMAGE_TOKEN + "\n" + prompt
        samples.append(Sample(id=r["index"], messages=[{"role": "user", "content": prompt}],
                              image=image, answer=answer, choices=choices or None,
                              category=None if _is_blank(r.get("category")) else r["category"],
                              source=where, meta=meta))
    if not records:
        report.notes.append("no rows")
    _check_unique_ids(samples)
    report.kept = len(samples)
    return samples, report


def select_split(samples: Sequence[Sample], split: str) -> list[Sample]:
    """The samples whose ``meta["split"]`` is ``split`` (no split counts as "test").

    A split that none of a non-empty list has raises UnknownNameError naming the splits present.
    """
    chosen = [s for s in samples if s.meta.get("split", "test") == split]
    if samples and not chosen:
        raise UnknownNameError("split", split, {s.meta.get("split", "test") for s in samples})
    return chosen


def hold_out_dev(samples: Sequence[Sample], share: float, seed: int, salt: str = "") -> list[Sample]:
    """A seeded dev hold-out for evaluation data that has no dev split of its own.

    When no sample is marked ``dev`` and ``share > 0``, about ``round(share · n)`` of the n test
    samples (at least one, and never all of them) are chosen with ``seed`` and ``salt`` (e.g. the
    suite and task) and marked ``meta["split"] = "dev"``: they are used for selection only and leave
    the test split. Samples are held out by group (``meta["group"]``, set by loaders whose scoring
    spans several questions: MMBench's circular group, MME's image pair, HallusionBench's set), so a
    group is never split across dev and test; without groups, ``round(share · n)`` samples are drawn
    from the samples sorted by id. Data with its own dev split comes back unchanged.
    """
    if share <= 0 or any(s.meta.get("split") == "dev" for s in samples):
        return list(samples)
    if not 0 < share < 1:
        raise DataError(f"the dev share must be between 0 and 1, got {share}")
    test = sorted((s for s in samples if s.meta.get("split", "test") == "test"), key=lambda s: s.id)
    if len(test) < 2:
        return list(samples)
    k = min(len(test) - 1, max(1, round(share * len(test))))
    rng = random.Random(f"dev-holdout:{seed}:{salt}")
    groups: dict[str, list[str]] = {}
    for s in test:
        groups.setdefault(str(s.meta.get("group", f"id:{s.id}")), []).append(s.id)
    dev_ids: set[str] = set()
    if len(groups) == len(test):  # no groups: one draw of k samples
        dev_ids = {s.id for s in rng.sample(test, k)}
    else:
        if len(groups) < 2:
            return list(samples)
        keys = sorted(groups)
        taken = 0
        for key in rng.sample(keys, len(keys)):
            if len(dev_ids) >= k or taken == len(keys) - 1:  # enough, and never every group
                break
            dev_ids.update(groups[key])
            taken += 1
    # replace() keeps a Sample subclass and its fields (a VLMEvalKit row's several images)
    return [replace(s, meta={**s.meta, "split": "dev", "dev_holdout": True}) if s.id in dev_ids else s
            for s in samples]
