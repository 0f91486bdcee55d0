"""DessiLBI: the update equations on hand-computed cases, and the optimizer's contracts."""
from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor, nn

from growth.errors import ArgumentError, SpecError
from growth.methods.base import spec_fields
from growth.methods.grow import Grow
from growth.optim import dessilbi as dessilbi_module
from growth.optim.dessilbi import DessiLBI
from growth.optim.structure import masks, sparse_weights, support_counts, unit_support

# --------------------------------------------------------------------------------------
# An independent model of the update: plain Python floats, one group per filter.
# Linear weights are element-wise, i.e. every element is a group of one.
# --------------------------------------------------------------------------------------

Groups = list[list[float]]


@dataclass
class PlainState:
    w: Groups
    v: Groups
    gamma: Groups
    buf: Groups | None = None
    history: list[tuple[Groups, Groups, Groups, Groups]] = field(default_factory=list)


def _norm(xs: list[float]) -> float:
    return math.sqrt(sum(x * x for x in xs))


def plain_dessilbi(
    w0: Groups,
    grads: list[Groups],
    lrs: list[float],
    *,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    magnitude_scaling: bool = False,
    beta_min: float = 0.01,
) -> PlainState:
    """The equations of the DessiLBI docstring, one float at a time."""
    s = PlainState(
        w=[list(g) for g in w0],
        v=[[0.0] * len(g) for g in w0],
        gamma=[[0.0] * len(g) for g in w0],
    )
    for grad, lr in zip(grads, lrs, strict=True):
        d = [[gi + weight_decay * wi for gi, wi in zip(gg, wg)] for gg, wg in zip(grad, s.w)]
        if momentum == 0:
            direction = d
        elif s.buf is None:
            s.buf = [list(g) for g in d]
            direction = s.buf
        else:
            s.buf = [[momentum * bi + di for bi, di in zip(bg, dg)] for bg, dg in zip(s.buf, d)]
            direction = s.buf

        residual = [[wi - ci for wi, ci in zip(wg, cg)] for wg, cg in zip(s.w, s.gamma)]
        w_norms = [_norm(wg) for wg in s.w]
        if magnitude_scaling:
            selected = sum(1 for cg in s.gamma if any(c != 0 for c in cg))
            nonzero = sum(1 for n in w_norms if n > 0)
            keep = 1 - selected / max(nonzero, 1)
            beta = [max(beta_min, min(1.0, 1 / n if n > 0 else math.inf) * keep) for n in w_norms]
            eps = w_norms
        else:
            beta = [1.0] * len(s.w)
            eps = [1.0] * len(s.w)

        s.v = [[vi + lr / nu * b * ri for vi, ri in zip(vg, rg)] for vg, rg, b in zip(s.v, residual, beta)]
        s.w = [
            [wi - kappa * lr * (di + ri / nu) for wi, di, ri in zip(wg, dg, rg)]
            for wg, dg, rg in zip(s.w, direction, residual)
        ]
        s.gamma = []
        for vg, e in zip(s.v, eps):
            n = _norm(vg)
            shrink = max(0.0, 1 - lam / n) if n > 0 else 0.0
            s.gamma.append([kappa * e * shrink * vi for vi in vg])
        s.history.append((s.w, s.v, s.gamma, s.buf or direction))
    return s


def to_groups(t: Tensor) -> Groups:
    """Conv weight → one list per filter; linear weight → one list per element."""
    if t.ndim >= 3:
        return t.reshape(t.shape[0], -1).tolist()
    return [[x] for x in t.reshape(-1).tolist()]


def from_groups(groups: Groups, like: Tensor) -> Tensor:
    return torch.tensor(groups, dtype=like.dtype).reshape(like.shape)


def run_tensor_dessilbi(
    w0: Tensor, grads: list[Tensor], foreach: bool | None, scheduler_milestones: list[int] | None = None, **hyper: float
) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    p = nn.Parameter(w0.clone())
    optimizer = DessiLBI([p], foreach=foreach, **hyper)  # type: ignore[arg-type]
    scheduler = (
        torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=scheduler_milestones, gamma=0.1)
        if scheduler_milestones is not None else None
    )
    out = []
    for g in grads:
        p.grad = g.clone()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        state = optimizer.state[p]
        buf = state.get("momentum_buffer", torch.full_like(p, math.nan))
        out.append((p.detach().clone(), state["v"].clone(), state["gamma"].clone(), buf.clone()))
    return out


