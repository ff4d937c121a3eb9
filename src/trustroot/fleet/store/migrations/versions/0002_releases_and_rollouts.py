"""Releases and staged rollouts: releases, rollouts, rollout offers and install results.

Models: :mod:`trustroot.fleet.releases.models`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("security_counter", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("target_path", sa.String(length=255), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=256), nullable=False),
        sa.Column("support_period_end", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("channel", "version", name=op.f("uq_releases_channel_version")),
        sa.UniqueConstraint("target_path", name=op.f("uq_releases_target_path")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_releases_channel_security_counter"), ["channel", "security_counter"], unique=False
        )

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("stage_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failure_threshold", sa.Float(), nullable=False),
        sa.Column("min_sample", sa.Integer(), nullable=False),
        sa.Column("offered_count", sa.Integer(), nullable=False),
        sa.Column("succeeded_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("window_offered_base", sa.Integer(), nullable=False),
        sa.Column("window_failed_base", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('active', 'paused', 'aborted', 'superseded')", name=op.f("ck_rollouts_state_valid")
        ),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name=op.f("fk_rollouts_release_id_releases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_channel_state"), ["channel", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollouts_release_id"), ["release_id"], unique=False)

    op.create_table(
        "install_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=1024), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_install_results_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name=op.f("fk_install_results_release_id_releases")),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_install_results_rollout_id_rollouts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_install_results")),
    )
    with op.batch_alter_table("install_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_install_results_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_install_results_release_id"), ["release_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_install_results_rollout_id"), ["rollout_id"], unique=False)

    op.create_table(
        "rollout_offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_counter", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.String(length=8), nullable=True),
        sa.Column("result_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("result IS NULL OR result IN ('ok', 'failed')", name=op.f("ck_rollout_offers_result_valid")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_rollout_offers_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_offers_rollout_id_rollouts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_offers")),
        sa.UniqueConstraint("rollout_id", "device_id", name=op.f("uq_rollout_offers_rollout_id_device_id")),
    )
    with op.batch_alter_table("rollout_offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollout_offers_device_id"), ["device_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rollout_offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_offers_device_id"))

    op.drop_table("rollout_offers")
    with op.batch_alter_table("install_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_install_results_rollout_id"))
        batch_op.drop_index(batch_op.f("ix_install_results_release_id"))
        batch_op.drop_index(batch_op.f("ix_install_results_device_id"))

    op.drop_table("install_results")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_release_id"))
        batch_op.drop_index(batch_op.f("ix_rollouts_channel_state"))

    op.drop_table("rollouts")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_channel_security_counter"))

    op.drop_table("releases")
