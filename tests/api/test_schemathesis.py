"""Property-based tests of the whole API against its own OpenAPI schema (Schemathesis).

Every operation is called with generated parameters, headers and bodies over
real HTTP; each response must not be a 5xx and must match the schema: status
code documented, content type documented, body valid against the response
model, the ``Allow`` header of a 405 right, schema-violating requests refused,
and unauthenticated variants refused (the ``ignored_auth`` check).
"""
from __future__ import annotations

import os
import secrets
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.cli.server import BackgroundServer, free_port
from api_support import smoke_spec

pytestmark = pytest.mark.service

# Small enough for about half a minute; raise it for a deeper search (e.g. 500 before a release).
MAX_EXAMPLES = int(os.environ.get("NETGROW_SCHEMATHESIS_EXAMPLES", "25"))

# The key is chosen here and stored by the fixture, so that Schemathesis knows it from the start and
# authenticates every phase itself (and knows which requests lack it on purpose).
API_KEY = "ng_" + secrets.token_urlsafe(32)


def _openapi() -> dict:
    # The schema does not depend on settings; an app that is never served produces it at import,
    # and test_the_server_publishes_this_schema checks that the live server serves the same document.
    from app.main import create_app
    from worker.store.settings import Settings

    return create_app(Settings(database_url="sqlite://", broker_url=None), run_jobs=False).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI, config=schemathesis.Config.from_dict({"auth": {"openapi": {"ApiKey": {"bearer": API_KEY}}}}))

# A schema-valid spec body can still be refused with a 422: the model must be a buildable network and
# the job must fit the server's limits, which JSON schema cannot say; an uploaded file must be a readable
# dataset, which "format: binary" cannot say either. That one check is skipped there.
SEMANTIC_BODY = {"POST /v1/jobs", "POST /v1/datasets"}
STATUSES: defaultdict[str, set[int]] = defaultdict(set)


@pytest.fixture(scope="module")
def server_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server on the shared PostgreSQL database that stores jobs but runs none (no worker, no broker)."""
    from app.main import create_app
    from worker.store.models import ApiKey
    from worker.store.session import session_scope
    from worker.store.keys import hash_key
    from worker.store.settings import Settings

    settings = Settings(database_url=pg_url, broker_url=None, artifact_dir=tmp_path_factory.mktemp("artifacts"),
                        data_dir=tmp_path_factory.mktemp("datasets"),
                        max_epochs=20, max_width=64, max_params=100_000, max_request_bytes=50_000)
    with session_scope(pg_url) as session:
        session.add(ApiKey(owner="schemathesis", key_hash=hash_key(API_KEY), prefix=API_KEY[:12]))
        session.commit()
    app = create_app(settings, run_jobs=False, sse_poll_seconds=0.05, sse_heartbeat_seconds=0.2)
    with BackgroundServer(app, free_port()) as server:
        # One real job of this owner, so that listing and filtering have something to return.
        httpx.post(f"{server.url}/v1/jobs", json=smoke_spec(), headers={"Authorization": f"Bearer {API_KEY}"},
                   timeout=60).raise_for_status()
        yield server.url


def test_the_server_publishes_this_schema(server_url: str) -> None:
    assert httpx.get(f"{server_url}/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, server_url: str) -> None:
    excluded = [positive_data_acceptance] if case.operation.label in SEMANTIC_BODY else []
    response = case.call_and_validate(base_url=server_url, excluded_checks=excluded, timeout=30)
    STATUSES[case.operation.label].add(response.status_code)


def test_generated_requests_got_past_authentication() -> None:
    """Runs after the property test (file order): it must have exercised more than the 401 path."""
    assert STATUSES, "the property test did not run"
    assert {201, 401, 422} <= STATUSES["POST /v1/jobs"]
    assert {200, 401, 422} <= STATUSES["GET /v1/jobs"]
    assert {404, 422} <= STATUSES["GET /v1/jobs/{job_id}/history"]  # generated ids are nobody's jobs
