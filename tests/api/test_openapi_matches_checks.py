"""The OpenAPI document is generated from the definitions the checks use, so it is never looser than they are.

Every string field of a spec section: a value the schema allows is one the
parser accepts, and the reverse. The event stream documents its messages with
the schemas of the growth events the worker records.
"""
from __future__ import annotations

import dataclasses
import json
import typing

import jsonschema_rs
import pytest
from api_support import LiveApi, read_events, smoke_spec

from growth.errors import SpecError
from growth.events import EpochEnd, UnitStat
from growth.spec import JobSpec, parse_spec

pytestmark = pytest.mark.service

PROBES = ["gaussian", "zero", "uniform", "auto", "cpu", "cuda", "cuda:1", "cuda:x", "tpu", "", "GAUSSIAN",
          "cpu\n"]


def string_fields() -> list[tuple[str, str]]:
    hints = typing.get_type_hints(JobSpec)
    return [(section, field.name) for section, hint in hints.items() if dataclasses.is_dataclass(hint)
            for field in dataclasses.fields(hint) if typing.get_type_hints(hint)[field.name] is str]


def test_every_string_field_of_the_schema_allows_exactly_what_the_parser_accepts(queue_api: LiveApi) -> None:
    document = queue_api.client().get("/openapi.json").json()
    schema = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = string_fields()
    assert ("autogrow", "initializer") in fields and ("train", "device") in fields
    for section, name in fields:
        field_schema = jsonschema_rs.validator_for(schema["properties"][section]["properties"][name])
        for value in PROBES:
            spec = smoke_spec(**{section: {name: value}})
            try:
                parse_spec(spec)
                accepted = True
            except SpecError as exc:
                accepted = exc.field != f"{section}.{name}"
            assert field_schema.is_valid(value) == accepted, f"{section}.{name} = {value!r}"


def test_the_event_stream_documents_its_messages(queue_api: LiveApi) -> None:
    client = queue_api.user()
    document = client.get("/openapi.json").json()
    content = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    message = jsonschema_rs.validator_for(content["text/event-stream"]["itemSchema"])
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    streamed = read_events(client, job_id)
    assert [m.event for m in streamed] == ["state", "state"]
    for sse in streamed:
        assert message.is_valid({"event": sse.event, "id": sse.id, "data": json.loads(sse.data)}), sse
    epoch = EpochEnd(epoch=0, phase="grow", train_loss=0.5, val_accuracy=0.9, lr=0.1, params=10, macs=20,
                     seconds=1.0, units=[UnitStat("conv1", 4, 3, 0.75)]).to_dict()
    epoch.pop("checkpoint")
    assert message.is_valid({"event": "epoch", "id": "7", "data": epoch})
    assert not message.is_valid({"event": "epoch", "id": "7", "data": {**epoch, "units": "conv1"}})
    assert not message.is_valid({"event": "lunch", "id": "7", "data": {}})
