"""Proximal maps shared by DessiLBI, RMDA and proximal SGD.

Groups follow the papers: for a 4-D conv weight one group per output filter
(dim 0); for a 2-D linear weight each element is its own group (plain lasso),
unless ``filterwise=True`` asks for one group per output row.

RMDA and proximal SGD shrink one group per output filter / output row (see
``shrink_groups_``); ``group_sparsity`` and the ``unit_*`` helpers below measure
the structure they produce.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Protocol, Sequence

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

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


# --- Group sparsity, the RMDA paper's measure ---------------------------------

Grouping = Literal["kernel", "filter"]


class HasProducers(Protocol):
    """What the unit helpers need from ``growth.models.Unit``."""

    producers: Sequence[tuple[nn.Module, nn.Module | None]]


def zero_group_mask(x: Tensor, grouping: Grouping = "kernel") -> Tensor:
    """True for every all-zero group of ``x`` (``ndim >= 2``).

    ``"filter"``: one group per dim-0 slice (the groups ψ shrinks).
    ``"kernel"``: one group per (output, input) slice — ``W[i, j, :, :]`` of a conv,
    a single element of a linear weight — the grouping the RMDA paper evaluates with
    (section 5: "kernel-wise grouping in their group sparsity evaluation").
    """
    if x.ndim < 2:
        raise ValueError(f"group sparsity is defined for weights with ndim >= 2, got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1) if grouping == "filter" else x.reshape(x.shape[0], x.shape[1], -1)
    return flat.eq(0).all(dim=-1).reshape(-1)


def regularized_weights(source: Optimizer | Iterable[Tensor] | Iterable[dict[str, Any]]) -> list[Tensor]:
    """The tensors ψ acts on: ``ndim >= 2`` params of groups not flagged ``regularized=False``.

    ``source`` is an optimizer, a list of param-group dicts, or plain tensors (all taken as regularized).
    """
    items = source.param_groups if isinstance(source, Optimizer) else list(source)
    weights: list[Tensor] = []
    for item in items:
        if isinstance(item, dict):
            if item.get("regularized", True):
                weights.extend(p for p in item["params"] if p.ndim >= 2)
        elif item.ndim >= 2:
            weights.append(item)
    return weights


@torch.no_grad()
def group_sparsity(
    source: Optimizer | Iterable[Tensor] | Iterable[dict[str, Any]], grouping: Grouping = "kernel"
) -> float:
    """Share of all-zero groups among the regularized weights' groups, in [0, 1].

    As the RMDA paper reports it: 0 when no group is zero, 1 when every regularized
    weight is zero; kernel-wise by default (see ``zero_group_mask``). 0.0 when there
    is nothing regularized. One host sync.
    """
    masks = [zero_group_mask(w, grouping) for w in regularized_weights(source)]
    if not masks:
        return 0.0
    total = sum(m.numel() for m in masks)
    if total == 0:
        return 0.0
    zero = torch.stack([m.sum() for m in masks]).sum()
    return float(zero) / total


@torch.no_grad()
def unit_zero_channels(unit: HasProducers) -> Tensor:
    """Bool mask over a unit's channels: True where every producer's filter is all zero.

    A residual unit's channel is written by several convs (every block's conv2 and
    the projection); it is dead only if all of them zero it. BatchNorm shifts are
    not looked at: a zero filter followed by BN emits a constant, which the next
    layer's bias can absorb, so the channel is removable.
    """
    masks = [zero_group_mask(conv.weight, "filter") for conv, _ in unit.producers]
    return torch.stack([m.to(masks[0].device) for m in masks]).all(dim=0)


def unit_zero_groups(unit: HasProducers) -> tuple[int, int]:
    """(all-zero channels, width) of a unit; ``width - zero`` is its "selected" count."""
    zero = unit_zero_channels(unit)
    return int(zero.sum()), zero.numel()
