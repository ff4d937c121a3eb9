"""The fleet's device registry: closed production batches are imported, and only their devices are known.

A device may use the fleet service only if the fleet knows it, and the fleet learns devices from one
source: the signed manifest of a closed production batch (``trustroot provision close`` writes it,
signed by the product's ``production-authority`` key)::

    import_batch(service, manifest bytes, actor=...)
      1. verify_manifest under each trusted production-authority public key of the key store
         (trustroot.provision.manifest: signature first, then every field; InvalidManifest)
      2. the manifest must be of this product: product name and root CA fingerprint
      3. ONE transaction, imports serialised by a lock:
           same manifest (SHA-256 of the file) imported before  -> nothing to do (idempotent)
           same batch id from another manifest                  -> BatchImportRefused
           a serial or certificate already registered elsewhere -> BatchImportRefused (naming them)
           else: the batch row, every device row, and the evidence record batch.imported
                 in the fleet's audit chain

:func:`get_device_by_certificate` is how the device authentication layer maps a verified client
certificate to the store's row (by the SHA-256 of its DER); an unregistered certificate raises
:class:`DeviceUnknown`. The row is returned whatever its status: the caller refuses revoked ones.

Errors::

    InvalidManifest (trustroot.provision.manifest)   forged, altered or malformed manifest
    PolicyRefusal (trustroot.errors)
    ├── BatchImportRefused     a manifest of another product, or one that conflicts with the registry
    └── DeviceUnknown          no registered device has that certificate or serial
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.orm import Session

from trustroot.errors import PolicyRefusal
from trustroot.evidence import EvidenceRecord
from trustroot.fleet.service import FleetService
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.audit import record
from trustroot.fleet.store.models import Batch, Device, DeviceStatus
from trustroot.keys._interface import KeyStatus
from trustroot.keys.store import KeyStore
from trustroot.pki.certificates import certificate_fingerprint, load_pem_certificate
from trustroot.product import ROOT_CA_CERT
from trustroot.provision.manifest import InvalidManifest, Manifest, verify_manifest
from trustroot.provision.tokens import AUTHORITY_KEY

__all__ = [
    "MAX_PAGE",
    "BatchImportRefused",
    "DeviceUnknown",
    "ImportResult",
    "count_devices",
    "get_device",
    "get_device_by_certificate",
    "import_batch",
    "list_devices",
]

#: Provision of EN 303 645 the registry serves: only known devices authenticate (5.5-1, 5.1-1 via identity).
_PROVISION: Final = "5.5-1"
#: Most devices one :func:`list_devices` call returns.
MAX_PAGE: Final = 1000
_IMPORT_LOCK_KEY: Final = lock_key("trustroot.fleet.devices.import")
_CHUNK = 500
_NAMED = 5


class BatchImportRefused(PolicyRefusal):
    """A batch manifest that verifies but may not be imported: another product's, or conflicting."""


class DeviceUnknown(PolicyRefusal):
    """No registered device has that certificate (or serial): the fleet refuses it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, provision=_PROVISION, hint=hint)


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_batch` did. ``already_imported``: the same manifest was imported before."""

    batch: str
    factory: str
    manifest_sha256: str
    devices: int
    revoked: int
    already_imported: bool
    record: EvidenceRecord | None


def _authority_public_keys(keys: KeyStore | None) -> list[PublicKeyTypes]:
    """Public keys of every production-authority key not revoked (rotated ones still verify old manifests)."""
    found = [
        serialization.load_pem_public_key(info.public_pem.encode("ascii"))
        for info in (keys.list() if keys is not None else [])
        if info.name == AUTHORITY_KEY and info.status is not KeyStatus.REVOKED and info.public_pem
    ]
    if not found:
        raise InvalidManifest(
            f"no usable '{AUTHORITY_KEY}' key in the product's key store: batch manifests cannot be verified",
            hint="run the import where the product's key index (its public keys) is available",
        )
    return found


def _verified(data: bytes, keys: Sequence[PublicKeyTypes], source: str) -> Manifest:
    """The manifest verified under the one authority key that signed it; the last refusal otherwise."""
    refusals: list[InvalidManifest] = []
    for key in keys:
        try:
            return verify_manifest(data, key, source=source)
        except InvalidManifest as exc:
            refusals.append(exc)
    raise refusals[-1] if refusals else InvalidManifest(f"{source}: no production-authority key to verify it")


def _check_product(service: FleetService, manifest: Manifest, source: str) -> None:
    product = service.context.product.name
    if manifest.product != product:
        raise BatchImportRefused(f"{source}: batch {manifest.batch} was made for {manifest.product!r}, not {product!r}")
    root = certificate_fingerprint(load_pem_certificate(service.pki_dir / ROOT_CA_CERT))
    if manifest.root_ca != root:
        raise BatchImportRefused(
            f"{source}: batch {manifest.batch} names root CA {manifest.root_ca[:16]}…, "
            f"this product's root CA is {root[:16]}…"
        )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _already_registered(session: Session, manifest: Manifest) -> list[str]:
    serials = [d.serial for d in manifest.devices]
    fingerprints = [d.certificate_sha256 for d in manifest.devices]
    taken: set[str] = set()
    for chunk in _chunks(serials):
        taken.update(session.scalars(select(Device.serial).where(Device.serial.in_(chunk))))
    for chunk in _chunks(fingerprints):
        taken.update(session.scalars(select(Device.serial).where(Device.certificate_fingerprint.in_(chunk))))
    return sorted(taken)


