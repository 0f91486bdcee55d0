"""A job belongs to the queue it was sent to: re-sends go there, whichever worker pool's reaper makes them.

Two pools share one database and one Redis, each with its own NETGROW_QUEUE
(say, GPU workers and CPU workers). A job submitted to an API that sends to
the first pool, whose worker died, is re-queued by the reaper of a worker of
the second pool: its id must go back to the first pool's queue.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from api_support import running_api, smoke_spec
from sqlalchemy import update

from worker.runners.reaper import reap_once
from worker.store import jobs as jobs_store
from worker.store.dispatch import send_run_job
from worker.store.models import Job, utcnow
from worker.store.session import session_factory

pytestmark = pytest.mark.service


def test_a_reaper_of_another_pool_sends_a_lost_job_back_to_its_own_queue(settings_env, fresh_pg_url, redis_url):
    gpu = settings_env(database_url=fresh_pg_url, broker_url=redis_url, queue="gpu", lease_seconds=3)
    with running_api(gpu, run_jobs=False) as api:
        job_id = uuid.UUID(api.user("alice").post("/v1/jobs", json=smoke_spec()).json()["id"])
    sessions = session_factory(fresh_pg_url)
    broker = redis.Redis.from_url(redis_url)
    try:
        assert broker.llen("gpu") == 1
        broker.delete("gpu")  # a GPU worker took the message ...
        with sessions() as session:
            assert jobs_store.claim_job(session, job_id, lease_owner="gpu0/a", worker="gpu0", lease_seconds=3)
            session.execute(update(Job).where(Job.id == job_id).values(
                lease_expires_at=utcnow() - timedelta(seconds=1)))
            session.commit()  # ... and died

        cpu = gpu.model_copy(update={"queue": "cpu"})  # a worker of the CPU pool runs this reaper
        scan = reap_once(cpu, lambda job_id: send_run_job(job_id, cpu))  # as worker.runners.celery_app wires it
        assert scan.requeued == [job_id]
        assert (broker.llen("gpu"), broker.llen("cpu")) == (1, 0)
    finally:
        broker.close()
