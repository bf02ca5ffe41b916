"""Artifacts of peft adapters whose initialisation rewrote the frozen base weights.

Inits such as CorDA, PiSSA, OLoRA or a null-space adapter (KORE / LoRA-Null) split each weight
into a trainable low-rank part and a frozen residual that replaces the base layer's weight. A
plain ``save_pretrained`` adapter applied to a fresh base model would then add the low-rank part
to the *original* weight. These helpers store the rewritten base weights next to the adapter, so
reloading gives the trained model exactly (identical logits).

Cost: the stored base weights are as large as the adapted linears themselves (for LLaVA-1.5-7B
about 6.5 B parameters).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import KoreBenchError
from .artifacts import ArtifactFormat, load_artifact, save_artifact
from ..models.parts import unwrap

BASE_WEIGHTS = "base_weights.safetensors"


def adapted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name (relative to the unwrapped model) → peft tuner layer, for every adapted module."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in unwrap(model).named_modules() if isinstance(m, BaseTunerLayer)}


def save_with_base_weights(model: nn.Module, artifact_dir: Path) -> None:
    """The usual artifact (adapter + other trained tensors) plus every adapted layer's base weight.

    The adapter config is saved with ``init_lora_weights=True``: the stored base weights already
    carry the initialisation, so loading must not recompute it.
    """
    from safetensors.torch import save_file

    configs = getattr(model, "peft_config", None)
    if not configs:
        raise KoreBenchError("save_with_base_weights needs a peft model")
    inits = {k: c.init_lora_weights for k, c in configs.items()}
    try:
        for c in configs.values():
            c.init_lora_weights = True
        save_artifact(model, artifact_dir)
    finally:
        for k, c in configs.items():
            c.init_lora_weights = inits[k]
    weights = {f"{name}.weight": layer.get_base_layer().weight.detach().contiguous()
               for name, layer in adapted_layers(model).items()}
    save_file(weights, str(Path(artifact_dir) / BASE_WEIGHTS))


def load_with_base_weights(model: nn.Module, artifact_dir: Path) -> nn.Module:
    """The inverse of :func:`save_with_base_weights` applied to a fresh base model."""
    from safetensors.torch import load_file

    path = Path(artifact_dir) / BASE_WEIGHTS
    if not path.exists():
        raise KoreBenchError(f"{artifact_dir}: no {BASE_WEIGHTS}; not an artifact of this method")
    model = load_artifact(model, Path(artifact_dir))
    layers = adapted_layers(model)
    with torch.no_grad():
        for key, value in load_file(str(path)).items():
            name = key.removesuffix(".weight")
            if name not in layers:
                raise KoreBenchError(f"{artifact_dir}: base weight {key} has no adapted layer in the model")
            layers[name].get_base_layer().weight.copy_(value)
    return model


REWRITTEN_BASE = ArtifactFormat("adapter + trained tensors + rewritten base weights", save_with_base_weights,
                                load_with_base_weights)

# why a method whose init rewrites base weights cannot train under ZeRO-3 (``Method.unsupported_sharding``)
ZERO3_REWRITE = ("its initialisation reads and rewrites every adapted base weight as a whole (W - WP) and its "
                 "artifact stores those weights; ZeRO-3 partitions weights from load time (zero.Init), so no rank "
                 "holds a whole W. Use zero2 or fsdp, which shard after the initialisation")
