"""``kore-bench plan``: will a method fit the GPUs? Counted on the meta device, nothing loaded.

The model is built from its config on the meta device; each method applies its own adapter and
trainable selection (``Method.trainable_model``, through the registry) and the trainable
parameters are counted exactly. Memory per GPU is then an estimate from those counts:

- weights: every parameter in ``dtype`` (bf16: 2 bytes);
- gradients: every trainable parameter in ``dtype``;
- optimizer: AdamW's two fp32 moments (8 bytes) plus an fp32 master copy (4 bytes) when the
  weights are 16-bit (mixed precision, as DeepSpeed and FSDP keep it);
- activations of one micro batch (``ceil(samples_per_step / (gpus · grad_accum))`` sequences of
  ``seq_len`` tokens) through the decoder: with gradient checkpointing each layer's input plus
  one layer's recomputed activations, without it every layer's (``6h + 2h_kv + 4i`` values per
  token for a Llama/Qwen block with fused attention), plus the logits (bf16, their fp32 copy for
  the loss and its gradient). The vision tower is frozen and runs forward only (not counted);
- sharding: DDP replicates everything; ZeRO-2 shards gradients and optimizer state; ZeRO-3 and
  FSDP (full shard) shard weights too and gather one decoder layer at a time (two counted, for
  prefetch). A mode fits when the sum stays under 90 % of a GPU's memory (the rest: CUDA
  context, allocator fragmentation, communication buffers).

Calibration (KORE, CorDA): one ``d_in × d_in`` matrix per distinct input (KORE shares q/k/v and
gate/up; peft's CorDA keeps one per linear), in the method's precision; input sharing is found
by a forward pass on the meta device, as :mod:`kore_bench.covariance` finds it on real data.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import KoreBenchError
from .method import CalibrationNeed, Method
from .models.parts import decoder_linear_names, language_model, unwrap

MODES = ("ddp", "fsdp", "zero2", "zero3")
HEADROOM = 0.9  # share of a GPU's memory a plan may fill
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GB = 1e9


def parse_memory(value: str) -> float:
    """``80GB`` / ``80G`` / ``141GiB`` / ``80`` (GB) → bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(GB|G|GIB|MB|MIB|TB)?\s*", value.upper())
    if not m or float(m.group(1)) <= 0:
        raise KoreBenchError(f"--gpu-memory {value!r}: expected a size such as 80GB or 141GiB")
    scale = {"GB": 1e9, "G": 1e9, None: 1e9, "GIB": 2**30, "MB": 1e6, "MIB": 2**20, "TB": 1e12}[m.group(2)]
    return float(m.group(1)) * scale


def load_config(source: str | Path | dict):
    """A transformers config from a dict, a config.json file, a model directory or a cached hub id."""
    from transformers import AutoConfig

    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / "config.json"
            if not path.is_file():
                raise KoreBenchError(f"--model {source}: the directory has no config.json")
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise KoreBenchError(f"--model {source}: not a JSON config ({e})") from None
        else:
            try:
                return AutoConfig.from_pretrained(str(source), local_files_only=True)
            except (OSError, ValueError) as e:
                raise KoreBenchError(f"--model {source}: no such file, directory or locally cached model ({e})") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise KoreBenchError(f"--model {source if not isinstance(source, dict) else 'config'}: "
                             "a config needs a 'model_type' (e.g. llava, qwen2_5_vl)")
    try:
        return AutoConfig.for_model(raw.pop("model_type"), **raw)
    except (KeyError, ValueError, TypeError) as e:
        raise KoreBenchError(f"cannot build a config from --model: {e}") from None


def meta_model(config) -> nn.Module:
    """The image-text-to-text model of ``config`` with every weight on the meta device."""
    from transformers import AutoModelForImageTextToText

    try:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
    except ValueError as e:
        raise KoreBenchError(f"{type(config).__name__} is not an image-text-to-text model: {e}") from None
    language_model(model)  # a clear error for an unsupported layout
    return model.requires_grad_(True)


