"""A worker that dies at any phase boundary of a job: the job still ends with its result, weights and success.

The death is simulated in-process, right after the real step completed:
``ProcessDied`` is a ``BaseException``, so it escapes ``run_job``'s error
handling like a SIGKILL would, leaving the database, the lease and the
artifact store exactly as a killed process leaves them (the heartbeat thread
stops with it). The lease then runs out, the reaper re-queues the job and
another worker resumes it. Every phase boundary is covered: the claim, the
first epoch, a checkpoint written but not yet recorded, the last epoch, the
weights written, and the finish.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file
from sqlalchemy import select

import growth.checkpoint
from worker.runners.attempt import Outcome, run_job
from worker.runners.reaper import reap_once
from worker.store import artifacts
from worker.store import jobs as jobs_store
from worker.store.models import Job, JobEpoch, JobEvent, JobStatus
from worker.store.session import session_factory

pytestmark = pytest.mark.service

EPOCHS = 3  # + 1 fine-tuning epoch


def spec() -> dict[str, Any]:
    return {
        "method": "grow", "seed": 3,
        "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 240},
        "train": {"epochs": EPOCHS, "batch_size": 32, "lr": 0.05},
        "optimizer": {"nu": 1.0, "lam": 0.05},
        "growth": {"every": 1, "threshold": 0.5, "add": 2, "finetune_epochs": 1},
    }


class ProcessDied(BaseException):
    """The worker process is gone at this point; nothing after it runs."""


@pytest.fixture
def settings(settings_env, database_url):
    return settings_env(database_url=database_url, lease_seconds=1, heartbeat_seconds=0.2, reaper_seconds=0.2)


@pytest.fixture
def sessions(settings):
    return session_factory(settings.database_url)


def new_job(sessions) -> uuid.UUID:
    with sessions() as session:
        job, _ = jobs_store.create_job(session, owner="alice", spec=spec(), max_attempts=3)
    return job.id


def die_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, when: Callable[[int, Any], bool]) -> None:
    """Replace ``owner.name`` by the real function followed by a process death on the call ``when`` picks."""
    real = getattr(owner, name)
    calls = [0]

    def then_die(*args: Any, **kwargs: Any) -> Any:
        value = real(*args, **kwargs)
        calls[0] += 1
        if when(calls[0], kwargs):
            monkeypatch.setattr(owner, name, real)  # the next process runs the real code only
            raise ProcessDied(f"killed after {name}")
        return value

    monkeypatch.setattr(owner, name, then_die)


TOTAL = EPOCHS + 1
BOUNDARIES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "claim": lambda mp: die_after(mp, jobs_store, "claim_job", lambda n, kw: True),
    "first epoch": lambda mp: die_after(mp, jobs_store, "record_epoch", lambda n, kw: kw["epoch"].epoch == 0),
    # The checkpoint file of epoch 1 is on disk, but the epoch (and the pointer to the file) is not recorded.
    "checkpoint write": lambda mp: die_after(mp, growth.checkpoint, "save", lambda n, kw: n == 2),
    "last epoch": lambda mp: die_after(mp, jobs_store, "record_epoch", lambda n, kw: kw["epoch"].epoch == TOTAL - 1),
    "weights write": lambda mp: die_after(mp, artifacts, "write_weights", lambda n, kw: True),
    "finish": lambda mp: die_after(mp, jobs_store, "finish_job", lambda n, kw: True),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The result and final weights of the same spec run straight through by the library."""
    import growth

    folder = tmp_path_factory.mktemp("reference")
    result = growth.run(spec(), checkpoint_dir=folder)
    import torch

    return {"result": result, "weights": torch.load(result["weights"], weights_only=True)}


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between runs of the same spec: wall time, paths, per-epoch seconds."""
    kept = {key: value for key, value in result.items() if key not in ("wall_seconds", "weights", "history")}
    kept["final"] = {key: value for key, value in result["final"].items() if key != "wall_seconds"}
    return kept


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_a_worker_killed_at_a_phase_boundary_leaves_a_job_that_still_succeeds_with_its_weights(
        settings, sessions, monkeypatch, wait, uninterrupted, boundary):
    job_id = new_job(sessions)
    BOUNDARIES[boundary](monkeypatch)
    with pytest.raises(ProcessDied):
        run_job(job_id, worker_name="first", settings=settings)

    requeued: list[uuid.UUID] = []

    def reaped() -> bool:
        scan = reap_once(settings, requeued.append)
        return bool(scan.requeued) or _job(sessions, job_id).status != JobStatus.RUNNING

    if boundary != "finish":
        wait(reaped, timeout=30, message="the dead worker's lease to run out and the reaper to re-queue the job")
        assert requeued == [job_id]
    outcome = run_job(job_id, worker_name="second", settings=settings)
    assert outcome == (Outcome.SKIPPED if boundary == "finish" else Outcome.SUCCEEDED)

    job = _job(sessions, job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == (1 if boundary == "finish" else 2)
    assert comparable(job.result) == comparable(uninterrupted["result"])
    with sessions() as session:
        epochs = list(session.scalars(select(JobEpoch.epoch).where(JobEpoch.job_id == job_id)
                                      .order_by(JobEpoch.epoch)))
        epoch_events = [payload["epoch"] for payload in session.scalars(
            select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.kind == "epoch")
            .order_by(JobEvent.id))]
    assert epochs == epoch_events == list(range(TOTAL))  # every epoch once, in the rows and in the stream
    weights = load_file(job.result["weights"])
    assert weights.keys() == uninterrupted["weights"].keys()
    assert all(weights[name].equal(uninterrupted["weights"][name]) for name in weights)
    assert Path(job.result["weights"]) == artifacts.weights_path(settings.artifact_dir, job_id)


def test_a_resume_with_nothing_left_to_train_returns_the_result_and_writes_the_weights(tmp_path, uninterrupted):
    """The library alone: resuming from the last checkpoint into a folder that does not exist yet."""
    import growth
    import torch

    first = tmp_path / "attempt-1"
    growth.run(spec(), checkpoint_dir=first)
    last = sorted(first.glob("epoch-*.pt"))[-1]
    events: list[Any] = []
    resumed = growth.run(spec(), events.append, checkpoint_dir=tmp_path / "attempt-2", resume_from=last)
    assert comparable(resumed) == comparable(uninterrupted["result"])
    assert [type(event).__name__ for event in events] == ["Finished"]  # no epoch ran again
    weights = torch.load(resumed["weights"], weights_only=True)
    assert all(weights[name].equal(uninterrupted["weights"][name]) for name in weights)


def _job(sessions, job_id) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def test_the_finish_line_history_is_comparable_json(uninterrupted):
    # The comparison above must not be vacuous: the result carries the trained model's figures.
    kept = comparable(uninterrupted["result"])
    assert kept["final"]["test_accuracy"] > 0 and kept["epochs"] == TOTAL
    json.dumps(kept)
