"""Channel surgery on a live model and its optimizer: widen, prune, add a block.

One module for DessiLBI growth (``widen``), the L1 filter-pruning baseline
(``prune``) and the AutoGrow baseline (``add_block``). Everything happens in place:

- the same ``nn.Parameter`` objects stay registered in the model and the optimizer;
  only their data is swapped (``Tensor.set_``), so param groups, LR schedulers and any reference to a
  parameter stay valid;
- every tensor in ``optimizer.state[p]`` with the parameter's old shape (momentum,
  DessiLBI's V and Γ, …) is resized the same way: kept entries keep their values,
  new entries are zero (or the new weights, for the state an optimizer declares
  ``state_like_param``). 0-d tensors (step counters) and non-tensors are left alone;
- module attributes (``in_channels``, ``out_channels``, ``num_features``,
  ``in_features``) follow the new shapes, so ``model.to_spec()`` reports them;
- gradients of touched parameters are dropped (``p.grad = None``).

Widening preserves the network function at the moment of growth (in eval mode):
new filters are Kaiming-initialised and their BatchNorm starts at the identity, but
every consumer of a new channel reads it through a zero weight. Each tensor is
rewritten once — no model rebuild, no deep copies.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from growth.models.base import GrowableNet, Unit, kaiming_normal_, normal_
from growth.models.resnet import ResNet

# AutoGrow's "GauInit": the new block's last BatchNorm scale γ ~ N(0, σ²). Their code
# exposes σ as --init-meta; a small σ starts the block close to the identity while
# still letting gradients reach its convolutions (γ = 0 would block them at first).
GAUSSIAN_INIT_STD = 1e-3

Initializer = Literal["gaussian", "zero"]


@dataclass(frozen=True)
class _Resize:
    """How one channel dimension changes: keep ``keep`` (all if None), then append ``add``."""

    keep: Tensor | None = None
    add: int = 0


# -- public API ------------------------------------------------------------------------------


def widen(
    model: GrowableNet,
    optimizer: Optimizer | None,
    unit: Unit | str,
    new_width: int,
    generator: torch.Generator | None = None,
) -> None:
    """Grow ``unit`` to ``new_width`` channels, keeping the network function unchanged.

    New filters of every producer are Kaiming-initialised from ``generator``; their
    conv bias is zero and their BatchNorm weight 1, bias 0, running mean 0, var 1.
    Consumers read the new channels through zero weights.
    """
    unit = _resolve(model, unit)
    widen_units(model, optimizer, {unit.name: new_width}, generator)


def widen_units(
    model: GrowableNet,
    optimizer: Optimizer | None,
    new_widths: Mapping[str, int],
    generator: torch.Generator | None = None,
) -> dict[str, tuple[int, int]]:
    """Widen several units at once, rewriting every tensor once; returns {name: (old, new)}.

    A new filter is Kaiming-initialised over all its input channels, including ones
    added in this same call. Random draws happen in network order, so for a plain
    (VGG) stack this equals calling :func:`widen` unit by unit in network order.
    """
    units = {u.name: u for u in model.units()}
    unknown = sorted(set(new_widths) - set(units))
    if unknown:
        raise KeyError(f"{model.family} model has no unit(s) {unknown}; units are {list(units)}")
    plan: list[tuple[Unit, _Resize]] = []
    changes: dict[str, tuple[int, int]] = {}
    for name, unit in units.items():  # network order: fixes the order of random draws
        if name not in new_widths:
            continue
        new_width = new_widths[name]
        if isinstance(new_width, bool) or not isinstance(new_width, int) or new_width < unit.width:
            raise ValueError(
                f"unit {name!r} has {unit.width} channels; widen it to an integer ≥ {unit.width}, not {new_width!r}"
            )
        if new_width > unit.width:
            plan.append((unit, _Resize(add=new_width - unit.width)))
            changes[name] = (unit.width, new_width)
    _apply(optimizer, plan, generator)
    return changes


def prune(model: GrowableNet, optimizer: Optimizer | None, unit: Unit | str, keep: Tensor | Sequence[int]) -> None:
    """Keep only the channels ``keep`` (indices, in the given order) of ``unit``.

    Drops the producers' filters and BatchNorm entries (running statistics included)
    and the consumers' matching input channels, with their optimizer state.
    """
    unit = _resolve(model, unit)
    _apply(optimizer, [(unit, _Resize(keep=_checked_indices(keep, unit)))], None)


def add_block(
    model: GrowableNet,
    optimizer: Optimizer | None,
    stage: int | str,
    initializer: Initializer = "gaussian",
    generator: torch.Generator | None = None,
    std: float = GAUSSIAN_INIT_STD,
) -> str:
    """Append a basic block to a residual stage; returns the new block's unit name.

    ``stage`` is a 0-based index into ``model.stages`` or a unit name (``"stage2"``).
    The block's inner width copies the stage's last block. Its convolutions are
    Kaiming-initialised; its last BatchNorm weight is 0 (``"zero"``: the block starts
    as the identity, outputs unchanged) or N(0, ``std``²) (``"gaussian"``, AutoGrow's
    default). New parameters join the optimizer groups that hold their counterparts
    in the previous block, so they get the same flags (``structural`` …) and
    hyper-parameters; existing state is untouched.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"add_block needs a residual family with stages of blocks (resnet), not {model.family!r}")
    if initializer not in ("gaussian", "zero"):
        raise ValueError(f"initializer must be 'gaussian' or 'zero', not {initializer!r}")
    index = _stage_index(model, stage)
    previous = model.stages[index].blocks[-1]
    block = model.append_block(index, generator)
    with torch.no_grad():
        if initializer == "zero":
            block.bn2.weight.zero_()
        else:
            normal_(block.bn2.weight, std, generator)
    if optimizer is not None:
        _join_groups_of(optimizer, block, previous)
    return f"stage{index + 1}.block{len(model.stages[index].blocks)}"


