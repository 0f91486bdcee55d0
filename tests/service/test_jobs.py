"""The job lifecycle in-process: keys, claims, leases, the reaper, and real runs of the growth engine.

Every test runs on a database of its own; the ``database_url`` ones run on
PostgreSQL and on SQLite.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from growth.errors import SpecError
from growth.events import EpochEnd, UnitStat
from worker.runners.attempt import Outcome, _succeed, run_job
from worker.runners.embedded import start_embedded, stop_embedded
from worker.runners.reaper import Reaper, reap_once
from worker.store import artifacts, keys
from worker.store import jobs as jobs_store
from worker.store.artifacts import sha256_file
from worker.store.dispatch import enqueue
from worker.store.models import ApiKey, Artifact, Job, JobEpoch, JobEvent, JobStatus, JobUnit, utcnow
from worker.store.session import make_engine, session_factory

pytestmark = pytest.mark.service


def tiny_spec(epochs: int = 3, finetune: int = 1, **over: object) -> dict:
    """A grow job that takes well under a second per epoch on one CPU core and widens at least once."""
    spec = {
        "method": "grow",
        "seed": 3,
        "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 240},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05},
        "optimizer": {"nu": 1.0, "lam": 0.05},
        "growth": {"every": 1, "threshold": 0.5, "add": 2, "finetune_epochs": finetune},
    }
    spec.update(over)
    return spec


@pytest.fixture
def settings(settings_env, database_url):
    return settings_env(database_url=database_url, lease_seconds=3, heartbeat_seconds=0.2, reaper_seconds=0.2)


@pytest.fixture
def sessions(settings):
    return session_factory(settings.database_url)


def new_job(sessions, spec=None, *, max_attempts=3, owner="alice") -> uuid.UUID:
    with sessions() as session:
        job, created = jobs_store.create_job(session, owner=owner, spec=spec or tiny_spec(), max_attempts=max_attempts)
    assert created
    return job.id


def load_job(sessions, job_id) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def epochs_of(sessions, job_id) -> list[JobEpoch]:
    with sessions() as session:
        return list(session.scalars(select(JobEpoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)))


def events_of(sessions, job_id) -> list[JobEvent]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def expire_lease(sessions, job_id) -> None:
    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()


def claim(sessions, job_id, owner="w1/a", lease_seconds=60.0):
    with sessions() as session:
        return jobs_store.claim_job(session, job_id, lease_owner=owner, worker=owner.split("/")[0],
                              lease_seconds=lease_seconds)


def an_epoch(epoch: int, checkpoint: str | None = None) -> EpochEnd:
    return EpochEnd(epoch=epoch, phase="grow", train_loss=float("nan"), val_accuracy=0.5, lr=0.1, params=100,
                    macs=200, seconds=0.1, units=[UnitStat("conv1", 4, 3, 0.75)], checkpoint=checkpoint)


# --------------------------------------------------------------------------- keys and jobs


def test_api_keys_store_only_a_hash_and_authenticate_their_owner(sessions):
    with sessions() as session:
        secret = keys.create_key(session, "alice")
        other = keys.create_key(session, "bob")
    assert secret.startswith("ng_") and len(secret) == 3 + 43 and secret != other
    with sessions() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.owner == "alice")).one()
        assert stored.key_hash == keys.hash_key(secret) and secret not in (stored.key_hash, stored.prefix)
        assert stored.prefix == secret[:12]
        assert keys.authenticate(session, secret) == "alice"
        assert keys.authenticate(session, other) == "bob"
        assert keys.authenticate(session, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert keys.authenticate(session, "") is None
        assert keys.revoke_key(session, stored.prefix) == 1
        assert keys.authenticate(session, secret) is None
        assert keys.authenticate(session, other) == "bob"


def test_create_job_normalises_the_spec_and_honours_idempotency_keys(sessions):
    with sessions() as session:
        job, created = jobs_store.create_job(session, owner="alice", spec=tiny_spec(epochs=4, finetune=2),
                                       max_attempts=3, idempotency_key="k1")
        again, created_again = jobs_store.create_job(session, owner="alice", spec=tiny_spec(epochs=9), max_attempts=3,
                                               idempotency_key="k1")
        others, created_for_bob = jobs_store.create_job(session, owner="bob", spec=tiny_spec(), max_attempts=3,
                                                  idempotency_key="k1")
    assert created and not created_again and created_for_bob
    assert again.id == job.id and others.id != job.id
    stored = load_job(sessions, job.id)
    assert stored.status == JobStatus.QUEUED and stored.attempts == 0 and stored.method == "grow"
    assert stored.spec["train"]["epochs"] == 4 and stored.spec["train"]["momentum"] == 0.9  # defaults filled
    assert stored.progress_total == 4 + 2 and stored.current_model == stored.spec["model"]
    assert [e.payload for e in events_of(sessions, job.id)] == [{"status": "queued"}]


def test_a_bad_spec_is_rejected_before_anything_is_stored(sessions):
    with sessions() as session, pytest.raises(SpecError) as error:
        jobs_store.create_job(session, owner="alice", spec=tiny_spec(growth={"threshold": 2}), max_attempts=3)
    assert error.value.field == "growth.threshold"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


# --------------------------------------------------------------------------- claims and leases


def test_a_claim_is_exclusive_while_its_lease_lives_and_fences_the_loser(sessions):
    job_id = new_job(sessions)
    first = claim(sessions, job_id, "w1/a")
    assert first is not None and first.attempt == 1 and first.checkpoint_path is None
    assert claim(sessions, job_id, "w2/b") is None  # a second delivery while w1 runs: no-op

    expire_lease(sessions, job_id)  # w1 went silent
    second = claim(sessions, job_id, "w2/b")
    assert second is not None and second.attempt == 2
    with sessions() as session:
        # w1 comes back: it can neither renew nor record anything any more.
        assert jobs_store.renew_lease(session, job_id, lease_owner="w1/a", lease_seconds=60) is None
        assert not jobs_store.record_epoch(session, job_id, lease_owner="w1/a", lease_seconds=60, epoch=an_epoch(0))
        assert jobs_store.renew_lease(session, job_id, lease_owner="w2/b", lease_seconds=60) is False
        assert jobs_store.record_epoch(session, job_id, lease_owner="w2/b", lease_seconds=60,
                                 epoch=an_epoch(0, checkpoint="/ckpt/epoch-00000.pt"))
    [row] = epochs_of(sessions, job_id)
    assert row.train_loss is None and row.val_accuracy == 0.5  # NaN loss stored as NULL, not rejected
    job = load_job(sessions, job_id)
    assert (job.worker, job.progress_epoch, job.checkpoint_epoch) == ("w2", 1, 0)
    assert job.current_widths == {"conv1": 4}


def test_finished_cancelled_and_exhausted_jobs_are_not_claimable(sessions):
    finished, cancelled, exhausted = (new_job(sessions, max_attempts=m) for m in (3, 3, 1))
    for job_id in (finished, exhausted):
        claim(sessions, job_id, "w1/a")
    with sessions() as session:
        assert jobs_store.end_job(session, finished, lease_owner="w1/a", status=JobStatus.FAILED, error="boom")
        jobs_store.request_cancel(session, cancelled)
    expire_lease(sessions, exhausted)
    for job_id in (finished, cancelled, exhausted):
        assert claim(sessions, job_id, "w2/b") is None
    assert load_job(sessions, exhausted).attempts == 1


def test_cancel_stops_a_queued_job_at_once_and_flags_a_running_one(sessions):
    queued, running = new_job(sessions), new_job(sessions)
    claim(sessions, running, "w1/a")
    with sessions() as session:
        assert jobs_store.request_cancel(session, queued).status == JobStatus.CANCELED
        flagged = jobs_store.request_cancel(session, running)
        assert flagged.status == JobStatus.RUNNING and flagged.cancel_requested
        assert jobs_store.request_cancel(session, uuid.uuid4()) is None
        assert jobs_store.renew_lease(session, running, lease_owner="w1/a", lease_seconds=60) is True


def test_a_cancel_racing_a_release_to_the_queue_still_cancels_the_job(settings_env, fresh_pg_url):
    # PostgreSQL only: SQLite writers take the whole database in turn, so they never interleave like this.
    settings = settings_env(database_url=fresh_pg_url)
    sessions = session_factory(settings.database_url)
    job_id = new_job(sessions)
    claim(sessions, job_id, "w1/a")
    releases: list[threading.Thread] = []
    released: list[bool] = []

    def release() -> None:
        with sessions() as session:
            released.append(jobs_store.release_job(session, job_id, lease_owner="w1/a", reason="worker shutting down"))

    def worker_releases_the_job_meanwhile(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE jobs") and not releases:
            # The job's worker hands it back to the queue right after the cancel's (first) UPDATE ran.
            # A cancel in one statement holds the row until it commits, so the release waits that long.
            releases.append(threading.Thread(target=release))
            releases[0].start()
            releases[0].join(timeout=2)

    canceller = make_engine(settings.database_url)
    event.listen(canceller, "after_cursor_execute", worker_releases_the_job_meanwhile)
    try:
        with Session(canceller) as session:
            answer = jobs_store.request_cancel(session, job_id)
    finally:
        canceller.dispose()
    releases[0].join(timeout=30)
    assert answer.cancel_requested  # what the API answers: the cancel was taken
    assert released == [False]  # and a job with a cancel request is not handed back to the queue ...
    job = load_job(sessions, job_id)
    assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)  # ... its worker cancels it
    expire_lease(sessions, job_id)
    assert claim(sessions, job_id, "w2/b") is None  # nobody runs it again


def test_a_cancel_landing_while_the_reaper_looks_is_not_lost_in_the_queue(settings_env, fresh_pg_url):
    # The reaper reads the expired jobs, then moves each one; a cancel between the two must not be
    # re-queued (a queued job with a cancel request is never claimed, so it would wait forever).
    settings = settings_env(database_url=fresh_pg_url)
    sessions = session_factory(settings.database_url)
    job_id = new_job(sessions)
    claim(sessions, job_id, "w1/a")
    expire_lease(sessions, job_id)
    cancelled: list[bool] = []

    def cancel_after_the_reapers_select(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT jobs.id, jobs.attempts") and not cancelled:
            with sessions() as session:
                cancelled.append(jobs_store.request_cancel(session, job_id).cancel_requested)

    reaper = make_engine(settings.database_url)
    event.listen(reaper, "after_cursor_execute", cancel_after_the_reapers_select)
    try:
        with Session(reaper) as session:
            first = jobs_store.reap_expired_leases(session)
    finally:
        reaper.dispose()
    assert cancelled == [True] and first.requeued == []
    with sessions() as session:  # the next pass sees the cancel and ends the job
        assert jobs_store.reap_expired_leases(session).canceled == [job_id]
    assert load_job(sessions, job_id).status == JobStatus.CANCELED


def test_the_reaper_requeues_fails_or_cancels_jobs_whose_lease_expired(settings, sessions):
    retry, exhausted, cancelled, alive = (new_job(sessions, max_attempts=m) for m in (3, 2, 3, 3))
    for job_id in (retry, exhausted, exhausted, cancelled, alive):
        if job_id == exhausted:
            expire_lease(sessions, job_id)
        assert claim(sessions, job_id, f"w/{uuid.uuid4().hex}") is not None
    with sessions() as session:
        jobs_store.request_cancel(session, cancelled)
    for job_id in (retry, exhausted, cancelled):
        expire_lease(sessions, job_id)

    sent: list[uuid.UUID] = []
    reaped = reap_once(settings, sent.append)
    assert (reaped.requeued, reaped.failed, reaped.canceled) == ([retry], [exhausted], [cancelled])
    assert sent == [retry]
    assert load_job(sessions, retry).status == JobStatus.QUEUED and load_job(sessions, retry).lease_owner is None
    assert load_job(sessions, exhausted).status == JobStatus.FAILED
    assert load_job(sessions, exhausted).error.startswith("worker lost 2 times")
    assert load_job(sessions, cancelled).status == JobStatus.CANCELED
    assert load_job(sessions, alive).status == JobStatus.RUNNING
    again = reap_once(settings, sent.append)  # nothing left to move; nothing sent twice
    assert (again.requeued, again.failed, again.canceled, sent) == ([], [], [], [retry])
    assert claim(sessions, retry, "w3/c").attempt == 2


def skew_host_clock(monkeypatch: pytest.MonkeyPatch, hours: float) -> None:
    """Make this process's UTC clock run ``hours`` off, wherever the service code reads it."""
    host_clock = utcnow() + timedelta(hours=hours)
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("worker", "app") and callable(getattr(module, "utcnow", None)):
            monkeypatch.setattr(module, "utcnow", lambda: host_clock)


