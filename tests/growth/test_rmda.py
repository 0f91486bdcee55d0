"""RMDA, proximal momentum SGD and the group-sparsity measures.

The reference for RMDA is a plain-Python transcription of Algorithm 1 of the RMDA
paper (floats and lists, no torch), so the optimizer is checked against the paper's
formulas rather than against itself. Tensors are float64 to compare tightly.
"""
from __future__ import annotations

import io
import math
from typing import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn

from growth.errors import ArgumentError, SpecError
from growth.methods.base import spec_fields
from growth.methods.sparse import Rmda
from growth.models import Unit, build_model
from growth.optim.prox import group_lasso_weight
from growth.optim.prox_sgd import ProxSGD
from growth.optim.rmda import RMDA
from growth.optim.structure import (
    group_sparsity,
    regularized_weights,
    unit_zero_channels,
    unit_zero_groups,
    zero_group_mask,
)

Rows = list[list[float]]

# W⁰ of every hand-computed case: the second row is 10× smaller than the first, so
# a threshold between their norms (2.5 and 0.25 after one step) zeroes only it.
START: Rows = [[3.0, 4.0], [0.3, 0.4]]
# λ such that the first step's threshold (α₁/β₁)·λ·√2 = 0.5·λ·√2 is exactly 0.25.
LAM = 0.25 / (0.5 * math.sqrt(2.0))


def quadratic_grad(target: Rows) -> Callable[[Rows], Rows]:
    """∇ of f(W) = ½‖W − target‖², row by row."""
    return lambda w: [[wi - ti for wi, ti in zip(wr, tr)] for wr, tr in zip(w, target)]


def reference_rmda(
    start: Rows, grad: Callable[[Rows], Rows], *, lrs: Sequence[float], c: float, lam: float
) -> Rows:
    """Algorithm 1 in plain Python, one group per row with weight √|row|, one step per lr."""
    w0 = [row[:] for row in start]
    w = [row[:] for row in start]
    v = [[0.0] * len(row) for row in start]
    alpha = 0.0
    for t, lr in enumerate(lrs, start=1):
        beta = math.sqrt(t)
        s = lr * beta
        alpha += s
        g = grad(w)
        v = [[vi + s * gi for vi, gi in zip(vr, gr)] for vr, gr in zip(v, g)]
        tentative = [[a - b / beta for a, b in zip(ar, br)] for ar, br in zip(w0, v)]
        if lam:
            for row in tentative:
                norm = math.sqrt(sum(x * x for x in row))
                threshold = alpha / beta * lam * math.sqrt(len(row))
                factor = max(0.0, 1.0 - threshold / norm) if norm > 0 else 0.0
                row[:] = [factor * x for x in row]
        w = [[(1 - c) * a + c * b for a, b in zip(ar, br)] for ar, br in zip(w, tentative)]
    return w


def run_quadratic(
    optimizer: torch.optim.Optimizer, params: Sequence[Tensor], targets: Sequence[Tensor], lrs: Sequence[float]
) -> None:
    """Minimise Σ ½‖p − target‖² for ``len(lrs)`` steps, setting each step's lr."""
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        sum(0.5 * (p - t).pow(2).sum() for p, t in zip(params, targets)).backward()
        optimizer.step()


def conv_weight(rows: Rows) -> nn.Parameter:
    """A conv weight with one group per row: shape (filters, 1, 1, len(row))."""
    return nn.Parameter(torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 1, 1, -1))


