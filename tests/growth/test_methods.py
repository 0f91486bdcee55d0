"""The method registry is the one list of methods: the job format and the epoch budget ask it."""
from __future__ import annotations

import pytest

from growth import SpecError
from growth.methods import METHODS, Method
from growth.spec import parse_spec
from growth_specs import tiny_spec

RESNET = {"family": "resnet", "stem": 4, "stages": [{"width": 4, "stride": 1, "blocks": [4]}]}

def spec(method: str, **sections: dict) -> dict:
    return {**tiny_spec(method=method, train={"epochs": 5}), **sections}


SPECS = {
    "grow": spec("grow", growth={"finetune_epochs": 3}),
    "dense": spec("dense"),
    "l1_prune": spec("l1_prune", prune={"keep": {"conv1": 0.5}, "finetune_epochs": 3}),
    "l1_prune_from_checkpoint": spec("l1_prune", prune={"from_checkpoint": "dense.pt", "finetune_epochs": 3}),
    "dessilbi_prune": spec("dessilbi_prune", prune={"finetune_epochs": 3}),
    "autogrow": spec("autogrow", autogrow={"finetune_epochs": 3}, model=RESNET),
    "rmda": spec("rmda"),
    "prox_sgd": spec("prox_sgd"),
}


def scheduled_epochs(method: Method) -> int:
    """Epochs ``schedule`` yields when nothing ends a phase early (no after_epoch feedback)."""
    epoch = 0
    while method.schedule(epoch) is not None:
        epoch += 1
    return epoch


@pytest.mark.parametrize("case", sorted(SPECS))
def test_the_epoch_budget_is_what_the_schedule_allows(case: str) -> None:
    job = parse_spec(SPECS[case])
    assert job.total_epochs == scheduled_epochs(METHODS[job.method](job))
    assert job.total_epochs == {"l1_prune_from_checkpoint": 3, "dense": 5, "rmda": 5, "prox_sgd": 5}.get(case, 8)


def test_every_registered_method_has_a_budget_case() -> None:
    assert set(METHODS) <= set(SPECS)


def test_a_newly_registered_method_is_accepted_and_counted() -> None:
    for unknown in ("twice", ["grow"]):
        with pytest.raises(SpecError) as err:
            parse_spec(tiny_spec(method=unknown))
        assert err.value.field == "method"

    class Twice(Method):
        name = "twice"

        @classmethod
        def epoch_budget(cls, spec):
            return 2 * spec.train.epochs

    try:
        assert parse_spec(tiny_spec(method="twice")).total_epochs == 8
    finally:
        del Method.registry["twice"]
    with pytest.raises(SpecError):
        parse_spec(tiny_spec(method="twice"))
