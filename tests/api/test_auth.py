"""Every /v1 endpoint needs a valid key, and a key sees only its owner's jobs."""
from __future__ import annotations

import uuid

import httpx
import pytest

from api_support import LiveApi, smoke_spec

pytestmark = pytest.mark.service

V1_REQUESTS = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/history"),
    ("GET", "/v1/jobs/{id}/architecture"),
    ("GET", "/v1/jobs/{id}/result"),
    ("GET", "/v1/jobs/{id}/events"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("POST", "/v1/jobs/{id}/retry"),
    ("GET", "/v1/jobs/{id}/artifacts/weights"),
    ("GET", "/v1/compare?ids={id}"),
]


def _call(client: httpx.Client, method: str, path: str, job_id: str) -> httpx.Response:
    body = smoke_spec() if method == "POST" and path == "/v1/jobs" else None
    return client.request(method, path.format(id=job_id), json=body)


def test_every_v1_endpoint_refuses_a_missing_or_bad_key(queue_api: LiveApi) -> None:
    alice = queue_api.user("alice")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]
    revoked_key = queue_api.key("mallory")
    from worker.store.session import session_scope
    from worker.store.keys import revoke_key

    with session_scope(queue_api.settings.database_url) as session:
        assert revoke_key(session, revoked_key[:12]) == 1
    anonymous = queue_api.client()
    for headers in ({}, {"Authorization": "Bearer ng_not-a-key"}, {"Authorization": f"Bearer {revoked_key}"},
                    {"Authorization": f"Basic {revoked_key}"}):
        anonymous.headers.clear()
        anonymous.headers.update(headers)
        for method, path in V1_REQUESTS:
            response = _call(anonymous, method, path, job_id)
            assert response.status_code == 401, (headers, method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["detail"]
    # Nothing was submitted by the refused POSTs.
    assert alice.get("/v1/jobs").json()["total"] == 1


def test_another_owners_job_is_not_found(queue_api: LiveApi) -> None:
    alice, bob = queue_api.user("alice"), queue_api.user("bob")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]
    for method, path in V1_REQUESTS:
        if path == "/v1/jobs":
            continue
        response = _call(bob, method, path, job_id)
        assert response.status_code == 404, (method, path, response.text)
    assert bob.get("/v1/jobs").json() == {"items": [], "total": 0, "limit": 5, "offset": 0}
    # ... while for its owner the job is there, and a random id is a 404 for everyone.
    assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
    assert alice.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404


def test_two_keys_of_one_owner_share_the_jobs(queue_api: LiveApi) -> None:
    first, second = queue_api.client(queue_api.key("carol")), queue_api.client(queue_api.key("carol"))
    job_id = first.post("/v1/jobs", json=smoke_spec()).json()["id"]
    assert second.get(f"/v1/jobs/{job_id}").json()["id"] == job_id


def test_probes_and_metrics_need_no_key(queue_api: LiveApi) -> None:
    assert httpx.get(f"{queue_api.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{queue_api.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    assert "netgrow_queue_depth" in httpx.get(f"{queue_api.url}/metrics").text


def test_readiness_names_the_failing_dependency_without_its_error(settings_env, caplog) -> None:
    from app.cli.server import BackgroundServer, free_port
    from app.main import create_app

    # Unauthenticated callers must not learn hosts, ports, database names or passwords from the probe.
    secrets = ("127.0.0.1", "5432", "netgrow_no_such_database", "hunter2", "6379", "Error")
    settings = settings_env(database_url="postgresql+psycopg://postgres@127.0.0.1:5432/netgrow_no_such_database",
                            broker_url="redis://:hunter2@127.0.0.1:1/0")
    with BackgroundServer(create_app(settings, run_jobs=False, check_schema=False), free_port()) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable",
                            "checks": {"database": "database unreachable", "broker": "broker unreachable"}}
    assert not [secret for secret in secrets if secret in ready.text]
    # The details are in the server's log instead.
    assert "the database did not answer" in caplog.text and "netgrow_no_such_database" in caplog.text
    assert "the broker did not answer" in caplog.text
