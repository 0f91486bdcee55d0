"""Proximal maps shared by DessiLBI, RMDA and proximal SGD.

Groups follow the papers: for a 4-D conv weight one group per output filter
(dim 0); for a 2-D linear weight each element is its own group (plain lasso),
unless ``filterwise=True`` asks for one group per output row.

RMDA and proximal SGD shrink one group per output filter / output row (see
``shrink_groups_``); ``growth.optim.structure`` measures the structure they produce.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# The smallest norm we divide by: a zero group must shrink to zero, not to NaN.
NORM_FLOOR = 1e-12


def is_grouped(p: Tensor, filterwise_linear: bool = False) -> bool:
    """Whether ``p`` is shrunk group-wise (conv filters) rather than element-wise."""
    return p.ndim >= 3 or (filterwise_linear and p.ndim == 2)


def group_norms(x: Tensor, out: Tensor | None = None) -> Tensor:
    """ℓ2 norm of every dim-0 slice of ``x`` (one value per output filter)."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1, out=out)


def group_shrink_factor(norms: Tensor, threshold: float | Tensor) -> Tensor:
    """max(0, 1 − threshold/‖x_g‖), computed in place on ``norms``; 0 for zero groups."""
    return norms.clamp_(min=NORM_FLOOR).reciprocal_().mul_(-threshold).add_(1.0).clamp_(min=0.0)


def group_soft_threshold(x: Tensor, threshold: float | Tensor, grouped: bool) -> Tensor:
    """Prox of threshold·Σ_g‖x_g‖₂ (grouped) or threshold·‖x‖₁ (element-wise); returns a new tensor."""
    if grouped:
        factor = group_shrink_factor(group_norms(x), threshold)
        return x * factor.view(-1, *([1] * (x.ndim - 1)))
    return torch.sign(x) * (x.abs() - threshold).clamp_(min=0.0)


# --- Row-group lasso as RMDA and proximal SGD use it -------------------------
#
# ψ(W) = λ Σ_g w_g ‖W_g‖₂ with one group per output filter (conv) or output row
# (linear), and w_g = √|I_g| as in the RMDA paper's experiments (App. C, after
# Deleu & Bengio 2021), so that λ means the same for small and large layers.


def group_lasso_weight(p: Tensor) -> float:
    """√|I_g|, the weight of every dim-0 group of ``p`` (all groups of a tensor have one size)."""
    return math.sqrt(p.numel() // p.shape[0]) if p.ndim >= 2 and p.shape[0] > 0 else 0.0


def shrink_groups_(x: Tensor, threshold: float | Tensor) -> Tensor:
    """In-place prox of ``threshold``·Σ_g‖x_g‖₂ over the dim-0 groups of ``x``; returns ``x``.

    ``threshold`` may be a 0-d tensor on ``x``'s device, so callers never sync to the host.
    """
    factor = group_shrink_factor(group_norms(x), threshold)
    return x.mul_(factor.view(-1, *([1] * (x.ndim - 1))))