# --- RMDA: hand-computed steps ------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_rmda_first_step_by_hand(foreach: bool) -> None:
    # t = 1: β = 1, s = α = 0.5, V = 0.5·W⁰, W⁰ − V = [[1.5, 2], [.15, .2]] with
    # norms 2.5 and 0.25; threshold 0.25 → row 1 × 0.9, row 2 → 0. c = 1.
    w = conv_weight(START)
    opt = RMDA([w], lr=0.5, momentum=0.0, lam=LAM, foreach=foreach)
    run_quadratic(opt, [w], [torch.zeros_like(w)], [0.5])
    expected = torch.tensor([[1.35, 1.8], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(w.detach().reshape(2, 2), expected, rtol=0, atol=1e-12)
    assert torch.equal(w.detach()[1], torch.zeros_like(w[1]))  # an exact zero group


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmda_conv_three_steps_match_algorithm_1(foreach: bool, momentum: float) -> None:
    target = [[0.5, -1.0], [0.05, 0.0]]
    lrs = [0.5, 0.5, 0.5]
    w = conv_weight(START)
    opt = RMDA([w], lr=0.5, momentum=momentum, lam=LAM, foreach=foreach)
    run_quadratic(opt, [w], [conv_weight(target).detach()], lrs)
    expected = reference_rmda(START, quadratic_grad(target), lrs=lrs, c=1 - momentum, lam=LAM)
    torch.testing.assert_close(w.detach().reshape(2, 2), torch.tensor(expected, dtype=torch.float64))
    if momentum == 0.0:  # with c = 1 the small filter is exactly zero after every step
        assert expected[1] == [0.0, 0.0] and torch.equal(w.detach()[1], torch.zeros_like(w[1]))


@pytest.mark.parametrize("foreach", [False, True])
def test_rmda_linear_rows_bias_and_unregularized_group(foreach: bool) -> None:
    # Linear weight: one group per output row (3 rows of 3 → weight √3). The bias in
    # the same group and the whole unregularized group follow ψ = 0.
    weight_rows = [[3.0, 0.0, 4.0], [0.2, -0.1, 0.2], [-1.0, 2.0, 2.0]]
    bias_rows = [[0.5, -0.5, 1.0]]
    free_rows = [[0.3, 0.4], [0.01, 0.0]]
    weight = nn.Parameter(torch.tensor(weight_rows, dtype=torch.float64))
    bias = nn.Parameter(torch.tensor(bias_rows[0], dtype=torch.float64))
    free = nn.Parameter(torch.tensor(free_rows, dtype=torch.float64))
    lam, lrs, momentum = 0.1, [0.4, 0.4, 0.2], 0.5
    opt = RMDA(
        [{"params": [weight, bias]}, {"params": [free], "regularized": False}],
        lr=0.4,
        momentum=momentum,
        lam=lam,
        momentum_follows_lr=False,
        foreach=foreach,
    )
    targets = [torch.zeros_like(weight), torch.ones_like(bias), torch.zeros_like(free)]
    run_quadratic(opt, [weight, bias, free], targets, lrs)

    zero = quadratic_grad([[0.0] * 3] * 3)
    expected_weight = reference_rmda(weight_rows, zero, lrs=lrs, c=1 - momentum, lam=lam)
    expected_bias = reference_rmda(bias_rows, quadratic_grad([[1.0] * 3]), lrs=lrs, c=1 - momentum, lam=0.0)
    expected_free = reference_rmda(free_rows, quadratic_grad([[0.0] * 2] * 2), lrs=lrs, c=1 - momentum, lam=0.0)
    torch.testing.assert_close(weight.detach(), torch.tensor(expected_weight, dtype=torch.float64))
    torch.testing.assert_close(bias.detach(), torch.tensor(expected_bias[0], dtype=torch.float64))
    torch.testing.assert_close(free.detach(), torch.tensor(expected_free, dtype=torch.float64))
    # ψ did act: the small row ends smaller than in the same run without it.
    unregularized = reference_rmda(weight_rows, zero, lrs=lrs, c=1 - momentum, lam=0.0)
    assert sum(map(abs, expected_weight[1])) < sum(map(abs, unregularized[1]))


@pytest.mark.parametrize("foreach", [False, True])
def test_rmda_without_regularizer_is_modernized_dual_averaging(foreach: bool) -> None:
    target = [[1.0, 2.0], [-3.0, 0.5]]
    lrs = [0.3, 0.3, 0.03]
    w = conv_weight(START)
    opt = RMDA([w], lr=0.3, momentum=0.9, lam=0.0, momentum_follows_lr=False, foreach=foreach)
    run_quadratic(opt, [w], [conv_weight(target).detach()], lrs)
    expected = reference_rmda(START, quadratic_grad(target), lrs=lrs, c=0.1, lam=0.0)
    torch.testing.assert_close(w.detach().reshape(2, 2), torch.tensor(expected, dtype=torch.float64))


def test_rmda_weight_decay_enters_the_gradient() -> None:
    # f + (wd/2)‖W‖² has gradient (W − T) + wd·W: the same run as a reference whose
    # gradient function includes that term.
    target, wd, lrs = [[1.0, -1.0], [0.5, 0.5]], 0.2, [0.5, 0.5, 0.5]
    w = conv_weight(START)
    opt = RMDA([w], lr=0.5, momentum=0.5, lam=LAM, weight_decay=wd, momentum_follows_lr=False)
    run_quadratic(opt, [w], [conv_weight(target).detach()], lrs)

    def grad(rows: Rows) -> Rows:
        return [[x - t + wd * x for x, t in zip(r, tr)] for r, tr in zip(rows, target)]

    expected = reference_rmda(START, grad, lrs=lrs, c=0.5, lam=LAM)
    torch.testing.assert_close(w.detach().reshape(2, 2), torch.tensor(expected, dtype=torch.float64))


def test_rmda_momentum_follows_the_learning_rate() -> None:
    w = nn.Parameter(torch.zeros(2, 2))
    opt = RMDA([w], lr=0.1, momentum=0.99)
    group = opt.param_groups[0]
    assert opt.mixing_coefficient(group) == pytest.approx(0.01)
    group["lr"] = 0.01  # the paper's schedule: η ÷ 10 → c × 10
    assert opt.mixing_coefficient(group) == pytest.approx(0.1)
    group["lr"] = 1e-4
    assert opt.mixing_coefficient(group) == 1.0
    fixed = RMDA([w], lr=0.1, momentum=0.9, momentum_follows_lr=False)
    fixed.param_groups[0]["lr"] = 0.001
    assert fixed.mixing_coefficient(fixed.param_groups[0]) == pytest.approx(0.1)


def test_rmda_foreach_matches_single_tensor_on_a_real_model() -> None:
    def train(foreach: bool) -> list[Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16, 3))
        opt = RMDA(
            [
                {"params": [model[0].weight, model[4].weight]},
                {"params": [model[0].bias, model[1].weight, model[1].bias, model[4].bias], "regularized": False},
            ],
            lr=0.1,
            momentum=0.9,
            lam=0.05,
            weight_decay=1e-3,
            foreach=foreach,
        )
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(16, 2, 6, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        for step in range(6):
            if step == 3:
                opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = 0.01
                opt.restart()
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for single, multi in zip(train(foreach=False), train(foreach=True)):
        torch.testing.assert_close(single, multi)


# --- RMDA: restart and state --------------------------------------------------


def test_restart_resets_the_clock_and_anchors_at_the_current_weights() -> None:
    target = conv_weight([[1.0, 2.0], [-3.0, 0.5]]).detach()
    w = conv_weight(START)
    opt = RMDA([w], lr=0.5, momentum=0.5, lam=LAM)
    run_quadratic(opt, [w], [target], [0.5, 0.5, 0.5])
    opt.restart()
    state = opt.state[w]
    assert state["step"].item() == 0.0 and state["alpha"].item() == 0.0
    assert torch.equal(state["dual_sum"], torch.zeros_like(w))
    assert torch.equal(state["initial_point"], w.detach())

    # After a restart the optimizer behaves exactly like a fresh one started at the
    # current weights (same lr and momentum schedule).
    fresh_w = nn.Parameter(w.detach().clone())
    fresh = RMDA([fresh_w], lr=0.5, momentum=0.5, lam=LAM)
    run_quadratic(opt, [w], [target], [0.5, 0.5])
    run_quadratic(fresh, [fresh_w], [target], [0.5, 0.5])
    torch.testing.assert_close(w, fresh_w, rtol=0, atol=0)


def test_restart_keeps_the_momentum_schedule() -> None:
    # η drops 0.1 → 0.01 at the milestone; c goes 0.01 → 0.1 and is not reset by restart.
    target = conv_weight([[1.0, 2.0], [-3.0, 0.5]]).detach()
    w = conv_weight(START)
    opt = RMDA([w], lr=0.1, momentum=0.99, lam=LAM)
    run_quadratic(opt, [w], [target], [0.1, 0.1])
    after_round_one = [row[:] for row in w.detach().reshape(2, 2).tolist()]
    opt.restart()
    run_quadratic(opt, [w], [target], [0.01, 0.01])
    expected = reference_rmda(after_round_one, quadratic_grad([[1.0, 2.0], [-3.0, 0.5]]), lrs=[0.01, 0.01], c=0.1, lam=LAM)
    torch.testing.assert_close(w.detach().reshape(2, 2), torch.tensor(expected, dtype=torch.float64))


def test_restart_before_any_step_is_harmless() -> None:
    w = conv_weight(START)
    opt = RMDA([w], lr=0.5, momentum=0.0, lam=LAM)
    opt.restart()
    run_quadratic(opt, [w], [torch.zeros_like(w)], [0.5])
    torch.testing.assert_close(
        w.detach().reshape(2, 2), torch.tensor([[1.35, 1.8], [0.0, 0.0]], dtype=torch.float64)
    )


def _small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 2))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 2, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make", [lambda ps: RMDA(ps, lr=0.1, lam=0.01), lambda ps: ProxSGD(ps, lr=0.1, lam=0.01)])
def test_state_dict_round_trip_continues_identically(make: Callable[[object], torch.optim.Optimizer]) -> None:
    model = _small_model()
    opt = make(model.parameters())
    _steps(model, opt, 3, seed=1)

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = _small_model()
    resumed_model.load_state_dict(saved["model"])
    resumed = make(resumed_model.parameters())
    resumed.load_state_dict(saved["optimizer"])

    _steps(model, opt, 3, seed=2)
    _steps(resumed_model, resumed, 3, seed=2)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda ps: RMDA(ps, lr=0.1, lam=0.01), lambda ps: ProxSGD(ps, lr=0.1, lam=0.01)])
