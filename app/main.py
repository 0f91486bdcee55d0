"""The FastAPI application: ``create_app(settings)`` builds one; ``uvicorn app.main:app`` serves the default.

Nothing touches the database at import. Migrations are a separate step
(``netgrow migrate``, or ``netgrow serve`` in embedded mode before it starts the
server); at startup the app only checks that the schema is at the head revision.
In embedded mode (no broker configured) the app also runs queued jobs in a
background thread for as long as it is up: the store's dispatch starts the
in-process runner by name, so the API never imports the runners itself.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api.errors import install_error_handlers
from app.api.main import api_router
from app.metrics import Metrics, RequestTimingMiddleware
from app.middleware import BodySizeLimitMiddleware
from app.ui import install_dashboard
from worker.store.dispatch import start_in_process_runner, stop_in_process_runner
from worker.store.migrate import is_up_to_date
from worker.store.session import session_factory
from worker.store.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Grow convolutional networks with DessiLBI, and compare them with pruning, AutoGrow,
RMDA and dense baselines. Submit a job spec, follow it live (Server-Sent Events),
query the per-epoch filter-configuration history and compare finished jobs.

Every `/v1` endpoint needs `Authorization: Bearer <key>` (`netgrow keys create NAME`).
"""


def _version() -> str:
    try:
        return version("netgrow")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings | None = None,
    *,
    run_jobs: bool | None = None,
    check_schema: bool = True,
    sse_poll_seconds: float = 0.5,
    sse_heartbeat_seconds: float = 15.0,
) -> FastAPI:
    """Build the API for ``settings`` (default: the ``NETGROW_*`` environment).

    ``run_jobs``: run queued jobs in this process (default: in embedded mode only).
    ``check_schema``: refuse to start on a database that is not migrated to head.
    """
    settings = settings or get_settings()
    run_jobs = settings.embedded if run_jobs is None else run_jobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if check_schema and not await run_in_threadpool(is_up_to_date, settings.database_url):
            raise RuntimeError("the database is not migrated to the current schema: run `netgrow migrate` first")
        # Validating a spec counts its parameters with torch; import it now, not in the first request.
        await run_in_threadpool(importlib.import_module, "growth.counting")
        runner = None
        if run_jobs:
            runner = start_in_process_runner(settings)
            log.info("embedded mode: running jobs in this process as %s", runner.worker_name)
        try:
            yield
        finally:
            if runner is not None:
                # The running job stops at a batch boundary and goes back to the queue.
                await run_in_threadpool(stop_in_process_runner)

    app = FastAPI(title="netgrow", version=_version(), description=DESCRIPTION, lifespan=lifespan,
                  openapi_tags=[{"name": "jobs", "description": "Growth jobs and their history."},
                                {"name": "compare", "description": "Tables 4 and 5 over finished jobs."},
                                {"name": "plots", "description": "Pictures of jobs and comparisons (SVG, PNG)."},
                                {"name": "health", "description": "Probes and Prometheus metrics."}])
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database_url)
    app.state.metrics = Metrics(app.state.sessions)
    app.state.sse_poll_seconds = sse_poll_seconds
    app.state.sse_heartbeat_seconds = sse_heartbeat_seconds
    install_error_handlers(app)
    # The upload route streams its body to disk under max_upload_bytes (app/upload_stream.py).
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes,
                       exempt=frozenset({("POST", "/v1/datasets")}))
    app.add_middleware(RequestTimingMiddleware, metrics=app.state.metrics)  # outermost: times 413s too
    app.include_router(api_router)
    install_dashboard(app)  # /ui: the live dashboard, static files
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` reads this attribute; building it lazily keeps `import app.main` free of
    # side effects (settings from the environment, the SQLite folder).
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
