"""Mixed precision and channels_last: loss scaling with DessiLBI, and surgery under both.

All on the CPU: autocast to bfloat16 and float16 and the GradScaler run there too.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from growth import surgery
from growth.models import GrowableNet, build_model
from growth.optim.dessilbi import DessiLBI
from growth.training import Precision, evaluate, to_memory_format

VGG_SPEC: dict[str, Any] = {
    "family": "vgg", "in_channels": 3, "num_classes": 5,
    "layers": [6, 8, "M", 10, "M", 7], "classifier": [9], "input_size": 8,
}
RESNET_SPEC: dict[str, Any] = {
    "family": "resnet", "in_channels": 3, "num_classes": 5, "stem": 6,
    "stages": [{"width": 6, "blocks": [4, 6]}, {"width": 10, "blocks": [8, 5]}],
    "input_size": 8,
}
HYPER = {"lr": 0.05, "kappa": 1.0, "nu": 1.0, "lam": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
STATE_KEYS = ("momentum_buffer", "v", "gamma")


def batch(model: GrowableNet, seed: int, n: int = 8) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *model.input_shape), generator=g), torch.randint(0, 5, (n,), generator=g)


def model_and_optimizer(spec: dict[str, Any], channels_last: bool) -> tuple[GrowableNet, DessiLBI]:
    model = build_model(spec, generator=torch.Generator().manual_seed(0))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, DessiLBI(model.param_groups(), **HYPER)


def train(model: GrowableNet, optimizer: torch.optim.Optimizer, precision: Precision, steps: int,
          channels_last: bool, seed: int = 0) -> None:
    model.train()
    for k in range(steps):
        x, y = batch(model, seed + k)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = F.cross_entropy(model(to_memory_format(x, channels_last)), y)
        precision.backward_and_step(loss, optimizer)


def is_channels_last(t: Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last)


def same_layout(a: Tensor, b: Tensor) -> bool:
    """Same shape and element offsets (strides of size-1 dims do not matter)."""
    return a.shape == b.shape and all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape) if n > 1)


# -- loss scaling ----------------------------------------------------------------------------------


def test_fp16_steps_with_unscaled_gradients() -> None:
    """With the GradScaler, DessiLBI sees the gradient itself, not 1024 times it.

    The reference scales the loss by hand and divides the gradients by the same
    power of two before stepping: exact, so W, V, Γ and the buffer must be equal.
    """
    scaled_model, scaled_opt = model_and_optimizer(VGG_SPEC, channels_last=False)
    plain_model = copy.deepcopy(scaled_model)
    plain_opt = DessiLBI(plain_model.param_groups(), **HYPER)
    fp16 = Precision("fp16", "cpu")
    fp16.load_state_dict({**fp16.state_dict(), "scale": 1024.0})  # the tiny net's fp16 backward does not overflow
    for step in range(3):
        x, y = batch(scaled_model, step)
        for model, optimizer, scaled in ((scaled_model, scaled_opt, True), (plain_model, plain_opt, False)):
            optimizer.zero_grad()
            with fp16.autocast():
                loss = F.cross_entropy(model(x), y)
            if scaled:
                fp16.backward_and_step(loss, optimizer)
            else:
                (loss * 1024.0).backward()
                for p in model.parameters():
                    p.grad.mul_(1 / 1024.0)
                optimizer.step()
    assert fp16.scaler.get_scale() == 1024.0, "no overflow: the scale stays"
    for (name, a), b in zip(scaled_model.named_parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
        for key, value in scaled_opt.state[a].items():
            assert value.dtype == torch.float32, f"{name}.{key} must stay float32"
            torch.testing.assert_close(value, plain_opt.state[b][key], rtol=0, atol=0, msg=f"{name}.{key}")
    first_conv = scaled_model.units()[0].producers[0][0].weight
    assert scaled_opt.state[first_conv]["v"].abs().sum() > 0


def test_fp16_step_with_an_overflow_is_skipped_whole() -> None:
    model, optimizer = model_and_optimizer(VGG_SPEC, channels_last=False)
    fp16 = Precision("fp16", "cpu")
    fp16.load_state_dict({**fp16.state_dict(), "scale": 1024.0})
    train(model, optimizer, fp16, steps=2, channels_last=False)
    before = {p: (p.detach().clone(), {k: v.clone() for k, v in optimizer.state[p].items()})
              for p in model.parameters()}
    x, y = batch(model, 5)
    with fp16.autocast():
        loss = F.cross_entropy(model(x), y) * torch.tensor(float("inf"))
    fp16.backward_and_step(loss, optimizer)
    assert fp16.scaler.get_scale() == 512.0, "the scale backs off after an overflow"
    for p, (weight, state) in before.items():
        assert torch.equal(p.detach(), weight)
        for key, value in state.items():
            assert torch.equal(optimizer.state[p][key], value), key  # V, Γ and the buffer untouched


def test_precision_names_are_checked() -> None:
    from growth.errors import SpecError

    with pytest.raises(SpecError) as err:
        Precision("fp8", "cpu")
    assert err.value.field == "train.precision"
    assert Precision("bf16", "cpu").scaler is None and Precision("fp32", "cpu").dtype is None


def test_scaler_state_round_trips() -> None:
    fp16 = Precision("fp16", "cpu")
    fp16.load_state_dict({**fp16.state_dict(), "scale": 256.0})
    other = Precision("fp16", "cpu")
    other.load_state_dict(fp16.state_dict())
    assert other.scaler.get_scale() == 256.0
    assert Precision("bf16", "cpu").state_dict() == {}


# -- surgery under bf16 autocast and channels_last ---------------------------------------------------


@pytest.mark.parametrize("spec", [VGG_SPEC, RESNET_SPEC], ids=["vgg", "resnet"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_widening_keeps_state_dtypes_and_strides_under_autocast_and_channels_last(
    spec: dict[str, Any], precision: str
) -> None:
    model, optimizer = model_and_optimizer(spec, channels_last=True)
    amp = Precision(precision, "cpu")
    train(model, optimizer, amp, steps=3, channels_last=True)
    convs = [p for p in model.parameters() if p.ndim == 4]
    assert convs and all(is_channels_last(p) for p in convs)
    assert any(not p.is_contiguous() for p in convs), "3×3 convs are really stored channels_last"
    old = {p: (p.detach().clone(), {k: v.clone() for k, v in optimizer.state[p].items()})
           for p in model.parameters()}
    x, _ = batch(model, 50)
    model.eval()
    with torch.no_grad():
        out_before = model(to_memory_format(x, True))  # fp32: function preservation is checked exactly

    widths = {u.name: u.width + 3 for u in model.units()}
    surgery.widen_units(model, optimizer, widths, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        torch.testing.assert_close(model(to_memory_format(x, True)), out_before, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        weight, state = old[p]
        kept = tuple(slice(0, n) for n in weight.shape)
        assert p.dtype == torch.float32 and torch.equal(p.detach()[kept], weight), name
        if p.ndim == 4:
            assert is_channels_last(p), f"{name} lost channels_last"
            assert p.shape[2:] == (1, 1) or not p.is_contiguous(), f"{name} lost channels_last"
        for key in STATE_KEYS:
            if key not in state:
                continue
            value = optimizer.state[p][key]
            assert value.dtype == torch.float32, f"{name}.{key} dtype"
            assert same_layout(value, p), f"{name}.{key} strides"
            assert torch.equal(value[kept], state[key]), f"{name}.{key} kept entries"
            new = value.clone()
            new[kept] = 0
            assert not new.any(), f"{name}.{key} new entries are zero"
    train(model, optimizer, amp, steps=2, channels_last=True, seed=10)  # and training goes on
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_pruning_and_a_new_block_keep_channels_last() -> None:
    model, optimizer = model_and_optimizer(RESNET_SPEC, channels_last=True)
    amp = Precision("bf16", "cpu")
    train(model, optimizer, amp, steps=2, channels_last=True)
    surgery.prune(model, optimizer, "stage1.block1", torch.tensor([0, 2, 3]))
    name = surgery.add_block(model, optimizer, "stage2", initializer="zero", generator=torch.Generator().manual_seed(2))
    assert name == "stage2.block3"
    for pname, p in model.named_parameters():
        if p.ndim == 4:
            assert is_channels_last(p), pname
            for key, value in optimizer.state.get(p, {}).items():
                assert same_layout(value, p), f"{pname}.{key}"
    train(model, optimizer, amp, steps=2, channels_last=True, seed=20)
    new_conv = model.stages[1].blocks[-1].conv1.weight
    assert same_layout(optimizer.state[new_conv]["v"], new_conv) and not new_conv.is_contiguous()


def test_evaluate_under_autocast_and_channels_last_agrees_with_fp32() -> None:
    model, _ = model_and_optimizer(VGG_SPEC, channels_last=True)
    x, y = batch(model, 7, n=64)
    plain = evaluate(model, x, y)
    assert evaluate(model, x, y, precision=Precision("bf16", "cpu"), channels_last=True) == pytest.approx(plain,
                                                                                                      abs=0.1)


# -- the job spec: train.precision and train.channels_last -----------------------------------------


import growth  # noqa: E402
from growth.errors import Interrupted, SpecError  # noqa: E402
from growth.spec import parse_spec  # noqa: E402
from growth_specs import tiny_spec  # noqa: E402


def test_spec_fields_default_validate_and_appear_in_the_schema() -> None:
    from app.schemas import job_spec_schema

    train = parse_spec(tiny_spec()).to_dict()["train"]
    assert train["precision"] == "fp32" and train["channels_last"] is False
    assert parse_spec(tiny_spec(train={"precision": "bf16", "channels_last": True})).train.precision == "bf16"
    for bad, field in (({"precision": "half"}, "train.precision"), ({"precision": 16}, "train.precision"),
                       ({"channels_last": "yes"}, "train.channels_last")):
        with pytest.raises(SpecError) as err:
            parse_spec(tiny_spec(train=bad))
        assert err.value.field == field
    assert "'fp32', 'bf16', 'fp16'" in str(pytest.raises(SpecError, parse_spec, tiny_spec(train={"precision": "x"})).value)
    properties = job_spec_schema()["properties"]["train"]["properties"]
    assert properties["precision"]["enum"] == ["fp32", "bf16", "fp16"]
    assert properties["channels_last"]["type"] == "boolean"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_growth_job_runs_and_resumes_under_mixed_precision_and_channels_last(tmp_path, precision: str) -> None:
    """End to end on the CPU: the network grows in place, and a resumed run (fp16: loss scale restored from
    the checkpoint) repeats the uninterrupted one exactly."""
    spec = tiny_spec(train={"precision": precision, "channels_last": True},
                     growth={"every": 1, "threshold": 0.25, "finetune_epochs": 1},
                     data={"channels": 3})
    full = growth.run(spec, checkpoint_dir=tmp_path / "full")
    assert full["events"], "the scenario must grow"
    assert full["spec"]["train"]["precision"] == precision
    batches = 0

    def stop_in_epoch_three() -> bool:
        nonlocal batches
        batches += 1
        return batches > 2 * 6 + 2

    with pytest.raises(Interrupted):
        growth.run(spec, checkpoint_dir=tmp_path / "cut", should_stop=stop_in_epoch_three)
    latest = sorted((tmp_path / "cut").glob("epoch-*.pt"))[-1]
    saved = torch.load(latest, weights_only=True)
    if precision == "fp16":
        assert saved["precision"]["scale"] > 0, "the loss scale is checkpointed"
    # the run trained channels_last weights (and state), also after growing; checkpoints keep the strides
    convs = {k: v for k, v in saved["model"].items() if v.ndim == 4}
    assert convs and all(not v.is_contiguous() and is_channels_last(v) for v in convs.values())
    states = [s for s in saved["optimizer"]["state"].values() if "v" in s and s["v"].ndim == 4]
    assert states and all(is_channels_last(s["v"]) and not s["v"].is_contiguous() for s in states)
    assert all(s["v"].dtype == torch.float32 for s in states)
    resumed = growth.run(spec, checkpoint_dir=tmp_path / "cut", resume_from=latest)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed["history"]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full["history"]]
    assert resumed["final"]["test_accuracy"] == full["final"]["test_accuracy"]
