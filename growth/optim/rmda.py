"""RMDA: regularized modernized dual averaging (Huang & Lee, ICLR 2022, Algorithm 1).

For every parameter, starting from W⁰ with V₀ = 0 and α₀ = 0, step t does

    β_t = √t,   s_t = η_t β_t,   α_t = α_{t−1} + s_t
    V_t = V_{t−1} + s_t ∇f(W_{t−1})
    W̃_t = Prox_{(α_t/β_t) ψ}(W⁰ − V_t / β_t)                          (2)
    W_t = (1 − c_t) W_{t−1} + c_t W̃_t                                   (3)

with ψ(W) = λ Σ_g √|I_g| ‖W_g‖₂ (see ``growth.optim.prox``): one group per
output filter of a conv weight and per output row of a linear weight, so a zero
group is a removable channel / neuron and the unit widths of
``growth.models`` read off directly. (The paper trains with input-channel /
column groups; we group by output so that the sparsity it finds is the width a
unit keeps, the quantity netgrow compares across methods.) Only ``ndim >= 2``
params of param groups with ``regularized=True`` (the default) carry ψ; the rest —
biases, BatchNorm, groups flagged ``regularized=False`` — run the same update with
ψ = 0, i.e. plain modernized dual averaging (Jelassi & Defazio, 2020).

Momentum. c_t mixes the previous iterate with the tentative one; with ψ = 0 it is
equivalent to heavy-ball momentum 1 − c_t, so the constructor takes ``momentum``
and uses c = 1 − momentum. Following the paper's experiments (section 5 and
Tables 3–10, after Jelassi & Defazio) c grows in proportion as η decays, until
c = 1: c_t = min(1, (1 − momentum) · η₀ / η_t), η₀ being the group's lr when it
was added (``reference_lr``). Their runs start at c = 0.01 (momentum 0.99) with
η = 0.1; pass ``momentum_follows_lr=False`` for a constant c.

Restarts. The paper restarts Algorithm 1 every time the learning rate drops:
the previous round's output becomes the new W⁰ and t, α, V start again from
zero, while the η and c schedules continue. The training loop calls
``restart()`` whenever its lr schedule hits a milestone.

Weight decay, if set, is part of ∇f: the gradient fed into V is
∇f(W_{t−1}) + weight_decay · W_{t−1}.

State per parameter (``self.state[p]``), each tensor the parameter's shape or
0-d so that channel surgery can resize it: ``initial_point`` (W⁰),
``dual_sum`` (V), ``step`` (t, 0-d float32) and ``alpha`` (α, 0-d float32).
t and α are the same for all parameters of a group in normal use, but live per
parameter so that a parameter that had no gradient in some step simply runs its
own clock, as in ``torch.optim.Adam``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from ._common import GroupLassoOptimizer, closure_loss, params_with_grad, use_foreach
from .prox import group_lasso_weight, shrink_groups_

# Its measure of success, group sparsity, is read by ``growth.optim.structure``.
__all__ = ["RMDA", "rmda"]


class RMDA(GroupLassoOptimizer):
    """Regularized modernized dual averaging with a row-group-lasso regularizer.

    Args:
        params: parameters or param-group dicts; a group may set ``regularized``
            (default True) and any of the options below.
        lr: η, the learning rate the scheduler (or ``set_lr``) changes.
        momentum: 1 − c; c is the weight of the tentative iterate in (3).
        lam: λ, the group-lasso weight (0 turns ψ off).
        weight_decay: L2 coefficient added to the gradient.
        momentum_follows_lr: scale c by η₀/η_t (capped at 1), as the paper does.
        foreach: use the ``torch._foreach_*`` implementation; default: on CUDA.
    """

    momentum_hint = "c = 1 − momentum > 0"
    # W⁰ is a copy of the weights: channel surgery gives new channels their new weights here, not 0,
    # or the first step after widening would pull new filters to zero.
    state_like_param = ("initial_point",)

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        momentum: float = 0.9,
        lam: float = 0.0,
        weight_decay: float = 0.0,
        *,
        momentum_follows_lr: bool = True,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, momentum, lam, weight_decay, foreach=foreach,
                         momentum_follows_lr=momentum_follows_lr)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self.param_groups[-1].setdefault("reference_lr", self.param_groups[-1]["lr"])

    @torch.no_grad()
    def restart(self) -> None:
        """Start Algorithm 1 afresh from the current weights: W⁰ := W, t = α = 0, V = 0.

        Call it whenever the learning rate drops (the paper's restart heuristic);
        the lr and momentum schedules carry on unchanged.
        """
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                state["step"].zero_()
                state["alpha"].zero_()
                state["dual_sum"].zero_()
                state["initial_point"].copy_(p)

    def mixing_coefficient(self, group: dict[str, Any]) -> float:
        """c_t of (3) for ``group`` at its current lr."""
        c = 1.0 - group["momentum"]
        if group["momentum_follows_lr"] and group["lr"] > 0:
            c *= group["reference_lr"] / group["lr"]
        return min(1.0, c)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        initial_points: list[Tensor],
        dual_sums: list[Tensor],
        steps: list[Tensor],
        alphas: list[Tensor],
    ) -> None:
        for p in params_with_grad(group, "RMDA"):
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["alpha"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["initial_point"] = p.detach().clone(memory_format=torch.preserve_format)
                state["dual_sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            else:
                # load_state_dict casts 0-d state to the param's dtype (and leaves
                # "step" where it was saved); the clocks stay float32 on p's device.
                for key in ("step", "alpha"):
                    if state[key].dtype != torch.float32 or state[key].device != p.device:
                        state[key] = state[key].to(device=p.device, dtype=torch.float32)
            params.append(p)
            grads.append(p.grad)
            initial_points.append(state["initial_point"])
            dual_sums.append(state["dual_sum"])
            steps.append(state["step"])
            alphas.append(state["alpha"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one RMDA step on every parameter that has a gradient."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            initial_points: list[Tensor] = []
            dual_sums: list[Tensor] = []
            steps: list[Tensor] = []
            alphas: list[Tensor] = []
            self._init_group(group, params, grads, initial_points, dual_sums, steps, alphas)
            if not params:
                continue
            rmda(
                params,
                grads,
                initial_points,
                dual_sums,
                steps,
                alphas,
                lr=group["lr"],
                mixing=self.mixing_coefficient(group),
                lam=self.group_lam(group),
                weight_decay=group["weight_decay"],
                foreach=group["foreach"],
            )
        return loss


def rmda(
    params: list[Tensor],
    grads: list[Tensor],
    initial_points: list[Tensor],
    dual_sums: list[Tensor],
    steps: list[Tensor],
    alphas: list[Tensor],
    *,
    lr: float,
    mixing: float,
    lam: float,
    weight_decay: float,
    foreach: bool | None = None,
) -> None:
    """Functional RMDA step (see the module docstring); updates params and state in place.

    ``lam`` is applied to the ``ndim >= 2`` tensors only; pass 0 for an
    unregularized group.
    """
    impl = _multi_tensor_rmda if use_foreach(foreach, params) else _single_tensor_rmda
    impl(
        params,
        grads,
        initial_points,
        dual_sums,
        steps,
        alphas,
        lr=lr,
        mixing=mixing,
        lam=lam,
        weight_decay=weight_decay,
    )


def _single_tensor_rmda(
    params: list[Tensor],
    grads: list[Tensor],
    initial_points: list[Tensor],
    dual_sums: list[Tensor],
    steps: list[Tensor],
    alphas: list[Tensor],
    *,
    lr: float,
    mixing: float,
    lam: float,
    weight_decay: float,
) -> None:
    for p, grad, initial_point, dual_sum, step, alpha in zip(
        params, grads, initial_points, dual_sums, steps, alphas
    ):
        if weight_decay != 0.0:
            grad = grad.add(p, alpha=weight_decay)
        step.add_(1.0)
        beta = step.sqrt()
        step_size = beta * lr  # s_t, kept on the device: no host sync
        alpha.add_(step_size)
        dual_sum.add_(grad * step_size)
        tentative = initial_point - dual_sum / beta
        weight = lam * group_lasso_weight(p)
        if weight != 0.0:
            shrink_groups_(tentative, alpha / beta * weight)
        # lerp with weight 1 returns ``tentative`` exactly, so zero groups stay exact.
        p.lerp_(tentative, mixing)


def _multi_tensor_rmda(
    params: list[Tensor],
    grads: list[Tensor],
    initial_points: list[Tensor],
    dual_sums: list[Tensor],
    steps: list[Tensor],
    alphas: list[Tensor],
    *,
    lr: float,
    mixing: float,
    lam: float,
    weight_decay: float,
) -> None:
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, initial_points, dual_sums, steps, alphas]  # type: ignore[list-item]
    )
    for (device_params, device_grads, device_initial, device_dual, device_steps, device_alphas), _ in grouped.values():
        if weight_decay != 0.0:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        torch._foreach_add_(device_steps, 1.0)
        betas = torch._foreach_sqrt(device_steps)
        step_sizes = torch._foreach_mul(betas, lr)
        torch._foreach_add_(device_alphas, step_sizes)
        torch._foreach_add_(device_dual, torch._foreach_mul(device_grads, step_sizes))
        tentative = torch._foreach_div(device_dual, betas)
        torch._foreach_neg_(tentative)
        torch._foreach_add_(tentative, device_initial)
        if lam != 0.0:
            # Group norms differ in shape per tensor: one small loop, still no host sync.
            for x, p, alpha, beta in zip(tentative, device_params, device_alphas, betas):
                weight = lam * group_lasso_weight(p)
                if weight != 0.0:
                    shrink_groups_(x, alpha / beta * weight)
        torch._foreach_lerp_(device_params, tentative, mixing)