@pytest.mark.parametrize("skew_hours", [1, -1])
def test_a_host_whose_clock_is_off_neither_reaps_a_live_job_nor_keeps_a_dead_one(
        settings_env, fresh_pg_url, monkeypatch, skew_hours):
    # Leases are written and judged by the database's clock, so the hosts' own clocks do not matter.
    sessions = session_factory(settings_env(database_url=fresh_pg_url, lease_seconds=60).database_url)
    live, dead = new_job(sessions), new_job(sessions)
    assert claim(sessions, live, "w1/a") is not None and claim(sessions, dead, "w2/b") is not None
    expire_lease(sessions, dead)

    skew_host_clock(monkeypatch, skew_hours)
    with sessions() as session:
        assert jobs_store.reap_expired_leases(session).requeued == [dead]
    assert load_job(sessions, live).status == JobStatus.RUNNING
    with sessions() as session:  # nor can it claim the live job over its holder's head
        assert jobs_store.claim_job(session, live, lease_owner="w3/c", worker="w3", lease_seconds=60) is None
    assert claim(sessions, dead, "w3/c") is not None
    with sessions() as session:  # and the lease it took runs 60 s from the database's now, not its own
        database_now = session.scalar(select(func.now()))
        lease_left = (session.get(Job, dead).lease_expires_at - database_now).total_seconds()
    assert 55 < lease_left <= 60


