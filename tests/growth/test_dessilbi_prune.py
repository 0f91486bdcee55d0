"""DessiLBI pruning: the filters Γ did not select are removed, exactly those, and the rest fine-tuned."""
from __future__ import annotations

import pytest
import torch

import growth
from growth import SpecError
from growth.counting import count
from growth.data import load_dataset
from growth.methods import METHODS, Method, RunContext
from growth.models import build_model
from growth.optim.structure import selected_channels, sparse_weights
from growth.spec import parse_spec
from growth_specs import tiny_spec

VGG = {"family": "vgg", "layers": [6, "M", 5], "classifier": []}


def prune_spec(**over: dict) -> dict:
    spec = {**tiny_spec(method="dessilbi_prune", model=VGG, train={"epochs": 2}), "prune": {"finetune_epochs": 1}}
    spec.pop("growth")
    for key, value in over.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec


def trained_one_step(spec: dict) -> tuple[Method, RunContext]:
    """The method, and its model and DessiLBI after one step on random data: V, Γ and momentum exist."""
    job = parse_spec(spec)
    method = METHODS["dessilbi_prune"](job)
    model = build_model(job.model, generator=torch.Generator().manual_seed(0))
    optimizer = method.build_optimizer(model.param_groups())
    torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8) % 3).backward()
    optimizer.step()
    model.eval()
    return method, context(job, model, optimizer)


def context(job, model, optimizer) -> RunContext:
    return RunContext(spec=job, model=model, optimizer=optimizer, splits=load_dataset(job.data, seed=job.seed),
                      device=torch.device("cpu"), input_shape=(1, 8, 8), shuffle_rng=torch.Generator(),
                      augment_rng=None, init_rng=torch.Generator())


def set_gamma(ctx: RunContext, unit: str, unselected: list[int]) -> None:
    """Γ of ``unit``: ones on every filter but ``unselected``, which are zero."""
    conv = ctx.model.unit(unit).producers[0][0]
    gamma = torch.ones_like(conv.weight)
    gamma[unselected] = 0.0
    ctx.optimizer.state[conv.weight]["gamma"] = gamma


def prune_at_the_last_training_epoch(method: Method, ctx: RunContext) -> list:
    return method.after_epoch(ctx, method.train_epochs - 1, 0.0)


def test_exactly_the_filters_gamma_did_not_select_are_removed_with_their_trained_weights() -> None:
    method, ctx = trained_one_step(prune_spec())
    set_gamma(ctx, "conv1", [1, 4])
    set_gamma(ctx, "conv2", [0, 2])
    conv1, bn1 = ctx.model.unit("conv1").producers[0]
    conv2 = ctx.model.unit("conv2").producers[0][0]
    w1, beta1, w2 = conv1.weight.detach().clone(), bn1.bias.detach().clone(), conv2.weight.detach().clone()

    changes = prune_at_the_last_training_epoch(method, ctx)

    assert [(c.kind, c.units) for c in changes] == [("prune", {"conv1": (6, 4), "conv2": (5, 3)})]
    assert {u.name: u.width for u in ctx.model.units()} == {"conv1": 4, "conv2": 3}
    kept1, kept2 = [0, 2, 3, 5], [1, 3, 4]
    assert torch.equal(conv1.weight, w1[kept1])  # W of the kept filters, not Γ
    assert torch.equal(bn1.bias, beta1[kept1])
    assert torch.equal(conv2.weight, w2[kept2][:, kept1])
    # Fine-tuning is plain SGD with the prune section's hyper-parameters; DessiLBI's state is gone.
    assert type(ctx.optimizer) is torch.optim.SGD
    assert {(g["momentum"], g["weight_decay"]) for g in ctx.optimizer.param_groups} == {(0.9, 1e-4)}
    assert not ctx.optimizer.state
    assert method.state_dict()["pruned"] is True


def test_a_unit_gamma_left_empty_keeps_the_channel_nearest_to_selection() -> None:
    method, ctx = trained_one_step(prune_spec())
    set_gamma(ctx, "conv1", list(range(6)))
    conv1 = ctx.model.unit("conv1").producers[0][0]
    v = torch.zeros_like(conv1.weight)
    v[3] = 0.2  # ‖V_3‖ = 0.2·√9 = 0.6, the largest; filter 1's is 0.5
    v[1, 0, 0, 0] = 0.5
    ctx.optimizer.state[conv1.weight]["v"] = v
    w = conv1.weight.detach().clone()
    changes = prune_at_the_last_training_epoch(method, ctx)
    assert changes[0].units["conv1"] == (6, 1)
    assert torch.equal(conv1.weight, w[[3]])


def test_a_network_never_stepped_keeps_one_channel_per_unit() -> None:
    """Γ and V are zero before DessiLBI's first step: nothing is selected, the first channel stays."""
    job = parse_spec(prune_spec())
    method = METHODS["dessilbi_prune"](job)
    model = build_model(job.model)
    optimizer = method.build_optimizer(model.param_groups())
    ctx = context(job, model, optimizer)
    changes = method.after_epoch(ctx, method.train_epochs - 1, 0.0)
    assert changes[0].units == {"conv1": (6, 1), "conv2": (5, 1)}
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def removed_channels_shift(ctx: RunContext, unit: str, channels: list[int], beta: float) -> None:
    """BatchNorm of ``channels`` in eval mode: a zero filter comes out as exactly ``beta``."""
    bn = ctx.model.unit(unit).producers[0][1]
    with torch.no_grad():
        bn.running_mean[channels] = 0.0
        bn.bias[channels] = beta