# Three filters of two weights: norms 2, 0.5 and 0 (a group that stays exactly zero).
CONV_W0 = torch.tensor([[1.2, -1.6], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64).reshape(3, 1, 1, 2)
CONV_GRADS = [
    torch.tensor(g, dtype=torch.float64).reshape(3, 1, 1, 2)
    for g in ([[0.5, -0.2], [-0.3, 0.1], [0.0, 0.0]],
              [[0.1, 0.4], [-0.6, -0.2], [0.0, 0.0]],
              [[-0.2, 0.3], [0.2, -0.5], [0.0, 0.0]],
              [[0.3, 0.1], [-0.4, -0.4], [0.0, 0.0]])
]
LINEAR_W0 = torch.tensor([[1.5, -0.2, 0.0], [-0.9, 0.6, 2.5]], dtype=torch.float64)
LINEAR_GRADS = [torch.tensor(g, dtype=torch.float64) for g in (
    [[0.2, -0.1, 0.0], [0.4, -0.3, 0.1]],
    [[-0.5, 0.2, 0.0], [0.1, 0.6, -0.2]],
    [[0.1, 0.3, 0.0], [-0.2, -0.1, 0.3]],
    [[0.4, -0.2, 0.0], [0.3, 0.2, -0.1]],
)]
# lr/ν = 1 makes V jump to the residual on the first step, so filters cross λ = 1
# at different steps; κ = 0.8 keeps κ's placement visible.
HYPER = {"lr": 0.5, "kappa": 0.8, "nu": 0.5, "lam": 1.0}
VARIANTS = {
    "plain": {"momentum": 0.0, "weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "weight_decay": 0.0},
    "momentum+wd": {"momentum": 0.9, "weight_decay": 0.1},
    "magnitude": {"momentum": 0.9, "weight_decay": 0.1, "magnitude_scaling": True, "beta_min": 0.05},
}


@pytest.mark.parametrize("foreach", [False, True, None], ids=["reference", "foreach", "default"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", ["conv", "linear"])
def test_update_matches_hand_computed_equations(case: str, variant: str, foreach: bool | None) -> None:
    w0, grads = (CONV_W0, CONV_GRADS) if case == "conv" else (LINEAR_W0, LINEAR_GRADS)
    extra = VARIANTS[variant]
    got = run_tensor_dessilbi(w0, grads, foreach, **HYPER, **extra)
    want = plain_dessilbi(
        to_groups(w0), [to_groups(g) for g in grads], [HYPER["lr"]] * len(grads),
        kappa=HYPER["kappa"], nu=HYPER["nu"], lam=HYPER["lam"], **extra,  # type: ignore[arg-type]
    )
    for step, ((w, v, gamma, buf), (pw, pv, pgamma, pbuf)) in enumerate(zip(got, want.history, strict=True)):
        torch.testing.assert_close(w, from_groups(pw, w0), rtol=0, atol=1e-12, msg=f"W at step {step}")
        torch.testing.assert_close(v, from_groups(pv, w0), rtol=0, atol=1e-12, msg=f"V at step {step}")
        torch.testing.assert_close(gamma, from_groups(pgamma, w0), rtol=0, atol=1e-12, msg=f"Γ at step {step}")
        if extra["momentum"]:
            torch.testing.assert_close(buf, from_groups(pbuf, w0), rtol=0, atol=1e-12)
        assert torch.isfinite(gamma).all()


def test_hand_computed_case_exercises_the_support() -> None:
    """The fixture is only useful if groups enter Γ at different steps."""
    got = run_tensor_dessilbi(CONV_W0, CONV_GRADS, False, momentum=0.9, weight_decay=0.0, **HYPER)
    selected = [(gamma.reshape(3, -1) != 0).any(dim=1).tolist() for _, _, gamma, _ in got]
    assert selected[0] == [True, False, False]
    assert any(s[1] for s in selected[1:]), "the small filter never entered Γ"
    assert not any(s[2] for s in selected)  # the zero group stays zero, without NaN
    linear = run_tensor_dessilbi(LINEAR_W0, LINEAR_GRADS, False, momentum=0.9, weight_decay=0.0, **HYPER)
    support = [(gamma != 0).sum().item() for _, _, gamma, _ in linear]
    assert 0 < support[0] < LINEAR_W0.numel()


@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "foreach"])
def test_magnitude_scaling_floors_beta_once_every_filter_is_selected(foreach: bool) -> None:
    """Step 2 of a conv whose two filters (norms 5 and 2) both enter Γ at step 1, by hand.

    Step 1 (Γ = 0, ρ = 0): β = (1/5, 1/2), V = (α/ν)·β⊙W = ((.3, .4), (0, .5)), both norms .5;
    ε = (5, 2) and λ = .1 give Γ = ε·(1 − .1/.5)·V = ((1.2, 1.6), (0, .8)); W ← W − κα·W/ν = W/2.
    Step 2: ρ = 2/2, so (1 − ρ) = 0 and only the floor keeps V moving: β = beta_min = .05 and
    V ← V + (α/ν)·.05·(W − Γ) = ((.3075, .41), (0, .505)).
    """
    w0 = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64).reshape(2, 1, 1, 2)
    zero = torch.zeros_like(w0)
    (w1, v1, gamma1, _), (_, v2, _, _) = run_tensor_dessilbi(
        w0, [zero, zero], foreach, lr=0.25, kappa=1.0, nu=0.5, lam=0.1, momentum=0.0,
        weight_decay=0.0, magnitude_scaling=True, beta_min=0.05)
    shape = w0.shape
    torch.testing.assert_close(w1, (w0 / 2))
    torch.testing.assert_close(v1, torch.tensor([[0.3, 0.4], [0.0, 0.5]], dtype=torch.float64).reshape(shape))
    torch.testing.assert_close(gamma1, torch.tensor([[1.2, 1.6], [0.0, 0.8]], dtype=torch.float64).reshape(shape))
    torch.testing.assert_close(v2, torch.tensor([[0.3075, 0.41], [0.0, 0.505]], dtype=torch.float64).reshape(shape),
                               rtol=0, atol=1e-12)


def test_a_param_group_overriding_a_hyperparameter_is_checked_too() -> None:
    good = nn.Parameter(torch.zeros(2, 2))
    bad = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(SpecError) as err, spec_fields(Grow.optimizer_fields):
        DessiLBI([{"params": [good]}, {"params": [bad], "nu": 0.0}], lr=0.1)
    assert err.value.field == "optimizer.nu"
    optimizer = DessiLBI([good], lr=0.1)
    with pytest.raises(SpecError) as err, spec_fields(Grow.optimizer_fields):
        optimizer.add_param_group({"params": [bad], "lam": -1.0})
    assert err.value.field == "optimizer.lam"
    assert len(optimizer.param_groups) == 1


def test_group_prox_first_step_by_hand() -> None:
    """One step from V = Γ = 0 with lr/ν = 1: V = W, Γ_g = κ·max(0, 1 − λ/‖W_g‖)·W_g."""
    (w, v, gamma, _), = run_tensor_dessilbi(
        CONV_W0, [torch.zeros_like(CONV_W0)], False, momentum=0.0, weight_decay=0.0, **HYPER)
    torch.testing.assert_close(v, CONV_W0)
    # filter 0: ‖W‖ = 2 → factor 0.5; filter 1: ‖W‖ = 0.5 < λ → 0; filter 2: zero group → 0
    expected = torch.tensor([[0.8 * 0.5 * 1.2, 0.8 * 0.5 * -1.6], [0, 0], [0, 0]], dtype=torch.float64)
    torch.testing.assert_close(gamma, expected.reshape(3, 1, 1, 2))
    # W ← W − κα(W − 0)/ν = (1 − 0.8)·W
    torch.testing.assert_close(w, 0.2 * CONV_W0)


def test_multistep_lr_scheduler_changes_the_step() -> None:
    extra = {"momentum": 0.9, "weight_decay": 0.1}
    got = run_tensor_dessilbi(CONV_W0, CONV_GRADS, False, scheduler_milestones=[2], **HYPER, **extra)
    lrs = [0.5, 0.5, 0.05, 0.05]
    want = plain_dessilbi(
        to_groups(CONV_W0), [to_groups(g) for g in CONV_GRADS], lrs,
        kappa=HYPER["kappa"], nu=HYPER["nu"], lam=HYPER["lam"], **extra,
    )
    for (w, v, gamma, _), (pw, pv, pgamma, _) in zip(got, want.history, strict=True):
        torch.testing.assert_close(w, from_groups(pw, CONV_W0), rtol=0, atol=1e-12)
        torch.testing.assert_close(v, from_groups(pv, CONV_W0), rtol=0, atol=1e-12)
        torch.testing.assert_close(gamma, from_groups(pgamma, CONV_W0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "foreach"])
def test_non_structural_params_take_momentum_sgd_scaled_by_kappa_lr(foreach: bool) -> None:
    weight = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 0.25]], dtype=torch.float64))  # structural=False group
    bias = nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64))  # ndim 1 in a structural group
    optimizer = DessiLBI(
        [{"params": [bias]}, {"params": [weight], "structural": False}],
        lr=0.1, kappa=2.0, nu=1.0, momentum=0.5, weight_decay=0.2, foreach=foreach,
    )
    w, b = weight.detach().clone(), bias.detach().clone()
    w_buf = b_buf = None
    for k in range(3):
        gw = torch.full_like(w, 0.1 * (k + 1))
        gb = torch.tensor([0.2, -0.1 * k], dtype=torch.float64)
        weight.grad, bias.grad = gw.clone(), gb.clone()
        optimizer.step()
        dw, db = gw + 0.2 * w, gb + 0.2 * b
        w_buf = dw if w_buf is None else 0.5 * w_buf + dw
        b_buf = db if b_buf is None else 0.5 * b_buf + db
        w, b = w - 2.0 * 0.1 * w_buf, b - 2.0 * 0.1 * b_buf
        torch.testing.assert_close(weight.detach(), w, rtol=0, atol=1e-14)
        torch.testing.assert_close(bias.detach(), b, rtol=0, atol=1e-14)
    assert set(optimizer.state[weight]) == {"momentum_buffer"}
    assert set(optimizer.state[bias]) == {"momentum_buffer"}


