"""When DessiLBI growth ends: at the first check without a trigger, or when the training loss plateaus."""
from __future__ import annotations

import math

import pytest
import torch

import growth
from growth import Interrupted, SpecError
from growth.engine import _build
from growth.methods import METHODS
from growth.methods.grow import plateaued
from growth.spec import parse_spec
from growth_specs import tiny_spec

# J = 2: checks at epochs 1, 3, 5, 7. Relative changes over J epochs at those checks:
# (none at 1), |0.65 − 0.8| / 0.8 = 0.1875, |0.597 − 0.65| / 0.65 ≈ 0.082, |0.594 − 0.597| / 0.597 ≈ 0.005.
LOSSES = [1.0, 0.8, 0.7, 0.65, 0.6, 0.597, 0.595, 0.594, 0.593, 0.592]


def test_plateaued_compares_the_loss_with_the_one_j_epochs_back():
    assert not plateaued([1.0], every=1, tol=0.5)  # nothing one epoch back: the first check never stops
    assert not plateaued([1.0, 1.0], every=2, tol=0.5)
    assert plateaued([1.0, 9.0, 0.875], every=2, tol=0.25)  # |0.875 − 1| / 1 = 0.125; epoch 1 is not looked at
    assert not plateaued([1.0, 0.875, 9.0], every=2, tol=0.25)
    # Strictly below the tolerance: a change of exactly 0.25 (exact in binary) is not a plateau.
    assert not plateaued([1.0, 0.5, 0.75], every=2, tol=0.25)
    assert plateaued([1.0, 0.5, 0.75], every=2, tol=0.2500001)
    assert plateaued([2.0, 2.25], every=1, tol=0.2500001)  # an increase counts as change too: 0.25 / 2 = 0.125
    assert not plateaued([2.0, 2.25], every=1, tol=0.125)
    assert plateaued([0.0, 0.0], every=1, tol=0.01)  # a loss that reached zero has stopped changing
    assert not plateaued([1.0, math.nan], every=1, tol=0.5)  # a diverged run never counts as converged


def _stop_epoch(spec: dict, losses: list[float], select: bool) -> int | None:
    """Drive ``Grow.after_epoch`` through ``losses`` (one per epoch) on a real context; the first fine-tune epoch.

    ``select``: before every check, Γ selects every filter of every unit (all units trigger);
    otherwise Γ stays zero (no unit ever triggers).
    """
    method, ctx = _grow_run(spec)
    for epoch, loss in enumerate(losses):
        assert method.schedule(epoch)[0] == "grow"
        _end_epoch(method, ctx, epoch, loss, select)
        if method.finetune_start is not None:
            return method.finetune_start
    return None


def _grow_run(spec: dict):
    job = parse_spec(spec)
    method = METHODS["grow"](job)
    return method, _build(job, method, None)


def _end_epoch(method, ctx, epoch: int, loss: float, select: bool) -> None:
    """One epoch's end as the engine runs it: Γ set (every filter selected, or left), then the check."""
    if select:
        for unit in ctx.model.units():
            for conv, _ in unit.producers:
                ctx.optimizer.state[conv.weight]["gamma"] = torch.ones_like(conv.weight)
    ctx.train_loss = loss
    method.after_epoch(ctx, epoch, 0.5)
    ctx.history.append({"epoch": epoch, "train_loss": loss})


def _growth(**growth_fields):
    return tiny_spec(train={"epochs": 20}, growth={"every": 2, "threshold": 0.8, **growth_fields})


def test_no_trigger_stops_at_the_first_check_without_a_trigger():
    assert _stop_epoch(_growth(stop="no_trigger"), LOSSES, select=False) == 2  # check at epoch 1


def test_plateau_grows_through_checks_without_a_trigger_until_the_loss_plateaus():
    assert _stop_epoch(_growth(stop="plateau", plateau_tol=0.01), LOSSES, select=False) == 8  # check at 7
    assert _stop_epoch(_growth(stop="plateau", plateau_tol=0.1), LOSSES, select=False) == 6  # 0.082 < 0.1 at 5
    assert _stop_epoch(_growth(stop="plateau", plateau_tol=0.2), LOSSES, select=False) == 4  # 0.1875 < 0.2 at 3
    assert _stop_epoch(_growth(stop="plateau", plateau_tol=0.001), LOSSES, select=False) is None  # never here


