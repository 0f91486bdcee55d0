"""Per-owner limits: jobs queued or running, submissions per minute, stored artifact bytes (429 + Retry-After);
and /metrics behind its own token when one is set."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from api_support import LiveApi, running_api, smoke_spec

from worker.store.models import Artifact
from worker.store.session import session_factory

pytestmark = pytest.mark.service


@pytest.fixture
def limited_api(settings_env: Callable[..., Any], fresh_pg_url: str, redis_url: str) -> Iterator[LiveApi]:
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, max_active_jobs_per_owner=2,
                            max_submissions_per_minute=4, max_artifact_bytes_per_owner=1000,
                            metrics_token="scrape-secret")
    with running_api(settings, run_jobs=False) as api:
        yield api


def refused(response: httpx.Response, words: str, *, retry_after: bool = True) -> None:
    assert response.status_code == 429, response.text
    assert words in response.json()["detail"]
    if retry_after:
        assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in response.headers


def test_jobs_queued_or_running_per_owner(limited_api: LiveApi) -> None:
    alice, bob = limited_api.user("alice"), limited_api.user("bob")
    first = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]
    assert alice.post("/v1/jobs", json=smoke_spec(), headers={"Idempotency-Key": "k"}).status_code == 201
    refused(alice.post("/v1/jobs", json=smoke_spec()), "2 jobs queued or running")
    # A replay of a key is the same job, not a new one: answered at the limit too.
    assert alice.post("/v1/jobs", json=smoke_spec(), headers={"Idempotency-Key": "k"}).status_code == 200
    assert bob.post("/v1/jobs", json=smoke_spec()).status_code == 201  # another owner's jobs do not count
    assert alice.post(f"/v1/jobs/{first}/cancel").status_code == 200
    assert alice.post("/v1/jobs", json=smoke_spec()).status_code == 201
    assert alice.get("/v1/jobs").json()["total"] == 3


def test_submissions_per_minute_per_owner(limited_api: LiveApi) -> None:
    alice = limited_api.user("alice")
    for _ in range(4):
        created = alice.post("/v1/jobs", json=smoke_spec())
        assert created.status_code == 201
        alice.post(f"/v1/jobs/{created.json()['id']}/cancel")  # not active: only the rate limit is left
    response = alice.post("/v1/jobs", json=smoke_spec())
    refused(response, "4 jobs in the last minute")
    assert int(response.headers["Retry-After"]) <= 60


def test_stored_artifact_bytes_per_owner(limited_api: LiveApi) -> None:
    alice = limited_api.user("alice")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]
    alice.post(f"/v1/jobs/{job_id}/cancel")
    with session_factory(limited_api.settings.database_url)() as session:
        session.add(Artifact(job_id=uuid.UUID(job_id), kind="checkpoint", path="/x", size=1000, sha256="0" * 64,
                             epoch=0))
        session.commit()
    refused(alice.post("/v1/jobs", json=smoke_spec()), "checkpoints and weights take", retry_after=False)
    assert limited_api.user("bob").post("/v1/jobs", json=smoke_spec()).status_code == 201


def test_metrics_need_their_token_when_one_is_set(limited_api: LiveApi) -> None:
    url = f"{limited_api.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    key = limited_api.key("alice")  # an API key is not the metrics token
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    scraped = httpx.get(url, headers={"Authorization": "Bearer scrape-secret"})
    assert scraped.status_code == 200 and "netgrow_jobs" in scraped.text
