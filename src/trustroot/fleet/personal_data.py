"""Owners' personal data: stored apart, encrypted, kept for its retention, crypto-shredded on request
(guidelines 8 and 11: provisions 5.8-1, 5.8-2, 5.11-1 .. 5.11-4).

Keys::

    data KEK      a 256-bit HMAC-SHA256 secret in the product key store (role ``other``, ``data-kek-N``,
                  made on first use). The key-encryption key is HMAC-SHA256(secret, "trustroot/data-kek/v1"):
                  the secret never leaves the key store (a PKCS#11 token computes the MAC), the MAC output
                  serves as a KDF output (HMAC is a PRF), and only the derived KEK is held in memory, briefly
    data key      one random AES-256 key per owner, stored WRAPPED under the KEK (AES key wrap, RFC 3394)
                  in ``owner_data_keys``, with the name of the KEK that wrapped it
    personal data each (owner, device, category) row: 12-byte nonce || AES-256-GCM(data key), the associated
                  data binding it to owner, device and category; ``expires_at`` = stored + retention_days

Only categories the Security Context declares with ``in_service = true`` are accepted, at most
:data:`MAX_VALUE_BYTES` each. :func:`purge_expired` deletes rows past retention (run it periodically;
the clock is injected). **Deletion** (:func:`delete_owner_data`) removes the rows and, for a whole
owner, the wrapped data key (so every copy of the ciphertext anywhere, backups included, is unreadable:
crypto-shredding), queues ``factory_reset`` for the devices concerned, records ``data.deleted`` (no
personal data in it) and returns a signed receipt (:mod:`trustroot.fleet.receipts`). Then the freed
bytes are scrubbed from the database files (:func:`scrub_store`):

    SQLite       secure_delete is on (deleted cells are zeroed), then ``PRAGMA wal_checkpoint(TRUNCATE)``
                 copies the zeroed pages into the main file and truncates the WAL holding the old ones
    PostgreSQL   ``VACUUM FULL`` of ``personal_data`` and ``owner_data_keys`` (outside a transaction):
                 plain VACUUM only marks dead tuples' space free and compacts pages without zeroing, so the
                 old bytes stay in the page's free space until overwritten; VACUUM FULL rewrites the tables
                 into new files and truncates the old ones at once. It holds an ACCESS EXCLUSIVE lock on the
                 two (small) tables for the rewrite. The write-ahead log (pg_wal) and backups still hold the
                 old ciphertext and wrapped key until recycled: the destroyed data key is what protects them

Errors::

    UsageError
    └── PersonalDataError      an undeclared category, an oversized value, no data key for the owner
    PolicyRefusal
    └── OwnershipRefused       (trustroot.fleet.ownership) the device is not the owner's

The classes live in :mod:`trustroot.errors`; they stay importable from here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from trustroot.errors import KeyExistsError, PersonalDataError
from trustroot.fleet.ownership import (
    Owner,
    OwnershipRefused,
    owned_devices,
    owner_id_digest,
    transfer_device,
)
from trustroot.fleet.ownership_models import DeviceOwnership, OwnerDataKey, PersonalDatum
from trustroot.fleet.receipts import RECEIPT_TYPE, canonical_json, service_signing_key, sign_deletion_receipt
from trustroot.fleet.service import FleetService
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.audit import SERVICE_ACTOR, record
from trustroot.fleet.store.models import CommandState, Device, DeviceCommand
from trustroot.keys._interface import Algorithm, KeyRole, KeyStatus
from trustroot.keys.store import KeyStore

__all__ = [
    "KEK_LABEL",
    "KEK_PREFIX",
    "MAX_VALUE_BYTES",
    "DeletionOutcome",
    "PersonalDataError",
    "delete_owner_data",
    "purge_expired",
    "read_personal_data",
    "scrub_store",
    "store_personal_data",
    "transfer_and_erase",
]

_log = logging.getLogger(__name__)

#: Names of the data KEK secrets: ``data-kek-1``, ...
KEK_PREFIX: Final = "data-kek-"
#: The HMAC input that derives the KEK from the key store's secret.
KEK_LABEL: Final = b"trustroot/data-kek/v1"
#: Largest value of one category (bytes).
MAX_VALUE_BYTES: Final = 4096
#: The tables whose freed space is scrubbed after a deletion.
SCRUBBED_TABLES: Final = ("personal_data", "owner_data_keys")
_LOCK: Final = lock_key("trustroot.fleet.personal_data")
_NONCE = 12
_CHECKPOINT_TRIES = 5


@dataclass(frozen=True)
class DeletionOutcome:
    """What a deletion did: the signed receipt and the evidence record's sequence number."""

    receipt: dict[str, Any]
    evidence_seq: int


# -- keys --------------------------------------------------------------------------------------


