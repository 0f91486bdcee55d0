"""The baselines' own rules: L1 ranking, AutoGrow's stopping rule and identity blocks, RMDA restarts."""
from __future__ import annotations

import pytest
import torch

import growth
from growth.methods.autogrow import AutoGrow
from growth.methods.l1_prune import filter_l1_norms, keep_indices
from growth.models import build_model
from growth.spec import parse_spec
from growth import surgery

from growth_specs import tiny_spec


def vgg(layers):
    return build_model({"family": "vgg", "in_channels": 1, "num_classes": 3, "layers": layers,
                        "classifier": [], "input_size": [8, 8]})


def test_l1_ranking_keeps_the_filters_with_the_largest_abs_sums():
    model = vgg([4, "M", 4])
    conv = model.unit("conv1").producers[0][0]
    with torch.no_grad():
        conv.weight.zero_()
        # Σ|W| per filter: 9·0.3 = 2.7, 9·0.1 = 0.9, 9·0.5 = 4.5 (mixed signs), 0.
        conv.weight[0].fill_(0.3)
        conv.weight[1].fill_(-0.1)
        conv.weight[2].copy_(torch.tensor([0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5]).view(1, 3, 3))
    norms = filter_l1_norms(model.unit("conv1"))
    assert norms.tolist() == pytest.approx([2.7, 0.9, 4.5, 0.0])
    assert keep_indices(model.unit("conv1"), 0.5).tolist() == [0, 2]
    assert keep_indices(model.unit("conv1"), 0.75).tolist() == [0, 1, 2]
    assert keep_indices(model.unit("conv1"), 0.01).tolist() == [2]  # at least one filter stays


@pytest.mark.parametrize(("width", "keep", "kept"), [
    (100, 0.07, 7),  # 0.07 · 100 = 7.000000000000001 in floating point
    (10, 1.0 - 0.7, 3),  # the sensitivity analysis's "prune 70%" of ten filters
    (20, 0.35, 7),
    (10, 0.25, 3),  # ⌈2.5⌉: a share that is not a whole number of filters rounds up
])
def test_l1_keeps_the_exact_share_of_filters_despite_float_error(width, keep, kept):
    model = vgg([width, "M", 4])
    assert keep_indices(model.unit("conv1"), keep).numel() == kept


def test_l1_pruned_network_equals_the_masked_dense_network():
    torch.manual_seed(0)
    model = vgg([6, "M", 6]).eval()
    x = torch.randn(5, 1, 8, 8)
    unit = model.unit("conv1")
    keep = keep_indices(unit, 0.5)
    masked = build_model(model.to_spec()).eval()
    masked.load_state_dict(model.state_dict())
    bn = masked.unit("conv1").producers[0][1]
    drop = torch.ones(6, dtype=torch.bool)
    drop[keep] = False
    with torch.no_grad():
        bn.weight[drop] = 0.0
        bn.bias[drop] = 0.0
    surgery.prune(model, None, unit, keep)
    assert model.unit("conv1").width == 3
    torch.testing.assert_close(model(x), masked(x))


def test_autogrow_zero_initialised_block_is_an_identity():
    torch.manual_seed(0)
    model = build_model({"family": "resnet", "in_channels": 1, "num_classes": 3, "stem": 4, "input_size": [8, 8],
                         "stages": [{"width": 4, "stride": 1, "blocks": [4]}, {"width": 6, "stride": 2, "blocks": [4]}]})
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    surgery.add_block(model, None, 1, initializer="zero")
    assert len(model.to_spec()["stages"][1]["blocks"]) == 2
    torch.testing.assert_close(model(x), before)
    surgery.add_block(model, None, 0, initializer="gaussian", generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(model(x), before)  # the gaussian block is not an identity


def autogrow_method(**options):
    spec = {**tiny_spec(), "method": "autogrow",
            "model": {"family": "resnet", "stem": 4, "stages": [{"width": 4, "stride": 1, "blocks": [4]}]},
            "autogrow": {"every": 1, "patience": 3, "min_improvement": 0.5, **options}}
    return AutoGrow(parse_spec(spec))


def test_autogrow_stops_when_best_val_accuracy_stalls_over_the_last_j_epochs():
    method = autogrow_method()
    method.val_history = [0.50, 0.60, 0.70]
    assert not method._stalled()  # fewer than J + 1 epochs seen
    method.val_history = [0.50, 0.60, 0.70, 0.704, 0.701, 0.702]
    assert method._stalled()  # best went 0.70 → 0.704: +0.4 points < 0.5 over the last 3 epochs
    method.val_history = [0.50, 0.60, 0.70, 0.704, 0.701, 0.706]
    assert not method._stalled()  # +0.6 points


def test_autogrow_improvement_of_exactly_the_minimum_is_not_a_stall():
    # One more right answer out of 2000 validation images is +0.05 points, but
    # 0.9005 − 0.9 is 0.0004999999999999449 in floating point.
    method = autogrow_method(min_improvement=0.05)
    method.val_history = [0.5, 0.6, 0.9, 0.9005, 0.9001, 0.9002]
    assert not method._stalled()
    method.val_history = [0.5, 0.6, 0.9, 0.9004, 0.9001, 0.9002]
    assert method._stalled()  # +0.04 points


def test_rmda_restarts_at_every_lr_milestone(monkeypatch):
    from growth.optim import RMDA

    restarts = []
    original = RMDA.restart
    monkeypatch.setattr(RMDA, "restart", lambda self: (restarts.append(1), original(self)))
    spec = {**tiny_spec(), "method": "rmda", "train": {"epochs": 5, "lr": 0.5, "lr_milestones": [2, 4]}}
    result = growth.run(spec)
    assert len(restarts) == 2
    assert [r["lr"] for r in result["history"]] == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005])


def test_grow_with_magnitude_scaling_runs_and_grows():
    spec = tiny_spec(optimizer={"magnitude_scaling": True}, growth={"every": 1, "threshold": 0.25})
    result = growth.run(spec)
    assert result["spec"]["optimizer"]["magnitude_scaling"] is True
    assert result["epochs"] >= 3


def test_batchnorm_recalibration_gives_exact_statistics_of_the_data():
    from growth.training import recalibrate_batchnorm

    torch.manual_seed(0)
    model = vgg([4, "M", 4])
    bn = model.unit("conv1").producers[0][1]
    conv = model.unit("conv1").producers[0][0]
    x = torch.randn(50, 1, 8, 8) * 3 + 1
    bn.running_mean.fill_(7.0)  # stale statistics, as after a prox step shrank the filters
    recalibrate_batchnorm(model, x, batch_size=50)
    with torch.no_grad():
        expected = conv(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected)
    assert bn.momentum == 0.1 and model.training  # settings restored
