"""Parameter / MAC counts against hand-computed numbers."""
from __future__ import annotations

from typing import Any

import torch

from growth import surgery
from growth.counting import Counts, _count_spec, count, count_macs
from growth.models import build_model

# conv1 1→2, 4×4 → pool → conv2 2→3, 2×2 → GAP → fc1 3→4 → fc 4→5
TINY_VGG: dict[str, Any] = {
    "family": "vgg", "in_channels": 1, "num_classes": 5,
    "layers": [2, "M", 3], "classifier": [4], "input_size": 4,
}
TINY_VGG_PARAMS = (
    2 * 1 * 9 + 2 * 2  # conv1 (no bias: BatchNorm follows) + bn1 weight, bias
    + 3 * 2 * 9 + 3 * 2  # conv2 + bn2
    + 3 * 4 + 4  # fc1
    + 4 * 5 + 5  # fc
)  # = 123
TINY_VGG_MACS = (
    (4 * 4) * 2 * (1 * 9)  # conv1: output pixels × filters × (in_channels × 3×3)
    + (2 * 2) * 3 * (2 * 9)  # conv2 after the 2×2 pool
    + 3 * 4  # fc1
    + 4 * 5  # fc
)  # = 536

# stem 1→2 @4×4; stage1 (stride 1): block1 2→3→4 with a 1×1 projection 2→4;
# stage2 (stride 2, 2×2): block1 4→2→5 + projection 4→5, block2 5→2→5; fc 5→3.
TINY_RESNET: dict[str, Any] = {
    "family": "resnet", "in_channels": 1, "num_classes": 3, "stem": 2,
    "stages": [{"width": 4, "stride": 1, "blocks": [3]}, {"width": 5, "stride": 2, "blocks": [2, 2]}],
    "input_size": 4,
}
TINY_RESNET_PARAMS = (
    (2 * 1 * 9 + 2 * 2)  # stem conv + bn
    + (3 * 2 * 9 + 3 * 2) + (4 * 3 * 9 + 4 * 2) + (4 * 2 * 1 + 4 * 2)  # stage1.block1: conv1, conv2, projection
    + (2 * 4 * 9 + 2 * 2) + (5 * 2 * 9 + 5 * 2) + (5 * 4 * 1 + 5 * 2)  # stage2.block1
    + (2 * 5 * 9 + 2 * 2) + (5 * 2 * 9 + 5 * 2)  # stage2.block2
    + (5 * 3 + 3)  # fc
)  # = 632
TINY_RESNET_MACS = (
    16 * 2 * 9  # stem
    + 16 * 3 * 18 + 16 * 4 * 27 + 16 * 4 * 2  # stage1.block1 at 4×4
    + 4 * 2 * 36 + 4 * 5 * 18 + 4 * 5 * 4  # stage2.block1 at 2×2 (stride 2 in conv1 and projection)
    + 4 * 2 * 45 + 4 * 5 * 18  # stage2.block2
    + 5 * 3  # fc
)  # = 4471


def test_tiny_vgg_matches_hand_count() -> None:
    assert TINY_VGG_PARAMS == 123 and TINY_VGG_MACS == 536  # the arithmetic above, spelled out
    assert count(TINY_VGG) == Counts(params=123, macs=536)
    assert count(build_model(TINY_VGG)) == Counts(params=123, macs=536)


def test_vgg_without_batch_norm_counts_conv_biases() -> None:
    spec = {**TINY_VGG, "batch_norm": False}
    assert count(spec) == Counts(params=123 - 2 * 2 - 3 * 2 + 2 + 3, macs=536)


def test_tiny_resnet_matches_hand_count() -> None:
    assert TINY_RESNET_PARAMS == 632 and TINY_RESNET_MACS == 4471
    assert count(TINY_RESNET) == Counts(params=632, macs=4471)
    assert count(build_model(TINY_RESNET)) == Counts(params=632, macs=4471)


def test_input_shape_override_scales_conv_macs_only() -> None:
    # 8×8 input: each conv sees 4× the pixels; global pooling keeps the linear layers the same.
    conv_macs = (4 * 4) * 2 * 9 + (2 * 2) * 3 * 18
    linear_macs = 3 * 4 + 4 * 5
    assert count(TINY_VGG, input_shape=(1, 8, 8)).macs == 4 * conv_macs + linear_macs
    assert count(build_model(TINY_VGG), (1, 8, 8)).macs == 4 * conv_macs + linear_macs


def test_counts_follow_surgery() -> None:
    model = build_model(TINY_VGG)
    surgery.widen(model, None, "conv1", 4)
    # conv1 2→4 filters (+2×9 weights, +2×2 BN), conv2 reads 4 channels (+3×2×9).
    assert count(model) == Counts(
        params=123 + 2 * 9 + 2 * 2 + 3 * 2 * 9,
        macs=536 + 16 * 2 * 9 + 4 * 3 * 2 * 9,
    )
    assert count(model) == count(model.to_spec())


def test_only_trainable_parameters_count() -> None:
    model = build_model(TINY_VGG)
    model.classifier.fc.weight.requires_grad_(False)
    assert count(model).params == 123 - 4 * 5


def test_counting_a_live_model_leaves_it_untouched() -> None:
    model = build_model(TINY_VGG, generator=torch.Generator().manual_seed(0))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count(model)
    assert count_macs(model, (1, 4, 4)) == 536  # a real forward on the live model
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics too


def test_spec_counts_are_cached() -> None:
    spec = {**TINY_RESNET, "num_classes": 7}
    count(spec)
    hits = _count_spec.cache_info().hits
    assert count(dict(reversed(list(spec.items())))) == count(spec)  # key order does not matter
    assert _count_spec.cache_info().hits == hits + 2
