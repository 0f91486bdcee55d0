"""The fused (Triton) DessiLBI step against the float64 reference, in Triton's CPU interpreter.

``TRITON_INTERPRET=1`` has to be in the environment when Triton is imported
(its own library functions are built for one mode then), so this module sets
it before importing Triton. If something earlier in this pytest process had
already imported Triton for a GPU, the tests here cannot run in process:
they skip, and ``test_whole_module_in_a_fresh_interpreter_process`` runs this
file again in a process of its own. Skipped where Triton is not installed (it
is the ``netgrow[gpu]`` extra; ``.ci/run`` installs it).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

# Before anything imports triton. Remember whether something already did, for a GPU.
TRITON_BUILT_FOR_GPU = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

pytest.importorskip("numpy", reason="Triton's interpreter needs numpy")
pytest.importorskip("triton", reason="Triton is not installed: pip install -e '.[gpu]' (CI installs it)")

from test_dessilbi import (  # noqa: E402
    CONV_GRADS,
    CONV_W0,
    HYPER,
    LINEAR_GRADS,
    LINEAR_W0,
    from_groups,
    plain_dessilbi,
    to_groups,
)

from growth.optim import _fused_dessilbi as fused  # noqa: E402
from growth.optim.dessilbi import DessiLBI  # noqa: E402

DELEGATING_TEST = "test_whole_module_in_a_fresh_interpreter_process"


@pytest.fixture(autouse=True)
def _interpreter_in_this_process(request: pytest.FixtureRequest) -> None:
    if request.node.name == DELEGATING_TEST:
        return
    if TRITON_BUILT_FOR_GPU:
        pytest.skip(f"Triton was imported for a GPU before this module set TRITON_INTERPRET=1; {DELEGATING_TEST} "
                    "runs these tests in a process of their own")
    assert fused.interpreting(), "TRITON_INTERPRET=1 did not reach the kernels"


def test_whole_module_in_a_fresh_interpreter_process() -> None:
    if not TRITON_BUILT_FOR_GPU:
        pytest.skip("the tests of this module ran in this process, under the interpreter")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", f"not {DELEGATING_TEST}"],
        capture_output=True, text=True, env=env, timeout=900, cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary


# float32 rounding of values of order 1 over a few steps
F32 = {"rtol": 1e-5, "atol": 1e-6}

# --------------------------------------------------------------------------------------
# A small driver for the functional entry point: what DessiLBI keeps in its state.
# --------------------------------------------------------------------------------------


class FusedRun:
    """Parameters and DessiLBI state as lists, stepped by ``fused_dessilbi``."""

    def __init__(self, params: list[Tensor], lifted: list[bool], **hyper: float) -> None:
        self.params = params
        self.buffers: list[Tensor | None] = [None] * len(params)
        self.vs = [torch.zeros_like(p, memory_format=torch.preserve_format) if lift else None
                   for p, lift in zip(params, lifted, strict=True)]
        self.gammas = [torch.zeros_like(p, memory_format=torch.preserve_format) if lift else None
                       for p, lift in zip(params, lifted, strict=True)]
        self.hyper = hyper

    def step(self, grads: list[Tensor | None]) -> None:
        """One step of the params whose gradient is not None (like ``p.grad is None``)."""
        chosen = [i for i, g in enumerate(grads) if g is not None]
        buffers = [self.buffers[i] for i in chosen]
        fused.fused_dessilbi([self.params[i] for i in chosen], [grads[i] for i in chosen], buffers,
                             [self.vs[i] for i in chosen], [self.gammas[i] for i in chosen], **self.hyper)
        for i, buf in zip(chosen, buffers, strict=True):
            self.buffers[i] = buf
        if not self.hyper.get("momentum"):
            assert all(b is None for b in self.buffers), "no momentum buffer without momentum"


VARIANTS = {
    "plain": {"momentum": 0.0, "weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "weight_decay": 0.0},
    "wd": {"momentum": 0.0, "weight_decay": 0.1},
    "momentum+wd": {"momentum": 0.9, "weight_decay": 0.1},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", ["conv", "linear"])
def test_kernel_matches_the_hand_computed_equations(case: str, variant: str) -> None:
    """The float64 plain-Python model of tests/growth/test_dessilbi.py, to float32 rounding."""
    w0, grads = (CONV_W0, CONV_GRADS) if case == "conv" else (LINEAR_W0, LINEAR_GRADS)
    extra = VARIANTS[variant]
    w = w0.float().clone()
    run = FusedRun([w], [True], **HYPER, **extra)
    want = plain_dessilbi(to_groups(w0), [to_groups(g) for g in grads], [HYPER["lr"]] * len(grads),
                          kappa=HYPER["kappa"], nu=HYPER["nu"], lam=HYPER["lam"], **extra)
    for step, (g, (pw, pv, pgamma, pbuf)) in enumerate(zip(grads, want.history, strict=True)):
        run.step([g.float()])
        for got, expected, name in ((w, pw, "W"), (run.vs[0], pv, "V"), (run.gammas[0], pgamma, "Γ")):
            torch.testing.assert_close(got.double(), from_groups(expected, w0), **F32, msg=f"{name} at step {step}")
        if extra["momentum"]:
            torch.testing.assert_close(run.buffers[0].double(), from_groups(pbuf, w0), **F32)
    # The fixture's support: filters / elements enter Γ at different steps, the zero group stays 0.
    gamma = run.gammas[0]
    assert torch.isfinite(gamma).all()
    if case == "conv":
        assert gamma[2].abs().sum() == 0 and gamma[0].abs().sum() > 0
    else:
        assert 0 < (gamma != 0).sum() < gamma.numel()


# --------------------------------------------------------------------------------------
# Odd sizes, every tensor kind at once, against DessiLBI's float64 reference path
# --------------------------------------------------------------------------------------

# (shape, lifted): conv filters of 27, 5·3·2 = 30, 1, and 9000 (> one block: the looping
# variant) weights, a linear weight, a 2-D weight that is not lifted, 1-D params.
SHAPES = [
    ((7, 3, 3, 3), True),
    ((5, 5, 3, 2), True),
    ((3, 1, 1, 1), True),
    ((2, 9000, 1, 1), True),
    ((5, 7), True),
    ((3, 7), False),
    ((7,), True),   # ndim 1: never lifted, even in a structural group
    ((1029,), False),
]


def _tensors(seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape, _ in SHAPES:
        t = torch.randn(shape, generator=g, dtype=torch.float64)
        if len(shape) == 4:
            t[1] = 0.0  # a zero-norm filter in every conv weight
        out.append(t)
    return out


def _reference(w0: list[Tensor], grads: list[list[Tensor]], **hyper: float) -> tuple[list, DessiLBI]:
    """DessiLBI's single-tensor reference path in float64."""
    params = [nn.Parameter(w.clone()) for w in w0]
    structural = [p for p, (shape, lift) in zip(params, SHAPES, strict=True) if lift]
    rest = [p for p, (shape, lift) in zip(params, SHAPES, strict=True) if not lift]
    optimizer = DessiLBI([{"params": structural}, {"params": rest, "structural": False}], foreach=False, **hyper)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    return params, optimizer


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2], ids=["no-wd", "wd"])
@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["no-momentum", "momentum"])
def test_kernel_matches_the_reference_path_on_odd_sizes(momentum: float, weight_decay: float) -> None:
    hyper = {"lr": 0.3, "kappa": 0.9, "nu": 2.0, "lam": 0.5, "momentum": momentum, "weight_decay": weight_decay}
    w0 = _tensors(0)
    grads = [_tensors(10 + k) for k in range(4)]
    ref_params, ref_opt = _reference(w0, grads, **hyper)

    params = [w.float().clone() for w in w0]
    lifted = [lift and len(shape) >= 2 for shape, lift in SHAPES]
    run = FusedRun(params, lifted, **hyper)
    for step_grads in grads:
        run.step([g.float() for g in step_grads])

    selected = 0
    for i, (p, ref) in enumerate(zip(params, ref_params, strict=True)):
        state = ref_opt.state[ref]
        torch.testing.assert_close(p.double(), ref.detach(), **F32, msg=f"W of {SHAPES[i]}")
        if momentum:
            torch.testing.assert_close(run.buffers[i].double(), state["momentum_buffer"], **F32)
        if lifted[i]:
            torch.testing.assert_close(run.vs[i].double(), state["v"], **F32, msg=f"V of {SHAPES[i]}")
            torch.testing.assert_close(run.gammas[i].double(), state["gamma"], **F32, msg=f"Γ of {SHAPES[i]}")
            assert torch.isfinite(run.gammas[i]).all()
            if p.ndim == 4:
                assert run.gammas[i][1].abs().sum() == 0, "a zero-norm filter stays out of Γ, without NaN"
            selected += int((run.gammas[i] != 0).any())
        else:
            assert run.vs[i] is None and run.gammas[i] is None and "v" not in state
    assert selected >= 3, "the prox should select something, else it is barely tested"


