"""Alembic revisions: they build the schema the ORM models describe, both ways, on both backends."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, Uuid, delete, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from worker.store.models import Base, Job, JobEpoch, JobUnit
from worker.store.session import make_engine
from worker.store.migrate import current_revision, downgrade, head_revision, is_up_to_date, upgrade

pytestmark = pytest.mark.service

REPO = Path(__file__).resolve().parents[2]
TABLES = {"alembic_version", "api_keys", "jobs", "job_epochs", "job_units", "artifacts", "job_events",
          "datasets", "job_datasets"}


def schema_diffs(url: str, metadata: MetaData = Base.metadata) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_postgres_database(empty_pg_url):
    assert current_revision(empty_pg_url) is None and not is_up_to_date(empty_pg_url)
    upgrade(empty_pg_url)
    assert table_names(empty_pg_url) == TABLES
    assert current_revision(empty_pg_url) == head_revision()
    downgrade(empty_pg_url)
    assert table_names(empty_pg_url) == {"alembic_version"}
    assert current_revision(empty_pg_url) is None
    upgrade(empty_pg_url)
    assert is_up_to_date(empty_pg_url)
    assert schema_diffs(empty_pg_url) == []


def test_upgrade_downgrade_upgrade_on_an_empty_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    assert table_names(url) == TABLES
    downgrade(url)
    assert table_names(url) == {"alembic_version"}
    upgrade(url)
    assert is_up_to_date(url)
    assert schema_diffs(url) == []


def test_orm_models_match_the_migrated_schema(database_url):
    assert schema_diffs(database_url) == []


def test_the_schema_comparison_notices_a_drift(database_url):
    # The check above is only worth something if a model the migrations do not match shows up as a diff.
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["jobs"].append_column(Column("priority", Integer, nullable=False))
    diffs = schema_diffs(database_url, drifted)
    assert [(diff[0], diff[3].name) for diff in diffs] == [("add_column", "priority")]


def test_constraints_and_cascades_hold_in_the_migrated_schema(database_url):
    engine = make_engine(database_url)
    job_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(Job.__table__.insert().values(
            id=job_id, owner="alice", method="dense", spec={}, status="queued", attempts=0, max_attempts=3,
            progress_epoch=0, progress_total=1, created_at=datetime.now(UTC)))
        epoch = dict(job_id=job_id, epoch=0, phase="train", train_loss=1.0, val_accuracy=0.5, lr=0.1,
                     params=10, macs=20, seconds=0.1)
        connection.execute(JobEpoch.__table__.insert().values(**epoch))
    with pytest.raises(IntegrityError), engine.begin() as connection:  # UNIQUE (job_id, epoch)
        connection.execute(JobEpoch.__table__.insert().values(**epoch))
    with pytest.raises(IntegrityError), engine.begin() as connection:  # CHECK status IN (...)
        connection.execute(Job.__table__.update().where(Job.id == job_id).values(status="paused"))
    with pytest.raises(IntegrityError), engine.begin() as connection:  # FOREIGN KEY (SQLite: PRAGMA foreign_keys)
        connection.execute(JobEpoch.__table__.insert().values(**{**epoch, "job_id": uuid.uuid4()}))
    with engine.begin() as connection:  # ON DELETE CASCADE
        connection.execute(delete(Job).where(Job.id == job_id))
        assert connection.scalar(select(func.count()).select_from(JobEpoch)) == 0
    engine.dispose()


def test_timestamps_come_back_as_aware_utc(database_url):
    from sqlalchemy.orm import Session

    engine = make_engine(database_url)
    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session:
        job = Job(owner="bob", method="dense", spec={}, max_attempts=1, created_at=created)
        session.add(job)
        session.commit()
        job_id = job.id
    with Session(engine) as session:
        stored = session.get(Job, job_id).created_at
    assert stored == created and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    engine.dispose()


def test_migrations_run_from_any_directory_without_alembic_ini(tmp_path):
    # `netgrow migrate` in a container has no repository checkout: the config is built in code.
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", f"from worker.store.migrate import upgrade; upgrade({url!r})"],
                   cwd=tmp_path, env=environment, check=True, capture_output=True)
    assert is_up_to_date(url)


def test_the_alembic_cli_reads_the_url_from_the_environment(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    environment = {**os.environ, "NETGROW_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
                   cwd=REPO, env=environment, check=True, capture_output=True)
    assert is_up_to_date(url)


def test_revision_0003_renames_job_layers_to_job_units_keeping_every_row(empty_database_url):
    url = empty_database_url
    upgrade(url, "0002")
    job_id = uuid.uuid4()
    rows = [dict(job_id=job_id, epoch=epoch, unit=unit, width=8 + epoch, selected=epoch, ratio=epoch / 8, grew=1)
            for epoch in range(2) for unit in ("conv1", "conv2")]
    engine = make_engine(url)
    try:
        with engine.begin() as connection:  # a job with a unit history, stored before the revision
            tables = MetaData()  # the tables as revision 0002 left them (SQLite reflects a UUID as CHAR(32))
            jobs = Table("jobs", tables, Column("id", Uuid, primary_key=True), autoload_with=connection)
            layers = Table("job_layers", tables, Column("job_id", Uuid), autoload_with=connection)
            connection.execute(insert(jobs).values(
                id=job_id, owner="alice", method="grow", spec={}, status="running", attempts=1, max_attempts=3,
                cancel_requested=False, progress_epoch=2, progress_total=4, created_at=datetime.now(UTC)))
            connection.execute(insert(layers), rows)
    finally:
        engine.dispose()

    def stored(table: str) -> list[dict]:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                reflected = Table(table, MetaData(), Column("job_id", Uuid), autoload_with=connection)
                return [{key: value for key, value in row._mapping.items() if key != "id"}
                        for row in connection.execute(select(reflected).order_by(reflected.c.id))]
        finally:
            engine.dispose()

    upgrade(url, "0003")
    assert "job_units" in table_names(url) and "job_layers" not in table_names(url)
    assert stored("job_units") == rows
    upgrade(url)  # the later revisions (0004: jobs.queue, 0005: datasets) leave the rows alone and reach the models
    assert stored("job_units") == rows
    assert schema_diffs(url) == []
    with make_engine(url).begin() as connection:  # the id sequence and the cascade work under the new name
        connection.execute(JobUnit.__table__.insert().values(**{**rows[0], "epoch": 2}))
        assert connection.scalar(select(func.count()).select_from(JobUnit)) == 5
        connection.execute(delete(Job).where(Job.id == job_id))
        assert connection.scalar(select(func.count()).select_from(JobUnit)) == 0
        connection.rollback()

    downgrade(url, "0002")
    assert "job_layers" in table_names(url) and "job_units" not in table_names(url)
    assert stored("job_layers") == rows
    upgrade(url)
    assert stored("job_units") == rows and schema_diffs(url) == []


def test_revision_0006_adds_a_null_support_accuracy_to_every_stored_epoch(empty_database_url):
    url = empty_database_url
    upgrade(url, "0005")
    job_id = uuid.uuid4()
    epoch = dict(job_id=job_id, epoch=0, phase="grow", train_loss=1.5, val_accuracy=0.5, lr=0.1, params=10,
                 macs=20, seconds=0.5, sparsity=None)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:  # an epoch stored before the revision
            tables = MetaData()
            jobs = Table("jobs", tables, Column("id", Uuid, primary_key=True), autoload_with=connection)
            epochs = Table("job_epochs", tables, Column("job_id", Uuid), autoload_with=connection)
            assert "support_val_accuracy" not in epochs.c
            connection.execute(insert(jobs).values(
                id=job_id, owner="alice", method="grow", spec={}, status="running", attempts=1, max_attempts=3,
                cancel_requested=False, progress_epoch=1, progress_total=4, created_at=datetime.now(UTC)))
            connection.execute(insert(epochs).values(**epoch))
    finally:
        engine.dispose()

    def stored() -> list[dict]:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                reflected = Table("job_epochs", MetaData(), Column("job_id", Uuid), autoload_with=connection)
                return [{key: value for key, value in row._mapping.items() if key != "id"}
                        for row in connection.execute(select(reflected))]
        finally:
            engine.dispose()

    upgrade(url, "0006")
    assert stored() == [{**epoch, "support_val_accuracy": None}]
    assert schema_diffs(url) == []
    downgrade(url, "0005")
    assert stored() == [epoch]
    upgrade(url)
    assert stored() == [{**epoch, "support_val_accuracy": None}]
