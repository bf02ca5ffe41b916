"""Save and load any Hugging Face image-text-to-text model with its processor (offline-friendly).

Without torchvision, transformers cannot build video processors, so ``AutoProcessor`` fails for
Qwen2-VL / Qwen2.5-VL (their processors insist on one). ``load_model`` then falls back to an
image-only subclass of the saved processor class.
"""
from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (AutoModelForImageTextToText, AutoProcessor, PreTrainedModel,
                          ProcessorMixin, Qwen2_5_VLProcessor)

from kore_bench.errors import KoreBenchError
from kore_bench.progress import quiet_libraries


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (video processors need torchvision).

    It saves itself as a plain ``Qwen2_5_VLProcessor`` so that other tools (with torchvision) load
    the saved directory with ``AutoProcessor``.
    """

    @classmethod
    def get_attributes(cls) -> list[str]:
        return [a for a in super().get_attributes() if a != "video_processor"]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["processor_class"] = Qwen2_5_VLProcessor.__name__
        return out


@functools.cache
def image_only_processor_class(cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """A subclass of processor class ``cls`` that has no ``video_processor`` attribute."""
    if cls is Qwen2_5_VLProcessor:
        return ImageOnlyQwen2_5_VLProcessor

    def get_attributes(c: type) -> list[str]:
        return [a for a in cls.get_attributes() if a != "video_processor"]

    def to_dict(self: Any) -> dict[str, Any]:
        out = cls.to_dict(self)
        out.pop("video_processor", None)
        out["processor_class"] = cls.__name__
        return out

    namespace: dict[str, Any] = {"get_attributes": classmethod(get_attributes), "to_dict": to_dict,
                                 "__module__": __name__}
    video = inspect.signature(cls.__init__).parameters.get("video_processor")
    if video is not None and video.default is inspect.Parameter.empty and "image_seq_len" in inspect.signature(cls.__init__).parameters:
        # SmolVLM's processor requires a video processor argument and reads its frame settings
        # when applying the chat template: it gets None and a stand-in without frame sampling.
        # (named parameters: from_pretrained passes only the saved settings ``__init__`` names)
        def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                     image_seq_len: int = 169, chat_template: str | None = None, **kwargs: Any) -> None:
            cls.__init__(self, image_processor, tokenizer, None, image_seq_len=image_seq_len,
                         chat_template=chat_template, **kwargs)
            self.__dict__["video_processor"] = _NO_VIDEO

        namespace["__init__"] = __init__
    return type(f"ImageOnly{cls.__name__}", (cls,), namespace)


class _NoVideoProcessor:
    """What an image-only processor has in place of a video processor: no frame sampling."""

    num_frames = None
    fps = None


_NO_VIDEO = _NoVideoProcessor()


def save_model(model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path) -> Path:
    """Write model weights, configs, generation config, processor and tokenizer to ``out_dir``."""
    quiet_libraries()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def load_model(path: str | Path, dtype: torch.dtype | str | None = None,
               device: str | torch.device | None = None) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load ``(model, processor)`` from a local directory or a hub id already in the local cache.

    ``dtype`` defaults to the checkpoint's own dtype (``"auto"``); ``device`` moves the model after
    loading. The model is returned in eval mode.
    """
    quiet_libraries()
    src = str(Path(path).expanduser()) if _looks_local(str(path)) else str(path)
    if _looks_local(src) and not Path(src).is_dir():
        raise KoreBenchError(f"model directory not found: {src}")
    try:
        model = AutoModelForImageTextToText.from_pretrained(src, dtype=dtype if dtype is not None else "auto")
    except (OSError, ValueError) as e:  # not in the hub cache (offline), no config or weights
        raise KoreBenchError(f"cannot load model {src!r}: {e}") from e
    processor = load_processor(src)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def load_processor(src: str | Path) -> ProcessorMixin:
    """``AutoProcessor.from_pretrained``, or an image-only processor when video support is missing."""
    src = str(src)
    try:
        return AutoProcessor.from_pretrained(src)
    except Exception as first:  # torchvision-less video processors fail with OSError/ImportError/...
        cls = _saved_processor_class(src)
        if cls is None or "video_processor" not in cls.get_attributes():
            if isinstance(first, OSError):
                raise KoreBenchError(f"cannot load processor {src!r}: {first}") from first
            raise
        processor = image_only_processor_class(cls).from_pretrained(src)
        if getattr(processor, "chat_template", None) is None:
            # SmolVLM's image-only subclass is built without the saved template: read it back
            template = _resolve_file(src, "chat_template.jinja")
            if template is not None:
                processor.chat_template = Path(template).read_text()
        return processor


def _saved_processor_class(src: str) -> type[ProcessorMixin] | None:
    """The processor class named in a saved directory's processor config, if any."""
    for filename in ("processor_config.json", "preprocessor_config.json"):
        try:
            cfg_file = _resolve_file(src, filename)
        except OSError:
            continue
        if cfg_file is None:
            continue
        name = json.loads(Path(cfg_file).read_text()).get("processor_class")
        cls = getattr(transformers, name, None) if name else None
        if isinstance(cls, type) and issubclass(cls, ProcessorMixin):
            return cls
    return None


def _resolve_file(src: str, filename: str) -> str | None:
    if Path(src).is_dir():
        f = Path(src) / filename
        return str(f) if f.is_file() else None
    from transformers.utils import cached_file
    return cached_file(src, filename, _raise_exceptions_for_missing_entries=False)


def _looks_local(src: str) -> bool:
    """True when ``src`` reads as a filesystem path rather than a hub id ``owner/name``."""
    return (src.startswith((".", "/", "~")) or Path(src).exists()
            or src.count("/") > 1 or "\\" in src)
