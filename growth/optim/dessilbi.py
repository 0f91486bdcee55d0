r"""DessiLBI: SGD on the weights W, coupled to a sparse structure variable Γ.

Every *structural* parameter W (a conv or linear weight) is lifted to a pair
(W, Γ) and trained on the augmented loss L̄(W, Γ) = L(W) + ‖W − Γ‖²/(2ν).
W follows (momentum) SGD plus a pull towards Γ; Γ follows a linearized
Bregman iteration on its sub-gradient variable V, so filters enter Γ's support
one by one, most important first (the "inverse scale space"). The support of Γ
is what the growth loop reads (eq. 23 of the journal paper); ``growth.optim.structure``
reads it (selected filters, masks of eqs. 21–22).

Layout follows ``torch/optim/sgd.py``: :class:`DessiLBI` gathers per-group
lists, :func:`dessilbi` is the functional entry point that picks
:func:`_single_tensor_dessilbi` (the readable reference the tests pin) or
:func:`_multi_tensor_dessilbi` (``torch._foreach_*`` over the device/dtype groups
torch's ``Optimizer._group_tensors_by_device_and_dtype`` forms).
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _default_to_fused_or_foreach
from torch.utils.weak import WeakIdKeyDictionary

from growth.optim._common import check_argument, closure_loss, params_with_grad, use_foreach
from growth.optim._triton import check_fused_request, default_to_fused, fused_kernels
from growth.optim.prox import NORM_FLOOR, group_norms, group_soft_threshold, is_grouped

__all__ = ["DessiLBI", "dessilbi"]

# Per-parameter scratch that is not p-shaped (filter norms, 0-d counts) lives
# here rather than in optimizer.state, keyed on the parameter object and
# rebuilt when the parameter's shape, device or dtype changes.
Scratch = MutableMapping[Tensor, "_ParamScratch"]


@dataclass
class _ParamScratch:
    shape: torch.Size
    device: torch.device
    dtype: torch.dtype
    tensors: dict[str, Tensor] = field(default_factory=dict)


class DessiLBI(Optimizer):
    r"""Deep structure splitting linearized Bregman iteration (DessiLBI).

    With learning rate α (``lr``), for every structural parameter W with
    gradient ∇L(W), momentum buffer b and the state V, Γ (both start at zero)::

        d = ∇L(W) + weight_decay · W
        b ← momentum · b + d                 (b = d on the first step)
        V ← V + (α/ν) · (W − Γ)              (W, Γ from before this step)
        W ← W − κα · (b + (W − Γ)/ν)
        Γ ← κ · Prox_λ(V)

    Prox_λ is the group soft threshold: one group per output filter for conv
    weights (``ndim >= 3``): Γ_g = κ·max(0, 1 − λ/‖V_g‖₂)·V_g, 0 for a zero
    group; element-wise soft thresholding at λ for linear weights
    (``ndim == 2``). As in the authors' code, momentum covers the loss gradient
    (and weight decay) only, not the coupling term, and the V step is not
    scaled by κ. Parameters with ``ndim <= 1`` and every parameter of a group
    with ``structural=False`` (e.g. the final classifier) take a plain
    momentum-SGD step scaled by κα: ``W ← W − κα·b``.

    ``magnitude_scaling=True`` replaces the V and Γ updates by eqs. (14)–(15)
    of the journal paper. Our reading, with ‖W_j‖_* the ℓ2 norm of filter j of
    a conv weight (the absolute value of element j of a linear weight), all
    taken from W and Γ before this step::

        ρ   = #selected(Γ) / max(1, #non-zero(W))     one ratio per layer,
              counted in filters for conv weights, in elements for linear ones
        β_j = max(beta_min, min(1, 1/‖W_j‖_*) · (1 − ρ))
        ε_j = ‖W_j‖_*
        V   ← V + (α/ν) · β ⊙ (W − Γ)
        Γ   ← κ · ε ⊙ Prox_λ(V)

    The paper only says "to avoid β = 0 we set a minimum value for it":
    ``beta_min`` (default 0.01) is that floor, so V keeps moving at no less
    than 1% of the plain rate once every filter of a layer is selected.

    State per parameter: ``momentum_buffer`` (when ``momentum != 0``) and, for
    structural parameters, ``v`` and ``gamma``; all have the parameter's shape
    so channel surgery can resize them. A parameter may change shape between
    steps provided its state was resized with it.

    Args:
        params: parameters or param groups; a group may set ``structural``
            (default True) and override any hyper-parameter below.
        lr: learning rate α.
        kappa: κ, the damping factor of the Bregman iteration.
        nu: ν, the coupling between W and Γ (larger = looser).
        lam: λ, the sparsity threshold of the proximal map.
        momentum: momentum factor of the loss gradient.
        weight_decay: L2 penalty added to the loss gradient.
        magnitude_scaling: use the magnitude scaling update, eqs. (14)–(15).
        beta_min: the floor of β under magnitude scaling.
        foreach: use the multi-tensor implementation; None picks it wherever
            torch has foreach kernels, CPU included (it is the faster path on
            CPU too, unlike torch.optim's default).
        fused: use the fused Triton kernels (``growth.optim._fused_dessilbi``:
            each tensor read and written once). None picks them for CUDA
            parameters when Triton imports, like torch.optim's defaults; the
            multi-tensor path is the fallback. True asks for them: CUDA tensors,
            or CPU tensors when ``TRITON_INTERPRET=1`` was set before Triton was
            imported (Triton's interpreter, for tests). Groups with
            ``magnitude_scaling=True`` always take the multi-tensor path (its
            per-layer counts are not fused).

    Example:
        >>> # xdoctest: +SKIP
        >>> optimizer = DessiLBI(model.parameters(), lr=0.1, nu=100.0)
        >>> loss_fn(model(x), y).backward()
        >>> optimizer.step()
        >>> growth.optim.structure.unit_support(optimizer, [model.conv1.weight])
        (5, 8)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        kappa: float = 1.0,
        nu: float = 100.0,
        lam: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        magnitude_scaling: bool = False,
        beta_min: float = 0.01,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_hyperparameters(lr, kappa, nu, lam, momentum, weight_decay, beta_min)
        if fused and foreach:
            raise RuntimeError("DessiLBI: `fused` and `foreach` cannot be `True` together")
        defaults = {
            "lr": lr,
            "kappa": kappa,
            "nu": nu,
            "lam": lam,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "magnitude_scaling": magnitude_scaling,
            "beta_min": beta_min,
            "structural": True,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self._scratch: Scratch = WeakIdKeyDictionary()
        if fused:
            check_fused_request([p for group in self.param_groups for p in group["params"]])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # A group may override any hyper-parameter: check what it will really train with, so that
        # nu=0 in one group is a named error here rather than a ZeroDivisionError inside step().
        merged = {**self.defaults, **param_group}
        _check_hyperparameters(*(merged[k] for k in ("lr", "kappa", "nu", "lam", "momentum", "weight_decay",
                                                     "beta_min")))
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._scratch = WeakIdKeyDictionary()
        for group in self.param_groups:
            group.setdefault("magnitude_scaling", False)
            group.setdefault("beta_min", 0.01)
            group.setdefault("structural", True)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffers: list[Tensor | None],
        vs: list[Tensor | None],
        gammas: list[Tensor | None],
    ) -> None:
        lift = group["structural"]
        for p in params_with_grad(group, "DessiLBI"):
            state = self.state[p]
            params.append(p)
            grads.append(p.grad)
            momentum_buffers.append(state.get("momentum_buffer"))
            if lift and p.ndim >= 2:
                if "v" not in state:
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["gamma"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                vs.append(state["v"])
                gammas.append(state["gamma"])
            else:
                vs.append(None)
                gammas.append(None)
            _check_state_shapes(p, state)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one DessiLBI step; ``closure`` re-evaluates the loss if given."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            momentum_buffers: list[Tensor | None] = []
            vs: list[Tensor | None] = []
            gammas: list[Tensor | None] = []
            self._init_group(group, params, grads, momentum_buffers, vs, gammas)

            dessilbi(
                params,
                grads,
                momentum_buffers,
                vs,
                gammas,
                lr=group["lr"],
                kappa=group["kappa"],
                nu=group["nu"],
                lam=group["lam"],
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                magnitude_scaling=group["magnitude_scaling"],
                beta_min=group["beta_min"],
                foreach=group["foreach"],
                fused=group["fused"],
                scratch=self._scratch,
            )

            if group["momentum"] != 0:
                for p, buf in zip(params, momentum_buffers, strict=True):
                    self.state[p]["momentum_buffer"] = buf
        return loss


def _check_hyperparameters(
    lr: float,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    beta_min: float,
) -> None:
    check_argument(lr >= 0.0, "lr", lr, "must be a number >= 0")
    check_argument(kappa > 0.0, "kappa", kappa, "must be a number > 0 (the paper uses 1)")
    check_argument(nu > 0.0, "nu", nu, "must be a number > 0 (the paper uses 10 to 1000)")
    check_argument(lam >= 0.0, "lam", lam, "must be a number >= 0 (the paper uses 1)")
    check_argument(0.0 <= momentum < 1.0, "momentum", momentum, "must be in [0, 1), e.g. 0.9")
    check_argument(weight_decay >= 0.0, "weight_decay", weight_decay, "must be a number >= 0")
    check_argument(0.0 < beta_min <= 1.0, "beta_min", beta_min, "must be in (0, 1], e.g. 0.01")


def _check_state_shapes(p: Tensor, state: dict[str, Any]) -> None:
    # Surgery resizes p and its state together; a mismatch means it did not.
    for key in ("momentum_buffer", "v", "gamma"):
        value = state.get(key)
        if value is not None and value.shape != p.shape:
            raise RuntimeError(
                f"DessiLBI state {key!r} has shape {tuple(value.shape)} but its parameter has "
                f"shape {tuple(p.shape)}; resize optimizer state with growth.surgery"
            )


def dessilbi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    vs: list[Tensor | None],
    gammas: list[Tensor | None],
    *,
    lr: float,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    magnitude_scaling: bool = False,
    beta_min: float = 0.01,
    foreach: bool | None = None,
    fused: bool | None = None,
    scratch: Scratch | None = None,
) -> None:
    """Functional DessiLBI step; see :class:`DessiLBI` for the update.

    ``vs[i]``/``gammas[i]`` are None for parameters that are not lifted (they
    take the plain momentum step). ``momentum_buffers`` entries that are None
    are created here (the list is updated in place, as in ``torch.optim.sgd``).
    ``fused`` as in :class:`DessiLBI`; magnitude scaling is never fused.
    """
    if fused is None:
        fused = foreach is None and not magnitude_scaling and default_to_fused(params)
    if fused and not magnitude_scaling:
        check_fused_request(params)
        kernels = fused_kernels()
        assert kernels is not None  # check_fused_request raised otherwise
        kernels.fused_dessilbi(params, grads, momentum_buffers, vs, gammas, lr=lr, kappa=kappa, nu=nu, lam=lam,
                               momentum=momentum, weight_decay=weight_decay)
        return
    func = _multi_tensor_dessilbi if use_foreach(foreach, params, on_cpu=True) else _single_tensor_dessilbi
    func(
        params,
        grads,
        momentum_buffers,
        vs,
        gammas,
        lr=lr,
        kappa=kappa,
        nu=nu,
        lam=lam,
        momentum=momentum,
        weight_decay=weight_decay,
        magnitude_scaling=magnitude_scaling,
        beta_min=beta_min,
        scratch=WeakIdKeyDictionary() if scratch is None else scratch,
    )


def _single_tensor_dessilbi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    vs: list[Tensor | None],
    gammas: list[Tensor | None],
    *,
    lr: float,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    magnitude_scaling: bool,
    beta_min: float,
    scratch: Scratch,
) -> None:
    """Reference implementation: one parameter at a time, the equations as written."""
    del scratch  # allocates freely; only the multi-tensor path reuses buffers
    for i, w in enumerate(params):
        d = grads[i]
        if weight_decay != 0:
            d = d.add(w, alpha=weight_decay)
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = d.detach().clone()
            else:
                buf.mul_(momentum).add_(d)
            d = buf

        v, gamma = vs[i], gammas[i]
        if v is None or gamma is None:
            w.add_(d, alpha=-kappa * lr)
            continue

        grouped = is_grouped(w)
        residual = w - gamma  # −ν·∇_Γ L̄, from W and Γ before this step
        if magnitude_scaling:
            beta, eps = _magnitude_scaling_factors(w, gamma, grouped, beta_min)
            v.add_(beta * residual, alpha=lr / nu)
        else:
            v.add_(residual, alpha=lr / nu)
        w.add_(d + residual / nu, alpha=-kappa * lr)
        new_gamma = group_soft_threshold(v, lam, grouped).mul_(kappa)
        if magnitude_scaling:
            new_gamma.mul_(eps)
        gamma.copy_(new_gamma)


def _magnitude_scaling_factors(
    w: Tensor, gamma: Tensor, grouped: bool, beta_min: float
) -> tuple[Tensor, Tensor]:
    """β and ε of eq. (15), broadcastable against ``w``; reference version."""
    if grouped:
        w_norm = group_norms(w)
        selected = (group_norms(gamma) > 0).sum()
        nonzero = (w_norm > 0).sum()
        w_norm = w_norm.view(-1, *([1] * (w.ndim - 1)))
    else:
        w_norm = w.abs()
        selected = (gamma != 0).sum()
        nonzero = (w != 0).sum()
    keep = 1.0 - selected.to(w.dtype) / nonzero.clamp(min=1).to(w.dtype)
    beta = (keep / w_norm.clamp(min=1.0)).clamp(min=beta_min)
    return beta, w_norm


def _multi_tensor_dessilbi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    vs: list[Tensor | None],
    gammas: list[Tensor | None],
    *,
    lr: float,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    magnitude_scaling: bool,
    beta_min: float,
    scratch: Scratch,
) -> None:
    """Multi-tensor implementation: the reference update in a few fused/foreach kernels.

    The step is memory-bound, so it is arranged to touch each tensor as few
    times as possible without changing the maths (see bench/bench_optim.py):

    1. R = W − Γ is written into Γ's storage (Γ is recomputed from V in step 4
       anyway) in the same pass that adds (α/ν)·R to V;
    2. the momentum step of every parameter, lifted or not, is one fused SGD
       kernel at learning rate κα; it runs before the coupling term so that
       weight decay sees the W from before the step;
    3. W ← W − (κα/ν)·R;
    4. Γ ← κ·Prox_λ(V): one ``vector_norm`` per conv weight, the shrink factors
       of all filters with foreach ops on the small norm vectors, one multiply.
    """
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, momentum_buffers, vs, gammas], with_indices=True  # type: ignore[list-item]
    )
    for (device_params, device_grads, device_buffers, device_vs, device_gammas), indices in grouped.values():
        lifted = [j for j, v in enumerate(device_vs) if v is not None]
        ws = [device_params[j] for j in lifted]
        v_lifted = [_not_none(device_vs[j]) for j in lifted]
        g_lifted = [_not_none(device_gammas[j]) for j in lifted]

        eps: list[Tensor] | None = None
        if lifted:
            beta: list[Tensor] | None = None
            if magnitude_scaling:
                beta, eps = _foreach_magnitude_scaling_factors(ws, g_lifted, beta_min, scratch)
            _residual_and_v_step_(ws, g_lifted, v_lifted, step=lr / nu, beta=beta)
        residuals = g_lifted  # W − Γ until the prox below overwrites it with the new Γ

        _momentum_sgd_(
            device_params,
            device_grads,
            device_buffers,
            lr=kappa * lr,
            momentum=momentum,
            weight_decay=weight_decay,
        )
        for i, buf in zip(indices, device_buffers, strict=True):
            momentum_buffers[i] = buf

        if lifted:
            torch._foreach_add_(ws, residuals, alpha=-kappa * lr / nu)
            _foreach_prox_into_(g_lifted, v_lifted, lam=lam, kappa=kappa, eps=eps, scratch=scratch)


