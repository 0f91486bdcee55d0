"""job_layers becomes job_units: the table is named for the rows it holds (one growth unit at one epoch)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Every row is kept. PostgreSQL renames the table, its constraints, its index and
its id sequence in place. SQLite cannot rename constraints, so the table is
rebuilt under the new name: created, filled from the old one, and the old one
dropped (nothing references it, so with foreign keys on the drop cascades nowhere).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the table's definition: a revision must not change when the models do.
BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = ("id", "job_id", "epoch", "unit", "width", "selected", "ratio", "grew")


def upgrade() -> None:
    _rename("job_layers", "job_units")


def downgrade() -> None:
    _rename("job_units", "job_layers")


def _rename(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(old, new)
        return
    op.rename_table(old, new)
    for kind, suffix in (("pk", ""), ("uq", "_job_id_unit_epoch"), ("fk", "_job_id_jobs")):
        op.execute(f"ALTER TABLE {new} RENAME CONSTRAINT {kind}_{old}{suffix} TO {kind}_{new}{suffix}")
    op.execute(f"ALTER INDEX ix_{old}_job_id_epoch RENAME TO ix_{new}_job_id_epoch")
    op.execute(f"ALTER SEQUENCE {old}_id_seq RENAME TO {new}_id_seq")


def _rebuild(old: str, new: str) -> None:
    op.create_table(
        new,
        sa.Column("id", BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Uuid(),
                  sa.ForeignKey("jobs.id", name=op.f(f"fk_{new}_job_id_jobs"), ondelete="CASCADE"), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("selected", sa.Integer(), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False),
        sa.Column("grew", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{new}")),
        sa.UniqueConstraint("job_id", "unit", "epoch", name=op.f(f"uq_{new}_job_id_unit_epoch")),
    )
    columns = ", ".join(COLUMNS)
    op.execute(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {old}")
    op.drop_index(op.f(f"ix_{old}_job_id_epoch"), table_name=old)
    op.drop_table(old)
    op.create_index(op.f(f"ix_{new}_job_id_epoch"), new, ["job_id", "epoch"])
