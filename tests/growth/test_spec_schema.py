"""The JSON schemas of model and data specs say what their validators check, field by field."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from growth.data.spec import data_json_schema, validate_data_spec
from growth.errors import SpecError
from growth.models import build_model, model_json_schema, validate_model_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
MODEL = jsonschema_rs.validator_for(model_json_schema())
DATA = jsonschema_rs.validator_for(data_json_schema())
IO = {"in_channels": 1, "num_classes": 10}  # what a job fills in from its data


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_fits_the_schemas(example: Path) -> None:
    spec = json.loads(example.read_text())
    assert MODEL.is_valid(spec["model"]), list(MODEL.iter_errors(spec["model"]))
    assert DATA.is_valid(spec["data"]), list(DATA.iter_errors(spec["data"]))


@pytest.mark.parametrize("model", [
    {"family": "vgg", "layers": [8, "M", 8], "classifier": [16], "batch_norm": False, "input_size": [16, 12]},
    {"family": "vgg", "layers": [1], "input_size": 8, "in_channels": 3, "num_classes": 2},
    {"family": "resnet", "stem": 4, "stages": [{"width": 4, "blocks": [4]}, {"width": 8, "stride": 1, "blocks": [2, 2]}]},
])
def test_what_the_schema_accepts_builds(model: dict[str, Any]) -> None:
    assert MODEL.is_valid(model)
    build_model({**IO, **model}, device="meta")


@pytest.mark.parametrize("model", [
    {"family": "mlp", "layers": [8]},
    {"layers": [8]},
    {"family": "vgg"},
    {"family": "vgg", "layers": []},
    {"family": "vgg", "layers": [0]},
    {"family": "vgg", "layers": [8, "max"]},
    {"family": "vgg", "layers": [8, True]},
    {"family": "vgg", "layers": [8], "classifier": [-1]},
    {"family": "vgg", "layers": [8], "input_size": [8]},
    {"family": "vgg", "layers": [8], "dropout": 0.5},
    {"family": "resnet", "stem": 4, "stages": []},
    {"family": "resnet", "stem": 4, "stages": [{"width": 4, "blocks": []}]},
    {"family": "resnet", "stem": 4, "stages": [{"width": 4, "blocks": [4], "stride": 3}]},
    {"family": "resnet", "stem": 4, "stages": [{"width": 4, "blocks": [4], "depth": 2}]},
    {"family": "resnet", "stem": 4.5, "stages": [{"width": 4, "blocks": [4]}]},
])
def test_what_the_schema_refuses_the_validator_refuses(model: dict[str, Any]) -> None:
    assert not MODEL.is_valid(model)
    with pytest.raises(SpecError):
        validate_model_spec({**IO, **model})


@pytest.mark.parametrize("data", [
    {},
    {"name": "digits", "image_size": 16, "val_fraction": 0.0, "test_fraction": 0.5, "augment": True, "limit": 100},
    {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 30, "noise": 0.0},
    {"name": "cifar10", "root": "cifar-10-batches-py", "image_size": None},
    {"name": "mnist"},
    {"name": "fashion_mnist", "root": None},
    {"name": "fashion_mnist", "root": "fashion-mnist"},
])
def test_what_the_data_schema_accepts_validates(data: dict[str, Any]) -> None:
    assert DATA.is_valid(data)
    validate_data_spec(data)


@pytest.mark.parametrize("data", [
    {"name": "imagenet"},
    {"name": "cifar10"},
    {"name": "cifar100", "root": None},
    {"name": "mnist", "root": ""},
    {"name": "digits", "val_fraction": 1.0},
    {"name": "digits", "test_fraction": 0},
    {"name": "digits", "augment": "yes"},
    {"name": "digits", "limit": 0},
    {"name": "digits", "noise": 0.5},
    {"name": "synthetic", "num_classes": 1},
    {"name": "synthetic", "size": 1},
    {"name": "digits", "shuffle": True},
])
def test_what_the_data_schema_refuses_the_validator_refuses(data: dict[str, Any]) -> None:
    assert not DATA.is_valid(data)
    with pytest.raises(SpecError):
        validate_data_spec(data)