def test_plateau_stops_growth_that_still_triggers_and_widens_nothing_at_that_check():
    spec = _growth(stop="plateau", plateau_tol=0.01, max_width=512)
    method, ctx = _grow_run(spec)
    widths = []
    for epoch, loss in enumerate(LOSSES):
        _end_epoch(method, ctx, epoch, loss, select=True)
        widths.append(ctx.model.unit("conv1").width)
        if method.finetune_start is not None:
            break
    # 4 filters, +2 at the checks at epochs 1, 3 and 5; the plateau at 7 stops growth without widening.
    assert method.finetune_start == 8
    assert widths == [4, 6, 6, 8, 8, 10, 10, 10]


def test_under_no_trigger_units_that_trigger_keep_growing():
    assert _stop_epoch(_growth(stop="no_trigger"), LOSSES, select=True) is None


def test_plateau_stops_when_every_unit_is_at_max_width():
    # Seed width 4 = max_width: nothing can grow, and the loss has not plateaued; growth ends at the first check.
    assert _stop_epoch(_growth(stop="plateau", plateau_tol=0.01, max_width=4), LOSSES, select=False) == 2


@pytest.mark.parametrize(("patch", "field"), [({"stop": "sometimes"}, "growth.stop"),
                                               ({"plateau_tol": 0}, "growth.plateau_tol"),
                                               ({"plateau_tol": -0.1}, "growth.plateau_tol"),
                                               ({"plateau_tol": "small"}, "growth.plateau_tol")])
def test_bad_stop_fields_name_the_field(patch, field):
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec(growth=patch))
    assert err.value.field == field


def test_the_default_is_the_authors_rule():
    g = parse_spec(tiny_spec()).growth
    assert (g.stop, g.plateau_tol) == ("no_trigger", 0.01)


# A real run where no unit ever triggers (λ so large that no filter enters Γ's support).
NO_TRIGGER = {"every": 1, "threshold": 1.0, "finetune_epochs": 2}


def test_a_real_run_stops_where_each_rule_says():
    # At lr 0.01 the loss falls by 3–9 % an epoch; 0.04 is first undercut after a few epochs.
    base = tiny_spec(train={"epochs": 10, "lr": 0.01}, optimizer={"lam": 1000.0})
    authors = growth.run({**base, "growth": {**NO_TRIGGER, "stop": "no_trigger"}})
    paper = growth.run({**base, "growth": {**NO_TRIGGER, "stop": "plateau", "plateau_tol": 0.04}})
    assert [r["phase"] for r in authors["history"]] == ["grow", "finetune", "finetune"]
    phases = [r["phase"] for r in paper["history"]]
    grown = phases.count("grow")
    assert phases == ["grow"] * grown + ["finetune"] * 2
    assert all(unit["selected"] == 0 for row in paper["history"] for unit in row["units"])
    losses = [r["train_loss"] for r in paper["history"]]
    # Growth ran on through checks without a trigger and ended at the first plateaued epoch.
    assert 2 < grown < 10, losses
    assert plateaued(losses[:grown], 1, 0.04)
    assert not any(plateaued(losses[:t + 1], 1, 0.04) for t in range(grown - 1))
    # Both runs are the same run up to the first check.
    assert authors["history"][0]["train_loss"] == paper["history"][0]["train_loss"]


def test_plateau_resumes_with_the_same_stop(tmp_path):
    spec = tiny_spec(train={"epochs": 10, "lr": 0.01}, optimizer={"lam": 1000.0},
                     growth={**NO_TRIGGER, "stop": "plateau", "plateau_tol": 0.04})
    full = growth.run(spec, checkpoint_dir=tmp_path / "full")
    last = [r["phase"] for r in full["history"]].count("grow") - 1  # the check that stopped growth
    assert last >= 2
    batches = 0

    def stop_in_the_last_growth_epoch() -> bool:
        nonlocal batches
        batches += 1
        return batches > last * 6 + 2  # 192 train samples / 32 = 6 batches an epoch

    with pytest.raises(Interrupted):
        growth.run(spec, checkpoint_dir=tmp_path / "cut", should_stop=stop_in_the_last_growth_epoch)
    # The resumed run decides the stop first thing, from the loss one epoch back in the checkpoint.
    resumed = growth.run(spec, resume_from=tmp_path / "cut" / f"epoch-{last - 1:05d}.pt")
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed["history"]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full["history"]]