# --------------------------------------------------------------------------- real runs


def test_a_job_runs_to_success_recording_every_epoch_layer_event_and_its_weights(settings, sessions):
    from growth.data import load_dataset
    from growth.models import build_model
    from growth.spec import parse_spec
    from growth.training import evaluate

    job_id = new_job(sessions, tiny_spec(epochs=3, finetune=1))
    assert run_job(job_id, worker_name="w1", settings=settings) == Outcome.SUCCEEDED

    job = load_job(sessions, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and job.error is None
    n = job.result["epochs"]
    assert job.progress_epoch == job.progress_total == n and job.checkpoint_epoch == n - 1
    assert "history" not in job.result and job.current_model == job.result["final"]["model"]
    assert job.current_widths == job.result["final"]["widths"]
    assert job.test_accuracy == job.result["final"]["test_accuracy"] and job.params == job.result["final"]["params"]

    rows = epochs_of(sessions, job_id)
    assert [r.epoch for r in rows] == list(range(n))
    with sessions() as session:
        layers = list(session.scalars(select(JobUnit).where(JobUnit.job_id == job_id)
                                      .order_by(JobUnit.epoch, JobUnit.unit)))
    # The history in the database is the history growth reports (rebuilt by a reference run of the same spec).
    import growth

    reference = growth.run(job.spec)
    assert [(r.phase, r.train_loss, r.val_accuracy, r.lr, r.params, r.macs, r.support_val_accuracy)
            for r in rows] == [
        (h["phase"], h["train_loss"], h["val_accuracy"], h["lr"], h["params"], h["macs"], h["support_val_accuracy"])
        for h in reference["history"]]
    assert all(r.support_val_accuracy is not None for r in rows)  # a DessiLBI run measures it every epoch
    assert [(r.epoch, r.unit, r.width, r.selected, r.ratio, r.grew) for r in layers] == sorted(
        (h["epoch"], u["name"], u["width"], u["selected"], u["ratio"], u["grew"])
        for h in reference["history"] for u in h["units"])
    assert any(r.grew > 0 for r in layers), "the spec is meant to widen at least once"
    with sessions() as session:  # the ORM relationships read the same rows, in order
        loaded = session.get(Job, job_id)
        assert [r.epoch for r in loaded.epochs] == list(range(n)) and len(loaded.units) == len(layers)
        assert [e.id for e in loaded.events] == sorted(e.id for e in loaded.events)

    events = events_of(sessions, job_id)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["state", "state"] and kinds[-1] == "state"
    assert [e.payload["status"] for e in events if e.kind == "state"] == ["queued", "running", "succeeded"]
    assert [e.payload["epoch"] for e in events if e.kind == "epoch"] == list(range(n))
    assert [e.payload["units"] for e in events if e.kind == "architecture"] == [
        c["units"] for c in reference["events"]]
    for change in (e for e in events if e.kind == "architecture"):  # each change is streamed before its epoch
        following = next(e for e in events if e.id > change.id and e.kind == "epoch")
        assert following.payload["epoch"] == change.payload["epoch"]

    with sessions() as session:
        artifacts = {a.kind: a for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id))}
    weights = artifacts["weights"]
    assert weights.path == job.result["weights"] and weights.path.endswith(f"{job_id}/weights.safetensors")
    assert weights.sha256 == sha256_file(weights.path) and artifacts["checkpoint"].epoch == n - 1
    with safe_open(weights.path, "pt") as handle:
        model_spec = json.loads(handle.metadata()["model"])
    assert model_spec == job.result["final"]["model"]
    model = build_model(model_spec)
    model.load_state_dict(load_file(weights.path))
    spec = parse_spec(job.spec)
    x, y = load_dataset(spec.data, seed=spec.seed).test
    assert evaluate(model, x, y) == job.test_accuracy  # the stored weights are the model that was scored


