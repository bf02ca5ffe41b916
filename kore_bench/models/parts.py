"""Find the parts of an image-text-to-text model: text decoder, its linears, projector, vision tower.

Works on the transformers v5 layouts of LLaVA (``model.language_model``, ``model.vision_tower``,
``model.multi_modal_projector``) and Qwen2-VL / Qwen2.5-VL (``model.language_model``,
``model.visual`` with ``visual.merger``), Idefics3 / SmolVLM (``model.text_model``,
``model.vision_model``, ``model.connector``), LLaVA-NeXT, Gemma3 and PaliGemma (LLaVA's names), on
older layouts without the inner ``model``, and through a peft wrapper. Vision towers also contain ``q_proj`` / ``up_proj`` ..., which is why LoRA targets
come from ``lm_linear_regex`` and never from bare module names.
"""
from __future__ import annotations

import re

from torch import nn

from kore_bench.errors import KoreBenchError

_LM_PATHS = ("model.language_model", "language_model.model", "language_model", "model.text_model")
_PROJECTOR_PATHS = ("model.multi_modal_projector", "multi_modal_projector", "model.visual.merger",
                    "visual.merger", "model.connector", "connector")
_VISION_PATHS = ("model.vision_tower", "vision_tower", "model.visual", "visual", "model.vision_model",
                 "vision_model")
_ADAPTER_PARTS = ("base_layer",)  # peft wraps a Linear as <name>.base_layer plus <name>.lora_A.* ...


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft ``PeftModel`` (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def language_model(model: nn.Module) -> nn.Module:
    """The text decoder (embeddings + decoder ``layers`` + final norm, without ``lm_head``)."""
    lm = _find(unwrap(model), _LM_PATHS, "language model")
    if not isinstance(getattr(lm, "layers", None), nn.ModuleList):
        raise KoreBenchError(f"{type(lm).__name__} has no decoder `layers`; unsupported model layout")
    return lm


def projector(model: nn.Module) -> nn.Module:
    """The vision-to-text projector: LLaVA ``multi_modal_projector``, Qwen ``visual.merger``, Idefics3 ``connector``.

    A model with none of these raises a KoreBenchError naming the paths looked for (methods that
    train the projector cannot run on it).
    """
    return _find(unwrap(model), _PROJECTOR_PATHS, "projector")


def vision_tower(model: nn.Module) -> nn.Module:
    """The vision encoder (for Qwen it contains the merger, i.e. the projector, too)."""
    return _find(unwrap(model), _VISION_PATHS, "vision tower")


def decoder_linear_names(model: nn.Module) -> list[str]:
    """Full names (as in ``model.named_modules()``) of every linear layer inside the decoder blocks.

    That is q/k/v/o and gate/up/down per layer, in layer order; never the vision tower, projector,
    embeddings or ``lm_head``. On a peft-wrapped model a LoRA-wrapped linear is reported under the
    wrapper's name (its ``base_layer`` is the original ``nn.Linear``).
    """
    layers = language_model(model).layers
    layer_ids = {id(m) for m in layers.modules()}
    names: list[str] = []
    for name, module in model.named_modules():
        if id(module) in layer_ids and isinstance(module, nn.Linear):
            name = _adapter_owner(name)
            if name is not None and (not names or names[-1] != name):
                names.append(name)
    return names


def lm_linear_regex(model: nn.Module) -> str:
    """A full-match regex for peft ``target_modules`` that selects exactly the decoder linears.

    Names are relative to the unwrapped transformers model (what peft matches against), e.g.
    ``model\\.language_model\\.layers\\.\\d+\\.(?:self_attn\\.q_proj|...)``.
    """
    base = unwrap(model)
    names = decoder_linear_names(base)
    layers_name = _name_of(base, language_model(base).layers)
    pattern = re.compile(re.escape(layers_name) + r"\.\d+\.(.+)")
    suffixes = sorted({pattern.fullmatch(n).group(1) for n in names})  # type: ignore[union-attr]
    return re.escape(layers_name) + r"\.\d+\.(?:" + "|".join(re.escape(s) for s in suffixes) + ")"


def _adapter_owner(name: str) -> str | None:
    """Map a linear inside a peft wrapper to the wrapper's name; None for adapter weights (lora_A ...)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _ADAPTER_PARTS:
            return ".".join(parts[:i])
        if part.startswith("lora_") or part.startswith("vera_") or part.startswith("oft_"):
            return None
    return name


def _find(model: nn.Module, paths: tuple[str, ...], what: str) -> nn.Module:
    for path in paths:
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise KoreBenchError(f"cannot find the {what} of {type(model).__name__} (looked for {', '.join(paths)})")


def _name_of(model: nn.Module, target: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name
    raise KoreBenchError("module not found in model")  # pragma: no cover - target comes from model