def _residual_and_v_step_(
    ws: list[Tensor],
    gammas: list[Tensor],
    vs: list[Tensor],
    *,
    step: float,
    beta: list[Tensor] | None,
) -> None:
    """Γ ← R = W − Γ (in place) and V ← V + step·[β ⊙] R.

    Without β this is one pass of the fused SGD kernel used as a two-output
    axpy: with Γ as its momentum buffer, momentum −1 and no dampening its
    buffer update ``buf ← momentum·buf + grad`` (grad = W) gives Γ ← W − Γ,
    and its parameter update ``p ← p − lr·buf`` (p = V, lr = −step) gives
    V ← V + step·R. Reading W, Γ, V once instead of twice saves a tenth of the
    whole DessiLBI step. Only the CPU kernel accepts a negative momentum (the
    CUDA one checks momentum > 0), so other devices take two foreach passes.
    """
    if beta is None and _negative_momentum_fused_sgd_supported(ws[0]):
        _fused_sgd_call(vs, ws, gammas, lr=-step, momentum=-1.0, weight_decay=0.0, first=False)
        return
    for w, gamma in zip(ws, gammas, strict=True):
        torch.sub(w, gamma, out=gamma)
    if beta is None:
        torch._foreach_add_(vs, gammas, alpha=step)
    else:
        torch._foreach_addcmul_(vs, gammas, beta, value=step)


