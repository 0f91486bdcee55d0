"""jobs.queue: the broker queue a job was sent to, so every re-send goes back to the same worker pool

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Existing rows get NULL: their re-sends go to the re-sending process's own
NETGROW_QUEUE, as before this revision.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("queue", sa.String(length=200), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN, not a batch rebuild (which on SQLite would cascade into every job's history).
    op.drop_column("jobs", "queue")