def test_a_second_delivery_of_a_finished_job_does_nothing(settings, sessions):
    job_id = new_job(sessions, tiny_spec(epochs=1, finetune=0))
    assert run_job(job_id, worker_name="w1", settings=settings) == Outcome.SUCCEEDED
    assert run_job(job_id, worker_name="w2", settings=settings) == Outcome.SKIPPED
    job = load_job(sessions, job_id)
    assert (job.attempts, job.worker, len(epochs_of(sessions, job_id))) == (1, "w1", 1)


def test_a_run_handed_back_resumes_with_exactly_the_history_of_an_uninterrupted_run(settings, sessions):
    spec = tiny_spec(epochs=4, finetune=1)
    interrupted, straight = new_job(sessions, spec), new_job(sessions, spec)

    def two_epochs_recorded() -> bool:
        return len(epochs_of(sessions, interrupted)) >= 2

    assert run_job(interrupted, worker_name="w1", settings=settings,
                   process_stopping=two_epochs_recorded) == Outcome.RELEASED
    job = load_job(sessions, interrupted)
    assert (job.status, job.attempts, job.checkpoint_epoch) == (JobStatus.QUEUED, 0, 1)
    assert run_job(interrupted, worker_name="w2", settings=settings) == Outcome.SUCCEEDED
    assert run_job(straight, worker_name="w3", settings=settings) == Outcome.SUCCEEDED

    resumed, reference = epochs_of(sessions, interrupted), epochs_of(sessions, straight)
    assert [r.epoch for r in resumed] == list(range(len(reference)))
    assert [(r.train_loss, r.val_accuracy, r.params) for r in resumed] == [
        (r.train_loss, r.val_accuracy, r.params) for r in reference]
    assert load_job(sessions, interrupted).test_accuracy == load_job(sessions, straight).test_accuracy
    running = [e.payload for e in events_of(sessions, interrupted) if e.payload.get("status") == "running"]
    assert [p["resumed_after_epoch"] for p in running] == [None, 1]


