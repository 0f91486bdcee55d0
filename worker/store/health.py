"""Can the database and the broker be reached: the API's /readyz and `netgrow check` ask here.

The answers name the dependency only ("database unreachable"): /readyz answers
without authentication, so the exception text (host names, ports, driver
messages, possibly user names) goes to the log instead.
"""
from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from .settings import Settings

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0
HEALTHY = ("ok", "skipped")


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