# -- the one resizing pass ---------------------------------------------------------------------


def _apply(optimizer: Optimizer | None, plan: list[tuple[Unit, _Resize]], generator: torch.Generator | None) -> None:
    """Resize every module the planned units touch; each tensor is rewritten once."""
    out_edits: dict[nn.Module, _Resize] = {}
    in_edits: dict[nn.Module, _Resize] = {}
    for unit, resize in plan:
        for conv, bn in unit.producers:
            out_edits[conv] = resize
            if bn is not None:
                out_edits[bn] = resize
        for consumer in unit.consumers:
            in_edits[consumer] = resize
    modules = list(dict.fromkeys([*out_edits, *in_edits]))  # producers first, in plan order
    _check_state_shapes(optimizer, modules)
    for module in modules:
        out, in_ = out_edits.get(module), in_edits.get(module)
        if isinstance(module, nn.BatchNorm2d):
            _resize_batch_norm(module, optimizer, out)
        elif isinstance(module, nn.Conv2d | nn.Linear):
            _resize_weighted(module, optimizer, out, in_, generator)
        else:
            raise TypeError(f"cannot resize channels of {type(module).__name__}")


def _resize_weighted(
    module: nn.Conv2d | nn.Linear,
    optimizer: Optimizer | None,
    out: _Resize | None,
    in_: _Resize | None,
    generator: torch.Generator | None,
) -> None:
    weight = _resized(module.weight.data, out, in_)
    if out is not None and out.add:
        kaiming_normal_(weight[weight.shape[0] - out.add :], generator)
    _replace(module.weight, weight, optimizer, out, in_)
    if module.bias is not None and out is not None:
        _replace(module.bias, _resized(module.bias.data, out, None), optimizer, out, None)
    new_out, new_in = weight.shape[0], weight.shape[1]
    if isinstance(module, nn.Conv2d):
        module.out_channels, module.in_channels = new_out, new_in
    else:
        module.out_features, module.in_features = new_out, new_in


def _resize_batch_norm(bn: nn.BatchNorm2d, optimizer: Optimizer | None, out: _Resize | None) -> None:
    assert out is not None, "a BatchNorm is only ever resized as a producer"
    kept = bn.num_features if out.keep is None else len(out.keep)
    new = slice(kept, None)
    if bn.weight is not None:
        weight = _resized(bn.weight.data, out, None)
        weight[new] = 1.0
        _replace(bn.weight, weight, optimizer, out, None)
        _replace(bn.bias, _resized(bn.bias.data, out, None), optimizer, out, None)
    if bn.running_mean is not None:
        _swap(bn.running_mean, _resized(bn.running_mean, out, None))
        running_var = _resized(bn.running_var, out, None)
        running_var[new] = 1.0
        _swap(bn.running_var, running_var)
    bn.num_features = kept + out.add