def test_a_running_job_cancels_at_a_batch_boundary_and_keeps_its_history(settings, sessions, wait):
    job_id = new_job(sessions, tiny_spec(epochs=500, finetune=0))
    outcome: list[Outcome] = []
    runner = threading.Thread(target=lambda: outcome.append(run_job(job_id, worker_name="w1", settings=settings)))
    runner.start()
    wait(lambda: load_job(sessions, job_id).progress_epoch >= 1, message="the first epoch")
    with sessions() as session:
        jobs_store.request_cancel(session, job_id)
    runner.join(timeout=120)
    assert outcome == [Outcome.CANCELED]
    job = load_job(sessions, job_id)
    rows = epochs_of(sessions, job_id)
    assert job.status == JobStatus.CANCELED and job.finished_at is not None and job.error is None
    assert 1 <= len(rows) < 500 and [r.epoch for r in rows] == list(range(len(rows)))
    assert job.progress_epoch == len(rows)
    with sessions() as session:
        checkpoint = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).one()
    assert checkpoint.kind == "checkpoint" and checkpoint.path == job.checkpoint_path

    # Retried, it resumes after the last recorded epoch (stopped again here one epoch later).
    with sessions() as session:
        retried = jobs_store.retry_job(session, job_id, extra_attempts=2)
    assert (retried.status, retried.max_attempts, retried.cancel_requested) == (JobStatus.QUEUED, 3, False)
    assert run_job(job_id, worker_name="w2", settings=settings,
                   process_stopping=lambda: len(epochs_of(sessions, job_id)) > len(rows)) == Outcome.RELEASED
    assert [r.epoch for r in epochs_of(sessions, job_id)] == list(range(len(rows) + 1))
    running = [e.payload for e in events_of(sessions, job_id) if e.payload.get("status") == "running"]
    assert [p["resumed_after_epoch"] for p in running] == [None, job.checkpoint_epoch]


