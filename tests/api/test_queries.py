"""Listing with filters and pages; the history endpoint's filters, values and query count."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from growth.events import EpochEnd, UnitStat
from api_support import LiveApi, dense_spec, smoke_spec

pytestmark = pytest.mark.service

UNITS = ("conv1", "conv2", "conv10")  # conv10 after conv2: units keep model order, not name order


def test_pages_are_newest_first_with_a_total_and_filters(queue_api: LiveApi) -> None:
    client = queue_api.user()
    ids = [client.post("/v1/jobs", json=smoke_spec(seed=i)).json()["id"] for i in range(5)]
    ids += [client.post("/v1/jobs", json=dense_spec() | {"seed": i}).json()["id"] for i in range(2)]
    newest_first = ids[::-1]

    first = client.get("/v1/jobs", params={"limit": 3}).json()
    assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
    assert [job["id"] for job in first["items"]] == newest_first[:3]
    pages = [client.get("/v1/jobs", params={"limit": 3, "offset": offset}).json()["items"] for offset in (3, 6, 9)]
    assert [[job["id"] for job in page] for page in pages] == [newest_first[3:6], newest_first[6:], []]

    # The server caps the page size (queue_api: 5) and says so.
    capped = client.get("/v1/jobs", params={"limit": 100}).json()
    assert capped["limit"] == 5 and len(capped["items"]) == 5 and capped["total"] == 7

    for job_id in ids[:2]:
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"
    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()
    assert canceled["total"] == 2 and {job["id"] for job in canceled["items"]} == set(ids[:2])
    dense = client.get("/v1/jobs", params={"method": "dense"}).json()
    assert dense["total"] == 2 and {job["id"] for job in dense["items"]} == set(ids[5:])
    both = client.get("/v1/jobs", params={"method": "grow", "status": "queued"}).json()
    assert {job["id"] for job in both["items"]} == set(ids[2:5])

    for params in ({"status": "sleeping"}, {"method": "magic"}, {"limit": 0}, {"offset": -1}):
        response = client.get("/v1/jobs", params=params)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", *params]


def _record_epochs(database_url: str, job_id: str, epochs: int) -> None:
    """Write epochs through the worker's own write path, as a worker running the job would."""
    from worker.store import jobs as jobs_store
    from worker.store.session import session_scope

    job = uuid.UUID(job_id)
    with session_scope(database_url) as session:
        claim = jobs_store.claim_job(session, job, lease_owner="test/1", worker="test", lease_seconds=600)
        assert claim is not None
    for epoch in range(epochs):
        units = [UnitStat(name, width=8 + epoch + i, selected=epoch % 8 + i, ratio=(epoch % 8 + i) / (8 + epoch + i),
                          grew=1 if epoch else 0) for i, name in enumerate(UNITS)]
        end = EpochEnd(epoch=epoch, phase="grow" if epoch < epochs - 2 else "finetune", train_loss=1.0 / (epoch + 1),
                       val_accuracy=epoch / epochs, lr=0.1, params=1000 + epoch, macs=5000 + epoch, seconds=0.5,
                       units=units, sparsity=float("nan") if epoch == 1 else None,
                       support_val_accuracy={0: None, 2: float("inf")}.get(epoch, epoch / 8))
        with session_scope(database_url) as session:
            assert jobs_store.record_epoch(session, job, lease_owner="test/1", lease_seconds=600, epoch=end)


def test_history_filters_by_unit_and_epoch_range(queue_api: LiveApi) -> None:
    client = queue_api.user()
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    _record_epochs(queue_api.settings.database_url, job_id, 6)

    full = client.get(f"/v1/jobs/{job_id}/history").json()
    assert full["status"] == "running"
    assert [e["epoch"] for e in full["epochs"]] == list(range(6))
    epoch3 = full["epochs"][3]
    assert epoch3 == {"epoch": 3, "phase": "grow", "train_loss": 0.25, "val_accuracy": 0.5, "lr": 0.1,
                      "params": 1003, "macs": 5003, "seconds": 0.5, "sparsity": None,
                      "support_val_accuracy": 3 / 8, "units": [
                          {"name": "conv1", "width": 11, "selected": 3, "ratio": 3 / 11, "grew": 1},
                          {"name": "conv2", "width": 12, "selected": 4, "ratio": 4 / 12, "grew": 1},
                          {"name": "conv10", "width": 13, "selected": 5, "ratio": 5 / 13, "grew": 1}]}
    assert full["epochs"][1]["sparsity"] is None  # NaN is stored as null, never a 500
    # Γ-support accuracy: null for epochs (or methods) without it, a non-finite value stored as null.
    assert [e["support_val_accuracy"] for e in full["epochs"]] == [None, 1 / 8, None, 3 / 8, 4 / 8, 5 / 8]
    assert full["epochs"][5]["phase"] == "finetune"

    window = client.get(f"/v1/jobs/{job_id}/history",
                        params={"unit": ["conv10", "conv1"], "from_epoch": 2, "to_epoch": 4}).json()
    assert [e["epoch"] for e in window["epochs"]] == [2, 3, 4]
    assert [[u["name"] for u in e["units"]] for e in window["epochs"]] == [["conv1", "conv10"]] * 3
    assert window["epochs"][1]["units"][1]["width"] == 13

    assert client.get(f"/v1/jobs/{job_id}/history", params={"from_epoch": 4}).json()["epochs"][0]["epoch"] == 4
    assert client.get(f"/v1/jobs/{job_id}/history", params={"from_epoch": 5, "to_epoch": 2}).json()["epochs"] == []
    unknown = client.get(f"/v1/jobs/{job_id}/history", params={"unit": "conv99"}).json()
    assert [e["units"] for e in unknown["epochs"]] == [[]] * 6
    bad = client.get(f"/v1/jobs/{job_id}/history", params={"unit": "conv1; drop table jobs"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["query", "unit"]

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["progress"]["epoch"] == 6
    assert job["current_widths"] == {"conv1": 13, "conv2": 14, "conv10": 15}


@contextmanager
def counted_statements(database_url: str) -> Iterator[list[str]]:
    from worker.store.session import get_engine

    statements: list[str] = []
    engine = get_engine(database_url)

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("epochs", [3, 12])
def test_history_is_two_queries_whatever_its_length(queue_api: LiveApi, epochs: int) -> None:
    client = queue_api.user()
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    _record_epochs(queue_api.settings.database_url, job_id, epochs)
    with counted_statements(queue_api.settings.database_url) as statements:
        response = client.get(f"/v1/jobs/{job_id}/history", params={"unit": ["conv1", "conv2"]})
    assert response.status_code == 200 and len(response.json()["epochs"]) == epochs
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert sum("FROM job_epochs" in s for s in selects) == 1
    assert sum("FROM job_units" in s for s in selects) == 1
    # The other two: the API key and the job's owner check.
    assert len(selects) == 4, selects
