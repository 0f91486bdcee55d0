"""Every spec a worker would refuse is refused at submission: 422 naming the field, nothing stored.

The API runs the checks the worker runs (the model built on the meta device
for the data's image shape and class count, and a shape probe through it), so
these cases are not a second list of rules: each one used to be accepted (or
answered 500) and then fail on the worker.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from api_support import LiveApi, smoke_spec

pytestmark = pytest.mark.service

SMOKE = smoke_spec()
EIGHT_PIXELS = {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 60}

REFUSED = [
    ("in_channels", smoke_spec(model={**SMOKE["model"], "in_channels": 3}), ["body", "model", "in_channels"]),
    ("input_size", smoke_spec(model={"family": "vgg", "layers": [4, "M", 4, "M", 4, "M", 4, "M"], "classifier": [],
                                     "input_size": [64, 64]}, data=EIGHT_PIXELS),
     ["body", "model", "input_size"]),
    ("four pools on 8 pixels", smoke_spec(model={"family": "vgg", "layers": [4, "M", 4, "M", 4, "M", 4, "M"],
                                                 "classifier": []}, data=EIGHT_PIXELS),
     ["body", "model", "layers"]),
    ("num_classes", smoke_spec(model={**SMOKE["model"], "num_classes": 2}), ["body", "model", "num_classes"]),
    ("unknown unit to prune", {**smoke_spec(method="l1_prune", prune={"keep": {"conv9": 0.5}}), "growth": None},
     ["body", "prune", "keep", "conv9"]),
]


@pytest.mark.parametrize(("spec", "loc"), [pytest.param(spec, loc, id=name) for name, spec, loc in REFUSED])
def test_a_spec_the_worker_would_refuse_is_a_422_naming_the_field(
        queue_api: LiveApi, queued_message_count: Callable[[], int], spec: dict[str, Any], loc: list[Any]) -> None:
    spec = {key: value for key, value in spec.items() if value is not None}
    client = queue_api.user()
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][:len(loc)] == loc and error["msg"], error
    assert client.get("/v1/jobs").json()["total"] == 0 and queued_message_count() == 0


@pytest.mark.parametrize("noise", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_a_non_finite_number_is_a_422_not_a_stored_null(queue_api: LiveApi, noise: str) -> None:
    body = json.dumps(smoke_spec(data=EIGHT_PIXELS))
    body = body.replace('"samples": 60', f'"samples": 60, "noise": {noise}')
    client = queue_api.user()
    response = client.post("/v1/jobs", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][:3] == ["body", "data", "noise"], error
    assert client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_sent_with_the_wrong_content_type_is_refused_naming_it(queue_api: LiveApi,
                                                                      content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = queue_api.user().post("/v1/jobs", content=json.dumps(SMOKE).encode(), headers=headers)
    assert response.status_code == 415, response.text
    assert "content-type" in response.text.lower() and "application/json" in response.text


def test_the_cases_above_are_valid_json_otherwise(queue_api: LiveApi) -> None:
    # The refused specs differ from accepted ones in the one field each test names.
    client = queue_api.user()
    assert client.post("/v1/jobs", json=smoke_spec(model={**SMOKE["model"], "in_channels": 1})).status_code == 201
    assert client.post("/v1/jobs", json=smoke_spec(model={**SMOKE["model"], "num_classes": 10})).status_code == 201
    fine = smoke_spec(model={"family": "vgg", "layers": [4, "M", 4, "M", 4, "M"], "classifier": []},
                      data=EIGHT_PIXELS)
    assert client.post("/v1/jobs", json=fine).status_code == 201
