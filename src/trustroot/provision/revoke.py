"""Device revocation: mark devices revoked and publish the issuing CA's next CRL.

``trustroot provision revoke SERIAL... | --batch B --reason R``, in ONE transaction of the
production store::

    devices (active) -> revoked, with the time and the reason
    CRL number = max(the store's, the current CRL file's) + 1         (strictly increasing)
    CRL over EVERY revoked device the current issuing CA issued, signed with the issuing CA key
    (thisUpdate now, nextUpdate now + 30 days), written atomically to pki/issuing-ca.crl.pem
    COMMIT, then one ``device.revoked`` evidence record per device

A crash before the commit can leave a CRL that lists more than the store marks revoked, never
less: re-running the revocation settles it. The reason is kept as given; an RFC 5280 reason name
in it (``keyCompromise``, "key compromise", ``superseded``, ``cessationOfOperation``, ...) becomes
the entry's cRLReason, anything else is listed as unspecified.

Errors: ``UsageError`` (no reason, nothing to revoke, an unknown serial or batch),
:class:`~trustroot.errors.PolicyRefusal` (a serial that was never issued), ``PKIError`` (issuing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from cryptography import x509

from trustroot._fsutil import atomic_write
from trustroot.errors import PolicyRefusal, StateError, TrustrootError, UsageError
from trustroot.keys._interface import KeyRole
from trustroot.pki.crl import RevokedEntry, dump_pem_crl, issue_crl, load_pem_crl
from trustroot.product import ISSUING_CA_CERT, ISSUING_CA_CRL, Product
from trustroot.provision.batch import unlock_role
from trustroot.provision.store import DeviceRecord, ProductionStore, Transaction

__all__ = ["CRL_VALIDITY", "RevocationResult", "reason_flag", "revoke_devices"]

#: nextUpdate - thisUpdate of every CRL this module issues (as ``trustroot init``'s first CRL).
CRL_VALIDITY: Final = timedelta(days=30)
_REASONS: Final = {
    flag.value.lower(): flag for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
}
_MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class RevocationResult:
    """What a revocation did: the serials revoked now, and the CRL published."""

    serials: tuple[str, ...]
    crl_number: int
    crl_path: Path
    #: Every serial the new CRL lists (this revocation's and the earlier ones).
    listed: int
    #: Revoked devices left off the CRL because another (an earlier) issuing CA issued them.
    other_issuer: tuple[str, ...]


def reason_flag(reason: str) -> x509.ReasonFlags:
    """The cRLReason for a free-text reason: an RFC 5280 name in it, else unspecified."""
    squashed = re.sub(r"[^a-z]", "", reason.lower())
    for name, flag in _REASONS.items():
        if name in squashed and flag is not x509.ReasonFlags.unspecified:
            return flag
    return x509.ReasonFlags.unspecified


def _targets(txn: Transaction, store: ProductionStore, serials: tuple[str, ...], batch_id: str | None) -> list[str]:
    chosen: list[str] = []
    for serial in serials:
        device = txn.device(serial)
        if device is None:
            raise UsageError(f"no device with serial {serial} in the production store")
        if device.status in ("reserved", "void"):
            raise PolicyRefusal(f"serial {serial} was never issued a certificate ({device.status}): nothing to revoke")
        if device.status == "active":
            chosen.append(serial)
    if batch_id is not None:
        if txn.batch(batch_id) is None:
            raise UsageError(f"no batch {batch_id} in the production store")
        chosen.extend(d.serial for d in store.iter_devices(batch_id=batch_id, status="active"))
    return list(dict.fromkeys(chosen))


def _issued_by(device: DeviceRecord, issuing: x509.Certificate, ski: bytes | None) -> bool:
    if device.certificate is None:  # pragma: no cover - revoked devices were issued
        return False
    cert = x509.load_der_x509_certificate(device.certificate)
    if cert.issuer != issuing.subject:
        return False
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return True
    return ski is None or aki == ski


def _current_crl_number(path: Path) -> int:
    try:
        crl = load_pem_crl(path)
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (TrustrootError, x509.ExtensionNotFound, ValueError):  # no readable CRL: no number known
        return 0


def revoke_devices(
    product: Product,
    store: ProductionStore,
    *,
    serials: tuple[str, ...] = (),
    batch_id: str | None = None,
    reason: str,
) -> RevocationResult:
    """Revoke devices (by serial, or every active device of a batch) and publish the next CRL."""
    text = reason.strip()
    if not text:
        raise UsageError("--reason is required: say why the devices are revoked (e.g. keyCompromise)")
    if len(text) > _MAX_REASON_CHARS:
        raise UsageError(f"--reason is longer than {_MAX_REASON_CHARS} characters")
    if not serials and batch_id is None:
        raise UsageError("name the devices to revoke: one or more serials, or --batch BATCH")
    issuing = unlock_role(product, KeyRole.ISSUING_CA, "no CRL can be issued")
    issuing_cert = product.certificate(ISSUING_CA_CERT)
    try:
        ski: bytes | None = issuing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = None
    crl_path = product.pki_dir / ISSUING_CA_CRL
    with store.transaction() as txn:
        now = product.clock()
        chosen = _targets(txn, store, serials, batch_id)
        if not chosen:
            raise StateError("nothing to revoke: the devices named are revoked already")
        for serial in chosen:
            txn.revoke(serial, time=now, reason=text)
        number = max(int(txn.meta("crl_number") or "0"), _current_crl_number(crl_path)) + 1
        entries: list[RevokedEntry] = []
        other: list[str] = []
        for device in txn.iter_revoked():
            if not _issued_by(device, issuing_cert, ski) or device.cert_serial is None:
                other.append(device.serial)
                continue
            when = device.revoked_at or now
            entries.append((int(device.cert_serial, 16), when, reason_flag(device.revocation_reason or "")))
        crl = issue_crl(
            issuing, issuing_cert, entries, this_update=now, next_update=now + CRL_VALIDITY, crl_number=number
        )
        atomic_write(crl_path, dump_pem_crl(crl), mode=0o644)
        txn.set_meta("crl_number", str(number))
        revoked = [txn.device(serial) for serial in chosen]
    for record in revoked:
        if record is None:  # pragma: no cover - revoked in the transaction above
            continue
        device = record
        product.record(
            "device.revoked",
            device.serial,
            {
                "serial": device.serial,
                "certificate": device.cert_fingerprint,
                "certificate_serial": device.cert_serial,
                "batch": device.batch_id,
                "reason": text,
                "crl_reason": reason_flag(text).value,
                "crl_number": number,
            },
        )
    return RevocationResult(
        serials=tuple(chosen),
        crl_number=number,
        crl_path=crl_path,
        listed=len(entries),
        other_issuer=tuple(other),
    )
