"""Channel surgery: function preservation, optimizer-state carry-over, pruning equivalence."""
from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from growth import surgery
from growth.models import GrowableNet, build_model

VGG_SPEC: dict[str, Any] = {
    "family": "vgg", "in_channels": 3, "num_classes": 5,
    "layers": [6, 8, "M", 10, "M", 7], "classifier": [9], "input_size": 8,
}
RESNET_SPEC: dict[str, Any] = {
    "family": "resnet", "in_channels": 3, "num_classes": 5, "stem": 6,
    "stages": [{"width": 6, "blocks": [4, 6]}, {"width": 10, "blocks": [8, 5]}],
    "input_size": 8,
}
VGG_UNITS = ["conv1", "conv2", "conv3", "conv4"]
RESNET_UNITS = ["stem", "stage1", "stage1.block2", "stage2", "stage2.block1"]
CUSTOM_KEYS = ("v", "gamma")  # parameter-shaped state like DessiLBI's V and Γ


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(model: GrowableNet, seed: int = 0, n: int = 8) -> tuple[Tensor, Tensor]:
    g = seeded(seed)
    return torch.randn((n, *model.input_shape), generator=g), torch.randint(0, 5, (n,), generator=g)


def trained(spec: dict[str, Any], steps: int = 3, seed: int = 0) -> tuple[GrowableNet, torch.optim.SGD]:
    """A model after a few SGD-momentum steps (non-trivial BN statistics and momentum),
    with extra parameter-shaped, 0-d and non-tensor state entries."""
    model = build_model(spec, generator=seeded(seed))
    optimizer = torch.optim.SGD(model.param_groups(lr=0.05, momentum=0.9, weight_decay=1e-4))
    train_steps(model, optimizer, steps, seed)
    g = seeded(seed + 100)
    for p, state in optimizer.state.items():
        for key in CUSTOM_KEYS:
            state[key] = torch.randn(p.shape, generator=g)
        state["step"] = torch.tensor(3.0)
        state["note"] = "not a tensor"
    return model, optimizer


def train_steps(model: GrowableNet, optimizer: torch.optim.Optimizer, steps: int, seed: int = 0) -> list[float]:
    model.train()
    losses = []
    for i in range(steps):
        x, y = batch(model, seed + i)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def outputs(model: GrowableNet, seed: int = 7) -> Tensor:
    model.eval()
    return model(batch(model, seed, n=16)[0])


def snapshot(model: GrowableNet, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        name: (
            p.detach().clone(),
            {k: v.clone() if isinstance(v, Tensor) else v for k, v in optimizer.state[p].items()},
        )
        for name, p in model.named_parameters()
    }


def old_block(old: Tensor, new: Tensor) -> Tensor:
    """The part of ``new`` that corresponds to ``old``: the leading slice in every dimension."""
    assert new.ndim == old.ndim and all(n >= o for n, o in zip(new.shape, old.shape))
    return new[tuple(slice(0, s) for s in old.shape)]


def zero_outside(old_shape: torch.Size, new: Tensor) -> bool:
    mask = torch.ones_like(new, dtype=torch.bool)
    mask[tuple(slice(0, s) for s in old_shape)] = False
    return bool((new[mask] == 0).all())


def assert_state_consistent(model: GrowableNet, optimizer: torch.optim.Optimizer) -> None:
    in_groups = {p for g in optimizer.param_groups for p in g["params"]}
    assert set(optimizer.state) <= in_groups  # no orphaned state
    assert in_groups == set(model.parameters())
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.ndim > 0:
                assert value.shape == p.shape, key


# -- widening keeps the function -------------------------------------------------------------


@pytest.mark.parametrize("unit", VGG_UNITS)
def test_widening_a_vgg_unit_keeps_outputs(unit: str) -> None:
    model, optimizer = trained(VGG_SPEC)
    before = outputs(model)
    width = model.unit(unit).width
    surgery.widen(model, optimizer, unit, width + 5, generator=seeded(1))
    assert model.unit(unit).width == width + 5
    torch.testing.assert_close(outputs(model), before, rtol=1e-5, atol=1e-5)