def test_only_failed_or_canceled_jobs_are_retried(sessions):
    queued, running = new_job(sessions), new_job(sessions)
    claim(sessions, running)
    with sessions() as session:
        assert jobs_store.retry_job(session, queued, extra_attempts=1) is None
        assert jobs_store.retry_job(session, running, extra_attempts=1) is None
        jobs_store.end_job(session, running, lease_owner="w1/a", status=JobStatus.FAILED, error="boom")
        retried = jobs_store.retry_job(session, running, extra_attempts=1)
    assert (retried.status, retried.error, retried.attempts, retried.max_attempts) == (JobStatus.QUEUED, None, 1, 2)
    assert claim(sessions, running, "w2/b").attempt == 2


def test_a_job_whose_checkpoint_is_gone_fails_with_the_reason(settings, sessions):
    job_id = new_job(sessions)
    with sessions() as session:  # as if a previous attempt recorded an epoch and the artifact store lost the file
        session.execute(update(Job).where(Job.id == job_id)
                        .values(checkpoint_path="/nonexistent/epoch-00000.pt", checkpoint_epoch=0))
        session.commit()
    assert run_job(job_id, worker_name="w1", settings=settings) == Outcome.FAILED
    job = load_job(sessions, job_id)
    assert job.status == JobStatus.FAILED and job.error.startswith("resume_from:")
    assert "/nonexistent/epoch-00000.pt" in job.error
    assert events_of(sessions, job_id)[-1].payload == {"status": "failed", "error": job.error}


def checkpointing_every(every: int, epochs: int, finetune: int) -> dict:
    spec = tiny_spec(epochs=epochs, finetune=finetune)
    spec["train"] = {**spec["train"], "checkpoint_every": every}
    return spec


