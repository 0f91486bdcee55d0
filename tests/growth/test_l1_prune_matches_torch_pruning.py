"""netgrow's L1 filter pruning against Torch-Pruning's, on one trained VGG.

Li et al. (ICLR 2017, §3.1) rank the filters of a layer by s_j = Σ|K| over the
filter's kernel weights and remove the smallest; §3.3 calls ranking every
layer on the trained weights, whatever is pruned elsewhere, the *independent*
strategy, which is what ``growth.methods.l1_prune`` documents. Torch-Pruning
(``MetaPruner`` with per-layer ratios and local ranking) does that when its
importance is configured as Li et al.'s criterion: ``MagnitudeImportance(p=1,
group_reduction="first", normalizer=None)`` scores a group by its first
member, the conv's own output filters. Its default (``p=2``, mean over the
group) also scores each channel by its BatchNorm γ and by the next layer's
input-channel kernels, the DepGraph group norm, not Li et al.'s; on this
network it keeps other filters in every unit.

What the cross-check found: netgrow used to rank each unit after the units
listed before it in ``prune.keep`` had been cut, so a unit following a pruned
one was ranked without the kernels of the removed feature maps (Li et al.'s
*greedy* strategy, not the independent one it documents), and the result
depended on the key order of ``prune.keep``. Torch-Pruning's selection was
the one Li et al.'s independent rule gives; netgrow now ranks all units
before any surgery and agrees with it.

The two differ by design in how a share becomes a filter count: netgrow keeps
⌈keep·n⌉ (``prune.keep`` is the share kept, never less, at least one), while
Torch-Pruning keeps ⌊(1 − ratio)·n⌋. Li et al. prune a number of filters and
do not say how a ratio rounds; the main check uses shares that are whole
numbers of filters, and the rounding difference is checked on its own.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import growth
from growth.data import load_dataset
from growth.methods.l1_prune import keep_indices
from growth.models import build_model

tp = pytest.importorskip("torch_pruning", reason="Torch-Pruning is in the dev extra: pip install -e '.[dev]'")

DENSE = {
    "method": "dense", "seed": 0,
    "model": {"family": "vgg", "layers": [16, 16, "M", 32, 32], "classifier": [], "batch_norm": True},
    "data": {"name": "digits", "image_size": 16, "val_fraction": 0.15, "test_fraction": 0.2},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001, "threads": 1},
}
# Consecutive units, so that ranking one after its predecessor was cut would show; every share is a whole
# number of filters (16·0.5, 16·0.25, 32·0.5, 32·0.75).
KEEP = {"conv1": 0.5, "conv2": 0.25, "conv3": 0.5, "conv4": 0.75}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The dense run's result and its weights file."""
    folder = tmp_path_factory.mktemp("dense")
    result = growth.run(DENSE, checkpoint_dir=folder)
    return result, folder / "final.pt"


def load(model_spec: dict[str, Any], weights: Path | dict[str, torch.Tensor]) -> nn.Module:
    model = build_model(model_spec)
    model.load_state_dict(weights if isinstance(weights, dict) else torch.load(weights, weights_only=True))
    return model.eval()


def kept_filters(dense: nn.Module, pruned: nn.Module) -> dict[str, list[int]]:
    """Per unit, which of the dense network's filters the pruned one kept, read off their BatchNorm statistics."""
    kept = {}
    for unit, small in zip(dense.units(), pruned.units(), strict=True):
        before, after = unit.producers[0][1].running_mean, small.producers[0][1].running_mean
        assert before.unique().numel() == before.numel(), "the statistics must tell the filters apart"
        kept[unit.name] = [int((before == value).nonzero()) for value in after]
    return kept


def li_et_al(dense: nn.Module, keep: dict[str, float]) -> dict[str, list[int]]:
    """Li et al.'s independent rule, by hand: per layer, the top ⌈keep·n⌉ of Σ|K| over the trained kernels."""
    kept = {}
    for unit in dense.units():
        weight = unit.producers[0][0].weight.detach()
        count = round(keep.get(unit.name, 1.0) * weight.shape[0])
        kept[unit.name] = sorted(torch.topk(weight.abs().sum(dim=(1, 2, 3)), count).indices.tolist())
    return kept


