"""Durability of the queue: a job whose id never reached the broker, or that the broker lost, still runs.

The database holds every job; Redis only carries ids. ``jobs.enqueued_at`` says
when a queued job's id was last sent (NULL: the send failed), and the reaper
sends it again once that is older than ``requeue_after_seconds``. The first
tests drive ``reap_once`` in-process (a recorder stands in for the send, as the
embedded runner's ``wake`` does); the last ones use real Celery worker processes.
"""
from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Column, MetaData, Table, Uuid, insert, inspect, select, update
from test_migrations import schema_diffs

from worker.runners.reaper import reap_once
from worker.store import jobs as jobs_store
from worker.store.dispatch import enqueue, queue_depth
from worker.store.migrate import downgrade, upgrade
from worker.store.models import Job, JobEpoch, JobEvent, JobStatus, utcnow
from worker.store.session import make_engine, session_factory

pytestmark = pytest.mark.service

# Nothing listens on port 1: every send fails at once with "connection refused".
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
REQUEUE_AFTER = 2.0
FAST = {"lease_seconds": 3, "heartbeat_seconds": 0.5, "reaper_seconds": 0.5, "requeue_after_seconds": REQUEUE_AFTER}

# Two epochs on 120 synthetic 8x8 images: a second or two in a worker, most of it importing torch.
TINY_SPEC = {
    "method": "grow",
    "seed": 1,
    "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
    "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 120},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "optimizer": {"nu": 1.0, "lam": 0.05},
    "growth": {"every": 1, "threshold": 0.5, "add": 2, "finetune_epochs": 0},
}


def new_job(sessions, **overrides) -> uuid.UUID:
    with sessions() as session:
        job, _ = jobs_store.create_job(session, owner="alice", spec=TINY_SPEC, max_attempts=3)
        if overrides:
            session.execute(update(Job).where(Job.id == job.id).values(**overrides))
            session.commit()
    return job.id


def load_job(sessions, job_id) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def sent_ago(seconds: float):
    """An ``enqueued_at`` that many seconds in the past: stands in for waiting that long."""
    return utcnow() - timedelta(seconds=seconds)


def state_events(sessions, job_id) -> list[dict]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.kind == "state")
                                    .order_by(JobEvent.id)))


def outcomes(log: str) -> list[str]:
    """The return values of netgrow.run_job in a worker log (Celery logs them at INFO)."""
    return re.findall(r"Task netgrow\.run_job\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: '(\w+)'", log)


# --------------------------------------------------------------------------- the reaper, in-process


@pytest.fixture
def settings(settings_env, database_url):
    # A broker URL makes this the distributed shape; the sends go to the recorder passed to reap_once.
    return settings_env(database_url=database_url, broker_url=UNREACHABLE_BROKER, **FAST)


@pytest.fixture
def sessions(settings):
    return session_factory(settings.database_url)


def test_new_and_requeued_jobs_record_when_they_were_queued(sessions):
    before = utcnow()
    job_id = new_job(sessions)
    created = load_job(sessions, job_id)
    assert created.enqueued_at is not None and before <= created.enqueued_at <= utcnow()
    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.FAILED, enqueued_at=sent_ago(60)))
        session.commit()
        retried = jobs_store.retry_job(session, job_id, extra_attempts=1)
    assert retried.status == JobStatus.QUEUED and retried.enqueued_at > created.enqueued_at


