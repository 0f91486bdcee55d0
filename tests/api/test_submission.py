"""POST /v1/jobs: spec errors and limit violations are 422s naming the field, before anything is
stored or queued; oversized bodies are 413s; an Idempotency-Key makes retries safe."""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from api_support import LiveApi, smoke_spec

pytestmark = pytest.mark.service

# queue_api's limits: max_epochs=50, max_width=256, max_params=200_000, max_request_bytes=20_000,
# max_dataset_bytes=50_000_000, max_layers=20; its data_dir holds no datasets.
SMOKE = smoke_spec()
INVALID_SPECS = [
    (smoke_spec(method="shrink"), ["body", "method"], "spec_error"),
    (smoke_spec(model={"family": "vgg", "layers": [4, "M", 0]}), ["body", "model", "layers", 2], "spec_error"),
    (smoke_spec(growth={**SMOKE["growth"], "threshold": 1.5}), ["body", "growth", "threshold"], "spec_error"),
    (smoke_spec(data={"name": "digits", "val_fraction": "a lot"}), ["body", "data", "val_fraction"], "spec_error"),
    (smoke_spec(train={"epochs": 30}, growth={**SMOKE["growth"], "finetune_epochs": 30}),
     ["body", "train", "epochs"], "limit_exceeded"),
    (smoke_spec(model={"family": "vgg", "layers": [4, "M", 300]}), ["body", "model", "layers", 2],
     "limit_exceeded"),
    (smoke_spec(model={"family": "vgg", "layers": [4], "classifier": [1000]}), ["body", "model", "classifier", 0],
     "limit_exceeded"),
    (smoke_spec(growth={**SMOKE["growth"], "max_width": 512}), ["body", "growth", "max_width"], "limit_exceeded"),
    # 9·(1·200 + 200·200 + 200·200) weights alone are > 200 000 parameters, every width within 256.
    (smoke_spec(model={"family": "vgg", "layers": [200, 200, 200]}), ["body", "model"], "limit_exceeded"),
    (smoke_spec(data={"name": "mnist", "root": "/etc"}), ["body", "data", "root"], "spec_error"),
    (smoke_spec(data={"name": "cifar10", "root": "../../artifacts"}), ["body", "data", "root"], "spec_error"),
    (smoke_spec(data={"name": "mnist", "root": "mnist"}), ["body", "data", "root"], "spec_error"),
    # 1 797 digits at 100×100 are 72 MB of float32 images.
    (smoke_spec(data={"name": "digits", "image_size": 100}), ["body", "data"], "limit_exceeded"),
    (smoke_spec(method="l1_prune", prune={"keep": {"conv1": 0.5}, "from_checkpoint": "/etc/passwd"}),
     ["body", "prune", "from_checkpoint"], "limit_exceeded"),
    # dessilbi_prune keeps the filters Γ selected: an L1 share per unit has no meaning there.
    (smoke_spec(method="dessilbi_prune", prune={"keep": {"conv1": 0.5}}), ["body", "prune", "keep"], "spec_error"),
    # Longer than a file name may be: the file system refuses to look it up (ENAMETOOLONG), not a 500.
    (smoke_spec(data={"name": "mnist", "root": "x" * 5000}), ["body", "data", "root"], "spec_error"),
    # A GPU index names a GPU of one machine; over HTTP each worker uses the GPU it was given.
    (smoke_spec(train={**SMOKE["train"], "device": "cuda:9"}), ["body", "train", "device"], "limit_exceeded"),
    (smoke_spec(train={**SMOKE["train"], "device": "cuda:0"}), ["body", "train", "device"], "limit_exceeded"),
]


@pytest.mark.parametrize(("spec", "loc", "kind"), INVALID_SPECS,
                         ids=[".".join(map(str, loc[1:])) + f"-{kind}" for _, loc, kind in INVALID_SPECS])
def test_invalid_spec_is_a_422_naming_the_field_and_nothing_is_stored(
        queue_api: LiveApi, queued_message_count: Callable[[], int], spec: dict[str, Any], loc: list[Any],
        kind: str) -> None:
    client = queue_api.user()
    response = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "k"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind and error["msg"]
    assert client.get("/v1/jobs").json()["total"] == 0
    assert queued_message_count() == 0
    # The key was not spent on the refused spec: a valid one gets a new job.
    assert client.post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": "k"}).status_code == 201


