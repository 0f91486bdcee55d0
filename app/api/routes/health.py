"""Probes and metrics, outside /v1 and without API keys (for load balancers and Prometheus).

/metrics takes its own token when ``NETGROW_METRICS_TOKEN`` is set: it shows
every owner's job counts together.
"""
from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response, status
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
                             "description": "Prometheus text format."},
                       401: {"description": "NETGROW_METRICS_TOKEN is set and the request does not carry it."}})
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Jobs by status, queue depth, epochs per second and request latencies (Prometheus).

    With ``NETGROW_METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``.
    """
    if settings.metrics_token is not None:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {settings.metrics_token}".encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the metrics need 'Authorization: Bearer <token>' "
                                                              "(NETGROW_METRICS_TOKEN)",
                                headers={"WWW-Authenticate": 'Bearer realm="netgrow-metrics"'})
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
