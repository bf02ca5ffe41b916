"""Input second-moment ("covariance") matrices of the decoder-block linears on calibration prompts.

Shared by every method or diagnostic that needs to know which input directions a model uses on
some data (KORE / LoRA-Null, CorDA-style inits, the null-space diagnostic). Semantics follow the
KORE / CorDA calibration hook (reference/kore.md §2.3), batched:

- inputs are the samples' *prompts*: the first user turn (image + question), rendered with the
  assistant generation prompt, no answer (:func:`prompt_only`);
- per sample, the layer input ``X`` (its unpadded tokens, image tokens included) is scaled as
  ``X / |max(X)|`` where ``max`` is the signed largest element (not ``max |X|``);
- ``C = Σ_s X̃_sᵀ X̃_s / N``: uncentred, averaged over the N samples. The paper divides by the
  constant 256 (its N); scaling does not change eigenvectors, so nothing downstream differs.

Linears that receive the same input tensor in a forward pass (q/k/v, gate/up) share one matrix
object; sharing is detected from the tensors, not from module names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import random
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..data import Sample
from ..encoding import collate, encode_prompt
from ..errors import KoreBenchError
from ..models.parts import decoder_linear_names, unwrap
from ..progress import Progress

FORMAT_VERSION = 1
SCALES = ("per_sample_max", "none")


@dataclasses.dataclass
class Covariances:
    """Linear name → its input covariance (n×n); linears sharing an input share one tensor."""

    matrices: dict[str, torch.Tensor]
    num_samples: int
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    fingerprint: str = ""

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.matrices:
            raise KoreBenchError(f"no covariance for layer {name!r}")
        return self.matrices[name]

    def __contains__(self, name: object) -> bool:
        return name in self.matrices

    def __iter__(self) -> Iterator[str]:
        return iter(self.matrices)

    def __len__(self) -> int:
        return len(self.matrices)

    def groups(self) -> list[list[str]]:
        """Names grouped by the matrix they share, in layer order."""
        by_id: dict[int, list[str]] = {}
        for name, mat in self.matrices.items():
            by_id.setdefault(id(mat), []).append(name)
        return list(by_id.values())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Covariances:
        """A copy on ``device`` / in ``dtype`` that keeps the sharing."""
        moved: dict[int, torch.Tensor] = {}
        out = {}
        for name, mat in self.matrices.items():
            if id(mat) not in moved:
                moved[id(mat)] = mat.to(device=device, dtype=dtype)
            out[name] = moved[id(mat)]
        return dataclasses.replace(self, matrices=out)

    def save(self, path: Path | str) -> None:
        """Write one tensor per shared matrix plus the name map (safetensors, atomic)."""
        from safetensors.torch import save_file

        path = Path(path)
        index: dict[int, int] = {}
        tensors: dict[str, torch.Tensor] = {}
        names: dict[str, int] = {}
        for name, mat in self.matrices.items():
            if id(mat) not in index:
                index[id(mat)] = len(index)
                tensors[f"m{index[id(mat)]}"] = mat.detach().contiguous().cpu()
            names[name] = index[id(mat)]
        meta = {"names": json.dumps(names), "num_samples": str(self.num_samples),
                "settings": json.dumps(self.settings, sort_keys=True), "fingerprint": self.fingerprint,
                "format": str(FORMAT_VERSION)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path | str, device: torch.device | str = "cpu") -> Covariances:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            names = json.loads(meta["names"])
            return cls({n: tensors[f"m{i}"] for n, i in names.items()}, int(meta["num_samples"]),
                       json.loads(meta.get("settings", "{}")), meta.get("fingerprint", ""))
        except Exception as e:  # safetensors raises its own error type for corrupt files
            raise KoreBenchError(f"{path}: not a readable covariance file ({e})") from e


def prompt_only(sample: Sample) -> Sample:
    """The sample cut to its first user turn (image + question), without any answer."""
    for message in sample.messages:
        if message["role"] == "user":
            return dataclasses.replace(sample, messages=[dict(message)], answer=None)
    raise KoreBenchError(f"{sample.source or sample.id}: no user turn to calibrate on")


def draw_calibration(pool: Sequence[Sample], n: int, seed: int) -> list[Sample]:
    """``n`` samples drawn from ``pool`` with ``seed`` (all of them when the pool is smaller)."""
    if n < 1:
        raise KoreBenchError(f"calibration_samples must be at least 1, got {n}")
    if not pool:
        from ..old_data import no_old_data

        raise no_old_data("the calibration set is empty: no old-knowledge samples to calibrate on")
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


def encode_prompts(processor, samples: Sequence[Sample]) -> list[dict[str, torch.Tensor]]:
    """Model inputs of the samples' prompts (batch size 1 each, no padding)."""
    return [encode_prompt(processor, prompt_only(s)) for s in samples]


