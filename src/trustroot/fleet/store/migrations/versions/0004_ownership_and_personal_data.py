"""Ownership and personal data: owners, claim codes, the signed ownership chain, wrapped data keys, personal data.

Models: :mod:`trustroot.fleet.ownership_models`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables of ownership and personal data."""
    op.create_table(
        "owners",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("api_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_owners")),
        sa.UniqueConstraint("api_key_sha256", name=op.f("uq_owners_api_key_sha256")),
    )
    op.create_table(
        "owner_data_keys",
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("kek_name", sa.String(length=128), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_owner_data_keys_owner_id_owners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_data_keys")),
    )
    op.create_table(
        "device_claim_codes",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("claim_code_sha256", sa.String(length=64), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_claim_codes_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_claim_codes")),
        sa.UniqueConstraint("claim_code_sha256", name=op.f("uq_device_claim_codes_claim_code_sha256")),
    )
    op.create_table(
        "device_ownership",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_ownership_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name=op.f("fk_device_ownership_owner_id_owners")),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_ownership")),
    )
    with op.batch_alter_table("device_ownership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_ownership_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "ownership_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_ownership_links_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ownership_links")),
        sa.UniqueConstraint("device_id", "seq", name=op.f("uq_ownership_links_device_id_seq")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_ownership_links_link_hash")),
    )
    op.create_table(
        "personal_data",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_personal_data_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_personal_data_owner_id_owners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_data")),
        sa.UniqueConstraint(
            "owner_id", "device_id", "category", name=op.f("uq_personal_data_owner_id_device_id_category")
        ),
    )
    with op.batch_alter_table("personal_data", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_personal_data_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    """Drop them (and with them every owner, link and personal datum)."""
    with op.batch_alter_table("personal_data", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_personal_data_expires_at"))

    op.drop_table("personal_data")
    op.drop_table("ownership_links")
    with op.batch_alter_table("device_ownership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_ownership_owner_id"))

    op.drop_table("device_ownership")
    op.drop_table("device_claim_codes")
    op.drop_table("owner_data_keys")
    op.drop_table("owners")
