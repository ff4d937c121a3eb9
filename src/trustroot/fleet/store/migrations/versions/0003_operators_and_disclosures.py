"""Operators (API tokens with scopes) and vulnerability disclosures (intake, triage, CRA Art. 14 clock).

Models: :mod:`trustroot.fleet.operators_models`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "disclosures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.String(length=200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("affected_versions", sa.JSON(), nullable=False),
        sa.Column("reporter_contact", sa.String(length=256), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("actively_exploited", sa.Boolean(), nullable=False),
        sa.Column("early_warning_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("early_warning_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notification_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notification_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("corrective_measure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_report_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "severity IS NULL OR severity IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_disclosures_severity_valid"),
        ),
        sa.CheckConstraint(
            "state IN ('received', 'acknowledged', 'triaged', 'closed')", name=op.f("ck_disclosures_state_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
    )
    with op.batch_alter_table("disclosures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disclosures_state"), ["state"], unique=False)

    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=128), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
        sa.UniqueConstraint("token_id", name=op.f("uq_operators_token_id")),
    )


def downgrade() -> None:
    op.drop_table("operators")
    with op.batch_alter_table("disclosures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disclosures_state"))

    op.drop_table("disclosures")
