"""jobs.enqueued_at: when a queued job's id was last sent, so the reaper can re-send a lost message

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Existing rows get NULL, which the reaper reads as "not known to be in the
broker": a job still queued at upgrade time is sent again at the reaper's first
scan (a duplicate message is a no-op; the database claim decides who runs it).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it), not a batch table rebuild: rebuilding
    # drops the old jobs table, and with foreign keys on SQLite cascades that into every job's history.
    op.drop_column("jobs", "enqueued_at")
