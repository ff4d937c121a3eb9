"""Batch manifests: what a closed batch made, signed for the fleet service, and a CSV for the line.

``trustroot provision close BATCH`` closes a batch in one transaction (its still-reserved serials
become void, its unused quota returns to the token) and writes two files, each atomically:

``manifest-<batch>.json``, a signed envelope like a production token's, signed by the
``production-authority`` key (ecdsa-p256) over the canonical JSON of ``signed``::

    {"signed": {
        "type": "trustroot.batch-manifest", "version": 1,
        "batch": "batch-3f9c0a1b2c3d", "token": "tok-...", "factory": "shenzhen-1",
        "product": "Acme Plug", "root_ca": "<sha256>", "issuing_ca": "<sha256>",
        "opened": "...Z", "closed": "...Z", "count": 2, "voided": 0,
        "devices": [
          {"serial": "ACMEPL-00000001", "sequence": 1, "status": "active",
           "certificate_sha256": "<sha256 of the DER>", "certificate": "-----BEGIN CERTIFICATE-----...",
           "claim_code_hash": "<sha256, see claim.py>" | null},
          ...                                                  (in sequence order)
        ]},
     "signature": {"key_id": "<sha256 of the authority key>", "algorithm": "ecdsa-p256", "value": "<base64>"}}

``<batch>.csv`` for the production line and label printing, one row per device with the fields
that are NOT secret (the claim code and the password live only in the bundles and on the labels)::

    serial,sequence,status,certificate_sha256,certificate_serial,product,model,manufacturer,batch,factory,provisioned

Both files are written while the list streams from the database (the manifest's signature is
over a SHA-256 computed as it is written), so closing a batch of any size needs flat memory.

:func:`verify_manifest` checks the signature first, then every field: each certificate must hash
to its ``certificate_sha256`` and name its serial, no serial twice, ``count`` equal to the list.
Every refusal is one :class:`InvalidManifest` carrying the reason.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._fsutil import fsync_dir
from trustroot.errors import InvalidManifest, PKIError, StateError, UsageError
from trustroot.evidence import format_time
from trustroot.keys._interface import Algorithm, KeyHandle
from trustroot.pki.certificates import certificate_fingerprint
from trustroot.product import ISSUING_CA_CERT, Product
from trustroot.provision.batch import production_run
from trustroot.provision.identity import device_serial_of
from trustroot.provision.store import (
    BatchRecord,
    DeviceRecord,
    ProductionStateError,
    ProductionStore,
    TokenRecord,
    Transaction,
)
from trustroot.provision.tokens import (
    STATION_SIGNING_KEY,
    TOKEN_VERSION,
    TrustedKey,
    canonical_json,
    open_envelope,
    parse_time,
    root_ca_fingerprint,
    sign_token_state,
    unlock_authority,
)

__all__ = [
    "CSV_COLUMNS",
    "MANIFEST_TYPE",
    "MAX_MANIFEST_BYTES",
    "CloseResult",
    "InvalidManifest",
    "Manifest",
    "ManifestDevice",
    "close_batch",
    "verify_manifest",
]

MANIFEST_TYPE: Final = "trustroot.batch-manifest"
#: A manifest holds a certificate per device (about 1 KiB each): a million devices fit.
MAX_MANIFEST_BYTES: Final = 1 << 30
CSV_COLUMNS: Final = (
    "serial",
    "sequence",
    "status",
    "certificate_sha256",
    "certificate_serial",
    "product",
    "model",
    "manufacturer",
    "batch",
    "factory",
    "provisioned",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIGNED_FIELDS = frozenset(
    {
        "type",
        "version",
        "batch",
        "token",
        "factory",
        "product",
        "root_ca",
        "issuing_ca",
        "opened",
        "closed",
        "count",
        "voided",
        "devices",
    }
)
_DEVICE_FIELDS = frozenset({"serial", "sequence", "status", "certificate_sha256", "certificate", "claim_code_hash"})


@dataclass(frozen=True)
class ManifestDevice:
    serial: str
    sequence: int
    status: str
    certificate_sha256: str
    certificate: x509.Certificate
    claim_code_hash: str | None


@dataclass(frozen=True)
class Manifest:
    """A verified batch manifest."""

    batch: str
    token: str
    factory: str
    product: str
    root_ca: str
    issuing_ca: str
    opened: datetime
    closed: datetime
    voided: int
    devices: tuple[ManifestDevice, ...]


@dataclass(frozen=True)
class CloseResult:
    batch: BatchRecord
    manifest: Path
    csv: Path
    devices: int
    voided: int
    released: int
    manifest_sha256: str


# ------------------------------------------------------------------------------------------- writing


def _device_entry(device: DeviceRecord) -> dict[str, object]:
    if device.certificate is None:  # pragma: no cover - issued devices always have one
        raise ProductionStateError(f"production store: device {device.serial} has no certificate")
    pem = x509.load_der_x509_certificate(device.certificate).public_bytes(serialization.Encoding.PEM)
    return {
        "serial": device.serial,
        "sequence": device.sequence,
        "status": device.status,
        "certificate_sha256": device.cert_fingerprint,
        "certificate": pem.decode("ascii"),
        "claim_code_hash": device.claim_hash,
    }


class _AtomicFile:
    """A file written in place of ``path`` only when :meth:`commit` is called (temp + fsync + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o644)
        self.temp = Path(name)
        self.handle = os.fdopen(fd, "wb")
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.temp.replace(self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def _write_manifest(
    target: _AtomicFile,
    head: dict[str, object],
    tail: dict[str, object],
    devices: Iterator[DeviceRecord],
    authority: KeyHandle,
) -> int:
    """Stream the envelope; the signature is over the SHA-256 of the canonical ``signed`` bytes."""
    body_hash = hashlib.sha256()

    def body(data: bytes) -> None:
        body_hash.update(data)
        target.write(data)

    target.write(b'{"signed":')
    body(canonical_json(head)[:-1] + b',"devices":[')
    count = 0
    for device in devices:
        body((b"," if count else b"") + canonical_json(_device_entry(device)))
        count += 1
    body(b"]," + canonical_json(tail)[1:])
    signature = authority.sign_digest(body_hash.digest())
    envelope_signature = {
        "key_id": authority.info.fingerprint,
        "algorithm": authority.info.algorithm.value,
        "value": base64.b64encode(signature).decode("ascii"),
    }
    target.write(b',"signature":' + canonical_json(envelope_signature) + b"}\n")
    return count


def _csv_row(device: DeviceRecord, product: Product, batch: BatchRecord) -> list[str]:
    model = product.context.model.product
    return [
        device.serial,
        str(device.sequence),
        device.status,
        device.cert_fingerprint or "",
        device.cert_serial or "",
        model.name,
        model.model,
        model.manufacturer,
        batch.batch_id,
        batch.factory,
        format_time(device.time),
    ]


def _write_csv(target: _AtomicFile, product: Product, batch: BatchRecord, devices: Iterator[DeviceRecord]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for device in devices:
        writer.writerow(_csv_row(device, product, batch))
        if buffer.tell() > 1 << 16:
            target.write(buffer.getvalue().encode("utf-8"))
            buffer.seek(0)
            buffer.truncate()
    target.write(buffer.getvalue().encode("utf-8"))


def _still_open(txn: Transaction, existing: BatchRecord) -> tuple[BatchRecord, TokenRecord]:
    batch = txn.batch(existing.batch_id)
    token = txn.token(existing.token_id)
    if batch is None or token is None or batch.state != "open":
        raise StateError(f"batch {existing.batch_id} was closed or changed meanwhile")
    return batch, token


def close_batch(product: Product, store: ProductionStore, batch_id: str, *, out_dir: Path | None = None) -> CloseResult:
    """Close a batch: void its unissued serials, return unused quota, write the signed manifest and CSV.

    Everything happens in one transaction of the production store (files are written, then the
    batch is marked closed); ``batch.closed`` evidence follows.
    """
    existing = store.batch(batch_id)
    if existing is None:
        raise UsageError(f"no batch {batch_id} in the production store")
    if existing.state != "open":
        raise StateError(f"batch {batch_id} is closed already (manifest sha256 {existing.manifest_sha256})")
    authority = unlock_authority(product)
    signing = product.keys.unlock(STATION_SIGNING_KEY)
    directory = (out_dir or Path(existing.out_dir or store.path.parent / "batches" / batch_id)).resolve()
    manifest_path = directory / f"manifest-{batch_id}.json"
    csv_path = directory / f"{batch_id}.csv"
    model = product.context.model
    with production_run(product, store):
        busy = [d.serial for d in store.pending_evidence() if d.batch_id == batch_id]
        if busy:
            raise StateError(
                f"batch {batch_id} is being made by another process ({len(busy)} devices not yet logged): "
                "close it when that run ends"
            )
        manifest = _AtomicFile(manifest_path)
        table = _AtomicFile(csv_path)
        try:
            with store.transaction() as txn:
                now = product.clock()
                batch, token = _still_open(txn, existing)
                voided = txn.void_reserved(batch_id)
                released = batch.room
                head: dict[str, object] = {
                    "batch": batch_id,
                    "closed": format_time(now),
                    "count": store.count_devices(batch_id=batch_id, issued=True),
                }
                tail: dict[str, object] = {
                    "factory": batch.factory,
                    "issuing_ca": certificate_fingerprint(product.certificate(ISSUING_CA_CERT)),
                    "opened": format_time(batch.opened),
                    "product": model.product.name,
                    "root_ca": root_ca_fingerprint(product),
                    "token": batch.token_id,
                    "type": MANIFEST_TYPE,
                    "version": TOKEN_VERSION,
                    "voided": voided,
                }
                count = _write_manifest(
                    manifest, head, tail, store.iter_devices(batch_id=batch_id, issued=True), authority
                )
                _write_csv(table, product, batch, store.iter_devices(batch_id=batch_id, issued=True))
                digest = manifest.sha256.hexdigest()
                manifest.commit()
                table.commit()
                txn.close_batch(batch_id, requested=batch.provisioned, closed=now, manifest_sha256=digest)
                updated = dataclasses.replace(
                    token, reserved=token.reserved - released, last_seen=max(token.last_seen, now)
                )
                txn.set_token_state(sign_token_state(store.store_id, updated, signing))
        except BaseException:
            manifest.discard()
            table.discard()
            raise
    product.record(
        "batch.closed",
        batch_id,
        {
            "batch": batch_id,
            "token": existing.token_id,
            "factory": existing.factory,
            "devices": count,
            "voided": voided,
            "released": released,
            "manifest_sha256": digest,
            "csv_sha256": table.sha256.hexdigest(),
        },
    )
    final = store.batch(batch_id) or existing
    return CloseResult(
        batch=final,
        manifest=manifest_path,
        csv=csv_path,
        devices=count,
        voided=voided,
        released=released,
        manifest_sha256=digest,
    )


# ----------------------------------------------------------------------------------------- verifying


def _algorithm_of(public_key: PublicKeyTypes) -> Algorithm:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return Algorithm.ECDSA_P256
        if isinstance(public_key.curve, ec.SECP384R1):
            return Algorithm.ECDSA_P384
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return Algorithm.ED25519
    raise InvalidManifest(f"a {type(public_key).__name__} cannot be a production-authority key")


def _device(item: object, position: int) -> ManifestDevice:
    where = f"device {position}"
    if not isinstance(item, dict) or set(item) != _DEVICE_FIELDS:
        raise ValueError(f"{where}: expected exactly the fields {', '.join(sorted(_DEVICE_FIELDS))}")
    serial, sequence, status = item["serial"], item["sequence"], item["status"]
    fingerprint, pem, claim = item["certificate_sha256"], item["certificate"], item["claim_code_hash"]
    if not isinstance(serial, str) or type(sequence) is not int or status not in ("active", "revoked"):
        raise ValueError(f"{where}: serial, sequence or status is malformed")
    if not isinstance(fingerprint, str) or _HEX64.fullmatch(fingerprint) is None:
        raise ValueError(f"{where} ({serial}): certificate_sha256 is not a SHA-256")
    if claim is not None and (not isinstance(claim, str) or _HEX64.fullmatch(claim) is None):
        raise ValueError(f"{where} ({serial}): claim_code_hash is not a SHA-256")
    if not isinstance(pem, str):
        raise ValueError(f"{where} ({serial}): certificate is not a PEM string")  # noqa: TRY004
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        named = device_serial_of(cert)
    except (ValueError, UnicodeError, PKIError, UsageError) as exc:
        raise ValueError(f"{where} ({serial}): the certificate is not a device certificate ({exc})") from exc
    if certificate_fingerprint(cert) != fingerprint:
        raise ValueError(f"{where} ({serial}): the certificate does not hash to its certificate_sha256")
    if named != serial:
        raise ValueError(f"{where}: the certificate names {named}, the entry {serial}")
    return ManifestDevice(serial, sequence, str(status), fingerprint, cert, claim)


def _manifest(signed: dict[str, Any]) -> Manifest:
    if set(signed) != _SIGNED_FIELDS:
        missing, extra = _SIGNED_FIELDS - set(signed), set(signed) - _SIGNED_FIELDS
        raise ValueError(f"fields differ (missing {sorted(missing)}, unknown {sorted(extra)})")
    texts = ("batch", "token", "factory", "product", "root_ca", "issuing_ca", "opened", "closed")
    for name in texts:
        if not isinstance(signed[name], str):
            raise ValueError(f"field {name!r} must be a string")  # noqa: TRY004
    raw = signed["devices"]
    if not isinstance(raw, list) or type(signed["count"]) is not int or type(signed["voided"]) is not int:
        raise ValueError("devices must be a list, count and voided integers")
    devices = tuple(_device(item, position) for position, item in enumerate(raw))
    if signed["count"] != len(devices):
        raise ValueError(f"count {signed['count']} but {len(devices)} devices listed")
    serials = [d.serial for d in devices]
    if len(set(serials)) != len(serials):
        raise ValueError("a serial is listed twice")
    return Manifest(
        batch=signed["batch"],
        token=signed["token"],
        factory=signed["factory"],
        product=signed["product"],
        root_ca=signed["root_ca"],
        issuing_ca=signed["issuing_ca"],
        opened=parse_time(signed["opened"]),
        closed=parse_time(signed["closed"]),
        voided=signed["voided"],
        devices=devices,
    )


def verify_manifest(data: bytes, authority_public_key: PublicKeyTypes, *, source: str = "manifest") -> Manifest:
    """Verify a batch manifest under the production-authority public key; raise :class:`InvalidManifest`."""
    trusted = TrustedKey(authority_public_key, _algorithm_of(authority_public_key))
    signed = open_envelope(
        bytes(data), [trusted], what=source, type_=MANIFEST_TYPE, limit=MAX_MANIFEST_BYTES, error=InvalidManifest
    )
    try:
        return _manifest(signed)
    except (ValueError, TypeError) as exc:
        raise InvalidManifest(f"{source}: malformed ({exc})") from exc
