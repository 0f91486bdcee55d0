"""Faults with real Celery worker processes, Redis and PostgreSQL: crashes, cancels, double deliveries.

Each test has its own database and Redis database; leases are 3 s and the
reaper scans every 0.5 s, so a crashed worker's job moves on within seconds.
"""
from __future__ import annotations

import os
import re
import signal
import uuid

import pytest
from sqlalchemy import select

from worker.store import jobs as jobs_store
from worker.store.dispatch import enqueue, queue_depth, send_run_job
from worker.store.models import Artifact, Job, JobEpoch, JobEvent, JobStatus
from worker.store.session import session_factory

pytestmark = [pytest.mark.service, pytest.mark.slow]


def spec(epochs: int, samples: int = 240, size: int = 8) -> dict:
    return {
        "method": "grow",
        "seed": 5,
        "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": size, "samples": samples},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05},
        "optimizer": {"nu": 1.0, "lam": 0.05},
        "growth": {"every": 2, "threshold": 0.5, "add": 2, "max_width": 12, "finetune_epochs": 0},
    }


# Twelve epochs of a few tenths of a second each: long enough to kill a worker in the middle.
LONG = spec(epochs=12, samples=2000, size=16)


@pytest.fixture
def settings(settings_env, fresh_pg_url, redis_url):
    return settings_env(database_url=fresh_pg_url, broker_url=redis_url, lease_seconds=3,
                        heartbeat_seconds=0.5, reaper_seconds=0.5)


@pytest.fixture
def sessions(settings):
    return session_factory(settings.database_url)


def submit(sessions, job_spec: dict, *, max_attempts: int = 3) -> uuid.UUID:
    with sessions() as session:
        job, _ = jobs_store.create_job(session, owner="alice", spec=job_spec, max_attempts=max_attempts)
    enqueue(job.id)
    return job.id


def job_of(sessions, job_id) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def epoch_rows(sessions, job_id) -> list[tuple[int, int, float]]:
    with sessions() as session:
        return list(session.execute(select(JobEpoch.epoch, JobEpoch.id, JobEpoch.train_loss)
                                    .where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)))


def state_events(sessions, job_id) -> list[dict]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.kind == "state")
                                    .order_by(JobEvent.id)))


def status_is(sessions, job_id, status):
    return lambda: job_of(sessions, job_id).status == status


def outcomes(logs: str) -> list[str]:
    """The return values of netgrow.run_job in a worker log (Celery logs them at INFO)."""
    return re.findall(r"Task netgrow\.run_job\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: '(\w+)'", logs)


def test_a_job_whose_worker_is_killed_resumes_on_another_worker_from_its_checkpoint(
        settings, sessions, celery_workers, wait):
    first = celery_workers.start("first")
    job_id = submit(sessions, LONG)
    wait(lambda: job_of(sessions, job_id).progress_epoch >= 1, message="the first recorded epoch")
    celery_workers.kill(first)

    at_crash = job_of(sessions, job_id)
    before = epoch_rows(sessions, job_id)
    assert at_crash.status == JobStatus.RUNNING and at_crash.attempts == 1
    assert 1 <= len(before) < at_crash.progress_total, "the job must die in the middle"
    assert at_crash.checkpoint_epoch == len(before) - 1  # the checkpoint pointer moved with the last epoch

    second = celery_workers.start("second")
    wait(status_is(sessions, job_id, JobStatus.SUCCEEDED), message="the resumed job to finish")
    job = job_of(sessions, job_id)
    after = epoch_rows(sessions, job_id)
    assert job.attempts == 2 and job.worker.startswith("second@")
    assert [epoch for epoch, _, _ in after] == list(range(job.result["epochs"]))  # none missing, none twice
    assert after[:len(before)] == before  # the epochs recorded before the crash were not redone
    states = state_events(sessions, job_id)
    assert [s["status"] for s in states] == ["queued", "running", "queued", "running", "succeeded"]
    assert "first@" in states[2]["reason"] and states[3]["resumed_after_epoch"] == at_crash.checkpoint_epoch
    assert outcomes(celery_workers.log(second)) == ["succeeded"]


def test_a_job_out_of_attempts_after_its_worker_dies_fails_with_the_reason(settings, sessions, celery_workers, wait):
    first = celery_workers.start("first")
    job_id = submit(sessions, LONG, max_attempts=1)
    wait(lambda: job_of(sessions, job_id).progress_epoch >= 1, message="the first recorded epoch")
    celery_workers.kill(first)
    recorded = epoch_rows(sessions, job_id)

    celery_workers.start("second")
    wait(status_is(sessions, job_id, JobStatus.FAILED), message="the reaper to fail the job")
    job = job_of(sessions, job_id)
    assert job.attempts == 1 and job.error.startswith("worker lost 1 time (worker first@")
    assert epoch_rows(sessions, job_id) == recorded  # the history up to the crash stays
    with sessions() as session:
        checkpoint = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).one()
    assert checkpoint.kind == "checkpoint" and checkpoint.epoch == job.checkpoint_epoch
    assert queue_depth(settings) == 0  # nothing was re-sent for a job with no attempts left