def weights_fingerprint(model: nn.Module) -> str:
    """A content hash of every parameter and buffer (reads all weights: seconds per GB)."""
    h = hashlib.sha256()
    for name, t in list(unwrap(model).named_parameters()) + list(unwrap(model).named_buffers()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.device.type != "meta":
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def features_fingerprint(features: Sequence[dict[str, torch.Tensor]]) -> str:
    """A hash of exactly what the model would see (token ids, pixels, grids)."""
    h = hashlib.sha256()
    for f in features:
        for key in sorted(f):
            t = f[key].detach().cpu().contiguous()
            h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def collect_covariances(
    model: nn.Module,
    processor,
    samples: Sequence[Sample],
    batch_size: int = 8,
    dtype: torch.dtype = torch.float64,
    scale: str = "per_sample_max",
    cache_dir: Path | str | None = None,
    model_fingerprint: str | None = None,
) -> Covariances:
    """Covariances of the inputs of every decoder-block linear on the samples' prompts.

    Batches are right-padded and the padding is masked out, so the result equals one forward
    per sample. Accumulation happens on the model's device in ``dtype``. With ``cache_dir`` the
    result is stored as ``cov-<fingerprint>.safetensors`` and reused; the fingerprint covers the
    model (``model_fingerprint``, else a hash of the weights), the encoded prompts, ``dtype`` and
    ``scale`` (not ``batch_size``, which changes only rounding).
    """
    if scale not in SCALES:
        raise KoreBenchError(f"unknown covariance scale {scale!r} (valid: {', '.join(SCALES)})")
    if batch_size < 1:
        raise KoreBenchError(f"calibration batch_size must be at least 1, got {batch_size}")
    if not samples:
        raise KoreBenchError("the calibration set is empty: covariances need at least one sample")
    base = unwrap(model)
    names = decoder_linear_names(base)
    if not names:
        raise KoreBenchError(f"{type(base).__name__} has no linear layers in its decoder blocks")
    features = encode_prompts(processor, samples)
    settings = {"dtype": str(dtype).removeprefix("torch."), "scale": scale, "format": FORMAT_VERSION}
    path = None
    fp = ""
    if cache_dir is not None:
        from ..store import fingerprint

        model_fp = model_fingerprint or weights_fingerprint(base)
        fp = fingerprint("covariances", model_fp, features_fingerprint(features), settings, names)
        path = Path(cache_dir) / f"cov-{fp}.safetensors"
        if distributed.broadcast(path.exists()):  # one decision for every rank (a miss means collectives)
            cached = Covariances.load(path, device=_device(base))
            if list(cached.matrices) == names:
                return cached
    covs = _accumulate(base, names, features, _pad_id(processor), batch_size, dtype, scale)
    covs.settings, covs.fingerprint = settings, fp
    if path is not None and distributed.is_main():
        covs.save(path)
    return covs


class _Hooks:
    """Forward pre-hooks that accumulate ``X̃ᵀX̃`` per distinct input tensor of one forward pass."""

    def __init__(self, names: list[str], dtype: torch.dtype, scale: str):
        self.names, self.dtype, self.scale = names, dtype, scale
        self.sums: dict[str, torch.Tensor] = {}  # owner name → accumulated matrix
        self.owner: dict[str, str] = {}  # name → owner (the first linear to see that input)
        self.mask = torch.ones(0, 0, dtype=torch.bool)
        self.rows: list[slice | torch.Tensor] = []
        self.ids: list[str] = []
        self._seen: dict[int, tuple[weakref.ref, str]] = {}

    def start_batch(self, mask: torch.Tensor, ids: list[str]) -> None:
        """A new forward: ``mask`` (batch × tokens) marks each sample's real tokens."""
        self.mask, self.ids, self._seen = mask.bool(), ids, {}
        self.rows = []
        for keep in self.mask.cpu():
            length = int(keep.sum())
            prefix = bool(keep[:length].all())  # right padding: the real tokens come first
            self.rows.append(slice(0, length) if prefix else keep.nonzero().squeeze(1).to(mask.device))

    def hook(self, name: str):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise KoreBenchError(f"{name}: called without a positional input tensor")
            x = args[0]
            hit = self._seen.get(id(x))
            if hit is not None and hit[0]() is x:  # same tensor object as an earlier linear's input
                self._link(name, hit[1])
                return
            self._seen[id(x)] = (weakref.ref(x), name)
            self._link(name, name)
            self._add(name, x)

        return pre_hook

    def _link(self, name: str, owner: str) -> None:
        if self.owner.setdefault(name, owner) != owner:
            raise KoreBenchError(f"{name}: shares its input with {owner} in one batch but with "
                                 f"{self.owner[name]} in another; cannot share covariances")

    def _add(self, name: str, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[:2] != self.mask.shape:
            raise KoreBenchError(f"{name}: input of shape {tuple(x.shape)} does not match the "
                                 f"attention mask {tuple(self.mask.shape)}")
        n = x.shape[-1]
        total = self.sums.get(name)
        if total is None:
            total = self.sums[name] = torch.zeros(n, n, dtype=self.dtype, device=x.device)
        tops = []
        for b, rows in enumerate(self.rows):
            xs = x[b, rows].detach().to(self.dtype, copy=True)  # never scale the model's own tensor
            if self.scale == "per_sample_max":
                top = xs.max().abs()  # the signed maximum element, then its absolute value
                tops.append(top)
                xs /= top
            total.addmm_(xs.T, xs)
        if tops:
            top = torch.stack(tops)
            if not torch.isfinite(top).all():
                raise KoreBenchError(f"non-finite activations at the input of {name} (samples {self.ids})")
            if not (top > 0).all():
                raise KoreBenchError(f"{name}: the largest input element of a sample of {self.ids} is 0; "
                                     "cannot scale by it (the covariance would be NaN/Inf)")


@torch.no_grad()
def _accumulate(model: nn.Module, names: list[str], features: list[dict[str, torch.Tensor]], pad_id: int,
                batch_size: int, dtype: torch.dtype, scale: str) -> Covariances:
    hooks = _Hooks(names, dtype, scale)
    handles = [model.get_submodule(n).register_forward_pre_hook(hooks.hook(n)) for n in names]
    device = _device(model)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    order = sorted(range(len(features)), key=lambda i: features[i]["input_ids"].shape[1])
    was_training = model.training
    model.eval()
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    # under a launcher each rank accumulates its share of the batches and the sums are all-reduced;
    # with fewer batches than ranks every rank accumulates them all (identical sums, no reduction)
    shared = distributed.active() and len(batches) >= distributed.world_size()
    try:
        bar = Progress("calibration (covariances)", len(order), unit="prompts")
        for _, idx in (distributed.shard(batches) if shared else enumerate(batches)):
            batch = collate([features[i] for i in idx], pad_id, padding_side="right")
            batch = {k: v.to(device) for k, v in batch.items()}
            hooks.start_batch(batch["attention_mask"], [str(i) for i in idx])
            model(**batch, **extra)
            bar.advance(len(idx))
        bar.close()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if shared:
        for owner in sorted(hooks.sums):
            distributed.all_reduce_sum(hooks.sums[owner])
    missing = [n for n in names if n not in hooks.owner]
    if missing:
        raise KoreBenchError(f"layer {missing[0]} never ran during calibration ({len(missing)} such layers)")
    matrices = {}
    for n in names:
        owner = hooks.owner[n]
        mat = hooks.sums[owner]
        if n == owner:
            mat /= len(features)
            if not torch.isfinite(mat).all():
                raise KoreBenchError(f"the covariance of layer {n} contains NaN/Inf")
        matrices[n] = mat
    return Covariances(matrices, len(features))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _pad_id(processor) -> int:
    tok = getattr(processor, "tokenizer", processor)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