def test_a_run_resumed_from_a_checkpoint_before_its_last_epoch_records_every_epoch_once(settings, sessions):
    # Every second epoch writes a checkpoint: epochs 1 and 3 do, so a run stopped after epoch 2
    # resumes after epoch 1 and runs epoch 2 again.
    spec = checkpointing_every(2, epochs=5, finetune=1)
    interrupted, straight = new_job(sessions, spec), new_job(sessions, spec)
    assert run_job(interrupted, worker_name="w1", settings=settings,
                   process_stopping=lambda: len(epochs_of(sessions, interrupted)) >= 3) == Outcome.RELEASED
    stopped = load_job(sessions, interrupted)
    assert (stopped.progress_epoch, stopped.checkpoint_epoch) == (3, 1)

    # The claim forgets epoch 2 and moves the progress back to the checkpoint, in the claim's transaction.
    claimed = claim(sessions, interrupted, "w2/a")
    assert claimed.checkpoint_epoch == 1
    job = load_job(sessions, interrupted)
    assert [r.epoch for r in epochs_of(sessions, interrupted)] == [0, 1] and job.progress_epoch == 2
    with sessions() as session:
        widths_after_1 = dict(session.execute(select(JobUnit.unit, JobUnit.width)
                                              .where(JobUnit.job_id == interrupted, JobUnit.epoch == 1)).all())
        assert session.scalar(select(func.max(JobUnit.epoch)).where(JobUnit.job_id == interrupted)) == 1
    assert job.current_widths == widths_after_1
    assert [e.payload["epoch"] for e in events_of(sessions, interrupted) if e.kind == "epoch"] == [0, 1]
    kept_changes = [e.payload["spec"] for e in events_of(sessions, interrupted) if e.kind == "architecture"]
    assert job.current_model == (kept_changes[-1] if kept_changes else stopped.spec["model"])
    assert job.current_model["layers"] != stopped.current_model["layers"]  # epoch 2's growth is undone
    expire_lease(sessions, interrupted)  # that claimant dies; the next attempt resumes from the same checkpoint

    assert run_job(interrupted, worker_name="w3", settings=settings) == Outcome.SUCCEEDED
    assert run_job(straight, worker_name="w4", settings=settings) == Outcome.SUCCEEDED
    resumed, reference = epochs_of(sessions, interrupted), epochs_of(sessions, straight)
    assert len(reference) > 3
    assert [r.epoch for r in resumed] == list(range(len(reference)))  # none missing, none twice
    assert [(r.train_loss, r.val_accuracy, r.params) for r in resumed] == [
        (r.train_loss, r.val_accuracy, r.params) for r in reference]
    assert load_job(sessions, interrupted).test_accuracy == load_job(sessions, straight).test_accuracy

    def per_epoch(job_id) -> list[tuple]:
        return [(e.kind, e.payload["epoch"], e.payload.get("units")) for e in events_of(sessions, job_id)
                if e.kind in ("epoch", "architecture")]

    assert per_epoch(interrupted) == per_epoch(straight)  # what a client streams: each epoch and change once
    running = [e.payload for e in events_of(sessions, interrupted) if e.payload.get("status") == "running"]
    assert [(p["resumed_after_epoch"], p.get("discarded_epochs")) for p in running] == [(None, None), (1, 1), (1, None)]