def test_cancelling_a_running_job_stops_it_and_keeps_its_history(settings, sessions, celery_workers, wait):
    worker = celery_workers.start("only")
    # Dense training runs all its epochs; a growth job would end early once its growth stops.
    job_id = submit(sessions, {**spec(epochs=2000), "method": "dense"})
    wait(lambda: job_of(sessions, job_id).progress_epoch >= 1, message="the first recorded epoch")
    with sessions() as session:
        assert jobs_store.request_cancel(session, job_id).cancel_requested
    wait(status_is(sessions, job_id, JobStatus.CANCELED), message="the worker to stop the job")
    job = job_of(sessions, job_id)
    rows = epoch_rows(sessions, job_id)
    assert 1 <= len(rows) < 2000 and [epoch for epoch, _, _ in rows] == list(range(len(rows)))
    assert job.progress_epoch == len(rows) and job.attempts == 1 and job.error is None
    wait(lambda: outcomes(celery_workers.log(worker)) == ["canceled"], message="the task to return")
    assert worker.poll() is None  # the worker itself carries on


def test_a_job_id_delivered_twice_runs_once(settings, sessions, celery_workers, wait):
    with sessions() as session:
        job, _ = jobs_store.create_job(session, owner="alice", spec=spec(epochs=4), max_attempts=3)
    send_run_job(job.id, settings)
    send_run_job(job.id, settings)  # Redis re-delivering after the visibility timeout looks just like this
    assert queue_depth(settings) == 2
    first, second = celery_workers.start("first"), celery_workers.start("second")
    wait(status_is(sessions, job.id, JobStatus.SUCCEEDED), message="the job to finish")
    wait(lambda: len(outcomes(celery_workers.log(first) + celery_workers.log(second))) == 2,
         message="both deliveries to be handled")
    assert sorted(outcomes(celery_workers.log(first) + celery_workers.log(second))) == ["skipped", "succeeded"]
    finished = job_of(sessions, job.id)
    assert finished.attempts == 1
    assert [epoch for epoch, _, _ in epoch_rows(sessions, job.id)] == list(range(finished.result["epochs"]))
    assert [s["status"] for s in state_events(sessions, job.id)] == ["queued", "running", "succeeded"]
    assert queue_depth(settings) == 0


def test_a_worker_asked_to_stop_hands_its_job_to_the_next_worker(settings, sessions, celery_workers, wait):
    first = celery_workers.start("first")
    job_id = submit(sessions, LONG)
    wait(lambda: job_of(sessions, job_id).progress_epoch >= 1, message="the first recorded epoch")
    os.kill(first.pid, signal.SIGTERM)  # `docker compose stop`: a warm shutdown
    assert first.wait(timeout=60) == 0
    assert outcomes(celery_workers.log(first)) == ["released"]
    released = job_of(sessions, job_id)
    assert released.status == JobStatus.QUEUED and released.attempts == 0  # a clean stop costs no attempt
    assert queue_depth(settings) == 1  # sent again on the way out, without waiting for the lease to expire

    celery_workers.start("second")
    wait(status_is(sessions, job_id, JobStatus.SUCCEEDED), message="the job to finish on the second worker")
    job = job_of(sessions, job_id)
    assert job.attempts == 1 and job.worker.startswith("second@")
    assert [epoch for epoch, _, _ in epoch_rows(sessions, job_id)] == list(range(job.result["epochs"]))
    states = state_events(sessions, job_id)
    assert [s["status"] for s in states] == ["queued", "running", "queued", "running", "succeeded"]
    assert states[3]["resumed_after_epoch"] == released.checkpoint_epoch


def test_a_job_outliving_the_brokers_visibility_timeout_runs_once(
        settings_env, fresh_pg_url, redis_url, celery_workers, wait):
    # Redis really re-delivers here: the running job's message is unacknowledged (acks_late) for longer
    # than a 1 s visibility timeout, and the idle worker's periodic sweep (every second with
    # unacked_restore_interval=1, unacked_restore_throttle=1) puts it back on the queue. Both workers start
    # before the job is sent, so kombu's scan at worker start-up finds nothing to restore: only the
    # sweep can re-deliver, and kombu's default sweep (every 10 × 10 s) would not within the wait below.
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, lease_seconds=3,
                            heartbeat_seconds=0.5, reaper_seconds=0.5, visibility_timeout_seconds=1,
                            redelivery_scan_seconds=1)
    sessions = session_factory(settings.database_url)
    workers = {"first": celery_workers.start("first"), "second": celery_workers.start("second")}
    job_id = submit(sessions, {**spec(epochs=2000), "method": "dense"})
    wait(lambda: job_of(sessions, job_id).progress_epoch >= 1, message="the first recorded epoch")
    runner_name = job_of(sessions, job_id).worker.split("@")[0]  # whichever worker took the message
    runner, idle = workers.pop(runner_name), next(iter(workers.values()))

    wait(lambda: outcomes(celery_workers.log(idle)) == ["skipped"], timeout=45,
         message="the idle worker's sweep to re-deliver the running job's id to it")
    running = job_of(sessions, job_id)
    assert running.status == JobStatus.RUNNING and running.attempts == 1
    assert running.worker.startswith(f"{runner_name}@")

    with sessions() as session:
        jobs_store.request_cancel(session, job_id)
    wait(status_is(sessions, job_id, JobStatus.CANCELED), message="the running worker to stop the job")
    wait(lambda: outcomes(celery_workers.log(runner)) == ["canceled"], message="the running worker's task to return")
    job = job_of(sessions, job_id)
    assert job.attempts == 1
    assert [epoch for epoch, _, _ in epoch_rows(sessions, job_id)] == list(range(job.progress_epoch))
    assert [s["status"] for s in state_events(sessions, job_id)] == ["queued", "running", "canceled"]
    assert outcomes(celery_workers.log(idle)) == ["skipped"]
