"""The run loop: growth decisions, phases, events, checkpoints and exact resume."""
from __future__ import annotations

import math

import pytest
import torch

import growth
from growth import Interrupted, SpecError
from growth.engine import _build
from growth.events import ArchitectureChanged, CheckpointWritten, EpochEnd, Finished
from growth.methods import METHODS
from growth.methods.grow import grown_width
from growth.spec import parse_spec
from growth_specs import tiny_spec


def test_grown_width_rule():
    assert grown_width(8, 8, 1.1, 512) == 16  # max(n + a, ⌊1.1 n⌋)
    assert grown_width(100, 8, 1.1, 512) == 110
    assert grown_width(100, 4, 1.1, 512) == 110
    assert grown_width(20, 4, 1.1, 512) == 24
    assert grown_width(500, 8, 1.1, 512) == 512  # capped at max_width


def test_ratio_rule_widens_exactly_the_units_at_or_above_threshold():
    job = parse_spec(tiny_spec(model={"layers": [8, "M", 8]}, growth={"every": 1, "threshold": 0.8, "add": 8}))
    method = METHODS["grow"](job)
    ctx = _build(job, method, None)
    conv1, conv2 = (ctx.model.unit(n).producers[0][0] for n in ("conv1", "conv2"))
    for conv, selected in ((conv1, 7), (conv2, 6)):  # ratios 7/8 ≥ 0.8 and 6/8 < 0.8
        gamma = torch.zeros_like(conv.weight)
        gamma[:selected] = 1.0
        ctx.optimizer.state[conv.weight]["gamma"] = gamma
    stats = {s.name: s for s in ctx.unit_stats()}
    assert (stats["conv1"].selected, stats["conv1"].ratio) == (7, 7 / 8)
    assert (stats["conv2"].selected, stats["conv2"].ratio) == (6, 6 / 8)
    changes = method.after_epoch(ctx, 0, 0.5)
    assert [c.units for c in changes] == [{"conv1": (8, 16)}]
    assert ctx.model.unit("conv1").width == 16 and ctx.model.unit("conv2").width == 8
    # The Γ of the old filters is carried over; the new filters start unselected.
    gamma = ctx.optimizer.state[conv1.weight]["gamma"]
    assert gamma.shape[0] == 16 and gamma[:7].eq(1).all() and gamma[7:].eq(0).all()


def test_residual_unit_at_exactly_the_threshold_triggers():
    # A stage of 4 blocks has 5 producers (4 conv2 + the projection): 48 of 5 × 12 filters
    # selected is a ratio of exactly 0.8, which (48 / 5) / 12 = 0.7999999999999999 missed.
    spec = {**tiny_spec(), "model": {"family": "resnet", "stem": 4,
                                     "stages": [{"width": 12, "stride": 1, "blocks": [4, 4, 4, 4]}]},
            "growth": {"every": 1, "threshold": 0.8, "residual_add": 4}}
    job = parse_spec(spec)
    method = METHODS["grow"](job)
    ctx = _build(job, method, None)
    stage = ctx.model.unit("stage1")
    for k, (conv, _) in enumerate(stage.producers):
        gamma = torch.zeros_like(conv.weight)
        gamma[: 8 if k == 0 else 10] = 1.0  # 8 + 4 · 10 = 48 selected
        ctx.optimizer.state[conv.weight]["gamma"] = gamma
    stats = {s.name: s for s in ctx.unit_stats()}
    assert stats["stage1"].ratio == 0.8
    changes = method.after_epoch(ctx, 0, 0.5)
    assert changes and changes[0].units["stage1"] == (12, 16)


@pytest.mark.parametrize(("stop", "finetune_lr"), [(3, 0.1 * 0.1), (7, 0.01 * 0.1), (12, 0.001 * 0.1)])
def test_finetuning_is_slower_than_the_growth_it_follows(stop: int, finetune_lr: float):
    # lr 0.1 decayed ×0.1 at epochs 5 and 10: fine-tuning takes the factor of the last growth lr,
    # so a run that grew past a milestone never fine-tunes faster than it last grew.
    job = parse_spec(tiny_spec(train={"epochs": 20, "lr": 0.1, "lr_milestones": [5, 10], "lr_gamma": 0.1},
                               growth={"finetune_epochs": 2, "finetune_lr_factor": 0.1}))
    method = METHODS["grow"](job)
    assert method.schedule(stop - 1) == ("grow", pytest.approx(finetune_lr / 0.1))  # the last growth epoch
    method.finetune_start = stop  # what after_epoch sets when no unit triggers at epoch stop - 1
    assert method.schedule(stop) == ("finetune", pytest.approx(finetune_lr))
    assert method.schedule(stop + 1) == ("finetune", pytest.approx(finetune_lr))
    assert method.schedule(stop + 2) is None