def import_batch(service: FleetService, data: bytes, *, actor: str, source: str = "manifest") -> ImportResult:
    """Verify a closed batch's signed manifest and register its devices (see the module docstring)."""
    manifest = _verified(data, _authority_public_keys(service.keys), source)
    _check_product(service, manifest, source)
    digest = hashlib.sha256(data).hexdigest()
    revoked = sum(1 for d in manifest.devices if d.status == DeviceStatus.REVOKED)
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _IMPORT_LOCK_KEY)
        if session.scalar(select(Batch.id).where(Batch.manifest_sha256 == digest)) is not None:
            return ImportResult(manifest.batch, manifest.factory, digest, len(manifest.devices), revoked, True, None)
        other = session.get(Batch, manifest.batch)
        if other is not None:
            raise BatchImportRefused(
                f"{source}: batch {manifest.batch} was imported already from another manifest "
                f"(SHA-256 {other.manifest_sha256[:16]}…, this one {digest[:16]}…)",
                hint="a closed batch has one manifest; find out where the other one came from",
            )
        taken = _already_registered(session, manifest)
        if taken:
            named = ", ".join(taken[:_NAMED]) + (f" and {len(taken) - _NAMED} more" if len(taken) > _NAMED else "")
            raise BatchImportRefused(
                f"{source}: batch {manifest.batch} lists {len(taken)} device(s) registered already "
                f"(serial or certificate): {named}; nothing was imported"
            )
        now = service.clock()
        session.add(
            Batch(
                id=manifest.batch,
                manifest_sha256=digest,
                factory=manifest.factory,
                device_count=len(manifest.devices),
                imported_at=now,
            )
        )
        session.flush()
        model = service.context.product.model
        rows = [
            {
                "serial": d.serial,
                "certificate_fingerprint": d.certificate_sha256,
                "certificate_pem": d.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                "batch_id": manifest.batch,
                "factory": manifest.factory,
                "model": model,
                "status": DeviceStatus(d.status).value,
                "registered_at": now,
                "revoked_at": now if d.status == DeviceStatus.REVOKED else None,
            }
            for d in manifest.devices
        ]
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(Device), rows[start : start + _CHUNK])
        evidence = record(
            service,
            "batch.imported",
            manifest.batch,
            {
                "batch": manifest.batch,
                "token": manifest.token,
                "factory": manifest.factory,
                "manifest_sha256": digest,
                "devices": len(manifest.devices),
                "revoked": revoked,
            },
            actor,
            session=session,
        )
    # the one-time owner claim codes travel as hashes with the devices (after the devices exist)
    from trustroot.fleet.ownership import import_claim_codes

    import_claim_codes(service, manifest.devices)
    return ImportResult(manifest.batch, manifest.factory, digest, len(manifest.devices), revoked, False, evidence)


def get_device_by_certificate(service: FleetService, cert: x509.Certificate) -> Device:
    """The registered device whose certificate is ``cert`` (any status; detached from its session).

    Raises :class:`DeviceUnknown` when no device has that certificate.
    """
    fingerprint = certificate_fingerprint(cert)
    with service.store.transaction() as session:
        device = session.scalars(select(Device).where(Device.certificate_fingerprint == fingerprint)).one_or_none()
    if device is None:
        raise DeviceUnknown(
            f"no registered device has the certificate {fingerprint[:16]}…",
            hint="import the device's production batch: trustroot fleet import-batch MANIFEST",
        )
    return device


def get_device(service: FleetService, serial: str) -> Device:
    """The registered device ``serial`` (detached); :class:`DeviceUnknown` if there is none."""
    with service.store.transaction() as session:
        device = session.scalars(select(Device).where(Device.serial == serial)).one_or_none()
    if device is None:
        raise DeviceUnknown(f"no registered device {serial!r}")
    return device


def _filters(
    status: DeviceStatus | None, batch: str | None, group: str | None, channel: str | None
) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if status is not None:
        found.append(Device.status == status.value)
    if batch is not None:
        found.append(Device.batch_id == batch)
    if group is not None:
        found.append(Device.group_name == group)
    if channel is not None:
        found.append(Device.channel == channel)
    return found


def list_devices(
    service: FleetService,
    *,
    status: DeviceStatus | None = None,
    batch: str | None = None,
    group: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Device]:
    """Registered devices matching every filter given, by serial; at most ``limit`` (≤ :data:`MAX_PAGE`)."""
    limit = max(0, min(limit, MAX_PAGE))
    query = (
        select(Device)
        .where(*_filters(status, batch, group, channel))
        .order_by(Device.serial)
        .limit(limit)
        .offset(max(0, offset))
    )
    with service.store.transaction() as session:
        return list(session.scalars(query))


def count_devices(
    service: FleetService,
    *,
    status: DeviceStatus | None = None,
    batch: str | None = None,
    group: str | None = None,
    channel: str | None = None,
) -> int:
    """How many registered devices match every filter given."""
    query = select(func.count()).select_from(Device).where(*_filters(status, batch, group, channel))
    with service.store.transaction() as session:
        return int(session.scalar(query) or 0)