def _resized(old: Tensor, out: _Resize | None, in_: _Resize | None) -> Tensor:
    """A new tensor: the kept entries of ``old`` (dims 0 and 1) followed by zeros for the added ones.

    It has ``old``'s dtype, device and memory format (a channels_last conv weight
    and its optimizer state stay channels_last).
    """
    layout = _memory_format(old)
    kept = old
    if out is not None and out.keep is not None:
        kept = kept.index_select(0, out.keep.to(old.device))
    if in_ is not None and in_.keep is not None:
        kept = kept.index_select(1, in_.keep.to(old.device))
    add_out = out.add if out is not None else 0
    add_in = in_.add if in_ is not None else 0
    if not add_out and not add_in:
        return kept.contiguous(memory_format=layout)
    shape = list(kept.shape)
    shape[0] += add_out
    if add_in:
        shape[1] += add_in
    new = torch.empty(shape, dtype=kept.dtype, device=kept.device, memory_format=layout)
    rows = kept.shape[0]
    if add_in:
        cols = kept.shape[1]
        new[:rows, :cols].copy_(kept)
        new[:rows, cols:].zero_()
    else:
        new[:rows].copy_(kept)
    new[rows:].zero_()
    return new


def _memory_format(t: Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor stored that way (and not also plainly contiguous), else contiguous."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _replace(
    param: nn.Parameter, data: Tensor, optimizer: Optimizer | None, out: _Resize | None, in_: _Resize | None
) -> None:
    """Swap in ``param``'s new data and resize its optimizer state the same way.

    New state entries are zero, except under the keys an optimizer lists in
    ``state_like_param`` (RMDA's ``initial_point`` W⁰): those hold a copy of the
    weights, so their new entries are the new weights themselves.
    """
    if optimizer is not None and param in optimizer.state:
        state = optimizer.state[param]
        like_param = getattr(optimizer, "state_like_param", ())
        new_entries = None
        for key, value in state.items():
            if isinstance(value, Tensor) and value.ndim > 0:
                state[key] = _resized(value, out, in_)
                if key in like_param:
                    if new_entries is None:  # the new weights where nothing was kept, zero elsewhere
                        new_entries = data - _resized(param.detach(), out, in_)
                    state[key].add_(new_entries)
    _swap(param, data)
    param.grad = None


def _swap(tensor: Tensor, data: Tensor) -> None:
    """Point ``tensor`` at ``data``, keeping the object.

    ``set_`` rather than ``tensor.data = data``: the latter keeps autograd's cached
    gradient accumulator of a parameter, which still expects the old shape while any
    earlier graph is alive, so the next backward would fail.
    """
    with torch.no_grad():
        tensor.set_(data)


def _check_state_shapes(optimizer: Optimizer | None, modules: Iterable[nn.Module]) -> None:
    """Fail before changing anything if some optimizer state could not follow its parameter."""
    if optimizer is None:
        return
    for module in modules:
        for param in module.parameters(recurse=False):
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise ValueError(
                        f"optimizer state {key!r} has shape {tuple(value.shape)} but its parameter has "
                        f"{tuple(param.shape)}; surgery can only resize parameter-shaped or 0-d state"
                    )


# -- argument checks and optimizer groups --------------------------------------------------------


def _resolve(model: GrowableNet, unit: Unit | str) -> Unit:
    # Look the unit up afresh: a Unit from before an earlier add_block lacks the new consumers.
    return model.unit(unit if isinstance(unit, str) else unit.name)


def _checked_indices(keep: Tensor | Sequence[int], unit: Unit) -> Tensor:
    indices = torch.as_tensor(keep)
    if indices.ndim != 1 or indices.numel() == 0 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"keep must be a non-empty 1-D tensor of channel indices of unit {unit.name!r}")
    indices = indices.to(torch.long)
    if int(indices.min()) < 0 or int(indices.max()) >= unit.width:
        raise ValueError(f"keep indices must lie in [0, {unit.width}) for unit {unit.name!r}")
    if indices.unique().numel() != indices.numel():
        raise ValueError(f"keep indices for unit {unit.name!r} must not repeat")
    return indices


def _stage_index(model: ResNet, stage: int | str) -> int:
    count = len(model.stages)
    if isinstance(stage, str):
        names = [f"stage{i + 1}" for i in range(count)]
        if stage not in names:
            raise KeyError(f"no stage {stage!r}; stages are {names}")
        return names.index(stage)
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < count:
        raise IndexError(f"stage index must be in [0, {count}), got {stage!r}")
    return stage


def _join_groups_of(optimizer: Optimizer, block: nn.Module, previous: nn.Module) -> None:
    """Add each new parameter to the group of the same-named parameter of ``previous``."""
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    counterparts = dict(previous.named_parameters())
    for name, param in block.named_parameters():
        group = group_of.get(id(counterparts[name]))
        if group is None:
            raise ValueError(f"the previous block's {name} is in no optimizer group; cannot place the new block's")
        group["params"].append(param)
