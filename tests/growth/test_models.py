"""Growable model families: specs, names, units, parameter groups and initialisation."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from growth.errors import SpecError
from growth.models import GrowableNet, ResNet, VGG, build_model, register_family, validate_model_spec

VGG_SPEC: dict[str, Any] = {
    "family": "vgg",
    "in_channels": 3,
    "num_classes": 10,
    "layers": [8, 8, "M", 16, "M", 12],
    "classifier": [20],
    "input_size": 16,
}
RESNET_SPEC: dict[str, Any] = {
    "family": "resnet",
    "in_channels": 3,
    "num_classes": 10,
    "stem": 8,
    "stages": [{"width": 8, "blocks": [6, 8]}, {"width": 16, "blocks": [12, 16]}],
    "input_size": 16,
}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


# -- building ----------------------------------------------------------------------------------


def test_vgg_has_stable_meaningful_names_and_runs() -> None:
    model = build_model(VGG_SPEC, generator=seeded())
    modules = dict(model.named_modules())
    expected = ("features.conv1", "features.bn1", "features.pool1", "features.conv4", "classifier.fc1", "classifier.fc")
    for name in expected:
        assert name in modules
    assert isinstance(model, VGG) and isinstance(model, GrowableNet)
    assert model.input_shape == (3, 16, 16)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert modules["features.conv1"].bias is None  # BatchNorm follows


def test_vgg_without_batch_norm_has_conv_biases() -> None:
    model = build_model({**VGG_SPEC, "batch_norm": False})
    modules = dict(model.named_modules())
    assert "features.bn1" not in modules
    assert modules["features.conv1"].bias is not None
    assert [u.producers[0][1] for u in model.units()] == [None] * 4


def test_resnet_has_stable_meaningful_names_and_runs() -> None:
    model = build_model(RESNET_SPEC, generator=seeded())
    names = {name for name, _ in model.named_parameters()}
    for name in (
        "stem.conv.weight",
        "stem.bn.weight",
        "stages.0.blocks.0.shortcut.conv.weight",
        "stages.0.blocks.1.conv2.weight",
        "stages.1.blocks.1.bn1.bias",
        "classifier.fc.weight",
    ):
        assert name in names
    assert "stages.0.blocks.1.shortcut.conv.weight" not in names  # identity shortcut after the first block
    assert isinstance(model, ResNet)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    # Default strides: 1 for the first stage, 2 after.
    assert model.stages[0].blocks[0].conv1.stride == (1, 1)
    assert model.stages[1].blocks[0].conv1.stride == (2, 2)
    assert model.stages[1].blocks[0].shortcut.conv.stride == (2, 2)


@pytest.mark.parametrize("spec", [VGG_SPEC, RESNET_SPEC], ids=["vgg", "resnet"])
def test_to_spec_round_trips(spec: dict[str, Any]) -> None:
    model = build_model(spec)
    assert model.to_spec() == validate_model_spec(spec)
    rebuilt = build_model(model.to_spec())
    assert shapes(rebuilt) == shapes(model)
    assert rebuilt.to_spec() == model.to_spec()


def test_same_generator_seed_gives_same_weights() -> None:
    a, b, c = (build_model(RESNET_SPEC, generator=seeded(seed)) for seed in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.stem.conv.weight, c.stem.conv.weight)


def test_kaiming_initialisation() -> None:
    spec = {"family": "vgg", "in_channels": 64, "num_classes": 10, "layers": [256], "classifier": [512]}
    model = build_model(spec, generator=seeded())
    conv, hidden = model.features.conv1.weight, model.classifier.fc1.weight
    # He et al.: std = sqrt(2 / fan_in), fan_in = in_channels × kernel area.
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    assert conv.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert hidden.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert torch.equal(model.classifier.fc1.bias, torch.zeros(512))
    assert torch.equal(model.features.bn1.weight, torch.ones(256))
    assert torch.equal(model.features.bn1.bias, torch.zeros(256))


def test_meta_build_allocates_nothing() -> None:
    model = build_model(RESNET_SPEC, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert shapes(model) == shapes(build_model(RESNET_SPEC))


# -- units -------------------------------------------------------------------------------------


def test_vgg_units_are_the_convs_in_order() -> None:
    model = build_model(VGG_SPEC)
    units = model.units()
    f = model.features
    assert [u.name for u in units] == ["conv1", "conv2", "conv3", "conv4"]
    assert [u.width for u in units] == [8, 8, 16, 12]
    assert not any(u.residual for u in units)
    assert units[0].producers == [(f.conv1, f.bn1)] and units[0].consumers == [f.conv2]
    assert units[2].consumers == [f.conv4]  # across the max-pool
    assert units[3].consumers == [model.classifier.fc1]  # the first linear layer after the last conv
    assert model.unit("conv3").producers[0][0] is f.conv3


def test_resnet_units_couple_a_stage_through_its_residual_adds() -> None:
    model = build_model(RESNET_SPEC)
    s0, s1 = model.stages[0].blocks, model.stages[1].blocks
    by_name = {u.name: u for u in model.units()}
    assert list(by_name) == [
        "stem", "stage1", "stage1.block1", "stage1.block2", "stage2", "stage2.block1", "stage2.block2"
    ]

    stem = by_name["stem"]
    assert stem.producers == [(model.stem.conv, model.stem.bn)]
    assert stem.consumers == [s0[0].conv1, s0[0].shortcut.conv]

    stage1 = by_name["stage1"]
    assert stage1.residual and stage1.width == 8
    assert stage1.producers == [
        (s0[0].conv2, s0[0].bn2), (s0[1].conv2, s0[1].bn2), (s0[0].shortcut.conv, s0[0].shortcut.bn)
    ]
    assert stage1.consumers == [s0[1].conv1, s1[0].conv1, s1[0].shortcut.conv]
    assert by_name["stage2"].consumers == [s1[1].conv1, model.classifier.fc]

    inner = by_name["stage2.block1"]
    assert not inner.residual and inner.width == 12
    assert inner.producers == [(s1[0].conv1, s1[0].bn1)] and inner.consumers == [s1[0].conv2]


def test_unknown_unit_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="conv1"):
        build_model(VGG_SPEC).unit("conv99")


# -- parameter groups --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [VGG_SPEC, RESNET_SPEC], ids=["vgg", "resnet"])
def test_param_groups_flag_structural_weights(spec: dict[str, Any]) -> None:
    model = build_model(spec)
    groups = model.param_groups(lr=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    structural = {names[id(p)] for g in groups if g["structural"] for p in g["params"]}
    rest = {names[id(p)] for g in groups if not g["structural"] for p in g["params"]}
    expected = {
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and n != "classifier.fc"
    }
    assert structural == {f"{n}.weight" for n in expected}
    assert structural.isdisjoint(rest) and structural | rest == set(names.values())
    assert {"classifier.fc.weight", "classifier.fc.bias"} <= rest
    assert all(g["lr"] == 0.5 for g in groups)
    assert all(g["regularized"] == g["structural"] for g in groups)
    torch.optim.SGD(groups)  # a valid optimizer construction


# -- spec validation ---------------------------------------------------------------------------


def _vgg(**changes: Any) -> dict[str, Any]:
    return {**VGG_SPEC, **changes}


def _resnet(**changes: Any) -> dict[str, Any]:
    return {**RESNET_SPEC, **changes}


def _without(spec: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != key}


BAD_SPECS = [
    (["not", "a", "dict"], "model"),
    ({"layers": [8]}, "model.family"),
    (_vgg(family="densenet"), "model.family"),
    (_vgg(family=3), "model.family"),
    (_without(VGG_SPEC, "layers"), "model.layers"),
    (_without(VGG_SPEC, "in_channels"), "model.in_channels"),
    (_vgg(layers="8,8"), "model.layers"),
    (_vgg(layers=[]), "model.layers"),
    (_vgg(layers=[8, 0]), "model.layers[1]"),
    (_vgg(layers=[8, 8, "M", -4]), "model.layers[3]"),
    (_vgg(layers=[8, 2.5]), "model.layers[1]"),
    (_vgg(layers=[8, True]), "model.layers[1]"),
    (_vgg(layers=["M", 8]), "model.layers[0]"),
    (_vgg(layers=[8, "M", "M", 8]), "model.layers[2]"),
    (_vgg(layers=[8, "max"]), "model.layers[1]"),
    (_vgg(layers=[8, "M", 8, "M", 8, "M"], input_size=4), "model.layers[5]"),
    (_vgg(classifier=[16, 0]), "model.classifier[1]"),
    (_vgg(batch_norm="yes"), "model.batch_norm"),
    (_vgg(num_classes="10"), "model.num_classes"),
    (_vgg(input_size=[16]), "model.input_size"),
    (_vgg(widths=[8]), "model.widths"),
    (_resnet(stem=0), "model.stem"),
    (_without(RESNET_SPEC, "stem"), "model.stem"),
    (_resnet(stages=[]), "model.stages"),
    (_resnet(stages=[8]), "model.stages[0]"),
    (_resnet(stages=[{"blocks": [8]}]), "model.stages[0].width"),
    (_resnet(stages=[{"width": 8, "blocks": [8]}, {"width": 8, "blocks": []}]), "model.stages[1].blocks"),
    (_resnet(stages=[{"width": 8, "blocks": [8, -1]}]), "model.stages[0].blocks[1]"),
    (_resnet(stages=[{"width": 8, "stride": 3, "blocks": [8]}]), "model.stages[0].stride"),
    (_resnet(stages=[{"width": 8, "blocks": [8], "depth": 2}]), "model.stages[0].depth"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS, ids=[f for _, f in BAD_SPECS])
def test_bad_specs_name_the_field(spec: Any, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_model_spec(spec)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert len(caught.value.message) > 10  # says what a valid value looks like
    with pytest.raises(SpecError):
        build_model(spec)


def test_field_path_prefix_is_configurable() -> None:
    with pytest.raises(SpecError) as caught:
        validate_model_spec(_vgg(layers=[8, 0]), path="jobs[2].model")
    assert caught.value.field == "jobs[2].model.layers[1]"


def test_unknown_family_lists_the_registered_ones() -> None:
    with pytest.raises(SpecError, match="resnet.*vgg"):
        validate_model_spec(_vgg(family="densenet"))


def test_validation_fills_defaults() -> None:
    vgg = validate_model_spec({"family": "vgg", "in_channels": 1, "num_classes": 10, "layers": [8, "M", 8]})
    assert vgg["classifier"] == [] and vgg["batch_norm"] is True and vgg["input_size"] == [32, 32]
    resnet = validate_model_spec(
        {"family": "resnet", "in_channels": 1, "num_classes": 10, "stem": 8,
         "stages": [{"width": 8, "blocks": [8]}, {"width": 8, "blocks": [8]}, {"width": 8, "stride": 1, "blocks": [8]}]}
    )
    assert [s["stride"] for s in resnet["stages"]] == [1, 2, 1]
    assert validate_model_spec(_vgg(input_size=[8, 12]))["input_size"] == [8, 12]


def test_validation_does_not_mutate_its_input() -> None:
    spec = {"family": "vgg", "in_channels": 1, "num_classes": 10, "layers": [8]}
    validate_model_spec(spec)
    assert spec == {"family": "vgg", "in_channels": 1, "num_classes": 10, "layers": [8]}


def test_a_family_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_family("vgg")
        class Other(VGG):
            pass