def test_zero_gradient_and_zero_weights_give_zero_not_nan() -> None:
    w = torch.zeros(4, 3, 3, 3)
    run = FusedRun([w], [True], lr=0.1, kappa=1.0, nu=1.0, lam=1.0, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        run.step([torch.zeros_like(w)])
    for t in (w, run.vs[0], run.gammas[0], run.buffers[0]):
        assert torch.equal(t, torch.zeros_like(t))


def test_channels_last_weights_step_like_contiguous_ones() -> None:
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(6, 4, 3, 3, generator=g)
    grads = [torch.randn(6, 4, 3, 3, generator=g) for _ in range(3)]
    hyper = {"lr": 0.5, "kappa": 1.0, "nu": 1.0, "lam": 6.0, "momentum": 0.9, "weight_decay": 1e-2}
    runs = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        w = w0.clone().contiguous(memory_format=fmt)
        run = FusedRun([w], [True], **hyper)
        for grad in grads:
            run.step([grad.contiguous(memory_format=fmt)])
        assert w.is_contiguous(memory_format=fmt) and run.vs[0].is_contiguous(memory_format=fmt)
        runs[name] = (w, run)
    (w_a, a), (w_b, b) = runs["contiguous"], runs["channels_last"]
    # the same values; only a filter norm's summation order differs
    torch.testing.assert_close(w_b, w_a, **F32)
    torch.testing.assert_close(b.gammas[0], a.gammas[0], **F32)
    assert 0 < (a.gammas[0].flatten(1) != 0).any(dim=1).sum() < 6


def test_a_gradient_in_another_layout_is_read_correctly() -> None:
    """autograd may hand back a contiguous gradient for a channels_last weight."""
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    grad = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(5))
    a, b = w.clone(), w.clone().contiguous(memory_format=torch.channels_last)
    run_a = FusedRun([a], [True], lr=0.1, kappa=1.0, nu=1.0, lam=0.1, momentum=0.9, weight_decay=0.0)
    run_b = FusedRun([b], [True], lr=0.1, kappa=1.0, nu=1.0, lam=0.1, momentum=0.9, weight_decay=0.0)
    run_a.step([grad])
    run_b.step([grad])  # contiguous gradient, channels_last weight
    torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_some_buffers_new_some_continuing() -> None:
    """A parameter added after the first step (AutoGrow's new block) starts its buffer at d."""
    g = torch.Generator().manual_seed(6)
    old, new = torch.randn(3, 2, 3, 3, generator=g), torch.randn(5, 4, generator=g)
    grads = [[torch.randn(3, 2, 3, 3, generator=g), torch.randn(5, 4, generator=g)] for _ in range(3)]
    hyper = {"lr": 0.2, "kappa": 1.0, "nu": 1.0, "lam": 0.3, "momentum": 0.9, "weight_decay": 1e-2}
    ref_old = nn.Parameter(old.double().clone())
    ref_new = nn.Parameter(new.double().clone())
    ref = DessiLBI([ref_old], foreach=False, **hyper)
    run = FusedRun([old.clone(), new.clone()], [True, True], **hyper)
    for k, (g_old, g_new) in enumerate(grads):
        if k == 1:
            ref.add_param_group({"params": [ref_new]})
        ref_old.grad = g_old.double()
        ref_new.grad = g_new.double() if k >= 1 else None
        ref.step()
        run.step([g_old, g_new if k >= 1 else None])
    torch.testing.assert_close(run.params[0].double(), ref_old.detach(), **F32)
    torch.testing.assert_close(run.params[1].double(), ref_new.detach(), **F32)
    torch.testing.assert_close(run.buffers[1].double(), ref.state[ref_new]["momentum_buffer"], **F32)
    torch.testing.assert_close(run.gammas[1].double(), ref.state[ref_new]["gamma"], **F32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_parameters_step_in_float32_arithmetic(dtype: torch.dtype) -> None:
    """State in the parameter's dtype; the arithmetic in float32, rounded once per store."""
    g = torch.Generator().manual_seed(7)
    w0 = torch.randn(4, 3, 3, 3, generator=g)
    grad = torch.randn(4, 3, 3, 3, generator=g)
    hyper = {"lr": 0.5, "kappa": 1.0, "nu": 1.0, "lam": 1.0, "momentum": 0.9, "weight_decay": 0.0}
    w = w0.to(dtype)
    run = FusedRun([w], [True], **hyper)
    run.step([grad.to(dtype)])
    ref = FusedRun([w0.to(dtype).float()], [True], **hyper)
    ref.step([grad.to(dtype).float()])
    assert w.dtype == run.vs[0].dtype == run.gammas[0].dtype == run.buffers[0].dtype == dtype
    # One rounding per stored value. Triton's interpreter rounds float32 → bfloat16 towards zero
    # where a GPU rounds to nearest, so bfloat16 may be one unit in the last place off here.
    ulp = {"rtol": 2 ** -7, "atol": 0.0} if dtype == torch.bfloat16 else {"rtol": 0.0, "atol": 0.0}
    torch.testing.assert_close(w.float(), ref.params[0].to(dtype).float(), **ulp)
    torch.testing.assert_close(run.vs[0].float(), ref.vs[0].to(dtype).float(), **ulp)
    torch.testing.assert_close(run.buffers[0].float(), ref.buffers[0].to(dtype).float(), **ulp)
    # Γ is the prox of V as stored (rounded), so it carries V's rounding and one of its own
    torch.testing.assert_close(run.gammas[0].float(), ref.gammas[0].float(), rtol=2 ** -6, atol=1e-3)
    assert 0 < (run.gammas[0].flatten(1) != 0).any(dim=1).sum()


def test_magnitude_scaling_is_refused_not_silently_ignored() -> None:
    w = torch.randn(2, 2, 1, 1)
    with pytest.raises(ValueError, match="magnitude scaling"):
        fused.fused_dessilbi([w], [torch.ones_like(w)], [None], [torch.zeros_like(w)], [torch.zeros_like(w)],
                             lr=0.1, kappa=1.0, nu=1.0, lam=1.0, momentum=0.9, weight_decay=0.0,
                             magnitude_scaling=True)


def test_state_in_another_layout_or_dtype_is_a_clear_error() -> None:
    w = torch.randn(4, 3, 3, 3)
    v = torch.zeros_like(w).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="'v'.*strides"):
        fused.fused_dessilbi([w], [torch.ones_like(w)], [None], [v], [torch.zeros_like(w)],
                             lr=0.1, kappa=1.0, nu=1.0, lam=1.0, momentum=0.9, weight_decay=0.0)
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16"):
        d = w.double()
        fused.fused_dessilbi([d], [d], [None], [None], [None],
                             lr=0.1, kappa=1.0, nu=1.0, lam=1.0, momentum=0.9, weight_decay=0.0)


