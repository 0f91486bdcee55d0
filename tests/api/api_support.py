"""What the API tests share besides fixtures: the live server, its clients, specs and stream readers.

Imported as ``api_support`` (pytest puts this folder on ``sys.path``); the
fixtures that start servers are in conftest.py next to it.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.cli.server import BackgroundServer, free_port
from app.sse import SSEMessage, parse_sse

REPO = Path(__file__).resolve().parents[2]
SMOKE_SPEC: dict[str, Any] = json.loads((REPO / "examples" / "smoke.json").read_text())
TERMINAL = ("succeeded", "failed", "canceled")


def smoke_spec(**changes: Any) -> dict[str, Any]:
    """examples/smoke.json (a 6-epoch growth job on digits) with top-level sections replaced."""
    spec = json.loads(json.dumps(SMOKE_SPEC))
    spec.update(changes)
    return spec


def dense_spec() -> dict[str, Any]:
    spec = smoke_spec(method="dense")
    del spec["growth"]
    return spec


@dataclass
class LiveApi:
    """A running server and what the tests need to talk to it."""

    url: str
    settings: Any
    clients: list[httpx.Client] = field(default_factory=list)

    def key(self, owner: str) -> str:
        from worker.store.session import session_scope
        from worker.store.keys import create_key

        with session_scope(self.settings.database_url) as session:
            return create_key(session, owner)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def user(self, owner: str | None = None) -> httpx.Client:
        """A client authenticated as a new owner."""
        return self.client(self.key(owner or f"user-{uuid.uuid4().hex[:8]}"))


def read_events(client: httpx.Client, job_id: str, *, last_event_id: int | None = None,
                stop: Callable[[SSEMessage], bool] | None = None) -> list[SSEMessage]:
    """Read a job's SSE stream until the server ends it (or ``stop`` says so)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    messages = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                       timeout=httpx.Timeout(30, read=120)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in parse_sse(response.iter_lines()):
            messages.append(message)
            if stop is not None and stop(message):
                break
    return messages


def wait_finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """Follow the job's event stream to its end and return the job."""
    read_events(client, job_id)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] in TERMINAL, job
    return job


@contextmanager
def running_api(settings: Any, *, run_jobs: bool) -> Iterator[LiveApi]:
    from app.main import create_app

    app = create_app(settings, run_jobs=run_jobs, sse_poll_seconds=0.05, sse_heartbeat_seconds=0.5)
    with BackgroundServer(app, free_port()) as server:
        api = LiveApi(server.url, settings)
        try:
            yield api
        finally:
            for client in api.clients:
                client.close()
