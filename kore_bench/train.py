"""The one trainer every method uses: same data path, loss, schedule and bookkeeping.

Loss covers assistant tokens only (see :mod:`kore_bench.encoding`). Methods choose what is
trainable (``requires_grad``) and may put parameters in groups with their own learning rate
(e.g. the multimodal projector) or add a regulariser to the loss.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from .data import Sample
from .encoding import check_supported, collate, encode_for_training
from .errors import KoreBenchError
from .progress import Progress


class TrainingDiverged(KoreBenchError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by all methods (defaults documented per method)."""

    lr: float = 2e-4
    epochs: float = 1.0
    steps: int | None = None  # when set, overrides epochs
    batch_size: int = 16
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int | None = None
    bf16: bool = False  # used on CUDA only


@dataclass
class ParamGroup:
    """Parameters trained at their own learning rate (e.g. the projector at 2e-5)."""

    params: list[torch.nn.Parameter]
    lr: float
    name: str = ""


@dataclass
class TrainInfo:
    steps: int
    seconds: float
    final_loss: float
    trainable_params: int
    loss_curve: list[float] = field(default_factory=list)
    samples: int = 0  # training samples (the replay memory not counted)
    # what augmented them (kore_bench.augment sets meta["augmentation"]): requested / augmenter /
    # why / summary; None when the samples were not augmented
    augmentation: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encode_all(processor, samples: Sequence[Sample], max_length: int | None = None) -> list[dict]:
    """Training features of ``samples``; an architecture that cannot be encoded is refused first."""
    check_supported(processor)
    return [encode_for_training(processor, s, max_length) for s in samples]


def train_model(
    model: torch.nn.Module,
    processor,
    samples: Sequence[Sample],
    cfg: TrainConfig,
    seed: int,
    groups: Sequence[ParamGroup] = (),
    extra_loss: Callable[[torch.nn.Module, dict, object], torch.Tensor] | None = None,
    encoded: list[dict] | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    memory: Sequence[Sample] = (),
    memory_batch_size: int = 0,
    label: str = "training",
) -> TrainInfo:
    """Train ``model`` in place on ``samples``; returns what was spent and the loss curve.

    Parameters with ``requires_grad`` that are not in ``groups`` train at ``cfg.lr``.
    ``extra_loss(model, batch, outputs)`` is added to the language-modelling loss.
    With a ``memory`` (replay), every batch of ``samples`` is joined by ``memory_batch_size``
    memory samples, drawn epoch by epoch from their own random stream, so the batches of
    ``samples`` are the same as without a memory.
    """
    if not samples and not encoded:
        raise KoreBenchError("nothing to train on: the training set is empty")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="bf16" if cfg.bf16 and torch.cuda.is_available() else "no",
    )
    features = encoded if encoded is not None else encode_all(processor, samples, cfg.max_length)
    per_epoch = math.ceil(len(features) / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * per_epoch))

    grouped = {id(p) for g in groups for p in g.params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in grouped]
    param_groups = [{"params": rest, "lr": cfg.lr}] if rest else []
    param_groups += [{"params": [p for p in g.params if p.requires_grad], "lr": g.lr} for g in groups]
    param_groups = [g for g in param_groups if g["params"]]
    if not param_groups:
        raise KoreBenchError("the method left no trainable parameters")
    trainable = count_trainable(model)
    optimizer = torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pad_id = _pad_id(processor)

    lengths = [f["input_ids"].shape[-1] for f in features]
    batches: list[list[int]] = []
    memory_draws = _memory_draws(encode_all(processor, memory, cfg.max_length) if memory_batch_size else [],
                                 memory_batch_size, random.Random(f"memory-{seed}"))
    curve: list[float] = []
    start = time.perf_counter()
    bar = Progress(label, total, progress, unit="steps", loss=float("nan"))
    loss_value = float("nan")
    for step in range(total):
        if not batches:
            batches = length_grouped_batches(lengths, cfg.batch_size, rng)
        idx = batches.pop()
        members = [features[i] for i in idx] + next(memory_draws)
        batch = {k: v.to(accelerator.device) for k, v in collate(members, pad_id).items()}
        with accelerator.autocast():
            outputs = model(**batch)
            loss = outputs.loss
            if extra_loss is not None:
                loss = loss + extra_loss(model, batch, outputs)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"loss became {loss_value} at step {step + 1}/{total}")
        accelerator.backward(loss)
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_([p for g in param_groups for p in g["params"]], cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(loss_value)
        if on_step is not None:
            on_step(step, loss_value)
        bar.advance(loss=loss_value)
    bar.close()
    model = accelerator.unwrap_model(model)
    model.eval()
    return TrainInfo(
        steps=total,
        seconds=time.perf_counter() - start,
        final_loss=float(sum(curve[-10:]) / len(curve[-10:])),
        trainable_params=trainable,
        loss_curve=[round(x, 4) for x in curve[:: max(1, total // 200)]],
        samples=len(samples) if samples else len(features),
        augmentation=augmentation_of(samples),
    )


def augmentation_of(samples: Sequence[Sample]) -> dict | None:
    """The augmentation record the samples carry (the first, with how many samples carry each)."""
    records: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for s in samples or ():
        record = s.meta.get("augmentation")
        if isinstance(record, dict):
            key = repr(sorted(record.items()))
            records.setdefault(key, record)
            counts[key] = counts.get(key, 0) + 1
    if not records:
        return None
    first = next(iter(records))
    out = dict(records[first])
    if len(records) > 1:
        out["others"] = [dict(records[k], samples=counts[k]) for k in list(records)[1:]]
    return out


def _memory_draws(memory: list[dict], k: int, rng: random.Random) -> Iterator[list[dict]]:
    """Endless groups of ``k`` memory samples, each sample once per pass in a fresh random order."""
    order: list[int] = []
    while True:
        group = []
        while memory and len(group) < k:
            if not order:
                order = list(range(len(memory)))
                rng.shuffle(order)
            group.append(memory[order.pop()])
        yield group


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           pool_batches: int = 16) -> list[list[int]]:
    """One epoch of batches (a random order of all indices) whose members have similar lengths.

    Indices are shuffled, cut into pools of ``pool_batches`` batches, sorted by length inside each
    pool and cut into batches; the batch order is shuffled again. Padding to the longest member
    then costs little: on the default world's pre-training set, batches of 32 carry 1.74x fewer
    tokens than uniformly random ones (6% above the unpadded total), at the same coverage.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * pool_batches
    batches = []
    for p in range(0, len(order), pool):
        members = sorted(order[p : p + pool], key=lambda i: -lengths[i])
        batches += [members[b : b + batch_size] for b in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad_id(processor) -> int:
    tok = getattr(processor, "tokenizer", processor)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
