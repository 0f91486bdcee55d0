"""Fixtures for the API tests: a real uvicorn server on a loopback port, over a real database.

- ``queue_api``: PostgreSQL + Redis, no worker: submitted jobs stay queued (auth,
  validation, idempotency, pagination, cancel tests).
- ``embedded_api``: SQLite file, no broker, jobs run in the server's process.
- ``celery_api``: PostgreSQL + Redis + a real Celery worker process.

The database, Redis and Celery fixtures come from tests/conftest.py; helpers
shared by the tests are in api_support.py.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_support import LiveApi, running_api

@pytest.fixture
def queue_api(settings_env: Callable[..., Any], fresh_pg_url: str, redis_url: str) -> Iterator[LiveApi]:
    """PostgreSQL and Redis, no worker: jobs are stored and their ids sent to Redis, where they wait."""
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, max_epochs=50, max_width=256,
                            max_params=200_000, max_request_bytes=20_000, api_page_size_max=5,
                            max_dataset_bytes=50_000_000, max_layers=20)
    with running_api(settings, run_jobs=False) as api:
        yield api


@pytest.fixture
def embedded_api(settings_env: Callable[..., Any], sqlite_url: str) -> Iterator[LiveApi]:
    settings = settings_env(database_url=sqlite_url, broker_url=None)
    with running_api(settings, run_jobs=True) as api:
        yield api


@pytest.fixture
def celery_api(settings_env: Callable[..., Any], fresh_pg_url: str, redis_url: str,
               celery_worker_process: Callable[..., Any]) -> Iterator[LiveApi]:
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url)
    celery_worker_process("api-test")
    with running_api(settings, run_jobs=False) as api:
        yield api


@pytest.fixture
def queued_message_count(redis_url: str) -> Callable[[], int]:
    """How many job ids wait in the Redis queue (the Celery queue is a Redis list)."""
    import redis

    from worker.store.settings import get_settings

    def count() -> int:
        client = redis.Redis.from_url(redis_url)
        try:
            return int(client.llen(get_settings().queue))
        finally:
            client.close()

    return count
