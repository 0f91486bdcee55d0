"""The network Γ selects (paper section 5.2): weights outside supp(Γ) zeroed, BatchNorm recalibrated, evaluated."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import growth
from growth.engine import _build
from growth.methods import METHODS, Method
from growth.methods.support import (
    recalibrate_batchnorm,
    recalibration_samples,
    restricted_copy,
    spread,
    support_accuracies,
)
from growth.models import build_model
from growth.optim import DessiLBI
from growth.optim.structure import lifted_params
from growth.spec import parse_spec
from growth_specs import tiny_spec

# One 1×1 input channel, two conv filters, a hidden linear layer of 2 and the 2-class head:
# at 1×1 resolution a 3×3 conv with padding 1 is its centre weight times x plus its bias.
HAND_MADE = {"family": "vgg", "in_channels": 1, "num_classes": 2, "layers": [2], "classifier": [2],
             "batch_norm": False, "input_size": [1, 1]}


def _hand_made_model() -> tuple[nn.Module, DessiLBI]:
    model = build_model(HAND_MADE, generator=torch.Generator().manual_seed(0))
    conv, hidden, head = model.features.conv1, model.classifier.fc1, model.classifier.fc
    with torch.no_grad():
        conv.weight.fill_(5.0)  # only the centre tap reaches a 1×1 output
        conv.weight[0, 0, 1, 1], conv.weight[1, 0, 1, 1] = 1.0, 2.0
        conv.bias.copy_(torch.tensor([0.0, 1.0]))
        hidden.weight.copy_(torch.tensor([[1.0, 10.0], [0.0, 1.0]]))
        hidden.bias.zero_()
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        head.bias.copy_(torch.tensor([0.5, 0.0]))
    optimizer = DessiLBI(model.param_groups(), lr=0.1)
    # Γ selects conv filter 0 only, and the hidden layer's diagonal (linear Γ is elementwise).
    conv_gamma = torch.zeros_like(conv.weight)
    conv_gamma[0] = 0.3
    optimizer.state[conv.weight]["gamma"] = conv_gamma
    optimizer.state[hidden.weight]["gamma"] = torch.tensor([[0.2, 0.0], [0.0, 0.7]])
    return model, optimizer


def test_the_restricted_network_of_a_hand_made_case():
    model, optimizer = _hand_made_model()
    x = torch.full((1, 1, 1, 1), 3.0)
    # Full: conv [1·3 + 0, 2·3 + 1] = [3, 7]; hidden [3 + 10·7, 7] = [73, 7]; head [73 + 0.5, −7].
    assert model(x).tolist() == [[73.5, -7.0]]
    restricted = restricted_copy(model, optimizer)
    # Restricted: filter 1 is zero but keeps its bias: [3, 1]; hidden diagonal only: [3, 1];
    # the head has no Γ and keeps W: [3.5, −1].
    assert restricted(x).tolist() == [[3.5, -1.0]]
    assert restricted.features.conv1.bias.tolist() == [0.0, 1.0]
    # The live model is untouched.
    assert model(x).tolist() == [[73.5, -7.0]]
    assert model.features.conv1.weight[1, 0, 1, 1].item() == 2.0


def test_a_weight_never_stepped_has_empty_support():
    model, optimizer = _hand_made_model()
    del optimizer.state[model.features.conv1.weight]["gamma"]
    restricted = restricted_copy(model, optimizer)
    assert restricted.features.conv1.weight.eq(0).all()
    assert torch.equal(restricted.classifier.fc.weight, model.classifier.fc.weight)


def test_recalibration_averages_the_statistics_of_interleaved_batches():
    norm = nn.BatchNorm2d(1)
    norm.running_mean.fill_(100.0)
    norm.momentum = 0.1
    model = nn.Sequential(norm)
    x = torch.tensor([0.0, 2.0, 4.0, 8.0]).reshape(4, 1, 1, 1)
    recalibrate_batchnorm(model, x, batch_size=2)
    # Batches [0, 4] and [2, 8]: means 2 and 5, unbiased variances 8 and 18, each counted once.
    assert norm.running_mean.tolist() == [3.5]
    assert norm.running_var.tolist() == [13.0]
    assert not model.training


def test_the_recalibration_images_span_the_training_split():
    assert spread(10, 4).tolist() == [0, 2, 5, 7]
    assert spread(5, 5).tolist() == [0, 1, 2, 3, 4]
    # A split stored class by class (an image folder): 1,000 of 4,000 images take 250 of each class.
    labels = torch.arange(4).repeat_interleave(1000)
    assert torch.bincount(labels[spread(4000, recalibration_samples(4000))]).tolist() == [250] * 4


@pytest.mark.parametrize(("train", "used"), [(100, 100), (1000, 256), (1222, 305), (4096, 1024), (54000, 1024)])
def test_recalibration_uses_a_quarter_of_the_training_split_within_bounds(train, used):
    assert recalibration_samples(train) == used


def _run_context(**over):
    job = parse_spec(tiny_spec(**over))
    method = METHODS["grow"](job)
    return _build(job, method, None)


def test_with_full_support_and_no_batchnorm_the_restricted_accuracy_is_the_accuracy():
    ctx = _run_context(model={"batch_norm": False})
    for p in lifted_params(ctx.optimizer):
        ctx.optimizer.state[p]["gamma"] = torch.ones_like(p)
    assert support_accuracies(ctx, ("val", "test")) == {"val": ctx.evaluate(), "test": ctx.evaluate(split="test")}
    for p in lifted_params(ctx.optimizer):
        ctx.optimizer.state[p]["gamma"] = torch.zeros_like(p)
    # An empty support leaves the head's bias, zero at initialisation: every class scores the same,
    # and argmax takes the first, class 0, for every image.
    _, y = ctx.splits.val
    assert support_accuracies(ctx, ("val",))["val"] == int((y == 0).sum()) / y.shape[0]


def test_with_full_support_the_restricted_copy_has_the_model_weights():
    ctx = _run_context()
    for p in lifted_params(ctx.optimizer):
        ctx.optimizer.state[p]["gamma"] = torch.ones_like(p)
    restricted = restricted_copy(ctx.model, ctx.optimizer)
    for (name, p), (_, q) in zip(ctx.model.named_parameters(), restricted.named_parameters()):
        assert torch.equal(p, q), name


def _without_support(monkeypatch):
    monkeypatch.setattr(Method, "support_accuracy", lambda self, ctx, splits: None)


def _trajectory(result):
    drop = ("seconds", "support_val_accuracy")
    return [{k: v for k, v in row.items() if k not in drop} for row in result["history"]]


def test_computing_it_does_not_change_the_run(monkeypatch):
    # BatchNorm, augmentation and growth: the support evaluation must touch neither the live
    # model nor its BatchNorm statistics nor any of the run's generators.
    spec = tiny_spec(growth={"every": 1, "threshold": 0.25, "finetune_epochs": 2}, data={"augment": True})
    with_support = growth.run(spec)
    assert with_support["events"], "the scenario must grow"
    supported = [row["support_val_accuracy"] for row in with_support["history"]]
    assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in supported)
    final = with_support["final"]
    assert 0.0 <= final["support_val_accuracy"] <= 1.0 and 0.0 <= final["support_test_accuracy"] <= 1.0
    assert final["selected"] == {u["name"]: u["selected"] for u in with_support["history"][-1]["units"]}
    _without_support(monkeypatch)
    without = growth.run(spec)
    assert [row["support_val_accuracy"] for row in without["history"]] == [None] * len(without["history"])
    assert _trajectory(without) == _trajectory(with_support)
    assert without["final"]["test_accuracy"] == final["test_accuracy"]


def test_runs_without_gamma_report_none():
    result = growth.run({**tiny_spec(train={"epochs": 2}), "method": "dense"})
    assert [row["support_val_accuracy"] for row in result["history"]] == [None, None]
    final = result["final"]
    assert final["support_val_accuracy"] is None and final["support_test_accuracy"] is None
    assert final["selected"] == {"conv1": 4, "conv2": 4}  # no all-zero filter under plain SGD