def test_growth_stops_the_first_time_no_unit_triggers_then_finetunes():
    job = parse_spec(tiny_spec(growth={"every": 1, "threshold": 1.0, "finetune_epochs": 2},
                               optimizer={"lam": 1000.0}))
    events = []
    result = growth.run(job, events.append)
    phases = [row["phase"] for row in result["history"]]
    # With a huge λ no filter enters Γ's support in one epoch: no unit triggers, growth stops at once.
    assert result["history"][0]["units"][0]["selected"] == 0
    assert phases == ["grow", "finetune", "finetune"]
    assert [row["lr"] for row in result["history"]] == pytest.approx([0.05, 0.005, 0.005])
    assert not any(isinstance(e, ArchitectureChanged) for e in events)
    assert isinstance(events[-1], Finished) and events[-1].result["epochs"] == 3


def test_events_history_and_result_shape(tmp_path):
    events = []
    result = growth.run(tiny_spec(), events.append, checkpoint_dir=tmp_path)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == list(range(result["epochs"]))
    assert all(e.checkpoint and e.checkpoint.endswith(f"epoch-{e.epoch:05d}.pt") for e in epochs)
    assert sum(isinstance(e, CheckpointWritten) for e in events) == len(epochs)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == [
        f"epoch-{result['epochs'] - 2:05d}.pt", f"epoch-{result['epochs'] - 1:05d}.pt"]
    row = result["history"][0]
    assert set(row) >= {"epoch", "phase", "train_loss", "val_accuracy", "lr", "params", "macs", "units"}
    assert set(row["units"][0]) == {"name", "width", "selected", "ratio", "grew"}
    final = result["final"]
    assert set(final["widths"]) == {"conv1", "conv2"}
    assert 0.0 <= final["test_accuracy"] <= 1.0 and final["params"] > 0 and final["macs"] > 0
    # Widths recorded per epoch plus what grew at its end give the next epoch's widths.
    for before, after in zip(result["history"], result["history"][1:]):
        for u, v in zip(before["units"], after["units"]):
            assert u["width"] + u["grew"] == v["width"]
    # The final architecture rebuilds and matches the reported widths.
    rebuilt = growth.models.build_model(final["model"])
    assert {u.name: u.width for u in rebuilt.units()} == final["widths"]


@pytest.mark.parametrize("method", ["grow", "autogrow", "rmda", "dessilbi_prune", "dessilbi_prune_after_the_cut"])
def test_resume_from_checkpoint_gives_the_same_history(tmp_path, method):
    if method.startswith("dessilbi_prune"):
        # Pruned (and switched to SGD) at the end of epoch 2, the checkpoint resumed from; or at the end of
        # epoch 3, after the resumed run has rebuilt DessiLBI.
        epochs = 3 if method == "dessilbi_prune" else 4
        spec = {**tiny_spec(model={"layers": [8, "M", 8]}, train={"epochs": epochs}, optimizer={"lam": 0.8},
                            data={"augment": True}),
                "method": "dessilbi_prune", "prune": {"finetune_epochs": 2, "finetune_lr": 0.01}}
        spec.pop("growth")
    elif method == "grow":
        spec = tiny_spec(growth={"every": 1, "threshold": 0.25, "finetune_epochs": 2}, data={"augment": True})
    elif method == "rmda":
        # The lr milestone falls in the interrupted epoch: the resumed run must restart RMDA there too.
        spec = {**tiny_spec(train={"epochs": 6, "lr_milestones": [3]}), "method": "rmda",
                "regularizer": {"lam": 1e-3}}
        spec.pop("growth")
        spec.pop("optimizer")
    else:
        spec = {**tiny_spec(), "method": "autogrow",
                "model": {"family": "resnet", "stem": 4,
                          "stages": [{"width": 4, "stride": 1, "blocks": [4]},
                                     {"width": 8, "stride": 2, "blocks": [4]}]},
                "autogrow": {"every": 1, "patience": 3, "min_improvement": 0.0, "max_blocks": 3,
                             "finetune_epochs": 2}}
    full = growth.run(spec, checkpoint_dir=tmp_path / "full")
    if method == "rmda":
        assert len({row["lr"] for row in full["history"]}) == 2, "the scenario must cross the milestone"
    else:
        assert full["events"], "the scenario must change the architecture at least once"
    if method.startswith("dessilbi_prune"):
        assert full["events"][0]["epoch"] == (2 if method == "dessilbi_prune" else 3)

    batches = 0

    def stop_in_epoch_three() -> bool:
        nonlocal batches
        batches += 1
        return batches > 3 * 6 + 2  # 192 train samples / 32 = 6 batches an epoch

    with pytest.raises(Interrupted) as stopped:
        growth.run(spec, checkpoint_dir=tmp_path / "cut", should_stop=stop_in_epoch_three)
    assert stopped.value.epoch == 3
    latest = sorted((tmp_path / "cut").glob("epoch-*.pt"))[-1]
    assert latest.name == "epoch-00002.pt"
    resumed = growth.run(spec, checkpoint_dir=tmp_path / "cut", resume_from=latest)

    assert resumed["epochs"] == full["epochs"]
    assert resumed["events"] == full["events"]
    assert resumed["final"]["widths"] == full["final"]["widths"]
    # Same process, same threads: resuming is bit-exact, not merely close.
    drop = ("seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed["history"]] == \
        [{k: v for k, v in row.items() if k not in drop} for row in full["history"]]
    assert resumed["final"]["test_accuracy"] == full["final"]["test_accuracy"]
    assert resumed["final"]["support_test_accuracy"] == full["final"]["support_test_accuracy"]
    full_weights = torch.load(full["weights"], weights_only=True)
    resumed_weights = torch.load(resumed["weights"], weights_only=True)
    assert full_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(full_weights[k], resumed_weights[k]) for k in full_weights)


