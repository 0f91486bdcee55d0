"""Property-based tests of the whole API against its own OpenAPI schema (Schemathesis).

Every operation is called with generated parameters, headers and bodies over
real HTTP; each response must not be a 5xx and must match the schema: status
code documented, content type documented, body valid against the response model.
Unauthenticated variants must be refused (the ``ignored_auth`` check).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, settings

from app.cli.server import BackgroundServer, free_port
from tests.api.conftest import smoke_spec

pytestmark = pytest.mark.service

# Small enough for about half a minute; raise it for a deeper search (e.g. 500 before a release).
MAX_EXAMPLES = int(os.environ.get("NETGROW_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server on the shared PostgreSQL database that stores jobs but runs none (no worker, no broker)."""
    import httpx

    from app.main import create_app
    from worker.db.session import session_scope
    from worker.keys import create_key
    from worker.settings import Settings

    settings = Settings(database_url=pg_url, broker_url=None, artifact_dir=tmp_path_factory.mktemp("artifacts"),
                        max_epochs=20, max_width=64, max_params=100_000, max_request_bytes=50_000)
    with session_scope(pg_url) as session:
        key = create_key(session, "schemathesis")
    auth = {"Authorization": f"Bearer {key}"}
    app = create_app(settings, run_jobs=False, sse_poll_seconds=0.05, sse_heartbeat_seconds=0.2)
    with BackgroundServer(app, free_port()) as server:
        # One real job, so that generated requests for existing ids are possible through the links.
        httpx.post(f"{server.url}/v1/jobs", json=smoke_spec(), headers=auth, timeout=60).raise_for_status()
        yield server.url, auth


def _openapi() -> dict:
    # The schema does not depend on settings; an app that is never served produces it at import,
    # and the test below checks that the live server publishes the same document.
    from app.main import create_app
    from worker.settings import Settings

    return create_app(Settings(database_url="sqlite://", broker_url=None), run_jobs=False).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_server_publishes_this_schema(live_server: tuple[str, dict[str, str]]) -> None:
    import httpx

    url, _ = live_server
    assert httpx.get(f"{url}/openapi.json").json() == OPENAPI


# A schema-valid spec body can still be refused with a 422: the model must be a buildable network and
# the job must fit the server's limits, which JSON schema cannot say. That one check is skipped there.
SEMANTIC_BODY = {"POST /v1/jobs"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, live_server: tuple[str, dict[str, str]]) -> None:
    url, auth = live_server
    excluded = [positive_data_acceptance] if case.operation.label in SEMANTIC_BODY else []
    case.call_and_validate(base_url=url, headers=auth, excluded_checks=excluded, timeout=30)
