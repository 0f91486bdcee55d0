r"""Reading the learned structure off a trained model: which filters are selected, which groups are zero.

Under DessiLBI a filter is *selected* when its group of Γ is non-zero (eq. 23
of the journal paper; Γ is zero before the parameter's first step). Under any
other optimizer the structure is the weights' own: a filter is selected when
its weights are not all zero, which is what a group-lasso method such as RMDA
or proximal SGD leaves behind. Everything here reads that one rule:

- :func:`support_counts` / :func:`unit_support`: selected and total filters
  per layer or unit (the ratio the growth rule compares with τ);
- :func:`selected_channels`: *which* channels of a unit are selected (what
  DessiLBI pruning keeps);
- :func:`masks` and :func:`sparse_weights`: the weight, filter and layer masks
  of eqs. (21)–(22), and the sparse network they select;
- :func:`group_sparsity`, :func:`zero_group_mask`, :func:`unit_zero_channels`:
  the share of all-zero groups, the RMDA paper's measure.

Counts stay on the device; each function says when it syncs with the host.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from growth.optim.dessilbi import DessiLBI

__all__ = [
    "Grouping",
    "StructureMasks",
    "group_sparsity",
    "lifted_params",
    "masks",
    "regularized_weights",
    "selected_channels",
    "selected_per_unit",
    "sparse_weights",
    "structure_tensor",
    "support_counts",
    "unit_support",
    "unit_zero_channels",
    "unit_zero_groups",
    "zero_group_mask",
]


class HasProducers(Protocol):
    """What the unit helpers need from ``growth.models.Unit``."""

    producers: Sequence[tuple[nn.Module, nn.Module | None]]


def _lifted(optimizer: Optimizer, p: Tensor) -> bool:
    """Whether DessiLBI pairs ``p`` with a Γ (structural groups, ``ndim >= 2``)."""
    if not isinstance(optimizer, DessiLBI) or p.ndim < 2:
        return False
    return any(group.get("structural", True) and any(q is p for q in group["params"])
               for group in optimizer.param_groups)


def structure_tensor(optimizer: Optimizer | None, p: Tensor) -> Tensor:
    """The tensor whose support is ``p``'s structure: Γ under DessiLBI, ``p`` itself otherwise.

    A parameter DessiLBI lifts but has not stepped yet has Γ = 0 (its initial value).
    """
    state = optimizer.state.get(p) if optimizer is not None else None
    if state and "gamma" in state:
        return state["gamma"]
    if optimizer is not None and _lifted(optimizer, p):
        return torch.zeros_like(p)
    return p


def _filter_dims(p: Tensor) -> tuple[int, ...]:
    return tuple(range(1, p.ndim))


def _selected_filters(source: Tensor) -> Tensor:
    """One bool per output filter (row): True where the filter's group is non-zero."""
    if source.ndim == 1:
        return source != 0
    return torch.any(source != 0, dim=_filter_dims(source))


# ---------------------------------------------------------------------------
# Selected filters (eq. 23) and masks (eqs. 21–22)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StructureMasks:
    """Masks from the support of one weight's structure tensor.

    ``weight``: 1[Γ ≠ 0], the shape of the weight (eq. 21);
    ``filter``: one entry per output filter (row), True where Γ's group is
    non-zero (eq. 22); ``layer``: 0-d, True iff any filter is selected (a
    layer with an empty support can be removed, section 5.1).
    """

    weight: Tensor
    filter: Tensor
    layer: Tensor


def masks(optimizer: Optimizer, p: Tensor) -> StructureMasks:
    """Weight, filter and layer masks of ``p``; no host sync."""
    source = structure_tensor(optimizer, p)
    filters = _selected_filters(source)
    return StructureMasks(weight=source != 0, filter=filters, layer=filters.any())


