"""GET /v1/jobs/{id}/result: a succeeded job's result JSON, the document growth.run gives for its spec."""
from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest

import growth
from api_support import LiveApi, smoke_spec, wait_finished
from app.cli import main

pytestmark = pytest.mark.service


def test_only_a_succeeded_job_of_the_caller_has_a_result(queue_api: LiveApi) -> None:
    from worker.store import jobs as jobs_store
    from worker.store.session import session_scope

    alice, bob = queue_api.user("alice"), queue_api.user("bob")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]

    queued = alice.get(f"/v1/jobs/{job_id}/result")
    assert queued.status_code == 409
    assert queued.json() == {"detail": f"job {job_id} is queued; its result exists once it succeeded"}
    with session_scope(queue_api.settings.database_url) as session:
        assert jobs_store.claim_job(session, uuid.UUID(job_id), lease_owner="test-attempt", worker="test",
                                    lease_seconds=600) is not None
    running = alice.get(f"/v1/jobs/{job_id}/result")
    assert running.status_code == 409 and " is running;" in running.json()["detail"]

    assert bob.get(f"/v1/jobs/{job_id}/result").status_code == 404
    assert alice.get(f"/v1/jobs/{uuid.uuid4()}/result").status_code == 404
    assert alice.get(f"/v1/jobs/{job_id}").json()["links"]["result"] == f"/v1/jobs/{job_id}/result"


def test_the_result_is_the_librarys_for_the_same_spec(embedded_api: LiveApi, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from worker.store.models import Job
    from worker.store.session import session_scope

    key = embedded_api.key("grace")
    client = embedded_api.client(key)
    spec = smoke_spec(train={**smoke_spec()["train"], "threads": 1})  # the same order of sums in both runs
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    assert wait_finished(client, job_id)["status"] == "succeeded"
    response = client.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    served = response.json()
    library = json.loads(json.dumps(growth.run(spec)))

    # Where the two cannot agree: timing, and the weights (a download here, no file from growth.run
    # without a checkpoint folder).
    assert served.pop("weights") == f"/v1/jobs/{job_id}/artifacts/weights"
    assert client.get(f"/v1/jobs/{job_id}/artifacts/weights").status_code == 200
    assert served.pop("wall_seconds") > 0 and library.pop("wall_seconds") > 0
    for row in served["history"] + library["history"]:
        assert row.pop("seconds") >= 0
    assert list(served) == list(library)  # the same keys in the same order: history right after final
    assert served == library
    assert len(served["history"]) == served["epochs"] > 0

    # `netgrow result` writes the same document.
    out = tmp_path / "result.json"
    code = main(["result", job_id, "--out", str(out), "--server", embedded_api.url, "--key", key])
    assert code == 0 and capsys.readouterr().out == f"result written to {out}\n"
    assert json.loads(out.read_text()) == response.json()

    # JSON has no NaN: a diverged run's numbers are null, as in the history.
    with session_scope(embedded_api.settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        job.result = {**job.result, "final": {**job.result["final"], "test_accuracy": math.nan}}
        session.commit()
    diverged = client.get(f"/v1/jobs/{job_id}/result")
    assert diverged.status_code == 200 and diverged.json()["final"]["test_accuracy"] is None