def test_params_without_grad_are_skipped() -> None:
    used, unused = nn.Parameter(CONV_W0.clone()), nn.Parameter(CONV_W0.clone())
    optimizer = DessiLBI([used, unused], lr=0.1)
    used.grad = torch.ones_like(CONV_W0)
    optimizer.step()
    assert torch.equal(unused.detach(), CONV_W0) and unused not in optimizer.state


# --------------------------------------------------------------------------------------
# Real models: foreach vs reference, checkpoints, shape changes, no host sync
# --------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1, bias=False)
        self.hidden = nn.Linear(5, 7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc(torch.relu(self.hidden(x)))

    def param_groups(self) -> list[dict]:
        structural = [self.conv1.weight, self.conv2.weight, self.hidden.weight]
        ids = {id(p) for p in structural}
        return [{"params": structural}, {"params": [p for p in self.parameters() if id(p) not in ids],
                                         "structural": False}]


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().double()


def data(seed: int = 1, n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def train(model: TinyNet, optimizer: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    for k in range(steps):
        x, y = data(seed + k)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


# Selects some, not all, filters of TinyNet within five steps.
NET_HYPER = {"lr": 0.1, "kappa": 1.0, "nu": 1.0, "lam": 0.2}


def assert_same_trajectory(a: tuple[TinyNet, DessiLBI], b: tuple[TinyNet, DessiLBI], atol: float) -> None:
    (model_a, opt_a), (model_b, opt_b) = a, b
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=atol, msg=name)
        for key, value in opt_a.state[pa].items():
            torch.testing.assert_close(value, opt_b.state[pb][key], rtol=0, atol=atol, msg=f"{name} {key}")
        assert set(opt_a.state[pa]) == set(opt_b.state[pb])


@pytest.mark.parametrize("kernels", ["cpu", "no-negative-momentum", "foreach-only"])
@pytest.mark.parametrize("extra", [
    {"momentum": 0.9, "weight_decay": 1e-3},
    {"momentum": 0.0, "weight_decay": 0.0},
    {"momentum": 0.9, "weight_decay": 1e-3, "magnitude_scaling": True},
], ids=["momentum+wd", "plain", "magnitude"])
def test_foreach_path_matches_reference(extra: dict, kernels: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kernel choice of the multi-tensor path: all fused kernels (CPU), no negative-momentum
    trick (what CUDA runs), and plain foreach ops (devices without fused SGD)."""
    if kernels == "no-negative-momentum":
        monkeypatch.setattr(dessilbi_module, "_negative_momentum_fused_sgd_supported", lambda p: False)
    if kernels == "foreach-only":
        monkeypatch.setattr(dessilbi_module, "_fused_sgd_supported", lambda p: False)
    runs = []
    for foreach in (False, True):
        model = tiny_net()
        optimizer = DessiLBI(model.param_groups(), foreach=foreach, **NET_HYPER, **extra)
        train(model, optimizer, steps=5)
        runs.append((model, optimizer))
    assert_same_trajectory(runs[0], runs[1], atol=1e-12)
    model, optimizer = runs[0]
    selected, total = unit_support(optimizer, [model.conv1.weight, model.conv2.weight])
    assert 0 < selected < total, "the support should be partial, else the prox is barely tested"
    assert torch.isfinite(optimizer.state[model.conv1.weight]["gamma"]).all()


def test_default_takes_the_multi_tensor_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``foreach=None`` on CPU parameters (``nn.Parameter``, as every model has) is the foreach step.

    torch.utils' ``_has_foreach_support`` admits plain tensors only, so a default built on it
    silently fell back to the single-tensor path: same equations, other rounding, and runs that
    no longer reproduced the ones made before (issue 9's re-map).
    """
    taken: list[str] = []
    for name in ("_single_tensor_dessilbi", "_multi_tensor_dessilbi"):
        implementation = getattr(dessilbi_module, name)

        def spy(*args: object, _implementation=implementation, _name=name, **kwargs: object) -> None:
            taken.append(_name)
            _implementation(*args, **kwargs)

        monkeypatch.setattr(dessilbi_module, name, spy)
    runs = []
    for foreach in (None, True):
        model = tiny_net().float()
        optimizer = DessiLBI(model.param_groups(), foreach=foreach, momentum=0.9, weight_decay=1e-3, **NET_HYPER)
        train_float(model, optimizer, steps=3)
        runs.append((model, optimizer))
    assert_same_trajectory(runs[0], runs[1], atol=0.0)
    assert set(taken) == {"_multi_tensor_dessilbi"}


def train_float(model: TinyNet, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for k in range(steps):
        x, y = data(1 + k)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x.float()), y).backward()
        optimizer.step()


@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "foreach"])
def test_state_dict_round_trip_continues_the_same_trajectory(foreach: bool) -> None:
    hyper = {**NET_HYPER, "momentum": 0.9, "weight_decay": 1e-3, "magnitude_scaling": True}
    straight = tiny_net()
    straight_opt = DessiLBI(straight.param_groups(), foreach=foreach, **hyper)
    train(straight, straight_opt, steps=6)

    first = tiny_net()
    first_opt = DessiLBI(first.param_groups(), foreach=foreach, **hyper)
    train(first, first_opt, steps=3)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = tiny_net(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    resumed_opt = DessiLBI(resumed.param_groups(), foreach=foreach, **NET_HYPER)  # hyper-params from the file
    resumed_opt.load_state_dict(saved["optimizer"])
    assert resumed_opt.param_groups[0]["magnitude_scaling"] is True
    train(resumed, resumed_opt, steps=3, seed=4)
    assert_same_trajectory((straight, straight_opt), (resumed, resumed_opt), atol=0.0)


def widen_rows(p: nn.Parameter, optimizer: torch.optim.Optimizer, extra_rows: Tensor) -> None:
    """What channel surgery does: grow dim 0 in place, zero-pad every p-shaped state tensor."""
    p.data = torch.cat([p.data, extra_rows])
    state = optimizer.state[p]
    for key, value in state.items():
        state[key] = torch.cat([value, torch.zeros_like(extra_rows)])


@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "foreach"])
def test_widened_parameter_keeps_stepping(foreach: bool) -> None:
    """Old filters continue exactly as if nothing happened; the new one starts from zero state."""
    hyper = {**HYPER, "momentum": 0.9, "weight_decay": 0.1}
    narrow = nn.Parameter(CONV_W0[:2].clone())
    wide = nn.Parameter(CONV_W0[:2].clone())
    opt_narrow = DessiLBI([narrow], foreach=foreach, **hyper)
    opt_wide = DessiLBI([wide], foreach=foreach, **hyper)
    new_filter = torch.tensor([[1.0, 1.0]], dtype=torch.float64).reshape(1, 1, 1, 2)
    for k, g in enumerate(CONV_GRADS):
        if k == 2:
            widen_rows(wide, opt_wide, new_filter)
        narrow.grad = g[:2].clone()
        wide.grad = g[: wide.shape[0]].clone() if k < 2 else torch.cat([g[:2], 0.1 * torch.ones_like(new_filter)])
        opt_narrow.step()
        opt_wide.step()
        for key in ("v", "gamma", "momentum_buffer"):
            assert torch.equal(opt_wide.state[wide][key][:2], opt_narrow.state[narrow][key])
        assert torch.equal(wide.detach()[:2], narrow.detach())

    # the new filter saw two steps from zero state with gradient 0.1
    want = plain_dessilbi([[1.0, 1.0]], [[[0.1, 0.1]]] * 2, [0.5, 0.5], kappa=0.8, nu=0.5, lam=1.0,
                          momentum=0.9, weight_decay=0.1)
    torch.testing.assert_close(wide.detach()[2].reshape(-1).tolist(), want.w[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(opt_wide.state[wide]["gamma"][2].reshape(-1).tolist(), want.gamma[0],
                               rtol=0, atol=1e-12)


def test_widening_with_magnitude_scaling_matches_reference() -> None:
    runs = []
    for foreach in (False, True):
        model = tiny_net()
        optimizer = DessiLBI(model.param_groups(), foreach=foreach, magnitude_scaling=True, **NET_HYPER)
        train(model, optimizer, steps=3)
        # widen conv1 (out) and conv2 (in) — conv2's filters grow a channel each
        torch.manual_seed(7)
        widen_rows(model.conv1.weight, optimizer, torch.randn(2, 2, 3, 3, dtype=torch.float64))
        widen_rows(model.conv1.bias, optimizer, torch.zeros(2, dtype=torch.float64))
        for p in (model.bn1.weight, model.bn1.bias):
            widen_rows(p, optimizer, torch.ones(2, dtype=torch.float64) if p is model.bn1.weight
                       else torch.zeros(2, dtype=torch.float64))
        model.bn1.running_mean = torch.cat([model.bn1.running_mean, torch.zeros(2, dtype=torch.float64)])
        model.bn1.running_var = torch.cat([model.bn1.running_var, torch.ones(2, dtype=torch.float64)])
        model.bn1.num_features = 8
        w2 = model.conv2.weight
        w2.data = torch.cat([w2.data, torch.zeros(5, 2, 3, 3, dtype=torch.float64)], dim=1)
        for key, value in optimizer.state[w2].items():
            optimizer.state[w2][key] = torch.cat([value, torch.zeros(5, 2, 3, 3, dtype=torch.float64)], dim=1)
        train(model, optimizer, steps=3, seed=10)
        runs.append((model, optimizer))
    assert runs[1][0].conv1.weight.shape == (8, 2, 3, 3)
    assert_same_trajectory(runs[0], runs[1], atol=1e-12)


def test_stale_state_shape_is_reported() -> None:
    p = nn.Parameter(CONV_W0.clone())
    optimizer = DessiLBI([p], lr=0.1)
    p.grad = torch.ones_like(p)
    optimizer.step()
    p.data = torch.cat([p.data, p.data])  # widened without resizing the state
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="growth.surgery"):
        optimizer.step()


@contextmanager
def host_sync_forbidden() -> Iterator[None]:
    """Make every way of reading a tensor value on the host raise."""
    def forbid(name: str):
        def raising(*args, **kwargs):
            raise AssertionError(f"host sync: Tensor.{name} called during step")
        return raising

    names = ("item", "tolist", "__bool__", "__float__", "__int__")
    originals = {name: getattr(Tensor, name) for name in names}
    try:
        for name in names:
            setattr(Tensor, name, forbid(name))
        yield
    finally:
        for name, original in originals.items():
            setattr(Tensor, name, original)


@pytest.mark.parametrize("foreach", [False, True], ids=["reference", "foreach"])
@pytest.mark.parametrize("magnitude_scaling", [False, True], ids=["plain", "magnitude"])
def test_step_never_reads_tensor_values_on_the_host(foreach: bool, magnitude_scaling: bool) -> None:
    model = tiny_net()
    optimizer = DessiLBI(model.param_groups(), foreach=foreach, magnitude_scaling=magnitude_scaling,
                         weight_decay=1e-3, **NET_HYPER)
    for k in range(3):
        x, y = data(k)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with host_sync_forbidden():
            optimizer.step()
    with host_sync_forbidden(), pytest.raises(AssertionError, match="host sync"):
        bool(torch.ones(()))  # the patch is live


@pytest.mark.parametrize("magnitude_scaling", [False, True], ids=["plain", "magnitude"])
def test_foreach_step_allocates_nothing_in_steady_state(magnitude_scaling: bool) -> None:
    model = tiny_net().float()
    optimizer = DessiLBI(model.param_groups(), foreach=True, magnitude_scaling=magnitude_scaling,
                         weight_decay=1e-3, **NET_HYPER)
    x, y = data()
    nn.functional.cross_entropy(model(x.float()), y).backward()
    for _ in range(2):
        optimizer.step()  # state and scratch are created here
    with torch.profiler.profile(profile_memory=True) as prof:
        optimizer.step()
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events() if e.cpu_memory_usage > 0)
    # The largest parameter has 270 floats; anything parameter-sized would show up.
    assert allocated < 4 * 64, [(e.name, e.cpu_memory_usage) for e in prof.events() if e.cpu_memory_usage > 0]


