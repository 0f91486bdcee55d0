"""datasets: uploaded datasets (one per owner and sha256), and which jobs use which dataset

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A job's link to its dataset is a table of its own rather than a column on
jobs: adding a foreign-key column to jobs on SQLite needs a table rebuild,
which with foreign keys on cascades into every job's history. Both foreign
keys cascade: a deleted job drops its link, and a dataset can only be deleted
while no unfinished job uses it (checked by the API), after which finished
jobs keep their spec but lose the link.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
FORMATS = "format IN ('npz', 'image_folder')"


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("owner", "sha256", name=op.f("uq_datasets_owner_sha256")),
        sa.CheckConstraint(FORMATS, name=op.f("ck_datasets_format")),
    )
    op.create_index(op.f("ix_datasets_owner_created_at"), "datasets", ["owner", "created_at"])
    op.create_table(
        "job_datasets",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_datasets_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_job_datasets_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_datasets")),
    )
    op.create_index(op.f("ix_job_datasets_dataset_id"), "job_datasets", ["dataset_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_datasets_dataset_id"), table_name="job_datasets")
    op.drop_table("job_datasets")
    op.drop_index(op.f("ix_datasets_owner_created_at"), table_name="datasets")
    op.drop_table("datasets")
