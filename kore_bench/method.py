"""What a method is: a typed config, a training procedure on the shared trainer, an artifact.

The contract. ``Method.train(ctx)`` is a template: load the base; compute the :meth:`~Method.penalty`
(a regulariser built from the base and the old data, e.g. EWC's Fisher); :meth:`~Method.prepare`
the model (by default :meth:`~Method.trainable_model`: wrap it with an adapter, freeze parts);
choose the :meth:`~Method.training_samples`, the :meth:`~Method.trainable_groups` and the
:meth:`~Method.batch_source` (replay's memory); train on the one trainer
(:func:`kore_bench.train.train_model`, on ``ctx.device``); save in the declared ``artifact``
format. A method overrides the hooks it needs, or ``train`` itself (a two-stage method). It
declares ``seed_dependent`` (False: trained once per run whatever the seeds, e.g. ``base``), its
``search_space`` and the sharding modes it cannot train under. A method module (built-in in
``methods/`` or in a user's folder)::

    @dataclass
    class MyConfig(MethodConfig):
        rank: int = field(default=8, metadata={"help": "adapter rank"})

    @register_method("my-method")
    class MyMethod(Method):
        Config = MyConfig
        def trainable_model(self, model): return add_my_adapter(model, self.config.rank)

The engine never special-cases a method: it builds the context, calls ``train`` (or ``load`` on
resume) and evaluates whatever model comes back.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .adapters.artifacts import PLAIN, ArtifactFormat, load_artifact, save_artifact
from .data import Sample
from .errors import KoreBenchError
from .registry import METHODS
from .train import BatchSource, ParamGroup, TrainConfig, TrainInfo, train_model

if TYPE_CHECKING:
    from .suites import Suite

__all__ = ["ArtifactFormat", "BaseModelRef", "Method", "MethodConfig", "TrainContext", "TrainedModel",
           "load_artifact", "projector_groups", "register_method", "save_artifact"]


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
    suite: "Suite | None" = None  # the new-knowledge suite (its structured facts: ``suite.facts_dir()``)
    device: str | None = None  # where to train and evaluate (the runner resolves it)
    progress: bool = True

    @property
    def facts_dir(self) -> Path | None:
        """The new knowledge's structured facts (the embedded world's ``world.json``), if its suite has them."""
        return self.suite.facts_dir() if self.suite is not None else None


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


class Method:
    """Base class of all methods: ``Config``, the hooks of the ``train`` template, the artifact format."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # settings ``kore-bench tune`` searches and ``frontier`` sweeps (kore_bench.search); None: the
    # learning rate within a factor of 5 of the config's default
    search_space: ClassVar[dict[str, Any] | None] = None
    # False: the result does not depend on the training seed; trained and evaluated once per run
    seed_dependent: ClassVar[bool] = True
    artifact: ClassVar[ArtifactFormat] = PLAIN

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

    # ------------------------------------------------------------------ the template and its hooks

    def train(self, ctx: TrainContext) -> TrainedModel:
        """Train from ``ctx.base`` on the chosen samples and save the artifact to ``ctx.artifact_dir``."""
        model, processor = ctx.base.load(ctx.device)
        penalty = self.penalty(model, processor, ctx)
        model = self.prepare(model, processor, ctx)
        info = train_model(model, processor, self.training_samples(ctx), self.config, ctx.seed,
                           self.trainable_groups(model), extra_loss=penalty, batches=self.batch_source(ctx),
                           device=ctx.device, progress=ctx.progress)
        self.save(model, ctx.artifact_dir)
        return TrainedModel(model, processor, info)

    def penalty(self, base: torch.nn.Module, processor, ctx: TrainContext) -> Callable | None:
        """A regulariser ``f(model, batch, outputs)`` added to the loss, built from the untouched base
        (before :meth:`prepare`) and the old data; default: none."""
        return None

    def prepare(self, model: torch.nn.Module, processor, ctx: TrainContext) -> torch.nn.Module:
        """The model to train; default: :meth:`trainable_model` (no calibration needed)."""
        return self.trainable_model(model)

    def training_samples(self, ctx: TrainContext) -> list[Sample]:
        """What the trainer sees; default: the new knowledge as given."""
        return list(ctx.new_data)

    def trainable_groups(self, model: torch.nn.Module) -> list[ParamGroup]:
        """Parameter groups with their own learning rate; default: the projector at ``projector_lr``
        (frozen when None). Every other parameter left trainable by :meth:`prepare` trains at ``lr``."""
        return projector_groups(model, self.config.projector_lr)

    def batch_source(self, ctx: TrainContext) -> BatchSource | None:
        """How batches are made (None: length-grouped batches of the training samples)."""
        return None

    def rebuild(self, model: torch.nn.Module) -> torch.nn.Module:
        """A fresh base with the method's own (non-peft) structure added, before its trained tensors
        are loaded; default: unchanged (peft adapters rebuild themselves from the artifact)."""
        return model

    def load(self, ctx: TrainContext) -> TrainedModel:
        """Rebuild the trained model from ``ctx.artifact_dir`` (used when a run resumes)."""
        model, processor = ctx.base.load(ctx.device)
        return TrainedModel(self.artifact.load(self.rebuild(model), ctx.artifact_dir), processor)

    def declared_trainable(self, model: torch.nn.Module) -> int:
        """Parameters the method's (last) training stage trains on ``model``, a fresh base.

        Computed from the method's own definition (a formula over the layer shapes), not by
        counting ``requires_grad`` after wrapping: the test matrix compares it with what the
        trainer reports, so a method that trains more or less than it says is caught.
        """
        raise NotImplementedError(f"method {self.name!r} does not declare its trainable parameters")

    def save(self, model: torch.nn.Module, artifact_dir: Path) -> None:
        """Save what training changed, in the method's declared ``artifact`` format (under a launcher:
        the main rank writes, the others wait)."""
        from . import distributed

        if distributed.is_main():
            self.artifact.save(model, artifact_dir)
        distributed.barrier()


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

    params = list(projector(model).parameters())
    for p in params:
        p.requires_grad_(lr is not None)
    return [ParamGroup(params, lr, "projector")] if lr is not None else []
