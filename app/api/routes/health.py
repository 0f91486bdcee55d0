"""Probes and metrics, outside /v1 and without authentication (for load balancers and Prometheus)."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionFactoryDep, SettingsDep
from app.api.errors import DATABASE_RETRY_AFTER_SECONDS
from app.schemas import Health, Readiness
from worker.store.health import HEALTHY, check_broker, check_database

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> Health:
    """The process is up (liveness): no dependency is checked."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness, "description": "A dependency is unreachable."}})
async def readyz(response: Response, sessions: SessionFactoryDep, settings: SettingsDep) -> Readiness:
    """Ready to serve (readiness): the database answers and, unless embedded, so does the broker."""
    checks = {"database": await run_in_threadpool(check_database, sessions),
              "broker": await run_in_threadpool(check_broker, settings)}
    ready = all(result in HEALTHY for result in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return Readiness(status="ready" if ready else "unavailable", checks=checks)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Jobs by status, queue depth, epochs per second and request latencies (Prometheus)."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
