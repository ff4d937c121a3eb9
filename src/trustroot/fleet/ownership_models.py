"""Tables of ownership and personal data (revision 0004)::

    owners               an owner account: id, SHA-256 of its API key, its Ed25519 public key
    device_claim_codes   the claim-code hash of a device (from the batch manifest); consumed once
    device_ownership     the current owner of a device (none after a release)
    ownership_links      the signed chain of owners of each device (claim, transfer, release)
    owner_data_keys      each owner's AES-256 data key, WRAPPED under the key store's data KEK
    personal_data        personal data of one owner for one device and category: AES-256-GCM under
                         the owner's data key, with the time it expires (the category's retention)

Nothing here holds personal data in clear; destroying an owner's ``owner_data_keys`` row makes all of
its ``personal_data`` ciphertexts unreadable (crypto-shredding), and the rows are deleted too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from trustroot.fleet.store.models import Base

__all__ = ["DeviceClaimCode", "DeviceOwnership", "OwnerAccount", "OwnerDataKey", "OwnershipLink", "PersonalDatum"]


class OwnerAccount(Base):
    """An owner: identified by ``id``, authenticated by an API key (only its SHA-256 is kept)."""

    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SHA-256 (hex) of the owner's API key.
    api_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: The owner's Ed25519 public key, raw 32 bytes as lower-case hex.
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class DeviceClaimCode(Base):
    """The one-time claim code of a device, as its hash; ``consumed_at`` set by the one claim it allows."""

    __tablename__ = "device_claim_codes"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    claim_code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    consumed_at: Mapped[datetime | None]


class DeviceOwnership(Base):
    """The current owner of a device (a row exists while the device is owned)."""

    __tablename__ = "device_ownership"
    __table_args__ = (Index(None, "owner_id"),)

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"))
    since: Mapped[datetime]


class OwnershipLink(Base):
    """One signed link of a device's ownership chain (see :mod:`trustroot.fleet.ownership`)."""

    __tablename__ = "ownership_links"
    __table_args__ = (UniqueConstraint("device_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    #: The canonical JSON of the link's body, exactly as signed.
    body: Mapped[str] = mapped_column(Text)
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The service's Ed25519 signature over the body (base64).
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class OwnerDataKey(Base):
    """An owner's data key, wrapped (AES key wrap, RFC 3394) under the KEK of key ``kek_name``."""

    __tablename__ = "owner_data_keys"

    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), primary_key=True)
    kek_name: Mapped[str] = mapped_column(String(128))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class PersonalDatum(Base):
    """One category of personal data of one owner for one device: nonce || AES-256-GCM ciphertext."""

    __tablename__ = "personal_data"
    __table_args__ = (
        UniqueConstraint("owner_id", "device_id", "category"),
        Index(None, "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime]
    expires_at: Mapped[datetime]