def test_a_fresh_interpreter_process_runs_the_kernel() -> None:
    """The kernel module works when TRITON_INTERPRET=1 is set by the environment alone."""
    code = (
        "import torch\n"
        "from growth.optim._fused_dessilbi import fused_dessilbi, interpreting\n"
        "assert interpreting()\n"
        "w = torch.ones(3, 2, 2, 2); v = torch.zeros_like(w); c = torch.zeros_like(w); b = [None]\n"
        "fused_dessilbi([w], [torch.ones_like(w)], b, [v], [c], lr=1.0, kappa=1.0, nu=1.0, lam=0.5,\n"
        "               momentum=0.9, weight_decay=0.0)\n"
        "assert torch.allclose(v, torch.zeros_like(v) + 1.0), v\n"  # V = 0 + (α/ν)(W − 0) = 1
        "assert torch.allclose(w, torch.zeros_like(w) - 1.0), w\n"  # W = 1 − (1 + 1) = −1
        "print('ok', float(c.flatten()[0]))\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # ‖V_g‖ = √8, Γ = (1 − 0.5/√8)·1
    assert abs(float(done.stdout.split()[1]) - (1 - 0.5 / 8 ** 0.5)) < 1e-6


def test_state_dict_of_fused_state_round_trips() -> None:
    """Fused state is ordinary optimizer state: saving and loading it continues the same steps."""
    g = torch.Generator().manual_seed(8)
    w0 = torch.randn(5, 3, 3, 3, generator=g)
    grads = [torch.randn(5, 3, 3, 3, generator=g) for _ in range(4)]
    hyper = {"lr": 0.3, "kappa": 1.0, "nu": 1.0, "lam": 0.8, "momentum": 0.9, "weight_decay": 1e-3}
    straight = FusedRun([w0.clone()], [True], **hyper)
    for grad in grads:
        straight.step([grad])

    first = FusedRun([w0.clone()], [True], **hyper)
    for grad in grads[:2]:
        first.step([grad])
    buffer = io.BytesIO()
    torch.save({"w": first.params, "b": first.buffers, "v": first.vs, "gamma": first.gammas}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = FusedRun(saved["w"], [True], **hyper)
    resumed.buffers, resumed.vs, resumed.gammas = saved["b"], saved["v"], saved["gamma"]
    for grad in grads[2:]:
        resumed.step([grad])
    for a, b in zip([*straight.params, *straight.buffers, *straight.vs, *straight.gammas],
                    [*resumed.params, *resumed.buffers, *resumed.vs, *resumed.gammas], strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------
# DessiLBI(fused=True): the optimizer around the kernels
# --------------------------------------------------------------------------------------

from test_dessilbi import NET_HYPER, TinyNet, data, tiny_net  # noqa: E402

from growth import surgery  # noqa: E402
from growth.models import build_model  # noqa: E402


# Two runs of one code path in float32: equal up to the rounding CPU kernels may vary with memory alignment.
SAME_PATH = {"rtol": 1e-6, "atol": 1e-7}


def train_float(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    dtype = next(model.parameters()).dtype
    for k in range(steps):
        x, y = data(seed + k)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x.to(dtype)), y).backward()
        optimizer.step()


def assert_close_trajectory(a: tuple[nn.Module, DessiLBI], b: tuple[nn.Module, DessiLBI], **tolerance: float) -> None:
    (model_a, opt_a), (model_b, opt_b) = a, b
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa.double(), pb.double(), **tolerance, msg=name)
        assert set(opt_a.state[pa]) == set(opt_b.state[pb]), name
        for key, value in opt_a.state[pa].items():
            torch.testing.assert_close(value.double(), opt_b.state[pb][key].double(), **tolerance,
                                       msg=f"{name} {key}")


@pytest.mark.parametrize("extra", [
    {"momentum": 0.9, "weight_decay": 1e-3},
    {"momentum": 0.0, "weight_decay": 0.0},
    {"momentum": 0.9, "weight_decay": 1e-3, "magnitude_scaling": True},
], ids=["momentum+wd", "plain", "magnitude-routed"])
def test_dessilbi_fused_follows_the_float64_reference(extra: dict) -> None:
    reference = tiny_net()  # float64
    reference_opt = DessiLBI(reference.param_groups(), foreach=False, **NET_HYPER, **extra)
    train_float(reference, reference_opt, steps=5)
    model = tiny_net().float()
    optimizer = DessiLBI(model.param_groups(), fused=True, **NET_HYPER, **extra)
    train_float(model, optimizer, steps=5)
    assert_close_trajectory((reference, reference_opt), (model, optimizer), rtol=1e-4, atol=1e-5)
    gammas = [optimizer.state[w]["gamma"] for w in (model.conv1.weight, model.conv2.weight)]
    selected = sum(int((g.flatten(1) != 0).any(dim=1).sum()) for g in gammas)
    assert 0 < selected < sum(g.shape[0] for g in gammas), "a partial support, else the prox is barely tested"


def test_magnitude_scaling_groups_take_the_foreach_path_exactly() -> None:
    runs = []
    for options in ({"fused": True}, {"foreach": True}):
        model = tiny_net().float()
        optimizer = DessiLBI(model.param_groups(), magnitude_scaling=True, **NET_HYPER, **options)
        train_float(model, optimizer, steps=3)
        runs.append((model, optimizer))
    # the same code path; float32 CPU kernels may round differently with the buffers' alignment
    assert_close_trajectory(runs[0], runs[1], **SAME_PATH)


def test_dessilbi_fused_state_dict_round_trip() -> None:
    """Saved after 3 fused steps, loaded into a fresh optimizer: the same 3 next steps as straight through.

    Loaded into a foreach optimizer instead, the state is the same format and the steps agree to rounding.
    """
    hyper = {**NET_HYPER, "momentum": 0.9, "weight_decay": 1e-3}
    straight = tiny_net().float()
    straight_opt = DessiLBI(straight.param_groups(), fused=True, **hyper)
    train_float(straight, straight_opt, steps=6)

    first = tiny_net().float()
    first_opt = DessiLBI(first.param_groups(), fused=True, **hyper)
    train_float(first, first_opt, steps=3)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_opt.state_dict()}, buffer)
    for options, tolerance in (({"fused": True}, SAME_PATH),
                               ({"foreach": True}, {"rtol": 1e-5, "atol": 1e-6})):
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        resumed = tiny_net(seed=123).float()
        resumed.load_state_dict(saved["model"])
        resumed_opt = DessiLBI(resumed.param_groups(), **NET_HYPER, **options)
        resumed_opt.load_state_dict(saved["optimizer"])
        for group in resumed_opt.param_groups:  # the file's options, then the ones this test asks for
            group.update(fused=options.get("fused"), foreach=options.get("foreach"))
        train_float(resumed, resumed_opt, steps=3, seed=4)
        assert_close_trajectory((straight, straight_opt), (resumed, resumed_opt), **tolerance)