def test_a_stale_queued_job_is_sent_again_once_per_period_however_many_reapers_scan(settings, sessions):
    stale = new_job(sessions, enqueued_at=sent_ago(REQUEUE_AFTER + 5))
    never_sent = new_job(sessions, enqueued_at=None)  # a failed send, or a row from before revision 0002
    fresh = new_job(sessions)
    running = new_job(sessions, enqueued_at=sent_ago(60), status=JobStatus.RUNNING, lease_expires_at=sent_ago(-60))
    canceled = new_job(sessions, enqueued_at=sent_ago(60), status=JobStatus.CANCELED)

    # Eight reapers scan at once (the reaper thread of eight workers): each stale job is sent once.
    sent: list[uuid.UUID] = []
    start = threading.Barrier(8)
    scans = []

    def scan() -> None:
        start.wait()
        scans.append(reap_once(settings, sent.append))

    threads = [threading.Thread(target=scan) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == sorted([stale, never_sent])
    assert sorted(job_id for s in scans for job_id in s.resent) == sorted([stale, never_sent])
    for job_id in (stale, never_sent):
        assert utcnow() - load_job(sessions, job_id).enqueued_at < timedelta(seconds=REQUEUE_AFTER)
    assert reap_once(settings, sent.append).resent == []  # the period starts again with each send

    with sessions() as session:  # a period later it is still queued: sent once more
        session.execute(update(Job).where(Job.id == stale).values(enqueued_at=sent_ago(REQUEUE_AFTER + 1)))
        session.commit()
    assert reap_once(settings, sent.append).resent == [stale]
    assert sent.count(stale) == 2 and fresh not in sent and running not in sent and canceled not in sent
    assert [load_job(sessions, job_id).status for job_id in (stale, never_sent, fresh)] == [JobStatus.QUEUED] * 3


def test_a_job_requeued_after_its_worker_died_is_sent_once_not_again_as_stale(settings, sessions):
    job_id = new_job(sessions, enqueued_at=sent_ago(60), status=JobStatus.RUNNING, attempts=1,
                     lease_owner="w/a", lease_expires_at=sent_ago(1))
    sent: list[uuid.UUID] = []
    scan = reap_once(settings, sent.append)
    assert (scan.requeued, scan.resent, sent) == ([job_id], [], [job_id])
    assert utcnow() - load_job(sessions, job_id).enqueued_at < timedelta(seconds=REQUEUE_AFTER)


def test_when_a_send_fails_the_scan_stops_and_the_next_one_sends_every_job(settings, sessions):
    jobs = [new_job(sessions, enqueued_at=sent_ago(REQUEUE_AFTER + 5)) for _ in range(3)]
    tried: list[uuid.UUID] = []

    def broker_down(job_id: uuid.UUID) -> None:
        tried.append(job_id)
        raise ConnectionError("broker down")

    scan = reap_once(settings, broker_down)
    assert tried == jobs[:1]  # one probe per scan, not one broker timeout per job
    assert scan.resent == [] and scan.unsent == jobs
    assert [load_job(sessions, job_id).enqueued_at for job_id in jobs] == [None] * 3

    sent: list[uuid.UUID] = []
    assert reap_once(settings, sent.append).resent == jobs  # oldest first, without waiting another period
    assert sent == jobs


def test_enqueue_with_the_broker_down_raises_and_marks_the_job_for_the_reaper(settings, sessions):
    from kombu.exceptions import OperationalError as BrokerUnreachable

    job_id = new_job(sessions)
    with pytest.raises(BrokerUnreachable):
        enqueue(job_id, settings)
    assert load_job(sessions, job_id).enqueued_at is None
    sent: list[uuid.UUID] = []
    assert reap_once(settings, sent.append).resent == [job_id] == sent


def test_embedded_mode_leaves_queued_jobs_to_the_runner(settings_env, sqlite_url):
    # The embedded runner's queue is the jobs table, polled; there is no message to lose or re-send.
    settings = settings_env(database_url=sqlite_url, broker_url=None, **FAST)
    sessions = session_factory(settings.database_url)
    job_id = new_job(sessions, enqueued_at=None)
    woken: list[uuid.UUID] = []
    scan = reap_once(settings, woken.append)
    assert (scan.resent, scan.unsent, woken) == ([], [], [])
    assert load_job(sessions, job_id).enqueued_at is None


# --------------------------------------------------------------------------- the migration


def test_revision_0002_adds_and_drops_enqueued_at_keeping_every_row(empty_database_url):
    url = empty_database_url
    upgrade(url, "0001")
    engine = make_engine(url)
    job_id = uuid.uuid4()
    try:
        with engine.begin() as connection:  # a queued job with history, stored before the revision
            tables = MetaData()  # the tables as revision 0001 made them (SQLite reflects a UUID as CHAR(32))
            jobs = Table("jobs", tables, Column("id", Uuid, primary_key=True), autoload_with=connection)
            epochs = Table("job_epochs", tables, Column("job_id", Uuid), autoload_with=connection)
            connection.execute(insert(jobs).values(
                id=job_id, owner="alice", method="grow", spec={}, status="queued", attempts=0, max_attempts=3,
                cancel_requested=False, progress_epoch=1, progress_total=2, created_at=utcnow()))
            connection.execute(insert(epochs).values(
                job_id=job_id, epoch=0, phase="grow", val_accuracy=0.5, lr=0.1, params=1, macs=1, seconds=0.1))
    finally:
        engine.dispose()

    upgrade(url)
    assert schema_diffs(url) == []
    sessions = session_factory(url)
    with sessions() as session:
        # Unknown send time: the reaper sends the job at its first scan after the upgrade.
        assert session.get(Job, job_id).enqueued_at is None
        assert jobs_store.queued_jobs_to_resend(session, sent_before=utcnow()) == [job_id]

    downgrade(url, "0001")
    engine = make_engine(url)
    try:
        assert "enqueued_at" not in {column["name"] for column in inspect(engine).get_columns("jobs")}
        with engine.connect() as connection:  # no table rebuild: the job and its history (a cascade) survive
            assert connection.scalar(select(Job.__table__.c.status).where(Job.__table__.c.id == job_id)) == "queued"
            assert connection.scalar(select(JobEpoch.__table__.c.epoch).where(
                JobEpoch.__table__.c.job_id == job_id)) == 0
    finally:
        engine.dispose()

    upgrade(url)
    assert schema_diffs(url) == []


# --------------------------------------------------------------------------- real Celery workers


@pytest.mark.slow
def test_a_job_submitted_while_the_broker_is_down_gets_a_503_and_runs_once_a_worker_is_up(
        settings_env, fresh_pg_url, redis_url, celery_workers, wait):
    from app.cli.server import BackgroundServer, free_port
    from app.main import create_app
    from worker.store.keys import create_key

    api_settings = settings_env(database_url=fresh_pg_url, broker_url=UNREACHABLE_BROKER, **FAST)
    sessions = session_factory(fresh_pg_url)
    with sessions() as session:
        key = create_key(session, "alice")
    with BackgroundServer(create_app(api_settings, run_jobs=False), free_port()) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        def submit() -> httpx.Response:
            return client.post("/v1/jobs", json=TINY_SPEC, headers={"Idempotency-Key": "while-down"})

        refused = submit()
        assert refused.status_code == 503
        detail = refused.json()["detail"]
        assert "stored and queued" in detail and "sent to a worker automatically when the broker is back" in detail
        [job_id] = [uuid.UUID(found) for found in re.findall(r"job ([0-9a-f-]{36})", detail)]
        assert load_job(sessions, job_id).status == JobStatus.QUEUED
        assert load_job(sessions, job_id).enqueued_at is None  # the failed send is on record

        again = submit()  # the client retries with its key: the same job, still waiting for the broker
        assert again.status_code == 503 and str(job_id) in again.json()["detail"]
        with sessions() as session:
            assert session.scalars(select(Job.id)).all() == [job_id]

        # A worker on the real broker: its reaper finds the unsent job and sends it.
        worker = celery_workers.start("after-outage", env={"NETGROW_BROKER_URL": redis_url})
        wait(lambda: load_job(sessions, job_id).status == JobStatus.SUCCEEDED, timeout=120,
             message="the reaper to send the job and the worker to run it")

        replayed = submit()  # now finished: the same job comes back, and nothing is sent (so no 503)
        assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
        assert replayed.json()["id"] == str(job_id) and replayed.json()["status"] == "succeeded"

    job = load_job(sessions, job_id)
    assert job.attempts == 1 and job.enqueued_at is not None
    assert [s["status"] for s in state_events(sessions, job_id)] == ["queued", "running", "succeeded"]
    ran = outcomes(celery_workers.log(worker))
    assert ran.count("succeeded") == 1 and set(ran) <= {"succeeded", "skipped"}


@pytest.mark.slow
def test_a_job_whose_message_redis_lost_is_sent_again_and_runs_exactly_once(
        settings_env, fresh_pg_url, redis_url, celery_workers, wait):
    import redis

    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, **FAST)
    sessions = session_factory(settings.database_url)
    job_id = new_job(sessions)
    enqueue(job_id, settings)
    first_sent = load_job(sessions, job_id).enqueued_at
    assert queue_depth(settings) == 1
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()  # what a Redis restart without persistence does to the queue
    finally:
        client.close()
    assert queue_depth(settings) == 0

    worker = celery_workers.start("after-flush")
    wait(lambda: load_job(sessions, job_id).status == JobStatus.SUCCEEDED, timeout=120,
         message="the reaper to send the job again and the worker to run it")
    job = load_job(sessions, job_id)
    assert job.attempts == 1 and job.enqueued_at > first_sent
    with sessions() as session:
        recorded = session.scalars(select(JobEpoch.epoch).where(JobEpoch.job_id == job_id)
                                   .order_by(JobEpoch.epoch)).all()
    assert recorded == list(range(job.result["epochs"]))  # every epoch once
    assert [s["status"] for s in state_events(sessions, job_id)] == ["queued", "running", "succeeded"]
    ran = outcomes(celery_workers.log(worker))
    assert ran.count("succeeded") == 1 and set(ran) <= {"succeeded", "skipped"}

