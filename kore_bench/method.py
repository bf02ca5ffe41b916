"""What a method is: a typed config, a training procedure on the shared trainer, an artifact.

A method module (built-in in ``methods/`` or in a user's folder) looks like::

    @dataclass
    class MyConfig(MethodConfig):
        rank: int = field(default=8, metadata={"help": "adapter rank"})

    @register_method("my-method")
    class MyMethod(Method):
        Config = MyConfig
        def train(self, ctx: TrainContext) -> TrainedModel: ...

The engine never special-cases a method: it builds the context, calls ``train`` (or ``load`` on
resume) and evaluates whatever model comes back.
"""
from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .data import Sample
from .errors import KoreBenchError
from .registry import METHODS
from .train import TrainConfig, TrainInfo


@dataclass
class MethodConfig(TrainConfig):
    """Base of every method config: the shared optimisation settings plus the method's own."""

    steps: int | None = field(
        default=200,
        metadata={"help": "optimiser steps; the same budget for every method, whatever its data size "
                          "(tiny-scale rule: the paper trains 1 epoch over 9-74K items; a few dozen "
                          "items need many passes). None: use epochs"},
    )
    projector_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the multimodal projector; None freezes it"}
    )

    @classmethod
    def field_help(cls) -> dict[str, tuple[Any, str]]:
        return {f.name: (f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)}


@dataclass
class BaseModelRef:
    """The model every method starts from; ``load`` gives a fresh copy each time."""

    path: str
    fingerprint: str
    description: str = ""

    def load(self, device: str | None = None):
        from .models.loading import load_model

        return load_model(self.path, device=device)


@dataclass
class TrainContext:
    """Everything a method may use; nothing else reaches it."""

    base: BaseModelRef
    new_data: list[Sample]  # the knowledge to inject
    old_data: list[Sample]  # old-knowledge pool of the retention suites (replay, calibration)
    seed: int
    artifact_dir: Path
    world_dir: Path | None = None  # structured facts of the embedded world, when it is the source
    device: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class CalibrationNeed:
    """What a method's calibration holds in memory, for ``kore-bench plan``.

    One ``d_in × d_in`` input matrix per decoder linear, or per distinct input tensor when
    ``shared_inputs`` (q/k/v and gate/up share one), accumulated in ``dtype`` and decomposed in
    ``decomposition_dtype``.
    """

    dtype: torch.dtype
    shared_inputs: bool
    decomposition_dtype: torch.dtype
    samples: int
    batch_size: int = 1


@dataclass
class TrainedModel:
    model: torch.nn.Module
    processor: Any
    info: TrainInfo | None = None


class Method(ABC):
    """Base class of all methods; subclasses set ``Config`` and implement ``train``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # settings ``kore-bench tune`` searches and ``frontier`` sweeps (kore_bench.search); None: the
    # learning rate within a factor of 5 of the config's default
    search_space: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def space(cls) -> dict[str, Any]:
        """The method's declared search space, checked against its config."""
        from .search import check_space, default_space

        space = default_space(cls.Config) if cls.search_space is None else dict(cls.search_space)
        return check_space(space, cls.Config, cls.name)

    # sharding modes ("ddp", "fsdp", "zero2", "zero3") the method cannot train under, each with the
    # reason; ``kore-bench plan`` and ``run`` refuse them with that reason instead of failing in training
    unsupported_sharding: ClassVar[dict[str, str]] = {}

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.Config()

    def trainable_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` with the method's adapter added and exactly what it trains left trainable.

        No training, data or calibration: ``kore-bench plan`` calls it on a model whose weights are
        on the meta device and counts ``requires_grad`` parameters. A method that does not
        override it cannot be planned (plan says so rather than guess).
        """
        raise NotImplementedError(f"method {self.name!r} does not declare its trainable parameters "
                                  "(Method.trainable_model)")

    def samples_per_step(self) -> int:
        """Samples in one optimiser step's batch (replay adds its memory samples), for ``plan``."""
        return self.config.batch_size

    def calibration_need(self, model: torch.nn.Module) -> CalibrationNeed | None:
        """The calibration the method runs before training (None: none), for ``kore-bench plan``."""
        return None

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Method":
        """Build with ``key=value`` overrides checked against the config's fields."""
        names = {f.name: f for f in dataclasses.fields(cls.Config)}
        unknown = set(overrides) - set(names)
        if unknown:
            from .errors import UnknownNameError

            raise UnknownNameError(f"setting of method {cls.name!r}", sorted(unknown)[0], names)
        from .validate import method_settings

        return cls(cls.Config(**method_settings(cls.Config, cls.name, overrides)))

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @abstractmethod
    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train from ``ctx.base`` on ``ctx.new_data`` and save the artifact to ``ctx.artifact_dir``."""

    def load(self, ctx: TrainContext) -> TrainedModel:
        """Rebuild the trained model from ``ctx.artifact_dir`` (used when a run resumes)."""
        model, processor = ctx.base.load(ctx.device)
        return TrainedModel(load_artifact(model, ctx.artifact_dir), processor)

    def declared_trainable(self, model: torch.nn.Module) -> int:
        """Parameters the method's (last) training stage trains on ``model``, a fresh base.

        Computed from the method's own definition (a formula over the layer shapes), not by
        counting ``requires_grad`` after wrapping: the test matrix compares it with what the
        trainer reports, so a method that trains more or less than it says is caught.
        """
        raise NotImplementedError(f"method {self.name!r} does not declare its trainable parameters")

    @staticmethod
    def save(model: torch.nn.Module, artifact_dir: Path) -> None:
        """Save what training changed: a peft adapter as such, plus every other trainable tensor."""
        save_artifact(model, artifact_dir)


TRAINED_TENSORS = "trained.safetensors"


def save_artifact(model: torch.nn.Module, artifact_dir: Path) -> None:
    """A peft adapter (``save_pretrained``) and/or the trainable tensors outside it (projector ...)."""
    from safetensors.torch import save_file

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
    """The inverse of :func:`save_artifact` applied to a fresh base model."""
    from safetensors.torch import load_file

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


def register_method(name: str):
    """Class decorator registering a Method subclass under a stable CLI key."""

    def deco(cls: type[Method]) -> type[Method]:
        if not (inspect.isclass(cls) and issubclass(cls, Method)):
            raise KoreBenchError(f"@register_method({name!r}) must decorate a Method subclass")
        cls.name = name
        return METHODS.register(name)(cls)

    return deco


def projector_groups(model: torch.nn.Module, lr: float | None) -> list:
    """Make the multimodal projector trainable at its own learning rate (none when ``lr`` is None)."""
    from .models.parts import projector
    from .train import ParamGroup

    params = list(projector(model).parameters())
    for p in params:
        p.requires_grad_(lr is not None)
    return [ParamGroup(params, lr, "projector")] if lr is not None else []