def test_widening_in_place_keeps_the_fused_step_going() -> None:
    """Surgery on a channels_last model under DessiLBI(fused=True): same as the foreach path after it."""
    spec = {"family": "vgg", "in_channels": 3, "num_classes": 4, "layers": [6, "M", 5], "classifier": [],
            "input_size": 6}
    runs = []
    for options in ({"fused": True}, {"foreach": True}):
        model = build_model(spec, generator=torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last)
        optimizer = DessiLBI(model.param_groups(), lr=0.1, nu=1.0, lam=0.1, weight_decay=1e-4, **options)
        for k in range(4):
            if k == 2:
                surgery.widen_units(model, optimizer, {"conv1": 9, "conv2": 7}, generator=torch.Generator().manual_seed(1))
            g = torch.Generator().manual_seed(10 + k)
            x = torch.randn(4, 3, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 4, (4,), generator=g)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        runs.append((model, optimizer))
    model, optimizer = runs[0]
    conv = model.unit("conv1").producers[0][0].weight
    assert conv.shape[0] == 9 and conv.is_contiguous(memory_format=torch.channels_last)
    assert optimizer.state[conv]["gamma"].is_contiguous(memory_format=torch.channels_last)
    assert_close_trajectory(runs[0], runs[1], rtol=1e-4, atol=1e-6)


