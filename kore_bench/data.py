"""Samples and the loaders that turn real data formats into them.

A :class:`Sample` is the one currency between suites, methods, the trainer and the evaluator.
Text uses the LLaVA convention: the placeholder ``<image>`` in a user turn marks where the
(single) image goes; :meth:`Sample.chat` turns that into Hugging Face structured chat messages.
"""
from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from .errors import DataError

IMAGE_TOKEN = "<image>"
Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ImageRef:
    """A lazily loaded image: a file path, a member of a zip archive, or raw bytes (TSV base64)."""

    path: str | None = None
    member: str | None = None  # member name inside the zip archive at ``path``
    data: bytes | None = None

    def load(self) -> Image.Image:
        """The image as RGB; a missing file raises DataError naming the path."""
        try:
            if self.data is not None:
                raw = self.data
            elif self.member is not None:
                with zipfile.ZipFile(self.path) as zf:
                    raw = zf.read(self.member)
            else:
                raw = Path(self.path).read_bytes()
            with Image.open(io.BytesIO(raw)) as im:
                return im.convert("RGB")
        except (FileNotFoundError, KeyError) as e:
            where = f"{self.path}::{self.member}" if self.member else str(self.path)
            raise DataError(f"missing image: {where}") from e
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