def _not_none(t: Tensor | None) -> Tensor:
    assert t is not None
    return t


def _momentum_sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    """``b ← momentum·b + g + wd·W; W ← W − lr·b`` over a device/dtype group, in place.

    One fused kernel where torch has one (it reads and writes each buffer
    once instead of three times), foreach ops otherwise. Buffers that are
    None start at the gradient (created here, in the list).
    """
    if not params:
        return
    if _fused_sgd_supported(params[0]):
        _fused_momentum_sgd_(params, grads, momentum_buffers, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        _foreach_momentum_sgd_(params, grads, momentum_buffers, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _fused_sgd_supported(p: Tensor) -> bool:
    fused, _ = _default_to_fused_or_foreach([p], differentiable=False, use_fused=True)
    return fused


def _negative_momentum_fused_sgd_supported(p: Tensor) -> bool:
    """The CPU fused SGD kernel takes any momentum; CUDA's requires momentum > 0."""
    return p.device.type == "cpu" and _fused_sgd_supported(p)


def _fused_momentum_sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    if momentum == 0:
        _fused_sgd_call(params, grads, [], lr=lr, momentum=0.0, weight_decay=weight_decay, first=False)
        return
    # The fused kernel's "first step" (b = g) is per call, so split the group.
    starting = [i for i, b in enumerate(momentum_buffers) if b is None]
    continuing = [i for i, b in enumerate(momentum_buffers) if b is not None]
    for first, chosen in ((True, starting), (False, continuing)):
        if not chosen:
            continue
        if first:
            for i in chosen:
                momentum_buffers[i] = torch.empty_like(grads[i], memory_format=torch.preserve_format)
        _fused_sgd_call(
            [params[i] for i in chosen],
            [grads[i] for i in chosen],
            [_not_none(momentum_buffers[i]) for i in chosen],
            lr=lr, momentum=momentum, weight_decay=weight_decay, first=first,
        )


def _fused_sgd_call(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    first: bool,
) -> None:
    torch._fused_sgd_(
        params,
        grads,
        buffers,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        is_first_step=first,
    )


def _foreach_momentum_sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    if momentum == 0:
        if weight_decay != 0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        torch._foreach_add_(params, grads, alpha=-lr)
        return
    existing = [i for i, b in enumerate(momentum_buffers) if b is not None]
    bufs = [_not_none(momentum_buffers[i]) for i in existing]
    if bufs:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, [grads[i] for i in existing])
        if weight_decay != 0:
            torch._foreach_add_(bufs, [params[i] for i in existing], alpha=weight_decay)
    for i, b in enumerate(momentum_buffers):
        if b is None:
            buf = grads[i].detach().clone(memory_format=torch.preserve_format)
            if weight_decay != 0:
                buf.add_(params[i], alpha=weight_decay)
            momentum_buffers[i] = buf
    torch._foreach_add_(params, [_not_none(b) for b in momentum_buffers], alpha=-lr)


def _buffer(scratch: Scratch, p: Tensor, name: str, shape: tuple[int, ...]) -> Tensor:
    """A scratch tensor for ``p``, reused across steps while ``p`` keeps its shape."""
    entry = scratch.get(p)
    if entry is None or entry.shape != p.shape or entry.device != p.device or entry.dtype != p.dtype:
        entry = _ParamScratch(p.shape, p.device, p.dtype)
        scratch[p] = entry
    buf = entry.tensors.get(name)
    if buf is None:
        buf = entry.tensors[name] = p.new_empty(shape)
    return buf


def _filter_dims(p: Tensor) -> tuple[int, ...]:
    return tuple(range(1, p.ndim))


def _filter_view_shape(p: Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (p.ndim - 1)


def _foreach_magnitude_scaling_factors(
    ws: list[Tensor], gammas: list[Tensor], beta_min: float, scratch: Scratch
) -> tuple[list[Tensor], list[Tensor]]:
    """β and ε of eq. (15) for every lifted parameter, broadcastable against it."""
    w_norms, betas, keeps, nonzeros = [], [], [], []
    for w, gamma in zip(ws, gammas, strict=True):
        grouped = is_grouped(w)
        norm_shape = (w.shape[0],) if grouped else tuple(w.shape)
        w_norm = _buffer(scratch, w, "w_norm", norm_shape)
        keep = _buffer(scratch, w, "keep", ())
        nonzero = _buffer(scratch, w, "nonzero", ())
        if grouped:
            gamma_norm = _buffer(scratch, w, "gamma_norm", norm_shape)
            torch.linalg.vector_norm(w, dim=_filter_dims(w), out=w_norm)
            torch.linalg.vector_norm(gamma, dim=_filter_dims(gamma), out=gamma_norm)
            torch.linalg.vector_norm(gamma_norm, ord=0, out=keep)  # selected filters
            torch.linalg.vector_norm(w_norm, ord=0, out=nonzero)
        else:
            torch.abs(w, out=w_norm)
            torch.linalg.vector_norm(gamma, ord=0, out=keep)  # selected weights
            torch.linalg.vector_norm(w, ord=0, out=nonzero)
        beta = _buffer(scratch, w, "beta", norm_shape)
        torch.clamp(w_norm, min=1.0, out=beta)
        w_norms.append(w_norm)
        betas.append(beta)
        keeps.append(keep)
        nonzeros.append(nonzero)
    # keep = 1 − selected / max(1, non-zero); β = max(beta_min, keep / max(1, ‖W_j‖))
    torch._foreach_clamp_min_(nonzeros, 1.0)
    torch._foreach_div_(keeps, nonzeros)
    torch._foreach_neg_(keeps)
    torch._foreach_add_(keeps, 1.0)
    torch._foreach_reciprocal_(betas)
    torch._foreach_mul_(betas, keeps)
    torch._foreach_clamp_min_(betas, beta_min)
    shapes = [_filter_view_shape(w) if is_grouped(w) else tuple(w.shape) for w in ws]
    return (
        [b.view(s) for b, s in zip(betas, shapes, strict=True)],
        [e.view(s) for e, s in zip(w_norms, shapes, strict=True)],
    )


def _foreach_prox_into_(
    gammas: list[Tensor],
    vs: list[Tensor],
    *,
    lam: float,
    kappa: float,
    eps: list[Tensor] | None,
    scratch: Scratch,
) -> None:
    """Γ ← κ·[ε ⊙] Prox_λ(V), written into ``gammas``; no NaN for zero groups."""
    grouped = [i for i, v in enumerate(vs) if is_grouped(v)]
    elementwise = [i for i, v in enumerate(vs) if not is_grouped(v)]

    if grouped:
        # factor_g = κ·max(0, 1 − λ/‖V_g‖), the same ops as prox.group_shrink_factor
        factors = []
        for i in grouped:
            v = vs[i]
            norm = _buffer(scratch, v, "v_norm", (v.shape[0],))
            torch.linalg.vector_norm(v, dim=_filter_dims(v), out=norm)
            factors.append(norm)
        torch._foreach_clamp_min_(factors, NORM_FLOOR)
        torch._foreach_reciprocal_(factors)
        torch._foreach_mul_(factors, -lam)
        torch._foreach_add_(factors, 1.0)
        torch._foreach_clamp_min_(factors, 0.0)
        torch._foreach_mul_(factors, kappa)
        if eps is not None:
            torch._foreach_mul_(factors, [eps[i].view(-1) for i in grouped])
        for i, factor in zip(grouped, factors, strict=True):
            torch.mul(vs[i], factor.view(_filter_view_shape(vs[i])), out=gammas[i])

    if elementwise:
        # κ·soft(V) = κ·(V − clamp(V, −λ, λ)), computed as −κ·(clamp(V) − V) in place
        g_elem = [gammas[i] for i in elementwise]
        v_elem = [vs[i] for i in elementwise]
        for g, v in zip(g_elem, v_elem, strict=True):
            torch.clamp(v, -lam, lam, out=g)
        torch._foreach_sub_(g_elem, v_elem)
        torch._foreach_mul_(g_elem, -kappa)
        if eps is not None:
            torch._foreach_mul_(g_elem, [eps[i] for i in elementwise])
