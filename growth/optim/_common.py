"""Plumbing that DessiLBI, RMDA and ProxSGD share; the update rules stay in their own modules.

All three follow ``torch/optim/sgd.py``: ``step()`` runs the optional closure,
``_init_group`` gathers the params that have a gradient (with their state) into
lists, and a functional entry point picks the single-tensor reference or the
multi-tensor implementation. RMDA and ProxSGD also share their options and
their checks (:class:`GroupLassoOptimizer`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _default_to_fused_or_foreach, _foreach_supported_types
from torch.utils._foreach_utils import _device_has_foreach_support

from growth.errors import ArgumentError


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss ``closure`` re-evaluates (with autograd on, inside ``step``'s no-grad), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def params_with_grad(group: Mapping[str, Any], optimizer_name: str) -> Iterator[Tensor]:
    """The params of ``group`` that have a gradient, in group order; a sparse gradient is an error."""
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{optimizer_name} does not support sparse gradients")
        yield p


def use_foreach(foreach: bool | None, params: list[Tensor], *, on_cpu: bool = False) -> bool:
    """Whether to take the multi-tensor path.

    None means torch.optim's default (foreach on CUDA); ``on_cpu=True`` extends
    that default to every device torch has foreach kernels for, CPU included
    (DessiLBI's multi-tensor step is the faster one there too).
    """
    if torch.jit.is_scripting():
        return False
    if foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        if not foreach and on_cpu:
            # torch.optim's list of foreach types, which admits nn.Parameter; torch.utils'
            # _has_foreach_support takes plain tensors only (it is written for gradients), and
            # on parameters it turned this default into the single-tensor path.
            foreach = all(
                type(p) in _foreach_supported_types and _device_has_foreach_support(p.device) for p in params
            )
    return foreach


def check_argument(ok: bool, argument: str, value: object, requirement: str) -> None:
    """Raise :class:`~growth.errors.ArgumentError` (a ValueError naming ``argument``) unless ``ok``."""
    if not ok:
        raise ArgumentError(argument, value, requirement)


def _check_group_options(group: Mapping[str, Any], momentum_hint: str = "") -> None:
    """Validate a RMDA / ProxSGD param group; errors name the constructor's argument."""
    check_argument(group["lr"] >= 0.0, "lr", group["lr"], "must be ≥ 0")
    hint = f" ({momentum_hint})" if momentum_hint else ""
    check_argument(0.0 <= group["momentum"] < 1.0, "momentum", group["momentum"], f"must be in [0, 1){hint}")
    check_argument(group["lam"] >= 0.0, "lam", group["lam"], "the group-lasso weight must be ≥ 0")
    check_argument(group["weight_decay"] >= 0.0, "weight_decay", group["weight_decay"], "must be ≥ 0")


class GroupLassoOptimizer(Optimizer):
    """Base of RMDA and ProxSGD: the options of a group-lasso-regularized method, checked per group.

    Every param group carries ``lr``, ``momentum``, ``lam``, ``weight_decay``,
    ``regularized`` (default True: its ``ndim >= 2`` params carry ψ) and
    ``foreach``, plus a subclass's own ``extra_defaults``.
    """

    momentum_hint: ClassVar[str] = ""  # what the momentum bound means for this method, for the error

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        momentum: float = 0.9,
        lam: float = 0.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        **extra_defaults: Any,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "lam": lam,
            "weight_decay": weight_decay,
            "regularized": True,
            **extra_defaults,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _check_group_options({**self.defaults, **param_group}, self.momentum_hint)
        super().add_param_group(param_group)

    @staticmethod
    def group_lam(group: Mapping[str, Any]) -> float:
        """λ of ψ for ``group``: 0 for a group flagged ``regularized=False``."""
        return group["lam"] if group["regularized"] else 0.0