def test_fused_requests_that_cannot_run_are_clear_errors() -> None:
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        DessiLBI([nn.Parameter(torch.zeros(2, 2))], lr=0.1, fused=True, foreach=True)
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16"):
        DessiLBI([nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))], lr=0.1, fused=True)


def test_cpu_parameters_never_take_the_fused_path_by_default() -> None:
    """fused=None on the CPU keeps the multi-tensor path, even where the interpreter could run the kernels,
    and growth trains without Triton at all (its import blocked); fused=True then says what is missing."""
    code = (
        "import sys, torch\n"
        "if sys.argv[1] == 'no-triton':\n"
        "    sys.modules['triton'] = None  # makes `import triton` fail\n"
        "from growth.optim.dessilbi import DessiLBI\n"
        "p = torch.nn.Parameter(torch.randn(4, 3, 3, 3)); o = DessiLBI([p], lr=0.1)\n"
        "p.grad = torch.ones_like(p); o.step()\n"
        "assert 'growth.optim._fused_dessilbi' not in sys.modules, 'the fused kernels were loaded'\n"
        "assert o.state[p]['gamma'].shape == p.shape\n"
        "if sys.argv[1] == 'no-triton':\n"
        "    try:\n"
        "        DessiLBI([p], lr=0.1, fused=True)\n"
        "    except RuntimeError as err:\n"
        "        assert 'needs Triton' in str(err), err\n"
        "    else:\n"
        "        raise AssertionError('fused=True without Triton did not fail')\n"
    )
    for mode, interpret in (("interpreter-available", "1"), ("no-triton", "0")):
        env = {**os.environ, "TRITON_INTERPRET": interpret}
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env,
                              timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, f"{mode}: {done.stderr[-3000:]}"
