"""Proximal momentum SGD (proxMSGD), the RMDA paper's ProxSGD baseline.

Per step, with g = ∇f(W) + weight_decay · W:

    buf ← μ · buf + g
    W   ← Prox_{η ψ}(W − η · buf)

and the same regularizer as ``growth.optim.rmda``: ψ(W) = λ Σ_g √|I_g| ‖W_g‖₂,
one group per output filter (conv) or output row (linear), on the ``ndim >= 2``
params of groups with ``regularized=True`` (the default). Everything else takes a
plain momentum-SGD step. As in the RMDA paper (after Yang et al., 2019, without
their interpolation step) the prox is applied to the iterate itself, so groups
reach exact zeros.

State per parameter: ``momentum_buffer`` (the parameter's shape), only when
``momentum != 0``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

from ._common import GroupLassoOptimizer, closure_loss, params_with_grad, use_foreach
from .prox import group_lasso_weight, shrink_groups_

__all__ = ["ProxSGD", "prox_sgd"]


class ProxSGD(GroupLassoOptimizer):
    """Proximal SGD with heavy-ball momentum and a row-group-lasso regularizer.

    Args:
        params: parameters or param-group dicts; a group may set ``regularized``
            (default True) and any of the options below.
        lr: η.
        momentum: μ (0 for plain proximal SGD).
        lam: λ, the group-lasso weight (0 turns the prox off).
        weight_decay: L2 coefficient added to the gradient.
        foreach: use the ``torch._foreach_*`` implementation; default: on CUDA.
    """

    def _init_group(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], buffers: list[Tensor]
    ) -> None:
        for p in params_with_grad(group, "ProxSGD"):
            params.append(p)
            grads.append(p.grad)
            if group["momentum"] != 0.0:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    # buf₀ = 0 makes the first step buf₁ = g, as in torch.optim.SGD.
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append(state["momentum_buffer"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one proximal momentum-SGD step on every parameter that has a gradient."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            buffers: list[Tensor] = []
            self._init_group(group, params, grads, buffers)
            if not params:
                continue
            prox_sgd(
                params,
                grads,
                buffers,
                lr=group["lr"],
                momentum=group["momentum"],
                lam=self.group_lam(group),
                weight_decay=group["weight_decay"],
                foreach=group["foreach"],
            )
        return loss


def prox_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    lam: float,
    weight_decay: float,
    foreach: bool | None = None,
) -> None:
    """Functional ProxSGD step; ``buffers`` is empty when ``momentum == 0``."""
    impl = _multi_tensor_prox_sgd if use_foreach(foreach, params) else _single_tensor_prox_sgd
    impl(params, grads, buffers, lr=lr, momentum=momentum, lam=lam, weight_decay=weight_decay)


def _single_tensor_prox_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    lam: float,
    weight_decay: float,
) -> None:
    for i, (p, grad) in enumerate(zip(params, grads)):
        if weight_decay != 0.0:
            grad = grad.add(p, alpha=weight_decay)
        if momentum != 0.0:
            grad = buffers[i].mul_(momentum).add_(grad)
        p.add_(grad, alpha=-lr)
        weight = lam * group_lasso_weight(p)
        if weight != 0.0:
            shrink_groups_(p, lr * weight)


def _multi_tensor_prox_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    lam: float,
    weight_decay: float,
) -> None:
    lists: list[list[Tensor]] = [params, grads, buffers] if momentum != 0.0 else [params, grads]
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists)  # type: ignore[arg-type]
    for device_lists, _ in grouped.values():
        device_params, device_grads = device_lists[0], device_lists[1]
        if weight_decay != 0.0:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        if momentum != 0.0:
            device_buffers = device_lists[2]
            torch._foreach_mul_(device_buffers, momentum)
            torch._foreach_add_(device_buffers, device_grads)
            device_grads = device_buffers
        torch._foreach_add_(device_params, device_grads, alpha=-lr)
        if lam != 0.0:
            for p in device_params:
                weight = lam * group_lasso_weight(p)
                if weight != 0.0:
                    shrink_groups_(p, lr * weight)