def test_a_model_deeper_than_the_layer_limit_is_refused_before_it_is_built(queue_api: LiveApi) -> None:
    deep = smoke_spec(model={"family": "vgg", "layers": [1] * 21, "classifier": []})
    response = queue_api.user().post("/v1/jobs", json=deep)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "model"] and error["type"] == "limit_exceeded"
    assert "21 layers" in error["msg"] and "at most 20" in error["msg"]
    at_limit = smoke_spec(model={"family": "vgg", "layers": [1] * 20, "classifier": []})
    assert queue_api.user().post("/v1/jobs", json=at_limit).status_code == 201


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_the_devices_a_worker_can_honour_are_accepted(queue_api: LiveApi, device: str) -> None:
    response = queue_api.user().post("/v1/jobs", json=smoke_spec(train={**SMOKE["train"], "device": device}))
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["train"]["device"] == device


@pytest.mark.parametrize(("content", "loc", "kind"), [
    (b"{not json", ["body", 1], "json_invalid"),
    (b"[1, 2]", ["body"], "dict_type"),
    (b'{"method": "grow"}', ["body", "model"], "spec_error"),
    (b'{"method": "grow", "model": {"family": "vgg", "layers": [4]}, "data": {}, "colour": 1}',
     ["body", "colour"], "spec_error"),
])
def test_malformed_bodies_are_422s(queue_api: LiveApi, content: bytes, loc: list[Any], kind: str) -> None:
    response = queue_api.user().post("/v1/jobs", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind


def test_a_body_over_the_size_limit_is_a_413_declared_or_streamed(
        queue_api: LiveApi, queued_message_count: Callable[[], int]) -> None:
    client = queue_api.user()
    big = smoke_spec(data={"name": "digits", "root": "x" * 25_000})
    declared = client.post("/v1/jobs", json=big)
    assert declared.status_code == 413
    assert "20000 bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: the server counts what arrives
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 4096):
            yield payload[start:start + 4096]

    streamed = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert client.get("/v1/jobs").json()["total"] == 0
    assert queued_message_count() == 0


def test_idempotency_key_returns_the_same_job(queue_api: LiveApi, queued_message_count: Callable[[], int]) -> None:
    alice, bob = queue_api.user("alice"), queue_api.user("bob")
    first = alice.post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": "retry-me"})
    again = alice.post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": "retry-me"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert alice.get("/v1/jobs").json()["total"] == 1
    # The same spec written differently (defaults spelled out) is the same spec.
    explicit = again.json()["spec"]
    assert alice.post("/v1/jobs", json=explicit, headers={"Idempotency-Key": "retry-me"}).status_code == 200

    # Another owner's key space is separate.
    other = bob.post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": "retry-me"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]

    # The same key with a different spec is refused, naming the header.
    changed = alice.post("/v1/jobs", json=smoke_spec(seed=7), headers={"Idempotency-Key": "retry-me"})
    assert changed.status_code == 422
    (error,) = changed.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"] and error["type"] == "idempotency_key_reused"
    assert first.json()["id"] in error["msg"]
    assert alice.get("/v1/jobs").json()["total"] == 1
    # Without a key every POST is a new job.
    assert alice.post("/v1/jobs", json=SMOKE).json()["id"] != first.json()["id"]
    assert alice.get("/v1/jobs").json()["total"] == 2


def test_concurrent_retries_with_one_key_create_one_job(queue_api: LiveApi) -> None:
    key = queue_api.key("dave")

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=queue_api.url, headers={"Authorization": f"Bearer {key}"}) as client:
            return client.post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": "race"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(submit, range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert queue_api.client(key).get("/v1/jobs").json()["total"] == 1


@pytest.mark.parametrize("key", ["", "a" * 201, "has space", "tab\there"])
def test_malformed_idempotency_keys_are_422s(queue_api: LiveApi, key: str) -> None:
    response = queue_api.user().post("/v1/jobs", json=SMOKE, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