def input_groups(model: nn.Module) -> list[list[str]]:
    """Decoder linears grouped by the input tensor they receive in one forward pass (on meta)."""
    base = unwrap(model)
    lm = language_model(base)
    names = decoder_linear_names(base)
    seen: list[tuple[torch.Tensor, list[str]]] = []  # strong references: ids are not reused

    def hook(name: str):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            for x, group in seen:
                if x is args[0]:
                    group.append(name)
                    return
            seen.append((args[0], [name]))

        return pre_hook

    handles = [base.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    hidden = lm.config.hidden_size
    try:
        with torch.no_grad():
            # with the default cache: without one, transformers inspects the positions for packed sequences
            lm(inputs_embeds=torch.empty(1, 4, hidden, device="meta"))
    except Exception as e:  # a layout whose forward does not run on meta tensors
        raise KoreBenchError(f"cannot trace which decoder linears share an input ({type(e).__name__}: {e})") from None
    finally:
        for h in handles:
            h.remove()
    groups = [g for _, g in seen]
    missing = set(names) - {n for g in groups for n in g}
    if missing:
        raise KoreBenchError(f"decoder linear {sorted(missing)[0]} did not run in the traced forward")
    return groups


@dataclass
class Settings:
    gpus: int = 1
    gpu_memory: float = 80e9  # bytes per GPU
    seq_len: int = 2048
    dtype: str = "bf16"
    gradient_checkpointing: bool = True
    grad_accum: int = 1
    master_weights: bool | None = None  # None: when dtype is 16-bit
    modes: tuple[str, ...] = MODES

    def check(self) -> None:
        if self.gpus < 1:
            raise KoreBenchError(f"--gpus must be at least 1, got {self.gpus}")
        if self.seq_len < 1:
            raise KoreBenchError(f"--seq-len must be at least 1, got {self.seq_len}")
        if self.grad_accum < 1:
            raise KoreBenchError(f"--grad-accum must be at least 1, got {self.grad_accum}")
        if self.dtype not in DTYPES:
            raise KoreBenchError(f"--dtype {self.dtype!r}: one of {', '.join(DTYPES)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise KoreBenchError(f"unknown sharding mode {bad[0]!r} (valid: {', '.join(MODES)})")


@dataclass
class CalibrationPlan:
    matrices: int
    bytes_all_layers: float  # every matrix at once (what the calibration does today)
    bytes_per_layer: float  # the largest decoder layer's matrices (per-layer streaming)
    workspace: float  # one decomposition of the largest matrix
    peak_all_layers: float  # + full weights + one calibration batch's layer activations
    peak_streaming: float
    strategy: str  # "all layers at once" | "per-layer streaming" | "does not fit"


@dataclass
class ModeFit:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    gathered: float
    fits: bool
    refused: str | None = None  # the method's own reason it cannot run in this mode

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.gathered


@dataclass
class MethodPlan:
    method: str
    total_params: int
    trainable_params: int
    micro_batch: int
    activations: float
    optimizer_state: float  # unsharded
    calibration: CalibrationPlan | None
    modes: dict[str, ModeFit] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def _text_config(model: nn.Module):
    return language_model(model).config


def layer_activation_bytes(model: nn.Module, tokens: int, act_bytes: int) -> float:
    """What one decoder block keeps for its backward pass: ``6h + 2h_kv + 4i`` values per token."""
    cfg = _text_config(model)
    h, i, heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    kv = (getattr(cfg, "num_key_value_heads", None) or heads) * head_dim
    return tokens * act_bytes * (6 * h + 2 * kv + 4 * i)


def activation_bytes(model: nn.Module, tokens: int, checkpointing: bool, act_bytes: int) -> float:
    """Estimated activation memory of ``tokens`` tokens through the decoder, logits included."""
    cfg = _text_config(model)
    layers = cfg.num_hidden_layers
    per_layer = layer_activation_bytes(model, tokens, act_bytes)
    stack = (layers * tokens * cfg.hidden_size * act_bytes + per_layer) if checkpointing else layers * per_layer
    logits = tokens * cfg.vocab_size * (act_bytes + 4 + 4)
    return stack + logits


def _layer_of(name: str) -> str:
    m = re.search(r"\.layers\.(\d+)\.", name)
    return m.group(1) if m else name


def calibration_plan(model: nn.Module, need: CalibrationNeed, groups: list[list[str]], settings: Settings,
                     weights: float) -> CalibrationPlan:
    base = unwrap(model)
    owners = groups if need.shared_inputs else [[n] for g in groups for n in g]
    item = _bytes(need.dtype)
    sizes: dict[str, float] = {}
    largest = 0
    for group in owners:
        d_in = base.get_submodule(group[0]).in_features
        largest = max(largest, d_in)
        layer = _layer_of(group[0])
        sizes[layer] = sizes.get(layer, 0.0) + d_in * d_in * item
    total, per_layer = sum(sizes.values()), max(sizes.values())
    workspace = 2 * largest * largest * _bytes(need.decomposition_dtype)
    # a forward without gradients: one block's activations at a time, one position's logits
    act = layer_activation_bytes(model, need.batch_size * settings.seq_len, DTYPES[settings.dtype].itemsize)
    peak_all = weights + total + workspace + act
    peak_stream = weights + per_layer + workspace + act
    budget = HEADROOM * settings.gpu_memory
    strategy = ("all layers at once" if peak_all <= budget else
                "per-layer streaming" if peak_stream <= budget else "does not fit")
    return CalibrationPlan(len(owners), total, per_layer, workspace, peak_all, peak_stream, strategy)


def plan_method(name: str, method: Method, config, settings: Settings,
                groups: list[list[str]] | None = None) -> MethodPlan:
    """The plan of one method on a fresh meta model of ``config``."""
    from accelerate import init_empty_weights

    model = meta_model(config)
    base_weights = sum(p.numel() for p in model.parameters()) * _bytes(DTYPES[settings.dtype])
    try:
        with init_empty_weights(include_buffers=False):
            trained = method.trainable_model(model)
    except NotImplementedError as e:
        raise KoreBenchError(f"cannot plan {name!r}: {e}") from None
    total = sum(p.numel() for p in trained.parameters())
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    w_bytes = _bytes(DTYPES[settings.dtype])
    master = settings.master_weights if settings.master_weights is not None else w_bytes < 4
    opt_per_param = 8 + (4 if master else 0)
    per_step = method.samples_per_step()
    micro = math.ceil(per_step / (settings.gpus * settings.grad_accum))
    act = activation_bytes(trained, micro * settings.seq_len, settings.gradient_checkpointing, w_bytes)
    weights, grads, opt = total * w_bytes, trainable * w_bytes, trainable * opt_per_param
    need = method.calibration_need(trained)
    calib = None
    if need is not None:
        calib = calibration_plan(trained, need, groups if groups is not None else input_groups(model),
                                 settings, base_weights)  # calibration runs before the adapter exists
    layer_params = max(sum(p.numel() for p in layer.parameters()) for layer in language_model(trained).layers)
    n = settings.gpus
    modes = {}
    for mode in settings.modes:
        if mode == "ddp":
            parts = (weights, grads, opt, act, 0.0)
        elif mode == "zero2":
            parts = (weights, grads / n, opt / n, act, 0.0)
        else:  # zero3, fsdp full shard
            parts = (weights / n, grads / n, opt / n, act, 2 * layer_params * w_bytes if n > 1 else 0.0)
        fit = ModeFit(*parts, fits=False, refused=type(method).unsupported_sharding.get(mode))
        fit.fits = fit.refused is None and fit.total <= HEADROOM * settings.gpu_memory
        modes[mode] = fit
    return MethodPlan(name, total, trainable, micro, act, opt, calib, modes, method.config_dict())


def plan(config_source: str | Path | dict, methods: dict[str, Method], settings: Settings) -> list[MethodPlan]:
    """Plans of every method (same model config, same settings)."""
    settings.check()
    config = load_config(config_source)
    probe = meta_model(config)
    groups = None
    plans = []
    for name, method in methods.items():
        if groups is None and method.calibration_need(probe) is not None:
            groups = input_groups(probe)  # one trace serves every calibrating method
        plans.append(plan_method(name, method, config, settings, groups))
    return plans


def read_accelerate_config(path: Path, gpus: int) -> tuple[str, int]:
    """The sharding mode and process count of an accelerate config file; refuses more processes than GPUs."""
    import yaml

    if not path.is_file():
        raise KoreBenchError(f"--accelerate-config {path}: no such file")
    cfg = yaml.safe_load(path.read_text()) or {}
    kind = str(cfg.get("distributed_type", "NO")).upper()
    if kind == "DEEPSPEED":
        stage = int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0))
        if stage not in (2, 3):
            raise KoreBenchError(f"{path}: DeepSpeed ZeRO stage {stage} is not planned (2 or 3)")
        mode = f"zero{stage}"
    elif kind == "FSDP":
        mode = "fsdp"
    elif kind in ("MULTI_GPU", "NO"):
        mode = "ddp"
    else:
        raise KoreBenchError(f"{path}: distributed_type {kind} is not planned (MULTI_GPU, FSDP, DEEPSPEED)")
    procs = int(cfg.get("num_processes", 1))
    machines = int(cfg.get("num_machines", 1))
    if procs > gpus * machines:
        raise KoreBenchError(f"{path} asks for {procs} processes on {machines} machine(s) but --gpus is {gpus} "
                             f"per machine: one process per GPU (set num_processes to {gpus * machines} or fewer)")
    return mode, procs


def sharding_mode_from_env(env: dict[str, str] | None = None) -> str | None:
    """The mode ``accelerate launch`` set up for this process (None: a single process, no launcher)."""
    import os

    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return f"zero{env.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '2')}"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if int(env.get("WORLD_SIZE", "1")) > 1:
        return "ddp"
    return None


def check_sharding(methods: dict[str, Method], mode: str | None) -> None:
    """KoreBenchError naming the first method that declares it cannot train under ``mode``."""
    if mode is None:
        return
    for name, method in methods.items():
        reason = type(method).unsupported_sharding.get(mode)
        if reason:
            raise KoreBenchError(f"method {name!r} cannot train under {mode}: {reason}")


def gb(x: float) -> str:
    return f"{x / GB:.1f} GB"


def millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"