def test_widening_a_vgg_without_batch_norm_keeps_outputs() -> None:
    model, optimizer = trained({**VGG_SPEC, "batch_norm": False})
    before = outputs(model)
    for unit in VGG_UNITS:
        surgery.widen(model, optimizer, unit, model.unit(unit).width + 3, generator=seeded(1))
    torch.testing.assert_close(outputs(model), before, rtol=1e-5, atol=1e-5)
    conv = model.features.conv1
    assert conv.bias.shape == (9,) and torch.equal(conv.bias[6:], torch.zeros(3))


@pytest.mark.parametrize("unit", RESNET_UNITS)
def test_widening_a_resnet_unit_keeps_outputs(unit: str) -> None:
    model, optimizer = trained(RESNET_SPEC)
    before = outputs(model)
    width = model.unit(unit).width
    surgery.widen(model, optimizer, unit, width + 4, generator=seeded(1))
    assert model.unit(unit).width == width + 4
    torch.testing.assert_close(outputs(model), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", [VGG_SPEC, RESNET_SPEC], ids=["vgg", "resnet"])
def test_widening_every_unit_at_once_keeps_outputs(spec: dict[str, Any]) -> None:
    model, optimizer = trained(spec)
    before = outputs(model)
    widths = {u.name: max(u.width + 8, math.floor(1.1 * u.width)) for u in model.units()}
    changes = surgery.widen_units(model, optimizer, widths, generator=seeded(1))
    assert {name: new for name, (_, new) in changes.items()} == widths
    assert {u.name: u.width for u in model.units()} == widths
    torch.testing.assert_close(outputs(model), before, rtol=1e-5, atol=1e-5)
    assert_state_consistent(model, optimizer)


def test_widen_units_equals_widening_one_by_one_in_network_order() -> None:
    one, opt_one = trained(VGG_SPEC)
    many, opt_many = trained(VGG_SPEC)
    widths = {name: 12 + i for i, name in enumerate(VGG_UNITS)}
    g = seeded(5)
    for name in VGG_UNITS:
        surgery.widen(one, opt_one, name, widths[name], generator=g)
    surgery.widen_units(many, opt_many, dict(reversed(list(widths.items()))), generator=seeded(5))
    for (name, a), b in zip(one.state_dict().items(), many.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(one.parameters(), many.parameters()):
        for key in ("momentum_buffer", *CUSTOM_KEYS):
            assert torch.equal(opt_one.state[a][key], opt_many.state[b][key])


# -- what widening writes --------------------------------------------------------------------


def test_widening_initialises_new_channels() -> None:
    model, optimizer = trained(VGG_SPEC)
    f = model.features
    old_conv, old_next = f.conv2.weight.detach().clone(), f.conv3.weight.detach().clone()
    old_mean, old_var = f.bn2.running_mean.clone(), f.bn2.running_var.clone()
    surgery.widen(model, optimizer, "conv2", 8 + 200, generator=seeded(1))

    # producer: old filters kept, new filters Kaiming over fan_in = 6 × 3 × 3
    assert torch.equal(f.conv2.weight[:8], old_conv)
    new_filters = f.conv2.weight[8:]
    assert new_filters.std().item() == pytest.approx(math.sqrt(2 / (6 * 9)), rel=0.05)
    # BatchNorm starts at the identity for new channels, statistics kept for old ones
    assert torch.equal(f.bn2.weight[8:], torch.ones(200)) and torch.equal(f.bn2.bias[8:], torch.zeros(200))
    assert torch.equal(f.bn2.running_mean[:8], old_mean) and torch.equal(f.bn2.running_mean[8:], torch.zeros(200))
    assert torch.equal(f.bn2.running_var[:8], old_var) and torch.equal(f.bn2.running_var[8:], torch.ones(200))
    # consumer: old input weights kept, new inputs read through zeros
    assert torch.equal(f.conv3.weight[:, :8], old_next)
    assert torch.equal(f.conv3.weight[:, 8:], torch.zeros(10, 200, 3, 3))
    # module attributes follow
    assert (f.conv2.out_channels, f.bn2.num_features, f.conv3.in_channels) == (208, 208, 208)


def test_widening_the_last_conv_grows_the_first_linear_layer() -> None:
    model, optimizer = trained(VGG_SPEC)
    fc1 = model.classifier.fc1
    old = fc1.weight.detach().clone()
    surgery.widen(model, optimizer, "conv4", 11, generator=seeded(1))
    assert fc1.in_features == 11 and fc1.weight.shape == (9, 11)
    assert torch.equal(fc1.weight[:, :7], old) and torch.equal(fc1.weight[:, 7:], torch.zeros(9, 4))


def test_same_generator_seed_gives_same_new_filters() -> None:
    a, _ = trained(RESNET_SPEC)
    b, _ = trained(RESNET_SPEC)
    c, _ = trained(RESNET_SPEC)
    surgery.widen(a, None, "stage1", 9, generator=seeded(3))
    surgery.widen(b, None, "stage1", 9, generator=seeded(3))
    surgery.widen(c, None, "stage1", 9, generator=seeded(4))
    assert torch.equal(a.stages[0].blocks[1].conv2.weight, b.stages[0].blocks[1].conv2.weight)
    assert not torch.equal(a.stages[0].blocks[1].conv2.weight, c.stages[0].blocks[1].conv2.weight)


@pytest.mark.parametrize(
    ("spec", "unit"), [(VGG_SPEC, "conv2"), (RESNET_SPEC, "stage1"), (RESNET_SPEC, "stage2.block2")]
)
def test_widening_carries_optimizer_state(spec: dict[str, Any], unit: str) -> None:
    model, optimizer = trained(spec)
    before = snapshot(model, optimizer)
    params_before = [list(g["params"]) for g in optimizer.param_groups]
    ids_before = {name: id(p) for name, p in model.named_parameters()}
    steps_before = {id(p): state["step"] for p, state in optimizer.state.items()}
    surgery.widen(model, optimizer, unit, model.unit(unit).width + 3, generator=seeded(1))

    assert {name: id(p) for name, p in model.named_parameters()} == ids_before
    assert [list(g["params"]) for g in optimizer.param_groups] == params_before
    assert_state_consistent(model, optimizer)
    grown = 0
    for name, p in model.named_parameters():
        old_value, old_state = before[name]
        state = optimizer.state[p]
        assert state["step"] is steps_before[id(p)] and state["note"] == "not a tensor"
        torch.testing.assert_close(old_block(old_value, p.detach()), old_value, rtol=0, atol=0)
        for key in ("momentum_buffer", *CUSTOM_KEYS):
            assert torch.equal(old_block(old_state[key], state[key]), old_state[key]), (name, key)
            assert zero_outside(old_state[key].shape, state[key]), (name, key)
        if p.shape != old_value.shape:
            grown += 1
            assert p.grad is None
    assert grown > 0


def test_training_continues_after_widening() -> None:
    model, optimizer = trained(RESNET_SPEC)
    surgery.widen_units(model, optimizer, {u.name: u.width + 4 for u in model.units()}, generator=seeded(1))
    fc = model.classifier.fc
    losses = train_steps(model, optimizer, steps=5, seed=20)
    assert all(math.isfinite(loss) for loss in losses)
    assert fc.weight[:, 10:].abs().sum() > 0  # the new channels now feed the classifier
    assert_state_consistent(model, optimizer)


def test_widening_with_adam_resizes_both_moments() -> None:
    model = build_model(VGG_SPEC, generator=seeded(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_steps(model, optimizer, 2)
    surgery.widen(model, optimizer, "conv1", 9, generator=seeded(1))
    state = optimizer.state[model.features.conv1.weight]
    assert state["exp_avg"].shape == state["exp_avg_sq"].shape == (9, 3, 3, 3)
    assert state["step"].ndim == 0
    assert all(math.isfinite(loss) for loss in train_steps(model, optimizer, 2, seed=5))


def test_rmda_initial_point_takes_the_new_weights_on_widening_and_its_rows_on_pruning() -> None:
    from growth.optim import RMDA

    model = build_model(VGG_SPEC, generator=seeded(0))
    optimizer = RMDA(model.param_groups(), lr=0.1, momentum=0.9, lam=1e-3)
    train_steps(model, optimizer, 2)
    conv, nxt = model.features.conv1.weight, model.features.conv2.weight
    w0_conv = optimizer.state[conv]["initial_point"].clone()
    w0_next = optimizer.state[nxt]["initial_point"].clone()
    dual = optimizer.state[conv]["dual_sum"].clone()
    assert not torch.equal(w0_conv, conv.detach())  # W⁰ is the start, not the current weights

    surgery.widen(model, optimizer, "conv1", 9, generator=seeded(1))
    state = optimizer.state[conv]
    assert torch.equal(state["initial_point"][:6], w0_conv)  # kept filters keep their W⁰
    assert torch.equal(state["initial_point"][6:], conv.detach()[6:])  # new filters start where they are
    assert bool(conv.detach()[6:].abs().sum() > 0)
    assert torch.equal(state["dual_sum"][:6], dual) and bool((state["dual_sum"][6:] == 0).all())
    w0 = optimizer.state[nxt]["initial_point"]
    assert torch.equal(w0[:, :6], w0_next) and bool((w0[:, 6:] == 0).all())  # new inputs read zero weights

    surgery.prune(model, optimizer, "conv1", torch.tensor([8, 0, 2]))
    assert torch.equal(optimizer.state[conv]["initial_point"][0], conv.detach()[0])
    assert torch.equal(optimizer.state[conv]["initial_point"][1:], w0_conv[[0, 2]])
    assert all(math.isfinite(loss) for loss in train_steps(model, optimizer, 2, seed=3))


def test_surgery_works_without_an_optimizer_and_while_an_old_graph_is_alive() -> None:
    model = build_model(VGG_SPEC, generator=seeded(0))
    x, y = batch(model)
    stale = F.cross_entropy(model(x), y)  # keeps autograd nodes of the old shapes alive
    surgery.widen(model, None, "conv4", 12)
    F.cross_entropy(model(x), y).backward()
    assert model.classifier.fc1.weight.grad.shape == (9, 12)
    del stale


def test_to_spec_reflects_surgery_and_rebuilds_the_same_shapes() -> None:
    model, optimizer = trained(RESNET_SPEC)
    surgery.widen(model, optimizer, "stage2", 13, generator=seeded(1))
    surgery.prune(model, optimizer, "stage1.block1", torch.tensor([0, 2]))
    surgery.add_block(model, optimizer, 1, generator=seeded(2))
    spec = model.to_spec()
    assert spec["stages"] == [
        {"width": 6, "stride": 1, "blocks": [2, 6]},
        {"width": 13, "stride": 2, "blocks": [8, 5, 5]},
    ]
    rebuilt = build_model(spec)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_bad_widen_arguments() -> None:
    model = build_model(VGG_SPEC)
    with pytest.raises(ValueError, match="≥ 6"):
        surgery.widen(model, None, "conv1", 5)
    with pytest.raises(KeyError, match="conv9"):
        surgery.widen(model, None, "conv9", 10)
    surgery.widen(model, None, "conv1", 6)  # same width: nothing to do
    assert model.features.conv1.out_channels == 6


def test_state_of_another_shape_is_refused_before_anything_changes() -> None:
    model, optimizer = trained(VGG_SPEC)
    optimizer.state[model.features.conv3.weight]["row_sums"] = torch.zeros(10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="row_sums"):
        surgery.widen(model, optimizer, "conv3", 12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- pruning -------------------------------------------------------------------------------------


def masked_copy(model: GrowableNet, unit: str, keep: Tensor) -> GrowableNet:
    """The dense network with the removed channels silenced: their BN weight and bias are 0,
    so each removed channel outputs relu(0) = 0 everywhere (also through identity shortcuts)."""
    dense = copy.deepcopy(model)
    removed = torch.ones(dense.unit(unit).width, dtype=torch.bool)
    removed[keep] = False
    with torch.no_grad():
        for _, bn in dense.unit(unit).producers:
            bn.weight[removed] = 0.0
            bn.bias[removed] = 0.0
    return dense


@pytest.mark.parametrize(
    ("spec", "unit", "keep"),
    [
        (VGG_SPEC, "conv1", [0, 2, 5]),
        (VGG_SPEC, "conv3", [9, 1, 4, 7]),  # any order: consumers are permuted to match
        (VGG_SPEC, "conv4", [3]),  # feeds the first linear layer
        (RESNET_SPEC, "stem", [1, 2, 3, 5]),
        (RESNET_SPEC, "stage1", [0, 1, 4]),  # residual: every block's conv2, the projection and all readers
        (RESNET_SPEC, "stage2", [2, 3, 5, 6, 9]),
        (RESNET_SPEC, "stage2.block1", [0, 7]),
    ],
)
def test_pruned_network_equals_masked_dense_network(spec: dict[str, Any], unit: str, keep: list[int]) -> None:
    model, optimizer = trained(spec)
    dense = masked_copy(model, unit, torch.tensor(keep))
    surgery.prune(model, optimizer, unit, torch.tensor(keep))
    assert model.unit(unit).width == len(keep)
    torch.testing.assert_close(outputs(model), outputs(dense), rtol=1e-5, atol=1e-5)
    assert_state_consistent(model, optimizer)


def test_pruning_selects_weights_statistics_and_state() -> None:
    model, optimizer = trained(VGG_SPEC)
    f = model.features
    keep = torch.tensor([6, 1, 3])
    conv, bn, nxt = f.conv2.weight, f.bn2, f.conv3.weight
    old = {
        "conv": conv.detach().clone(), "next": nxt.detach().clone(),
        "mean": bn.running_mean.clone(), "var": bn.running_var.clone(), "bn": bn.weight.detach().clone(),
        "conv_v": optimizer.state[conv]["v"].clone(), "next_mom": optimizer.state[nxt]["momentum_buffer"].clone(),
        "bn_gamma": optimizer.state[bn.weight]["gamma"].clone(),
    }
    surgery.prune(model, optimizer, "conv2", keep)
    assert torch.equal(conv, old["conv"][keep]) and torch.equal(nxt, old["next"][:, keep])
    assert torch.equal(bn.running_mean, old["mean"][keep]) and torch.equal(bn.running_var, old["var"][keep])
    assert torch.equal(bn.weight, old["bn"][keep])
    assert torch.equal(optimizer.state[conv]["v"], old["conv_v"][keep])
    assert torch.equal(optimizer.state[nxt]["momentum_buffer"], old["next_mom"][:, keep])
    assert torch.equal(optimizer.state[bn.weight]["gamma"], old["bn_gamma"][keep])
    assert (f.conv2.out_channels, bn.num_features, f.conv3.in_channels) == (3, 3, 3)
    assert all(math.isfinite(loss) for loss in train_steps(model, optimizer, 2, seed=9))


@pytest.mark.parametrize("keep", [[], [0, 0], [8], [-1], [[0, 1]], [0.0, 1.0]])
def test_bad_prune_indices(keep: list[Any]) -> None:
    model = build_model(VGG_SPEC)
    with pytest.raises(ValueError):
        surgery.prune(model, None, "conv2", torch.tensor(keep) if keep else torch.tensor([], dtype=torch.long))


# -- adding residual blocks ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", [0, "stage2"])
def test_zero_initialised_block_leaves_outputs_unchanged(stage: int | str) -> None:
    model, optimizer = trained(RESNET_SPEC)
    before = outputs(model)
    name = surgery.add_block(model, optimizer, stage, initializer="zero", generator=seeded(1))
    index = 0 if stage == 0 else 1
    assert name == f"stage{index + 1}.block3"
    block = model.stages[index].blocks[-1]
    assert model.unit(name).producers == [(block.conv1, block.bn1)]
    assert block.conv1.out_channels == model.stages[index].blocks[-2].conv1.out_channels
    torch.testing.assert_close(outputs(model), before, rtol=1e-5, atol=1e-5)


def test_gaussian_initialised_block_is_near_identity() -> None:
    model, optimizer = trained(RESNET_SPEC)
    before = outputs(model)
    surgery.add_block(model, optimizer, 1, initializer="gaussian", generator=seeded(1))
    gamma = model.stages[1].blocks[-1].bn2.weight
    assert 0 < gamma.abs().max().item() < 10 * surgery.GAUSSIAN_INIT_STD
    assert torch.equal(model.stages[1].blocks[-1].bn2.bias, torch.zeros(10))
    after = outputs(model)
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, before, rtol=0.05, atol=0.05)


def test_new_block_joins_matching_optimizer_groups_and_keeps_old_state() -> None:
    model, optimizer = trained(RESNET_SPEC)
    before = snapshot(model, optimizer)
    old_params = [list(g["params"]) for g in optimizer.param_groups]
    surgery.add_block(model, optimizer, 0, generator=seeded(1))
    block = model.stages[0].blocks[-1]
    for group, old in zip(optimizer.param_groups, old_params):
        assert group["params"][: len(old)] == old  # existing params untouched, in place
        added = group["params"][len(old):]
        expected = [block.conv1.weight, block.conv2.weight] if group["structural"] else [
            block.bn1.weight, block.bn1.bias, block.bn2.weight, block.bn2.bias]
        assert added == expected
    for name, p in model.named_parameters():
        if name in before:
            assert torch.equal(p, before[name][0])
            assert torch.equal(optimizer.state[p]["momentum_buffer"], before[name][1]["momentum_buffer"])
    assert all(math.isfinite(loss) for loss in train_steps(model, optimizer, 3, seed=11))
    assert block.conv1.weight in optimizer.state  # the new block is being trained
    assert_state_consistent(model, optimizer)


def test_add_block_needs_a_residual_family_and_a_real_stage() -> None:
    with pytest.raises(TypeError, match="residual"):
        surgery.add_block(build_model(VGG_SPEC), None, 0)
    model = build_model(RESNET_SPEC)
    with pytest.raises(IndexError):
        surgery.add_block(model, None, 2)
    with pytest.raises(KeyError):
        surgery.add_block(model, None, "stage3")
    with pytest.raises(ValueError, match="initializer"):
        surgery.add_block(model, None, 0, initializer="uniform")  # type: ignore[arg-type]


def test_add_block_keeps_device_and_dtype() -> None:
    model = build_model(RESNET_SPEC).to(torch.float64)
    surgery.add_block(model, None, 0, initializer="zero")
    assert all(p.dtype == torch.float64 for p in model.parameters())
    model.eval()
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_new_block_parameters_are_trainable_modules() -> None:
    model = build_model(RESNET_SPEC)
    n_before = sum(1 for _ in model.parameters())
    surgery.add_block(model, None, 0)
    assert sum(1 for _ in model.parameters()) == n_before + 6
    assert isinstance(model.stages[0].blocks[-1].conv1, nn.Conv2d)