def test_state_tensors_are_param_shaped_or_scalar(make: Callable[[object], torch.optim.Optimizer]) -> None:
    model = _small_model()
    opt = make(model.parameters())
    _steps(model, opt, 1, seed=1)
    for p in model.parameters():
        assert opt.state[p], "every param with a gradient has state"
        for key, value in opt.state[p].items():
            assert isinstance(value, Tensor), key
            assert value.shape in (p.shape, torch.Size([])), (key, value.shape)


def test_rmda_state_keys_and_clocks() -> None:
    model = _small_model()
    opt = RMDA(model.parameters(), lr=0.1)
    _steps(model, opt, 2, seed=1)
    state = opt.state[model[0].weight]
    assert set(state) == {"step", "alpha", "initial_point", "dual_sum"}
    assert state["step"].item() == 2.0
    assert state["alpha"].item() == pytest.approx(0.1 * (1 + math.sqrt(2)))


@pytest.mark.parametrize("kwargs, field", [
    ({"lr": -1.0}, "lr"),
    ({"momentum": 1.0}, "momentum"),
    ({"lam": -0.1}, "lam"),
    ({"weight_decay": -1e-4}, "weight_decay"),
])
@pytest.mark.parametrize("cls", [RMDA, ProxSGD])
def test_bad_hyperparameters_name_the_field(cls: type, kwargs: dict, field: str) -> None:
    # The optimizer names its own argument in a plain ValueError ...
    with pytest.raises(ArgumentError, match=f"^Invalid {field}: ") as err:
        cls([nn.Parameter(torch.zeros(2, 2))], **kwargs)
    assert err.value.argument == field and not isinstance(err.value, SpecError)
    # ... which a method's job spec reports as the field it was read from.
    with pytest.raises(SpecError) as spec_err, spec_fields(Rmda.optimizer_fields):
        cls([nn.Parameter(torch.zeros(2, 2))], **kwargs)
    assert spec_err.value.field == {"lam": "regularizer.lam"}.get(field, f"train.{field}")


