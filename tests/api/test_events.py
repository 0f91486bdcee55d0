"""The SSE stream: resumable with Last-Event-ID, heartbeats while idle, ends after the terminal state."""
from __future__ import annotations

import httpx
import pytest

from app.sse import parse_sse
from api_support import LiveApi, read_events, smoke_spec

pytestmark = pytest.mark.service


def test_reconnecting_with_last_event_id_continues_where_it_stopped(embedded_api: LiveApi) -> None:
    client = embedded_api.user()
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    everything = read_events(client, job_id)
    assert everything[-1].event == "state" and everything[-1].json()["status"] == "succeeded"

    # A client that dropped after the fourth event gets exactly the rest, once.
    cut = int(everything[3].id)
    rest = read_events(client, job_id, last_event_id=cut)
    assert [(m.id, m.event, m.data) for m in rest] == [(m.id, m.event, m.data) for m in everything[4:]]
    # One that already has the terminal event gets nothing, and the stream still ends.
    assert read_events(client, job_id, last_event_id=int(everything[-1].id)) == []
    # A Last-Event-ID that cannot be an event id is ignored: the whole stream again. That includes ids
    # beyond the 64-bit id column (SQLite cannot bind them) and non-ASCII digits ("²".isdigit() is True).
    for bad in ("soon", "9" * 30, str(2**63), "²", "-1"):
        headers = {"Last-Event-ID": bad.encode("latin-1")}  # as the bytes a client sends
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            assert response.status_code == 200
            replayed = list(parse_sse(response.iter_lines()))
        assert [(m.id, m.data) for m in replayed] == [(m.id, m.data) for m in everything], bad


def test_an_idle_stream_sends_heartbeats_and_ends_when_the_job_is_canceled(queue_api: LiveApi) -> None:
    client = queue_api.user()
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    lines: list[str] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=60)) as response:
        assert response.headers["cache-control"] == "no-cache"
        for line in response.iter_lines():
            lines.append(line)
            if line == ": heartbeat" and lines.count(line) == 1:  # queued, no worker: only heartbeats come
                assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"
        # The loop ended because the server closed the stream after the terminal event.
    messages = list(parse_sse(lines))
    assert [m.event for m in messages] == ["state", "state"]
    assert [m.json()["status"] for m in messages] == ["queued", "canceled"]
    assert lines.index(": heartbeat") < lines.index("event: state", lines.index("event: state") + 1)


def test_events_of_an_unknown_job_are_404(queue_api: LiveApi) -> None:
    response = queue_api.user().get("/v1/jobs/00000000-0000-0000-0000-000000000000/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
