"""A network partition with fencing: workers in their own network namespaces, one cut off while it trains.

Each Celery worker runs in a network namespace of its own and reaches the
machine's PostgreSQL and Redis only through its veth link (``tests/netns.py``).
The worker training the job is cut off from both for longer than the lease:
the other worker's reaper re-queues the job and the other worker resumes it
from the last checkpoint and finishes it. When the partition heals, the cut-off
worker's late writes reach the database and are all refused by the lease check:
it ends its attempt as ``lost``, and the job's history, events, result and
weights are exactly those of the attempt that finished, every epoch once.

Skipped, with the reason, where namespaces cannot be made (not root, no
iproute2); CI runs the suite as root, so ``.ci/run`` runs it.
"""
from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import make_url, select

from tests import netns
from worker.store import jobs as jobs_store
from worker.store.artifacts import sha256_file
from worker.store.dispatch import enqueue
from worker.store.models import Artifact, Job, JobEpoch, JobEvent, JobStatus
from worker.store.session import session_factory

pytestmark = [pytest.mark.service, pytest.mark.slow,
              pytest.mark.skipif(netns.unavailable() is not None, reason=f"{netns.unavailable()}")]

# Long enough that the partition lands mid-training (a few tenths of a second per epoch).
SPEC = {
    "method": "grow", "seed": 5,
    "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
    "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 16, "samples": 2000},
    "train": {"epochs": 14, "batch_size": 32, "lr": 0.05},
    "optimizer": {"nu": 1.0, "lam": 0.05},
    "growth": {"every": 2, "threshold": 0.5, "add": 2, "max_width": 12, "finetune_epochs": 0},
}


def outcomes(log: str) -> list[str]:
    return re.findall(r"Task netgrow\.run_job\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: '(\w+)'", log)


def test_a_partitioned_worker_is_fenced_out_and_the_job_finishes_elsewhere_once(
        settings_env, fresh_pg_url, redis_url, celery_workers, wait):
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, lease_seconds=3,
                            heartbeat_seconds=0.5, reaper_seconds=0.5)
    sessions = session_factory(fresh_pg_url)
    pg, broker = make_url(fresh_pg_url), make_url(redis_url)
    namespaces: dict[str, netns.Namespace] = {}
    workers = {}
    try:
        for name in ("east", "west"):
            space = namespaces[name] = netns.Namespace()
            database = space.forward(pg.port or 5432, pg.host or "127.0.0.1")
            redis = space.forward(broker.port or 6379, broker.host or "127.0.0.1")
            workers[name] = celery_workers.start(name, prefix=space.exec_prefix, env={
                "NETGROW_DATABASE_URL": database.url_for(fresh_pg_url),
                "NETGROW_BROKER_URL": redis.url_for(redis_url)})

        with sessions() as session:
            job, _ = jobs_store.create_job(session, owner="alice", spec=SPEC, max_attempts=3)
        job_id: uuid.UUID = job.id
        enqueue(job_id, settings)

        def load() -> Job:
            with sessions() as session:
                return session.get(Job, job_id)

        wait(lambda: load().progress_epoch >= 2, timeout=120, message="two recorded epochs")
        cut_off = load().worker.split("@")[0]
        other = next(name for name in namespaces if name != cut_off)
        namespaces[cut_off].cut()

        wait(lambda: load().status == JobStatus.SUCCEEDED, timeout=240,
             message=f"{other} to resume the job after {cut_off}'s lease ran out, and finish it")
        finished = load()
        assert finished.worker.startswith(f"{other}@") and finished.attempts == 2

        def snapshot() -> tuple:
            with sessions() as session:
                epochs = list(session.execute(select(JobEpoch.epoch, JobEpoch.id).where(JobEpoch.job_id == job_id)
                                              .order_by(JobEpoch.epoch)))
                events = list(session.execute(select(JobEvent.id, JobEvent.kind, JobEvent.payload)
                                              .where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
                weights = session.scalars(select(Artifact).where(Artifact.job_id == job_id,
                                                                 Artifact.kind == "weights")).one()
                return epochs, events, (weights.path, weights.sha256)

        before_heal = snapshot()
        namespaces[cut_off].heal()
        wait(lambda: outcomes(celery_workers.log(workers[cut_off])), timeout=300,
             message=f"{cut_off}'s late writes to reach the database once the partition healed")

        assert outcomes(celery_workers.log(workers[cut_off])) == ["lost"]
        after = load()
        assert (after.status, after.attempts, after.worker, after.result) == (
            JobStatus.SUCCEEDED, 2, finished.worker, finished.result)
        assert snapshot() == before_heal  # no epoch row, event, or weights of the fenced worker got in
        epochs, events, (weights_path, weights_sha) = before_heal
        assert [epoch for epoch, _ in epochs] == list(range(finished.result["epochs"]))
        assert [payload["epoch"] for _, kind, payload in events if kind == "epoch"] == list(
            range(finished.result["epochs"]))
        assert sha256_file(weights_path) == weights_sha
        states = [payload["status"] for _, kind, payload in events if kind == "state"]
        assert states == ["queued", "running", "queued", "running", "succeeded"]
    finally:
        for process in workers.values():
            celery_workers.kill(process)
        for space in namespaces.values():
            space.close()