@pytest.mark.parametrize(("beta", "equal"), [(-0.5, True), (0.0, True), (0.5, False)])
def test_the_pruned_network_computes_the_gamma_restricted_one_where_removed_channels_emit_zero(
        beta: float, equal: bool) -> None:
    """W ⊙ 1[Γ ≠ 0] leaves a removed channel emitting relu(β) after its BatchNorm; pruning drops it.

    The two networks agree exactly when that constant is zero, and not otherwise.
    """
    method, ctx = trained_one_step(prune_spec())
    set_gamma(ctx, "conv1", [1, 4])
    set_gamma(ctx, "conv2", [0, 2])
    removed_channels_shift(ctx, "conv1", [1, 4], beta)
    removed_channels_shift(ctx, "conv2", [0, 2], -1.0)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad(), sparse_weights(ctx.optimizer):
        restricted = ctx.model(x)
    prune_at_the_last_training_epoch(method, ctx)
    with torch.no_grad():
        pruned = ctx.model(x)
    assert torch.allclose(pruned, restricted, atol=1e-6) == equal


def test_a_residual_channel_stays_while_any_of_its_producers_selects_it() -> None:
    spec = prune_spec(model={"family": "resnet", "stem": 4, "stages": [{"width": 4, "stride": 1, "blocks": [4, 4]}]})
    spec["model"].pop("layers")
    spec["model"].pop("classifier")
    method, ctx = trained_one_step(spec)
    stage = ctx.model.unit("stage1")
    assert len(stage.producers) >= 2  # the stem and both blocks write the stage's channels
    for i, (conv, _) in enumerate(stage.producers):
        gamma = torch.ones_like(conv.weight)
        gamma[0] = 0.0  # channel 0: no producer selects it
        if i > 0:
            gamma[2] = 0.0  # channel 2: only the first producer does
        ctx.optimizer.state[conv.weight]["gamma"] = gamma
    assert selected_channels(ctx.optimizer, stage).tolist() == [False, True, True, True]
    changes = prune_at_the_last_training_epoch(method, ctx)
    assert changes[0].units["stage1"] == (4, 3)


@pytest.mark.parametrize(("field", "value"), [("keep", {"conv1": 0.5}), ("sensitivity", True),
                                              ("from_checkpoint", "dense.pt")])
def test_l1_pruning_fields_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(prune_spec(prune={field: value}))
    assert err.value.field == f"prune.{field}"
    assert "dessilbi_prune" in str(err.value)


def test_phases_lr_and_the_prune_event() -> None:
    spec = prune_spec(train={"epochs": 3, "lr_milestones": [2]}, optimizer={"lam": 0.5},
                      prune={"finetune_epochs": 2, "finetune_lr": 0.002})
    result = growth.run(spec)
    assert [(r["phase"], r["lr"]) for r in result["history"]] == [
        ("train", 0.05), ("train", 0.05), ("train", pytest.approx(0.005)), ("finetune", 0.002), ("finetune", 0.002)]
    last = result["history"][2]["units"]
    (event,) = result["events"]
    assert event["epoch"] == 2 and event["change"] == "prune"
    # What the last DessiLBI epoch counted as selected is what stays.
    assert event["units"] == {u["name"]: [u["width"], u["selected"]] for u in last if u["selected"] < u["width"]}
    assert result["final"]["widths"] == {u["name"]: max(u["selected"], 1) for u in last}
    # The Γ-support network is measured while DessiLBI trains; the result keeps the one that was pruned.
    support = [r["support_val_accuracy"] for r in result["history"]]
    assert all(0.0 <= a <= 1.0 for a in support[:3]) and support[3:] == [None, None]
    assert result["final"]["support_val_accuracy"] == support[2]
    assert 0.0 <= result["final"]["support_test_accuracy"] <= 1.0


def test_a_short_run_on_digits_ends_smaller_than_the_dense_network() -> None:
    model = {"family": "vgg", "layers": [16, "M", 16], "classifier": [], "batch_norm": True}
    spec = {"method": "dessilbi_prune", "seed": 0, "model": model, "data": {"name": "digits"},
            "train": {"epochs": 4, "batch_size": 64, "lr": 0.05, "threads": 1},
            "optimizer": {"kappa": 1.0, "nu": 1.0, "lam": 1.5}, "prune": {"finetune_epochs": 2, "finetune_lr": 0.02}}
    result = growth.run(spec)
    dense = build_model(result["spec"]["model"])
    assert result["final"]["params"] < count(dense, (1, 8, 8)).params
    assert all(0 < w <= 16 for w in result["final"]["widths"].values())
    assert result["final"]["test_accuracy"] > 0.5  # ten classes: chance is 0.1