def test_an_epoch_already_in_the_history_fails_the_job_with_the_reason(settings, sessions):
    job_id = new_job(sessions, tiny_spec(epochs=2, finetune=0))
    with sessions() as session:  # a row the job's progress does not account for (a bug, or a hand edit)
        session.add(JobEpoch(job_id=job_id, epoch=0, phase="grow", train_loss=1.0, val_accuracy=0.0, lr=0.1,
                             params=1, macs=1, seconds=0.1))
        session.commit()
    # An IntegrityError, but retrying would hit it again: the job fails at once instead of waiting out
    # its lease max_attempts times and ending as "worker lost".
    assert run_job(job_id, worker_name="w1", settings=settings) == Outcome.FAILED
    job = load_job(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.error.startswith("epoch 0 is already recorded in the job's history")
    assert events_of(sessions, job_id)[-1].payload == {"status": "failed", "error": job.error}


def test_the_lease_is_renewed_while_a_trained_job_writes_its_weights(settings_env, database_url, monkeypatch):
    settings = settings_env(database_url=database_url, lease_seconds=1.5, heartbeat_seconds=0.2, reaper_seconds=0.2)
    sessions = session_factory(settings.database_url)
    job_id = new_job(sessions, tiny_spec(epochs=1, finetune=0))
    write_weights = artifacts.write_weights

    def slow_write_weights(*args, **kwargs):
        time.sleep(2 * settings.lease_seconds)  # converting a large model's weights takes longer than a lease
        return write_weights(*args, **kwargs)

    monkeypatch.setattr(artifacts, "write_weights", slow_write_weights)
    requeued: list[uuid.UUID] = []
    reaper = Reaper(settings, requeued.append).start()
    try:
        outcome = run_job(job_id, worker_name="w1", settings=settings)
    finally:
        reaper.stop(timeout=30)
    assert outcome == Outcome.SUCCEEDED and requeued == []
    job = load_job(sessions, job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert [e.payload["status"] for e in events_of(sessions, job_id) if e.kind == "state"] == [
        "queued", "running", "succeeded"]


def test_an_attempt_that_lost_its_lease_cannot_replace_the_weights_of_the_attempt_that_finished(settings, sessions):
    import growth

    job_id = new_job(sessions, tiny_spec(epochs=1, finetune=0))
    stale = claim(sessions, job_id, "w1/a")
    expire_lease(sessions, job_id)  # w1 went silent, and w2 ran the job to the end
    assert run_job(job_id, worker_name="w2", settings=settings) == Outcome.SUCCEEDED
    with sessions() as session:
        weights = session.scalars(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == "weights")).one()
    assert weights.path == load_job(sessions, job_id).result["weights"]
    assert weights.path.endswith(f"{job_id}/weights.safetensors")

    # w1 comes back and reaches the end of its own run (another seed, so its weights differ).
    attempt_dir = artifacts.checkpoint_dir(settings.artifact_dir, job_id, stale.attempt)
    late = growth.run({**stale.spec, "seed": 99}, checkpoint_dir=attempt_dir)
    assert _succeed(session_factory(settings.database_url), settings, stale, late) == Outcome.LOST
    assert (Path(weights.path).stat().st_size, sha256_file(weights.path)) == (weights.size, weights.sha256)
    assert not artifacts.staged_weights_path(settings.artifact_dir, job_id, stale.attempt).exists()
    spec = load_job(sessions, job_id).result["final"]["model"]
    with safe_open(weights.path, "pt") as handle:
        assert json.loads(handle.metadata()["model"]) == spec


# --------------------------------------------------------------------------- embedded mode


@pytest.fixture
def embedded(settings_env, sqlite_url):
    settings = settings_env(database_url=sqlite_url, lease_seconds=2, heartbeat_seconds=0.2, reaper_seconds=0.2)
    yield settings
    stop_embedded(timeout=60)


def test_the_embedded_runner_runs_queued_jobs_end_to_end_on_sqlite(embedded, wait):
    sessions = session_factory(embedded.database_url)
    first, second = new_job(sessions, tiny_spec(epochs=2, finetune=1)), new_job(sessions, tiny_spec(epochs=1))
    start_embedded(embedded)
    enqueue(first)
    enqueue(second)
    wait(lambda: all(load_job(sessions, j).status == JobStatus.SUCCEEDED for j in (first, second)),
         message="both jobs to succeed")
    for job_id in (first, second):
        job = load_job(sessions, job_id)
        assert job.attempts == 1 and job.worker.startswith("embedded@")
        assert [r.epoch for r in epochs_of(sessions, job_id)] == list(range(job.result["epochs"]))


def test_the_embedded_runner_recovers_a_job_its_previous_process_left_running(embedded, wait):
    sessions = session_factory(embedded.database_url)
    job_id = new_job(sessions, tiny_spec(epochs=2, finetune=0))
    assert claim(sessions, job_id, "crashed@host/x", lease_seconds=0.5) is not None  # and then the process died
    start_embedded(embedded)
    wait(lambda: load_job(sessions, job_id).status == JobStatus.SUCCEEDED, message="the recovered job")
    job = load_job(sessions, job_id)
    assert job.attempts == 2 and job.worker.startswith("embedded@")
    states = [e.payload["status"] for e in events_of(sessions, job_id) if e.kind == "state"]
    assert states == ["queued", "running", "queued", "running", "succeeded"]
