"""The null-space factorisation of KORE / LoRA-Null and the rank rules adapters share.

For a decoder-block linear ``W`` (m×n) with calibration covariance ``C`` (:mod:`.covariance`):
``Q`` = eigenvectors of the ``rank`` smallest eigenvalues of ``C``, ``P = Q Qᵀ``,
``W = W P + (W − W P)``, ``W P = U Σ Vᵀ`` → ``B = U√Σ``, ``A = √Σ Vᵀ``, residual ``W − W P``
(reference/kore.md §2.4). Engine code: ``methods/kore.py``, ``methods/corda.py`` and
:mod:`kore_bench.studies.diagnose` use it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import KoreBenchError
from ..models.parts import decoder_linear_names, language_model, unwrap


def default_rank(model: torch.nn.Module) -> int:
    """The paper's r=128 at hidden 4096, scaled to the model's hidden size."""
    hidden = language_model(model).config.hidden_size
    return max(4, round(128 * hidden / 4096))



def null_space_basis(cov: torch.Tensor, rank: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Eigenvectors (n×rank) of the ``rank`` smallest eigenvalues of the symmetric PSD ``cov``."""
    _, vectors = torch.linalg.eigh(cov.to(dtype))  # ascending eigenvalues
    return vectors[:, :rank]


def null_space_factors(weight: torch.Tensor, cov: torch.Tensor, rank: int, *,
                       dtype: torch.dtype = torch.float64, basis: torch.Tensor | None = None,
                       name: str = "layer") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, A, residual)`` with ``B @ A = W P`` and ``residual = W − W P`` (kore.md §2.4), in ``dtype``.

    ``W P = (W Q) Qᵀ`` has rank ≤ ``rank``, so its SVD is taken from the m×rank matrix ``W Q``
    (``W Q = U Σ Rᵀ`` gives ``W P = U Σ (Q R)ᵀ``): the same factors as the SVD of the m×n ``W P``
    (up to the sign of each component, as with any SVD), far cheaper. If ``rank`` exceeds the
    output dimension m, the ``rank − m`` extra components have Σ = 0: their B columns are zero
    and their A rows are the remaining (unit-norm) null-space directions, so B can still learn
    there. ``basis`` is :func:`null_space_basis` of ``cov`` when already computed.
    """
    m, n = weight.shape
    if not 1 <= rank < n:
        raise KoreBenchError(f"rank {rank} must be between 1 and the input dimension {n} of layer {name} "
                             "(exclusive): the null space would be everything")
    if cov.shape != (n, n):
        raise KoreBenchError(f"layer {name}: covariance of shape {tuple(cov.shape)} does not fit its "
                             f"input dimension {n}")
    device = weight.device
    q = (basis if basis is not None else null_space_basis(cov.to(device), rank, dtype)).to(device, dtype)
    w = weight.detach().to(dtype)
    wq = w @ q  # (m, rank)
    u, s, rh = torch.linalg.svd(wq, full_matrices=rank > m)
    k = s.shape[0]  # min(m, rank)
    v = q @ rh.T  # (n, rank), orthonormal columns
    root = s.sqrt()
    b = torch.zeros(m, rank, dtype=dtype, device=device)
    b[:, :k] = u[:, :k] * root
    a_scale = torch.ones(rank, dtype=dtype, device=device)
    a_scale[:k] = root
    a = a_scale[:, None] * v.T
    residual = w - wq @ q.T
    return b, a, residual


def adapted_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The decoder-block linears the adapter wraps (names relative to the unwrapped model)."""
    base = unwrap(model)
    names = decoder_linear_names(base)
    if not names:
        raise KoreBenchError(f"{type(base).__name__} has no linear layers in its decoder blocks to adapt")
    out = {}
    for name in names:
        module = base.get_submodule(name)
        module = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        out[name] = module
    return out


def check_rank(model: nn.Module, rank: int) -> None:
    """KoreBenchError naming the first layer whose input dimension does not exceed ``rank``."""
    if rank < 1:
        raise KoreBenchError(f"rank must be at least 1, got {rank}")
    for name, linear in adapted_linears(model).items():
        if rank >= linear.in_features:
            raise KoreBenchError(f"rank {rank} must be smaller than the input dimension "
                                 f"{linear.in_features} of layer {name}")


def matched_rank(model: nn.Module, lora_rank: int) -> int:
    """The KORE rank whose B-only parameters equal LoRA's A+B at ``lora_rank``: r·Σ(d_in+d_out)/Σd_out."""
    linears = adapted_linears(model).values()
    d_out = sum(lin.out_features for lin in linears)
    d_in = sum(lin.in_features for lin in linears)
    return round(lora_rank * (d_in + d_out) / d_out)


def resolve_rank(model: nn.Module, rank: int | None) -> int:
    return rank if rank is not None else matched_rank(model, default_rank(model))