def torch_pruning(model: nn.Module, keep: dict[str, float], importance: Any) -> nn.Module:
    """``model`` pruned in place by Torch-Pruning: each listed conv ranked on its own, to the share kept."""
    convs = dict(model.features.named_children())
    pruner = tp.pruner.MetaPruner(
        model, torch.zeros(2, *model.input_shape), importance=importance, global_pruning=False,
        pruning_ratio=0.0, pruning_ratio_dict={convs[name]: 1.0 - share for name, share in keep.items()},
        ignored_layers=[model.classifier.fc])
    pruner.step()
    return model


LI_ET_AL_L1 = {"p": 1, "group_reduction": "first", "normalizer": None}


# In network order a unit follows a pruned one; reversed, none does: the selection must not depend on it.
@pytest.mark.parametrize("keep", [KEEP, dict(reversed(KEEP.items()))], ids=["network-order", "reversed"])
def test_netgrow_and_torch_pruning_keep_the_same_filters_and_compute_the_same_network(
        trained: tuple[dict[str, Any], Path], tmp_path: Path, keep: dict[str, float]) -> None:
    result, weights = trained
    dense = load(result["final"]["model"], weights)
    # netgrow's own pipeline: the l1_prune method on the trained weights, no fine-tuning.
    spec = {**DENSE, "method": "l1_prune",
            "prune": {"keep": keep, "finetune_epochs": 0, "from_checkpoint": str(weights)}}
    pruned = growth.run(spec, checkpoint_dir=tmp_path)
    ours = load(pruned["final"]["model"], tmp_path / "final.pt")
    theirs = torch_pruning(copy.deepcopy(dense), KEEP, tp.importance.MagnitudeImportance(**LI_ET_AL_L1))

    expected = li_et_al(dense, KEEP)
    assert kept_filters(dense, ours) == expected
    assert kept_filters(dense, theirs) == expected
    assert ours.to_spec()["layers"] == theirs.to_spec()["layers"] == [8, 4, "M", 16, 24]
    assert pruned["final"]["params"] == sum(p.numel() for p in theirs.parameters()) \
        == sum(p.numel() for p in ours.parameters())

    splits = load_dataset(DENSE["data"], seed=DENSE["seed"])
    images = splits.test[0][:64]
    with torch.no_grad():
        torch.testing.assert_close(ours(images), theirs(images), rtol=1e-5, atol=1e-5)
        # Not vacuous: pruning changed what the network computes.
        assert not torch.allclose(dense(images), ours(images), atol=1e-3)


def test_torch_pruning_default_importance_is_not_li_et_al(trained: tuple[dict[str, Any], Path]) -> None:
    """Its default scores a channel by its whole group (BatchNorm γ, the next layer's inputs): other filters."""
    result, weights = trained
    dense = load(result["final"]["model"], weights)
    default = torch_pruning(copy.deepcopy(dense), KEEP, tp.importance.MagnitudeImportance())
    assert kept_filters(dense, default) != li_et_al(dense, KEEP)


def test_a_share_that_is_not_a_whole_number_of_filters_rounds_up_in_netgrow_and_down_in_torch_pruning(
        trained: tuple[dict[str, Any], Path]) -> None:
    result, weights = trained
    dense = load(result["final"]["model"], weights)
    keep = {"conv3": 0.3}  # 32 · 0.3 = 9.6 filters
    ours = keep_indices(dense.unit("conv3"), keep["conv3"]).tolist()
    theirs = kept_filters(dense, torch_pruning(copy.deepcopy(dense), keep,
                                               tp.importance.MagnitudeImportance(**LI_ET_AL_L1)))["conv3"]
    assert (len(ours), len(theirs)) == (10, 9)
    assert set(theirs) < set(ours)  # the same ranking: Torch-Pruning drops netgrow's tenth filter too
