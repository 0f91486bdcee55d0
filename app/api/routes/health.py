"""Probes and metrics, outside /v1 and without authentication (for load balancers and Prometheus)."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionFactoryDep, SettingsDep
from app.schemas import Health, Readiness
from worker.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
def healthz() -> Health:
    """The process is up (liveness): no dependency is checked."""
    return Health(status="ok")


# /readyz answers without authentication: its reasons name the dependency only. The exception text
# (host names, ports, driver messages, possibly user names) goes to the log instead.
def check_database(sessions: sessionmaker[Session]) -> str:
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception:
        log.warning("readiness: the database did not answer", exc_info=True)
        return "database unreachable"


def check_broker(settings: Settings) -> str:
    if settings.broker_url is None:
        return "skipped"  # embedded mode: jobs run in this process
    import redis

    try:
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=BROKER_TIMEOUT_SECONDS,
                                      socket_connect_timeout=BROKER_TIMEOUT_SECONDS)
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    except Exception:
        log.warning("readiness: the broker did not answer", exc_info=True)
        return "broker unreachable"


@router.get("/readyz", responses={503: {"model": Readiness, "description": "A dependency is unreachable."}})
async def readyz(response: Response, sessions: SessionFactoryDep, settings: SettingsDep) -> Readiness:
    """Ready to serve (readiness): the database answers and, unless embedded, so does the broker."""
    checks = {"database": await run_in_threadpool(check_database, sessions),
              "broker": await run_in_threadpool(check_broker, settings)}
    ready = all(result in ("ok", "skipped") for result in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if ready else "unavailable", checks=checks)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Jobs by status, queue depth, epochs per second and request latencies (Prometheus)."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