# --------------------------------------------------------------------------------------
# Reading the structure: support counts, masks, sparse weights
# --------------------------------------------------------------------------------------


def optimizer_with_gamma(gammas: dict[nn.Parameter, Tensor]) -> DessiLBI:
    optimizer = DessiLBI([{"params": list(gammas)}], lr=0.1)
    for p, gamma in gammas.items():
        optimizer.state[p]["gamma"] = gamma
        optimizer.state[p]["v"] = torch.zeros_like(p)
    return optimizer


def conv_gamma() -> tuple[nn.Parameter, Tensor]:
    p = nn.Parameter(torch.randn(4, 2, 3, 3))
    gamma = torch.zeros_like(p)
    gamma[0, 1, 2, 2] = 0.5  # one non-zero element selects the whole filter
    gamma[2] = 1.0
    return p, gamma


def test_unit_support_counts_filters_with_nonzero_gamma_group() -> None:
    p, gamma = conv_gamma()
    q = nn.Parameter(torch.randn(3, 4, 3, 3))
    q_gamma = torch.zeros_like(q)
    q_gamma[1, 0] = -2.0
    never_stepped = nn.Parameter(torch.randn(5, 4, 3, 3))
    optimizer = optimizer_with_gamma({p: gamma, q: q_gamma})
    optimizer.add_param_group({"params": [never_stepped]})
    assert unit_support(optimizer, [p]) == (2, 4)
    assert unit_support(optimizer, [p, q]) == (3, 7)  # producers of one unit add up
    assert unit_support(optimizer, [never_stepped]) == (0, 5)
    selected, total = support_counts(optimizer, [[p], [q], [p, q], [never_stepped]])
    assert selected.tolist() == [2, 1, 3, 0] and total.tolist() == [4, 3, 7, 5]


