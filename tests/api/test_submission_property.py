"""Property: a spec the API accepts is one the worker can run.

For specs drawn by Hypothesis around the shapes people send (small VGG and
ResNet models, synthetic data of any channel count, size and class count,
explicit or implied ``in_channels``/``num_classes``/``input_size``, units to
prune), the API's submission check (``app.limits.parse_submission``) either
refuses with a ``SpecError`` naming a field, or accepts — and then the
library's parser accepts the spec too and one batch of the real run (data
loaded, model built, forward, backward, step) raises nothing.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

import growth
from growth.errors import Interrupted, SpecError
from growth.spec import parse_spec

DIMENSION = st.integers(1, 40)
WIDTH = st.integers(1, 6)


@st.composite
def vgg_models(draw: st.DrawFn) -> dict[str, Any]:
    model: dict[str, Any] = {"family": "vgg",
                             "layers": draw(st.lists(st.one_of(WIDTH, st.just("M")), min_size=1, max_size=6)),
                             "classifier": draw(st.lists(WIDTH, max_size=1))}
    return model


@st.composite
def resnet_models(draw: st.DrawFn) -> dict[str, Any]:
    stages = [{"width": draw(WIDTH), "blocks": draw(st.lists(WIDTH, min_size=1, max_size=2)),
               **({"stride": draw(st.integers(1, 2))} if draw(st.booleans()) else {})}
              for _ in range(draw(st.integers(1, 3)))]
    return {"family": "resnet", "stem": draw(WIDTH), "stages": stages}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.one_of(vgg_models(), resnet_models()))
    if draw(st.booleans()):
        model["in_channels"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        model["num_classes"] = draw(st.integers(2, 5))
    if draw(st.booleans()):
        model["input_size"] = draw(st.one_of(DIMENSION, st.lists(DIMENSION, min_size=2, max_size=2)))
    classes = draw(st.integers(2, 5))
    data = {"name": "synthetic", "num_classes": classes, "channels": draw(st.integers(1, 3)),
            "size": draw(st.integers(2, 24)), "samples": draw(st.integers(classes, 60)),
            "noise": draw(st.one_of(st.floats(0, 2), st.sampled_from([math.inf, 1e308])))}
    method = draw(st.sampled_from(["grow", "dense", "l1_prune", "dessilbi_prune", "rmda", "prox_sgd"]))
    spec: dict[str, Any] = {"method": method, "seed": draw(st.integers(0, 3)), "model": model, "data": data,
                            "train": {"epochs": draw(st.integers(1, 2)), "batch_size": draw(st.integers(1, 16)),
                                      "lr": 0.05, "device": "cpu"}}
    if method == "grow":
        spec["growth"] = {"every": 1, "finetune_epochs": 0, "max_width": 16}
    if method == "l1_prune":
        units = st.sampled_from(["conv1", "conv2", "conv3", "conv9", "stem", "stage1", "stage1.block1", "stage2"])
        spec["prune"] = {"keep": draw(st.dictionaries(units, st.floats(0.1, 1.0), min_size=1, max_size=2)),
                         "finetune_epochs": 1}
    if method == "dessilbi_prune":
        spec["prune"] = {"finetune_epochs": 1}
    return spec


@pytest.fixture(scope="module")
def server_settings(tmp_path_factory: pytest.TempPathFactory):
    from worker.store.settings import Settings

    folder = tmp_path_factory.mktemp("property")
    return Settings(artifact_dir=folder / "artifacts", data_dir=folder / "datasets",
                    database_url=f"sqlite:///{folder / 'unused.db'}", broker_url=None)


def one_batch(spec: dict[str, Any]) -> None:
    """The worker's code path for exactly one training batch: ``growth.run`` stopped at the next batch boundary."""
    polls = [0]

    def after_one_batch() -> bool:
        polls[0] += 1
        return polls[0] > 1

    try:
        growth.run(spec, should_stop=after_one_batch)  # a job of one batch in all simply finishes
    except Interrupted:
        assert polls[0] == 2  # stopped after exactly one batch


@hypothesis_settings(max_examples=30, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=specs())
def test_a_spec_the_api_accepts_parses_and_runs_one_batch(server_settings, spec: dict[str, Any]) -> None:
    from app.limits import parse_submission

    try:
        accepted = parse_submission(spec, server_settings)
    except SpecError as refusal:
        assert refusal.field and refusal.message  # refused, naming the field: the worker never sees it
        return
    normalised = accepted.to_dict()
    assert parse_spec(normalised).to_dict() == normalised
    one_batch(normalised)