# --- ProxSGD --------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_prox_sgd_two_steps_by_hand(foreach: bool) -> None:
    # η = 0.5, μ = 0.9, threshold η·λ·√2 = 0.25, f = ½‖W‖².
    # Step 1: buf = W⁰, W⁰ − 0.5·buf = [[1.5, 2], [.15, .2]] → [[1.35, 1.8], [0, 0]].
    # Step 2: buf = 0.9·W⁰ + W₁ = [[4.05, 5.4], [.27, .36]],
    #         W₁ − 0.5·buf = [[−.675, −.9], [−.135, −.18]] (norms 1.125, 0.225)
    #         → row 1 × (1 − 0.25/1.125) = [[−.525, −.7]], row 2 → 0.
    w = conv_weight(START)
    opt = ProxSGD([w], lr=0.5, momentum=0.9, lam=LAM, foreach=foreach)
    run_quadratic(opt, [w], [torch.zeros_like(w)], [0.5])
    torch.testing.assert_close(
        w.detach().reshape(2, 2), torch.tensor([[1.35, 1.8], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=1e-12
    )
    run_quadratic(opt, [w], [torch.zeros_like(w)], [0.5])
    torch.testing.assert_close(
        w.detach().reshape(2, 2), torch.tensor([[-0.525, -0.7], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert torch.equal(w.detach()[1], torch.zeros_like(w[1]))


@pytest.mark.parametrize("foreach", [False, True])
def test_prox_sgd_without_regularizer_is_torch_sgd(foreach: bool) -> None:
    def train(make: Callable[[object], torch.optim.Optimizer]) -> list[Tensor]:
        model = _small_model()
        _steps(model, make(model.parameters()), 4, seed=3)
        return [p.detach() for p in model.parameters()]

    ours = train(lambda ps: ProxSGD(ps, lr=0.05, momentum=0.9, lam=0.0, weight_decay=1e-3, foreach=foreach))
    reference = train(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3))
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)


def test_prox_sgd_unregularized_group_is_never_shrunk() -> None:
    w = conv_weight(START)
    free = conv_weight(START)
    opt = ProxSGD([{"params": [w]}, {"params": [free], "regularized": False}], lr=0.5, momentum=0.0, lam=LAM)
    run_quadratic(opt, [w, free], [torch.zeros_like(w), torch.zeros_like(free)], [0.5])
    torch.testing.assert_close(free.detach().reshape(2, 2), 0.5 * torch.tensor(START, dtype=torch.float64))
    assert torch.equal(w.detach()[1], torch.zeros_like(w[1]))


# --- Group sparsity -------------------------------------------------------------


def _sparse_regression(lam: float, steps: int = 300) -> tuple[nn.Linear, RMDA]:
    """6 outputs of which only 2 depend on the input: 4 rows of the weight do not matter."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=gen)
    truth = torch.zeros(6, 8)
    truth[:2] = torch.randn(2, 8, generator=gen)
    y = x @ truth.T
    torch.manual_seed(0)
    layer = nn.Linear(8, 6, bias=False)
    opt = RMDA(layer.parameters(), lr=0.1, momentum=0.9, lam=lam)
    for step in range(steps):
        if step == steps // 2:  # a milestone: η ÷ 10, so c = 1 from here on, and restart
            opt.param_groups[0]["lr"] = 0.01
            opt.restart()
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), y).backward()
        opt.step()
    return layer, opt


def test_rmda_finds_the_groups_that_do_not_matter() -> None:
    layer, opt = _sparse_regression(lam=0.01)
    zero_rows = layer.weight.detach().eq(0).all(dim=1)
    assert zero_rows.tolist() == [False, False, True, True, True, True]
    assert group_sparsity(opt, grouping="filter") == 4 / 6
    assert group_sparsity(opt) == (4 * 8) / (6 * 8)  # kernel-wise: every element of a linear weight
    assert group_sparsity([layer.weight]) == 4 / 6


def test_group_sparsity_is_zero_without_regularizer() -> None:
    _, opt = _sparse_regression(lam=0.0, steps=40)
    assert group_sparsity(opt) == 0.0
    assert group_sparsity(opt, grouping="filter") == 0.0


def test_group_sparsity_counts_kernels_and_filters_of_regularized_groups_only() -> None:
    conv = nn.Conv2d(3, 4, 3)
    linear = nn.Linear(5, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0] = 0.0  # one whole filter: 1 of 4 filters, 3 of 12 kernels
        conv.weight[1, 2] = 0.0  # one more kernel, not a whole filter
        linear.weight.fill_(1.0)
        linear.weight[0] = 0.0  # a whole row: 1 of 2 rows, 5 of 10 elements
    frozen = nn.Parameter(torch.zeros(7, 7))  # all zero but unregularized: not counted
    opt = RMDA(
        [
            {"params": [conv.weight, conv.bias, linear.weight, linear.bias]},
            {"params": [frozen], "regularized": False},
        ],
        lr=0.1,
    )
    assert regularized_weights(opt) == [conv.weight, linear.weight]
    assert group_sparsity(opt) == (4 + 5) / (12 + 10)
    assert group_sparsity(opt, grouping="filter") == (1 + 1) / (4 + 2)
    assert group_sparsity(opt.param_groups, grouping="filter") == (1 + 1) / (4 + 2)
    assert group_sparsity([]) == 0.0


def test_zero_group_mask_and_group_weight() -> None:
    w = torch.ones(2, 3, 2, 2)
    w[1, 0] = 0.0
    assert zero_group_mask(w, "kernel").tolist() == [False, False, False, True, False, False]
    assert zero_group_mask(w, "filter").tolist() == [False, False]
    assert group_lasso_weight(w) == math.sqrt(12)
    assert group_lasso_weight(torch.ones(5, 7)) == math.sqrt(7)
    assert group_lasso_weight(torch.ones(5)) == 0.0


def test_unit_zero_groups_needs_every_producer_to_zero_the_channel() -> None:
    conv2 = nn.Conv2d(4, 5, 3, bias=False)
    projection = nn.Conv2d(2, 5, 1, bias=False)
    with torch.no_grad():
        conv2.weight.fill_(1.0)
        projection.weight.fill_(1.0)
        conv2.weight[[1, 3]] = 0.0
        projection.weight[[3, 4]] = 0.0
    residual = Unit("stage1", residual=True, producers=[(conv2, nn.BatchNorm2d(5)), (projection, nn.BatchNorm2d(5))])
    assert unit_zero_channels(residual).tolist() == [False, False, False, True, False]
    assert unit_zero_groups(residual) == (1, 5)
    plain = Unit("conv2", residual=False, producers=[(conv2, None)])
    assert unit_zero_groups(plain) == (2, 5)


def test_rmda_zeroes_whole_filters_of_a_conv_unit() -> None:
    # A conv whose target response uses only 2 of its 6 filters: RMDA with λ > 0
    # zeroes the other 4 exactly, and the unit helper counts them.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 5, 5, generator=gen)
    teacher = nn.Conv2d(2, 6, 3, bias=False)
    with torch.no_grad():
        teacher.weight.normal_(generator=gen)
        teacher.weight[2:] = 0.0
        y = teacher(x)
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 6, 3, bias=False)
    opt = RMDA([conv.weight], lr=0.1, momentum=0.9, lam=0.01)
    for step in range(200):
        if step == 100:
            opt.param_groups[0]["lr"] = 0.01
            opt.restart()
        opt.zero_grad()
        nn.functional.mse_loss(conv(x), y).backward()
        opt.step()
    assert unit_zero_channels(Unit("conv1", residual=False, producers=[(conv, None)])).tolist() == [False, False, True, True, True, True]
    assert group_sparsity(opt, grouping="filter") == 4 / 6
    assert group_sparsity(opt) == (4 * 2) / (6 * 2)


def test_unit_counts_and_group_sparsity_agree_on_a_vgg_built_from_a_spec() -> None:
    # A real model and its own param groups: RMDA zeroes some filters of both convs
    # (not all), and the per-unit counts add up to the filter-wise group sparsity.
    spec = {"family": "vgg", "in_channels": 1, "num_classes": 3, "layers": [8, "M", 8],
            "classifier": [], "batch_norm": True}
    model = build_model(spec, generator=torch.Generator().manual_seed(0))
    opt = RMDA(model.param_groups(), lr=0.1, momentum=0.9, lam=0.3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=gen)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long() + (x[:, 0, 4:].sum((1, 2)) > 0).long()
    for step in range(60):
        if step == 30:
            for group in opt.param_groups:
                group["lr"] = 0.01
            opt.restart()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    counts = {unit.name: unit_zero_groups(unit) for unit in model.units()}
    zero_filters = sum(zero for zero, _ in counts.values())
    filters = sum(width for _, width in counts.values())
    assert 0 < zero_filters < filters
    for unit in model.units():
        conv = unit.producers[0][0]
        assert counts[unit.name][0] == int(conv.weight.detach().flatten(1).eq(0).all(dim=1).sum())
    # VGG without hidden linear layers: the convs are the only regularized weights.
    assert group_sparsity(opt, grouping="filter") == zero_filters / filters
    in_channels = [1, 8]
    kernels = sum(width * c for (_, width), c in zip(counts.values(), in_channels))
    zero_kernels = sum(zero * c for (zero, _), c in zip(counts.values(), in_channels))
    assert group_sparsity(opt) == zero_kernels / kernels
