"""Artifacts: what a trained method stores and how a fresh base model becomes the trained one again.

A method declares its format (``Method.artifact``): :data:`PLAIN` — a peft adapter as such
(``save_pretrained``) plus every other trainable tensor (projector, memory modules ...); or
:data:`kore_bench.adapters.residual.REWRITTEN_BASE` — the same plus the adapted layers' base
weights, for initialisations that rewrite them (CorDA, KORE, PiSSA ...). Structures that are not
peft adapters (MoELoRA's experts, MKS2's memory) are rebuilt by the method
(``Method.rebuild``) before the tensors are loaded.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import KoreBenchError

TRAINED_TENSORS = "trained.safetensors"


@dataclass(frozen=True)
class ArtifactFormat:
    """How a method's trained state is saved to and loaded from its artifact directory."""

    name: str
    save: Callable[[torch.nn.Module, Path], None]
    load: Callable[[torch.nn.Module, Path], torch.nn.Module]


def save_artifact(model: torch.nn.Module, artifact_dir: Path) -> None:
    """A peft adapter (``save_pretrained``) and/or the trainable tensors outside it (projector ...)."""
    from safetensors.torch import save_file

    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        model.save_pretrained(artifact_dir)
    extra = {
        name: p.detach().contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad and not (is_peft and "lora_" in name)
    }
    if extra:
        save_file(extra, str(artifact_dir / TRAINED_TENSORS))


def load_artifact(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """The inverse of :func:`save_artifact` applied to a fresh base model (its structure rebuilt)."""
    from safetensors.torch import load_file

    artifact_dir = Path(artifact_dir)
    if not artifact_dir.is_dir():
        raise KoreBenchError(f"{artifact_dir}: no artifact to load")
    if (artifact_dir / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, artifact_dir)
    if (artifact_dir / TRAINED_TENSORS).exists():
        state = load_file(str(artifact_dir / TRAINED_TENSORS))
        own = dict(model.named_parameters())
        alien = [k for k in state if k not in own]
        if alien:
            raise KoreBenchError(f"{artifact_dir}: artifact does not fit the base model ({alien[:3]} ...)")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
    model.eval()
    return model


PLAIN = ArtifactFormat("adapter + trained tensors", save_artifact, load_artifact)
