"""The disclosure intake's rate limit counters, shared by every worker and process.

Models: :mod:`trustroot.fleet.intake_limit`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``intake_counters``: admissions per client address and minute."""
    op.create_table(
        "intake_counters",
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_key", "bucket", name=op.f("pk_intake_counters")),
    )
    with op.batch_alter_table("intake_counters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intake_counters_bucket"), ["bucket"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("intake_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intake_counters_bucket"))
    op.drop_table("intake_counters")