def test_same_spec_same_architecture_history():
    spec = tiny_spec(growth={"every": 1, "threshold": 0.25})
    a, b = growth.run(spec), growth.run(spec)
    assert [r["units"] for r in a["history"]] == [r["units"] for r in b["history"]]


def test_resume_with_another_spec_is_refused(tmp_path):
    growth.run(tiny_spec(), checkpoint_dir=tmp_path)
    latest = sorted(tmp_path.glob("epoch-*.pt"))[-1]
    with pytest.raises(SpecError) as err:
        growth.run(tiny_spec(seed=4), resume_from=latest)
    assert err.value.field == "resume_from"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_untrusted_checkpoint_is_refused_not_unpickled(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle executed')",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"format": 1, "x": Boom()}))
    with pytest.raises(SpecError) as err:
        growth.run(tiny_spec(), resume_from=bad)
    assert err.value.field == "resume_from"


@pytest.mark.parametrize("method", ["dense", "rmda", "prox_sgd"])
def test_fixed_architecture_methods_run(method):
    spec = {**tiny_spec(), "method": method, "regularizer": {"lam": 0.01}}
    result = growth.run(spec)
    assert result["epochs"] == 4 and not result["events"]
    assert [r["phase"] for r in result["history"]] == ["train"] * 4
    if method != "dense":
        assert 0.0 <= result["group_sparsity"] <= 1.0
        assert all(r["sparsity"] is not None for r in result["history"])


def test_l1_prune_phases_and_widths():
    spec = {**tiny_spec(), "method": "l1_prune",
            "model": {"family": "vgg", "layers": [8, "M", 8], "classifier": []},
            "train": {"epochs": 2}, "prune": {"keep": {"conv1": 0.5}, "finetune_epochs": 2, "sensitivity": True}}
    result = growth.run(spec)
    assert [r["phase"] for r in result["history"]] == ["dense", "dense", "finetune", "finetune"]
    assert result["events"] == [{"epoch": 1, "change": "prune", "units": {"conv1": [8, 4]}}]
    assert result["final"]["widths"] == {"conv1": 4, "conv2": 8}
    assert result["history"][1]["units"][0]["grew"] == -4
    assert [r["lr"] for r in result["history"][2:]] == [0.001, 0.001]
    assert set(result["sensitivity"]) == {"conv1", "conv2"}
    assert all(len(curve) == 5 for curve in result["sensitivity"].values())


def test_l1_prune_from_checkpoint_skips_dense_training(tmp_path):
    dense = growth.run(tiny_spec(method="dense", model={"layers": [8, "M", 8]}), checkpoint_dir=tmp_path)
    spec = {**tiny_spec(model={"layers": [8, "M", 8]}), "method": "l1_prune",
            "prune": {"keep": {"conv2": 0.25}, "finetune_epochs": 1, "from_checkpoint": dense["weights"]}}
    result = growth.run(spec)
    assert [r["phase"] for r in result["history"]] == ["finetune"]
    assert result["final"]["widths"]["conv2"] == 2
    bad = {**spec, "prune": {**spec["prune"], "keep": {"conv9": 0.5}}}
    with pytest.raises(SpecError, match="prune.keep.conv9"):
        growth.run(bad)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": {"family": "densenet"}}, "model.family"),
        ({"model": {"layers": [8, -2]}}, "model.layers[1]"),
        ({"growth": {"threshold": 1.5}}, "growth.threshold"),
        ({"growth": {"threshold": 0}}, "growth.threshold"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"growth": {"evry": 3}}, "growth.evry"),
        ({"method": "prune"}, "method"),
        ({"data": {"name": "cifar10", "root": "/nonexistent/cifar"}}, "data.root"),
    ],
)
def test_bad_specs_name_the_field(patch, field):
    spec = tiny_spec()
    for key, value in patch.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and key != "data" else value
    with pytest.raises(SpecError) as err:
        growth.run(spec)
    assert err.value.field == field, str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_run_neither_uses_nor_disturbs_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = growth.run(tiny_spec(train={"epochs": 1}, growth={"finetune_epochs": 0}))
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # a different global state gives the same run
    b = growth.run(tiny_spec(train={"epochs": 1}, growth={"finetune_epochs": 0}))
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
