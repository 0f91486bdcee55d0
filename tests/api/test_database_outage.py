"""PostgreSQL unreachable: every route answers 503 with a JSON reason and Retry-After, on a kept connection.

The database sits behind a ``TcpProxy`` (the machine's PostgreSQL is shared,
so it is never stopped): cutting the proxy resets every open connection and
refuses new ones, as a stopped server would. Every operation of the OpenAPI
document is called over ONE keep-alive HTTP connection.
"""
from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from api_support import LiveApi, running_api, smoke_spec
from sqlalchemy import make_url

from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.service

NO_DATABASE = {"/healthz"}  # liveness: answers without touching the database
# A scrape that reaches the API succeeds and reports the outage as a figure (netgrow_database_up 0).
REPORTS_THE_OUTAGE = {"/metrics": b"netgrow_database_up 0"}


@pytest.fixture
def proxied_api(settings_env, fresh_pg_url: str, redis_url: str) -> Iterator[tuple[LiveApi, TcpProxy]]:
    url = make_url(fresh_pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    settings = settings_env(database_url=proxy.url_for(fresh_pg_url), broker_url=redis_url)
    try:
        with running_api(settings, run_jobs=False) as api:
            yield api, proxy
    finally:
        proxy.close()


def operations(openapi: dict[str, Any], job_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path with query, JSON body) for every operation, with a real job id and valid required values."""
    required_values = {"ids": job_id}
    calls = []
    for template, methods in openapi["paths"].items():
        for method, operation in methods.items():
            # {job_id}: the job; any other path parameter: the first value its schema allows.
            values = {p["name"]: (p.get("schema", {}).get("enum") or [job_id])[0]
                      for p in operation.get("parameters", []) if p["in"] == "path"}
            path = re.sub(r"\{([^/{}]+)\}", lambda m: str(values.get(m.group(1), job_id)), template)
            query = {p["name"]: required_values[p["name"]] for p in operation.get("parameters", [])
                     if p["in"] == "query" and p.get("required")}
            body = smoke_spec() if (method, template) == ("post", "/v1/jobs") else None
            calls.append((method.upper(), path + (f"?{urlencode(query)}" if query else ""), body))
    return calls


def test_every_route_answers_503_json_with_retry_after_and_keeps_the_connection(proxied_api):
    api, proxy = proxied_api
    client = api.user("alice")
    created = client.post("/v1/jobs", json=smoke_spec())
    assert created.status_code == 201
    job_id = created.json()["id"]
    openapi = client.get("/openapi.json").json()
    key = client.headers["Authorization"]

    proxy.cut()
    split = urlsplit(api.url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
    calls = operations(openapi, job_id)
    assert len(calls) >= 10, "the document lists every route"
    seen: dict[str, tuple[int, str]] = {}
    try:
        for method, path, body in calls:
            headers = {"Authorization": key}
            payload = None
            if body is not None:
                payload, headers["Content-Type"] = json.dumps(body), "application/json"
            connection.request(method, path, body=payload, headers=headers)
            socket_before = connection.sock
            response = connection.getresponse()
            raw = response.read()
            label = f"{method} {path}"
            if path in NO_DATABASE:
                assert response.status == 200, label
                continue
            if path.split("?")[0] in REPORTS_THE_OUTAGE:
                assert response.status == 200 and REPORTS_THE_OUTAGE[path.split("?")[0]] in raw, label
                assert connection.sock is socket_before, f"{label} closed the connection"
                continue
            seen[label] = (response.status, response.getheader("Content-Type", ""))
            assert response.status == 503, f"{label}: {response.status} {raw[:300]!r}"
            assert response.getheader("Content-Type", "").startswith("application/json"), label
            body = json.loads(raw)  # {"detail": ...}; /readyz: {"status": "unavailable", "checks": {...}}
            assert "database" in json.dumps(body.get("detail", body.get("checks"))).lower(), label
            retry_after = response.getheader("Retry-After")
            assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, label
            assert not response.will_close and connection.sock is socket_before, f"{label} closed the connection"
    finally:
        connection.close()

    proxy.heal()  # and the same routes work again, without restarting anything
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert len(seen) >= 9