def _kek(keys: KeyStore, name: str | None = None) -> tuple[str, bytes]:
    """(name, KEK bytes) of KEK ``name``, or of the newest active ``data-kek-N`` (made if there is none)."""
    if name is None:
        for _attempt in range(2):
            found = [
                info
                for info in keys.list()
                if info.role is KeyRole.OTHER
                and info.status is KeyStatus.ACTIVE
                and info.name.startswith(KEK_PREFIX)
                and info.algorithm is Algorithm.HMAC_SHA256
            ]
            if found:
                name = max(found, key=lambda info: info.generation).name
                break
            try:
                name = keys.create(KeyRole.OTHER, Algorithm.HMAC_SHA256, name=f"{KEK_PREFIX}1").name
                break
            except KeyExistsError:
                continue
    if name is None:  # pragma: no cover - the second look finds the other worker's key
        raise PersonalDataError("the data key-encryption key cannot be found or made")
    return name, keys.unlock(name).mac(KEK_LABEL)


def _keys(service: FleetService) -> KeyStore:
    if service.keys is None:
        raise PersonalDataError("the service has no key store: personal data cannot be encrypted")
    return service.keys


def _data_key(service: FleetService, session: Session, owner_id: str, *, create: bool) -> bytes | None:
    """The owner's unwrapped data key (made and stored wrapped when ``create`` and there is none)."""
    row = session.get(OwnerDataKey, owner_id)
    if row is not None:
        _name, kek = _kek(_keys(service), row.kek_name)
        try:
            return aes_key_unwrap(kek, row.wrapped_key)
        except InvalidUnwrap as exc:
            raise PersonalDataError(f"the data key of an owner does not unwrap under {row.kek_name}") from exc
    if not create:
        return None
    name, kek = _kek(_keys(service))
    key = AESGCM.generate_key(bit_length=256)
    session.add(
        OwnerDataKey(owner_id=owner_id, kek_name=name, wrapped_key=aes_key_wrap(kek, key), created_at=service.clock())
    )
    return key


def _aad(owner_id: str, serial: str, category: str) -> bytes:
    return canonical_json({"owner": owner_id, "serial": serial, "category": category, "v": 1})


# -- storing and reading -----------------------------------------------------------------------


def _retention_days(service: FleetService, category: str) -> int:
    for declared in service.context.data.personal:
        if declared.name == category and declared.in_service:
            return declared.retention_days
    raise PersonalDataError(
        f"personal data category {category!r} is not declared with in_service = true in the Security Context",
        hint="declare it under [[data.personal]] with its retention_days",
    )


def _owned_device(session: Session, owner: Owner, serial: str) -> Device:
    device = session.scalars(
        select(Device)
        .join(DeviceOwnership, DeviceOwnership.device_id == Device.id)
        .where(Device.serial == serial, DeviceOwnership.owner_id == owner.id)
    ).one_or_none()
    if device is None:
        raise OwnershipRefused(f"device {serial} is not owned by this owner")
    return device


def store_personal_data(service: FleetService, owner: Owner, serial: str, category: str, value: bytes) -> datetime:
    """Store (replace) ``owner``'s ``category`` data for device ``serial``, encrypted; return when it expires."""
    if len(value) > MAX_VALUE_BYTES:
        raise PersonalDataError(f"personal data of one category is at most {MAX_VALUE_BYTES} bytes")
    days = _retention_days(service, category)
    now = service.clock()
    with service.store.transaction() as session:
        device = _owned_device(session, owner, serial)
        key = _data_key(service, session, owner.id, create=True)
        if key is None:  # pragma: no cover - create=True always gives a key
            raise PersonalDataError("no data key")
        nonce = os.urandom(_NONCE)
        sealed = nonce + AESGCM(key).encrypt(nonce, value, _aad(owner.id, serial, category))
        session.execute(
            delete(PersonalDatum).where(
                PersonalDatum.owner_id == owner.id,
                PersonalDatum.device_id == device.id,
                PersonalDatum.category == category,
            )
        )
        expires = now + timedelta(days=days)
        session.add(
            PersonalDatum(
                owner_id=owner.id,
                device_id=device.id,
                category=category,
                ciphertext=sealed,
                stored_at=now,
                expires_at=expires,
            )
        )
    return expires


def read_personal_data(service: FleetService, owner: Owner, serial: str) -> dict[str, bytes]:
    """``owner``'s unexpired personal data for device ``serial``, by category, decrypted."""
    now = service.clock()
    with service.store.transaction() as session:
        device = _owned_device(session, owner, serial)
        rows = session.scalars(
            select(PersonalDatum)
            .where(
                PersonalDatum.owner_id == owner.id,
                PersonalDatum.device_id == device.id,
                PersonalDatum.expires_at > now,
            )
            .order_by(PersonalDatum.category)
        ).all()
        if not rows:
            return {}
        key = _data_key(service, session, owner.id, create=False)
        if key is None:
            raise PersonalDataError("the owner's data key is gone: the data was deleted")
        found: dict[str, bytes] = {}
        for row in rows:
            nonce, sealed = row.ciphertext[:_NONCE], row.ciphertext[_NONCE:]
            try:
                found[row.category] = AESGCM(key).decrypt(nonce, sealed, _aad(owner.id, serial, row.category))
            except InvalidTag as exc:
                raise PersonalDataError(f"stored personal data ({row.category}) does not decrypt") from exc
        return found


# -- deleting ----------------------------------------------------------------------------------