def test_masks_follow_gamma_support() -> None:
    p, gamma = conv_gamma()
    linear = nn.Parameter(torch.randn(2, 3))
    linear_gamma = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.1, 0.0]])
    empty = nn.Parameter(torch.randn(3, 2, 1, 1))
    optimizer = optimizer_with_gamma({p: gamma, linear: linear_gamma, empty: torch.zeros(3, 2, 1, 1)})
    m = masks(optimizer, p)
    assert torch.equal(m.weight, gamma != 0)
    assert m.filter.tolist() == [True, False, True, False]
    assert bool(m.layer)
    lm = masks(optimizer, linear)
    assert torch.equal(lm.weight, linear_gamma != 0) and lm.filter.tolist() == [False, True]
    em = masks(optimizer, empty)
    assert not bool(em.layer) and not em.filter.any()


def test_sparse_weights_masks_and_restores_even_on_error() -> None:
    p, gamma = conv_gamma()
    bias = nn.Parameter(torch.randn(4))
    optimizer = optimizer_with_gamma({p: gamma})
    optimizer.add_param_group({"params": [bias]})  # 1-D: never masked
    dense, dense_bias = p.detach().clone(), bias.detach().clone()
    with sparse_weights(optimizer):
        assert torch.equal(p.detach(), dense * (gamma != 0))
        assert torch.equal(bias.detach(), dense_bias)
    assert torch.equal(p.detach(), dense)
    with pytest.raises(KeyError), sparse_weights(optimizer):
        assert p.detach()[1].abs().sum() == 0
        raise KeyError("boom")
    assert torch.equal(p.detach(), dense)


