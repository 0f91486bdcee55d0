"""A worker that cannot reach PostgreSQL leaves the queue alone; the jobs run once the database is back.

The worker reaches PostgreSQL through a ``TcpProxy`` the test cuts (the
machine's server is shared and never stopped); the test itself writes to the
database directly. The reaper's re-send is pushed out to an hour, so the jobs
can only run from their original messages: if the outage drained the queue,
they would wait for that hour.
"""
from __future__ import annotations

import time
import uuid

import pytest
import redis
from sqlalchemy import make_url

from tests.tcp_proxy import TcpProxy
from worker.store import jobs as jobs_store
from worker.store.dispatch import enqueue
from worker.store.models import Job, JobStatus
from worker.store.session import session_factory

pytestmark = [pytest.mark.service, pytest.mark.slow]

OUTAGE_SECONDS = 20


def tiny(seed: int) -> dict:
    return {"method": "dense", "seed": seed, "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
            "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 120},
            "train": {"epochs": 1, "batch_size": 32, "lr": 0.05}}


def test_a_database_outage_leaves_queued_messages_in_the_queue(settings_env, fresh_pg_url, redis_url,
                                                                celery_workers, wait):
    url = make_url(fresh_pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        settings = settings_env(database_url=proxy.url_for(fresh_pg_url), broker_url=redis_url, lease_seconds=5,
                                heartbeat_seconds=0.5, reaper_seconds=1, requeue_after_seconds=3600)
        direct = session_factory(fresh_pg_url)
        worker = celery_workers.start("only")
        proxy.cut()

        job_ids: list[uuid.UUID] = []
        for seed in range(5):
            with direct() as session:
                job, _ = jobs_store.create_job(session, owner="alice", spec=tiny(seed), max_attempts=3,
                                               queue=settings.queue)
            job_ids.append(job.id)
            enqueue(job.id, settings, job.queue)  # as the API does: the job's queue is at hand
        time.sleep(OUTAGE_SECONDS)  # the outage itself: the worker is idle and the database unreachable

        queue = redis.Redis.from_url(redis_url)
        try:
            waiting = queue.llen(settings.queue)
        finally:
            queue.close()
        # At most the one message the worker holds (prefetch 1) is out of the queue.
        assert waiting >= len(job_ids) - 1, f"{waiting} of {len(job_ids)} job ids still queued after the outage"
        assert worker.poll() is None, celery_workers.log(worker)

        proxy.heal()

        def statuses() -> list[str]:
            with direct() as session:
                return [session.get(Job, job_id, populate_existing=True).status for job_id in job_ids]

        wait(lambda: all(status == JobStatus.SUCCEEDED for status in statuses()), timeout=180,
             message="every queued job to run from its original message once the database is back")
        with direct() as session:
            assert [session.get(Job, job_id).attempts for job_id in job_ids] == [1] * len(job_ids)
    finally:
        proxy.close()