def scrub_store(service: FleetService) -> None:
    """Overwrite freed space of the personal-data tables in the database files (module docstring)."""
    engine = service.store.engine
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "sqlite":
            for _attempt in range(_CHECKPOINT_TRIES):
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
                if not busy:
                    return
            _log.warning("the WAL checkpoint after a deletion stayed busy; the WAL is truncated at a later one")
        elif engine.dialect.name == "postgresql":
            for table in SCRUBBED_TABLES:
                connection.exec_driver_sql(f"VACUUM FULL {table}")


def _queue_factory_reset(session: Session, devices: Sequence[Device], reason: str, now: datetime) -> None:
    for device in devices:
        session.add(
            DeviceCommand(
                device_id=device.id,
                kind="factory_reset",
                payload={"reason": reason},
                state=CommandState.QUEUED.value,
                created_at=now,
            )
        )


def delete_owner_data(
    service: FleetService,
    owner: Owner,
    *,
    serials: Sequence[str] | None = None,
    reason: str = "owner-request",
    actor: str | None = None,
    reset_serials: Sequence[str] | None = None,
) -> DeletionOutcome:
    """Delete ``owner``'s personal data and return the signed receipt.

    With ``serials=None`` everything of the owner goes, its wrapped data key included (crypto-shredding),
    and ``factory_reset`` is queued for every device it owns. With ``serials``, only those devices'
    rows go (the data key stays for the owner's other devices) and only those of them the owner still
    owns are reset, unless ``reset_serials`` names the devices to reset (a transfer resets the device
    it moved).
    """
    handle = service_signing_key(_keys(service))
    now = service.clock()
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _LOCK)
        query = select(PersonalDatum.id, PersonalDatum.category, Device.serial).join(
            Device, Device.id == PersonalDatum.device_id
        )
        query = query.where(PersonalDatum.owner_id == owner.id)
        if serials is None:
            reset = owned_devices(session, owner.id)
        else:
            reset = [device for device in owned_devices(session, owner.id) if device.serial in serials]
            if reset_serials is not None:
                reset = list(session.scalars(select(Device).where(Device.serial.in_(reset_serials))))
            query = query.where(Device.serial.in_(serials))
        rows = session.execute(query).all()
        categories = Counter(row.category for row in rows)
        if rows:
            session.execute(delete(PersonalDatum).where(PersonalDatum.id.in_([row.id for row in rows])))
        key_destroyed = False
        if serials is None:
            gone = session.execute(delete(OwnerDataKey).where(OwnerDataKey.owner_id == owner.id))
            key_destroyed = int(getattr(gone, "rowcount", 0)) > 0
        _queue_factory_reset(session, reset, reason, now)
        owner_digest = owner_id_digest(owner.id)
        body = {
            "v": 1,
            "type": RECEIPT_TYPE,
            "reason": reason,
            "owner_id_sha256": owner_digest,
            "devices": sorted({row.serial for row in rows} | {d.serial for d in reset}),
            "categories": dict(sorted(categories.items())),
            "rows_deleted": len(rows),
            "data_key_destroyed": key_destroyed,
            "factory_reset_queued": [d.serial for d in reset],
            "time": now.isoformat(),
        }
        receipt = sign_deletion_receipt(handle, body)
        evidence = record(
            service,
            "data.deleted",
            owner_digest,
            {**body, "receipt_sha256": hashlib.sha256(canonical_json(receipt)).hexdigest()},
            actor or owner.id,
            session=session,
        )
    scrub_store(service)
    return DeletionOutcome(receipt=receipt, evidence_seq=evidence.seq)


def purge_expired(service: FleetService, *, now: datetime | None = None) -> int:
    """Delete every personal-data row past its retention (at ``now``, default the service's clock); return the count.

    Records one ``data.deleted`` (reason ``retention``, counts per category) when something was deleted.
    """
    now = service.clock() if now is None else now
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _LOCK)
        rows = session.execute(
            select(PersonalDatum.id, PersonalDatum.category).where(PersonalDatum.expires_at <= now)
        ).all()
        if not rows:
            return 0
        session.execute(delete(PersonalDatum).where(PersonalDatum.id.in_([row.id for row in rows])))
        categories = Counter(row.category for row in rows)
        record(
            service,
            "data.deleted",
            "retention",
            {"reason": "retention", "categories": dict(sorted(categories.items())), "rows_deleted": len(rows)},
            SERVICE_ACTOR,
            session=session,
        )
    scrub_store(service)
    return len(rows)


def transfer_and_erase(
    service: FleetService, owner: Owner, serial: str, new_owner_id: str, authorization: bytes
) -> tuple[dict[str, Any], DeletionOutcome | None]:
    """Transfer ``serial`` (:func:`~trustroot.fleet.ownership.transfer_device`) and, when the context says
    ``[data].delete_on_transfer``, delete the previous owner's data for it (and reset the device).

    Returns the new link and the deletion's outcome (``None`` when the context keeps the data).
    """
    link = transfer_device(service, owner, serial, new_owner_id, authorization)
    if not service.context.data.delete_on_transfer:
        return link, None
    return link, delete_owner_data(service, owner, serials=[serial], reason="transfer", reset_serials=[serial])
