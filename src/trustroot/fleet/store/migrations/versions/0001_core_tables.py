"""Core tables: batches, devices, device commands, alerts and the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("v", sa.Integer(), nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_hash")),
    )
    op.create_index(op.f("ix_audit_subject"), "audit", ["subject"], unique=False)
    op.create_index(op.f("ix_audit_type"), "audit", ["type"], unique=False)

    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("factory", sa.String(length=128), nullable=False),
        sa.Column("device_count", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("manifest_sha256", name=op.f("uq_batches_manifest_sha256")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=False),
        sa.Column("certificate_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("factory", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checkin_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_version", sa.String(length=64), nullable=True),
        sa.Column("security_counter", sa.BigInteger(), nullable=True),
        sa.Column("health", sa.JSON(), nullable=True),
        sa.Column("group_name", sa.String(length=64), server_default=sa.text("'default'"), nullable=False),
        sa.Column("channel", sa.String(length=64), server_default=sa.text("'stable'"), nullable=False),
        sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f("ck_devices_status_valid")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_devices_batch_id_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("certificate_fingerprint", name=op.f("uq_devices_certificate_fingerprint")),
        sa.UniqueConstraint("serial", name=op.f("uq_devices_serial")),
    )
    op.create_index(op.f("ix_devices_batch_id"), "devices", ["batch_id"], unique=False)
    op.create_index(op.f("ix_devices_group_name"), "devices", ["group_name"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=1024), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name=op.f("ck_alerts_severity_valid")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_alerts_device_id_devices"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_device_id"), "alerts", ["device_id"], unique=False)

    op.create_table(
        "device_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'delivered', 'acknowledged', 'failed', 'cancelled')",
            name=op.f("ck_device_commands_state_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_commands_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_commands")),
    )
    op.create_index(op.f("ix_device_commands_device_id_state"), "device_commands", ["device_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_device_commands_device_id_state"), table_name="device_commands")

    op.drop_table("device_commands")
    op.drop_index(op.f("ix_alerts_device_id"), table_name="alerts")

    op.drop_table("alerts")
    op.drop_index(op.f("ix_devices_group_name"), table_name="devices")
    op.drop_index(op.f("ix_devices_batch_id"), table_name="devices")

    op.drop_table("devices")
    op.drop_table("batches")
    op.drop_index(op.f("ix_audit_type"), table_name="audit")
    op.drop_index(op.f("ix_audit_subject"), table_name="audit")

    op.drop_table("audit")