def test_sparse_weights_evaluates_the_selected_subnetwork() -> None:
    model = tiny_net()
    optimizer = DessiLBI(model.param_groups(), **NET_HYPER)
    train(model, optimizer, steps=4)
    x, _ = data(99)
    model.eval()
    before = model(x)
    with sparse_weights(optimizer):
        sparse_out = model(x)
        kept = masks(optimizer, model.conv1.weight).filter
        assert (model.conv1.weight[~kept] == 0).all()
    assert not torch.equal(before, sparse_out)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Bad hyper-parameters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"lr": -0.1}, "train.lr"),
    ({"kappa": 0.0}, "optimizer.kappa"),
    ({"nu": -1.0}, "optimizer.nu"),
    ({"lam": -1.0}, "optimizer.lam"),
    ({"momentum": 1.0}, "train.momentum"),
    ({"weight_decay": -1e-4}, "train.weight_decay"),
    ({"beta_min": 0.0}, "optimizer.beta_min"),
    ({"nu": math.nan}, "optimizer.nu"),
])
def test_bad_hyperparameters_name_the_field(kwargs: dict, field: str) -> None:
    args = {"lr": 0.1, **kwargs}
    (argument,) = kwargs
    # The optimizer names its own argument in a plain ValueError ...
    with pytest.raises(ArgumentError, match=f"^Invalid {argument}: ") as bare:
        DessiLBI([nn.Parameter(torch.zeros(2, 2))], **args)
    assert bare.value.argument == argument and not isinstance(bare.value, SpecError)
    # ... which the growth method reports as the job-spec field it was read from.
    with pytest.raises(SpecError) as err, spec_fields(Grow.optimizer_fields):
        DessiLBI([nn.Parameter(torch.zeros(2, 2))], **args)
    assert err.value.field == field


def test_deepcopy_keeps_working() -> None:
    model = tiny_net()
    optimizer = DessiLBI(model.param_groups(), **NET_HYPER)
    train(model, optimizer, steps=2)
    clone_model = copy.deepcopy(model)
    clone_opt = DessiLBI(clone_model.param_groups(), **NET_HYPER)
    clone_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    train(model, optimizer, steps=2, seed=5)
    train(clone_model, clone_opt, steps=2, seed=5)
    assert_same_trajectory((model, optimizer), (clone_model, clone_opt), atol=0.0)
