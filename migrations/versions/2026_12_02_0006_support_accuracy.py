"""job_epochs.support_val_accuracy: the validation accuracy of the network restricted to Γ's support

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

DessiLBI runs report, every epoch, the accuracy of the network Γ selects
(growth/methods/support.py). Nullable: methods without Γ have none, and epochs
recorded before this revision keep NULL (their runs did not measure it).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job_epochs", sa.Column("support_val_accuracy", sa.Float(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it), as 0002 does, not a batch table rebuild.
    op.drop_column("job_epochs", "support_val_accuracy")