def support_counts(
    optimizer: Optimizer | None, layers: Sequence[Sequence[Tensor]]
) -> tuple[Tensor, Tensor]:
    """(selected filters, filters) per layer as two int64 tensors, no host sync.

    Each layer is a list of weights whose output filters it owns (e.g. every
    producer conv of a residual unit); counts add up over the list. Read both
    with one ``.tolist()`` each after all layers are done.
    """
    if not layers or not any(layers):
        empty = torch.zeros(len(layers), dtype=torch.int64)
        return empty, empty.clone()
    device = next(p.device for layer in layers for p in layer)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    selected = torch.stack([
        sum((_selected_filters(structure_tensor(optimizer, p)).sum().to(device) for p in layer), zero)
        for layer in layers
    ])
    total = torch.tensor([sum(p.shape[0] for p in layer) for layer in layers], dtype=torch.int64)
    return selected, total.to(device)


def unit_support(optimizer: Optimizer | None, params: Sequence[Tensor]) -> tuple[int, int]:
    """(#selected filters, #filters) over ``params``: the ratio of eq. (23).

    Syncs with the host once; use :func:`support_counts` for many layers.
    """
    selected, total = support_counts(optimizer, [params])
    return int(selected.tolist()[0]), int(total.tolist()[0])


def selected_per_unit(optimizer: Optimizer | None, units: Sequence[HasProducers]) -> list[int]:
    """Selected filters of every unit, summed over its producers; one host sync for all of them."""
    selected, _ = support_counts(optimizer, [[conv.weight for conv, _ in unit.producers] for unit in units])
    return [int(n) for n in selected.tolist()]


def selected_channels(optimizer: Optimizer | None, unit: HasProducers) -> Tensor:
    """Bool mask over a unit's channels: True where any producer's filter is selected; no host sync.

    A residual unit's channel is written by several convs (every block's last conv and the
    projection); it carries a signal, and is kept, as soon as one of them selects it.
    ``selected_per_unit`` counts the same filters one producer at a time, as the growth ratio does.
    """
    selected = [_selected_filters(structure_tensor(optimizer, conv.weight)) for conv, _ in unit.producers]
    return torch.stack([s.to(selected[0].device) for s in selected]).any(dim=0)


def lifted_params(optimizer: Optimizer) -> Iterator[Tensor]:
    """The parameters DessiLBI pairs with a Γ: ``ndim >= 2`` params of groups not flagged ``structural=False``."""
    for group in optimizer.param_groups:
        if group.get("structural", True):
            yield from (p for p in group["params"] if p.ndim >= 2)


@contextmanager
def sparse_weights(optimizer: Optimizer) -> Iterator[None]:
    """Temporarily set W ← W ⊙ 1[Γ ≠ 0] for every structural parameter.

    The sparse network DessiLBI has selected, e.g. to evaluate it. W is
    restored on exit, also on an exception; do not step the optimizer or
    resize layers inside the block. A parameter that has never been stepped
    has Γ = 0, so its sparse version is zero.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for p in lifted_params(optimizer):
                saved.append((p, p.detach().clone()))
                p.mul_(structure_tensor(optimizer, p) != 0)
        yield
    finally:
        with torch.no_grad():
            for p, original in saved:
                p.copy_(original)


# ---------------------------------------------------------------------------
# Group sparsity, the RMDA paper's measure
# ---------------------------------------------------------------------------

Grouping = Literal["kernel", "filter"]


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
    zero_masks = [zero_group_mask(w, grouping) for w in regularized_weights(source)]
    if not zero_masks:
        return 0.0
    total = sum(m.numel() for m in zero_masks)
    if total == 0:
        return 0.0
    zero = torch.stack([m.sum() for m in zero_masks]).sum()
    return float(zero) / total


@torch.no_grad()
def unit_zero_channels(unit: HasProducers) -> Tensor:
    """Bool mask over a unit's channels: True where every producer's filter is all zero.

    A residual unit's channel is written by several convs (every block's conv2 and
    the projection); it is dead only if all of them zero it. BatchNorm shifts are
    not looked at: a zero filter followed by BN emits a constant, which the next
    layer's bias can absorb, so the channel is removable.
    """
    zero_masks = [zero_group_mask(conv.weight, "filter") for conv, _ in unit.producers]
    return torch.stack([m.to(zero_masks[0].device) for m in zero_masks]).all(dim=0)


def unit_zero_groups(unit: HasProducers) -> tuple[int, int]:
    """(all-zero channels, width) of a unit; ``width - zero`` is its "selected" count."""
    zero = unit_zero_channels(unit)
    return int(zero.sum()), zero.numel()
