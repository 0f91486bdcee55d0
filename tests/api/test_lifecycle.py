"""Cancel and retry over HTTP: queued jobs cancel at once, running ones at a batch boundary, and a
retried job resumes after its last checkpointed epoch with no epoch missing or repeated."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api_support import LiveApi, read_events, running_api, smoke_spec

pytestmark = pytest.mark.service


def test_a_queued_job_cancels_at_once_and_retries(queue_api: LiveApi,
                                                 queued_message_count: Callable[[], int]) -> None:
    client = queue_api.user()
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    assert queued_message_count() == 1

    canceled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled" and canceled.json()["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "canceled" in again.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}/artifacts/weights").status_code == 409
    assert client.get("/v1/compare", params={"ids": job_id}).status_code == 409

    retried = client.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 200
    job = retried.json()
    assert job["status"] == "queued" and job["cancel_requested"] is False and job["finished_at"] is None
    assert job["max_attempts"] == job["attempts"] + queue_api.settings.max_attempts
    assert queued_message_count() == 2  # sent to the workers again
    assert client.post(f"/v1/jobs/{job_id}/retry").status_code == 409  # queued: nothing to retry

    states = [m.json() for m in read_events(client, job_id, stop=lambda m: m.json().get("reason") == "retried")]
    assert [s["status"] for s in states] == ["queued", "canceled", "queued"]


@pytest.fixture
def fast_lease_api(settings_env: Callable[..., Any], sqlite_url: str) -> Iterator[LiveApi]:
    """Embedded, with a 3 s lease: the heartbeat (every second) notices a cancel request quickly."""
    settings = settings_env(database_url=sqlite_url, broker_url=None, lease_seconds=3)
    with running_api(settings, run_jobs=True) as api:
        yield api


def test_a_running_job_cancels_cooperatively_and_a_retry_resumes_it(fast_lease_api: LiveApi) -> None:
    client = fast_lease_api.user()
    # Far more epochs than either run gets to: each run ends with a cancel, so the test takes about
    # as long on a fast machine as on a slow one, and a cancel can never come too late.
    spec = smoke_spec(method="dense", train={**smoke_spec()["train"], "epochs": 1000})
    del spec["growth"]
    job_id = client.post("/v1/jobs", json=spec).json()["id"]

    def cancel_at(epoch: int) -> Callable[[Any], bool]:
        def on_message(message: Any) -> bool:
            if message.event == "epoch" and message.json()["epoch"] == epoch:
                response = client.post(f"/v1/jobs/{job_id}/cancel")
                assert response.status_code == 200
                assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True
            return False
        return on_message

    first_run = read_events(client, job_id, stop=cancel_at(1))
    assert first_run[-1].event == "state" and first_run[-1].json()["status"] == "canceled"
    done = [m.json()["epoch"] for m in first_run if m.event == "epoch"]
    assert done == list(range(len(done))) and 2 <= len(done) < 1000
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["progress"]["epoch"] == len(done)
    assert [e["epoch"] for e in client.get(f"/v1/jobs/{job_id}/history").json()["epochs"]] == done  # kept

    assert client.post(f"/v1/jobs/{job_id}/retry").json()["status"] == "queued"
    second_run = read_events(client, job_id, last_event_id=int(first_run[-1].id), stop=cancel_at(len(done) + 1))
    states = [m.json() for m in second_run if m.event == "state"]
    assert [s["status"] for s in states] == ["queued", "running", "canceled"]
    assert states[1]["resumed_after_epoch"] == len(done) - 1  # the checkpoint of the last recorded epoch
    resumed = [m.json()["epoch"] for m in second_run if m.event == "epoch"]
    assert resumed == list(range(len(done), len(done) + len(resumed))) and len(resumed) >= 2

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["attempts"] == 2
    epochs = [e["epoch"] for e in client.get(f"/v1/jobs/{job_id}/history").json()["epochs"]]
    assert epochs == list(range(len(done) + len(resumed)))  # no epoch missing, none twice
