"""Certificate revocation lists, signed through a :class:`~trustroot.keys._interface.KeyHandle`.

A CRL trustroot issues (RFC 5280 §5, version 2)::

    issuer        the issuing CA's subject
    thisUpdate    injected ``this_update``
    nextUpdate    injected ``next_update`` (always present: validate_chain refuses a CRL without one)
    extensions    cRLNumber (monotonic, chosen by the caller), authorityKeyIdentifier
    entries       serial, revocationDate, cRLReason (omitted for "unspecified", RFC 5280 §5.3.1)

Signing goes through :mod:`trustroot.pki._signing` (the key may sit on a token) and the result is
verified against the issuer certificate before it is returned. Errors are :class:`PKIError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustroot._fsutil import read_bounded
from trustroot.errors import PKIError
from trustroot.keys._interface import KeyHandle
from trustroot.limits import DEFAULT_LIMITS, Limits
from trustroot.pki._signing import certificate_label, sign_crl

__all__ = [
    "RevokedEntry",
    "dump_pem_crl",
    "issue_crl",
    "load_pem_crl",
    "parse_pem_crl",
]

#: One revoked certificate: (serial number, revocation time, reason or None for unspecified).
RevokedEntry = tuple[int, datetime, x509.ReasonFlags | None]

_MAX_CRL_NUMBER = 1 << 159  # 20 octets, RFC 5280 §5.2.3


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PKIError(f"{what} must be a timezone-aware datetime, got a naive one")
    return moment.astimezone(UTC).replace(microsecond=0)


def _authority_key_id(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier | None:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def issue_crl(
    issuer_handle: KeyHandle,
    issuer_cert: x509.Certificate,
    revoked: Iterable[RevokedEntry],
    *,
    this_update: datetime,
    next_update: datetime,
    crl_number: int,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer_cert`` listing ``revoked``, signed with ``issuer_handle``.

    Refuses an issuer without the cRLSign key usage, ``next_update`` not after ``this_update``,
    a ``crl_number`` outside 0..2^159-1 and a serial listed twice.
    """
    label = certificate_label(issuer_cert)
    try:
        usage = issuer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.crl_sign:
        raise PKIError(f"'{label}' lacks the cRLSign key usage and cannot issue CRLs")
    start = _utc(this_update, "this_update")
    end = _utc(next_update, "next_update")
    if end <= start:
        raise PKIError(f"next_update {end.isoformat()} is not after this_update {start.isoformat()}")
    if not 0 <= crl_number < _MAX_CRL_NUMBER:
        raise PKIError(f"crl_number must be between 0 and 2^159 - 1, got {crl_number}")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(start)
        .next_update(end)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    aki = _authority_key_id(issuer_cert)
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    seen: set[int] = set()
    for serial, when, reason in revoked:
        if serial in seen:
            raise PKIError(f"serial {serial:#x} is listed twice in the CRL of '{label}'")
        seen.add(serial)
        revoked_at = _utc(when, f"revocation time of serial {serial!r}")
        try:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            if reason is not None and reason is not x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        except (ValueError, TypeError) as exc:
            raise PKIError(f"serial {serial!r} cannot be listed in a CRL: {exc}") from exc
    return sign_crl(builder, issuer_handle, issuer_cert)


def parse_pem_crl(
    data: bytes | str, *, what: str = "CRL", limits: Limits = DEFAULT_LIMITS
) -> x509.CertificateRevocationList:
    """One PEM CRL, bounded by ``limits.max_certificate_bytes``."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > limits.max_certificate_bytes:
        raise PKIError(f"{what}: larger than the limit of {limits.max_certificate_bytes} bytes")
    try:
        return x509.load_pem_x509_crl(raw)
    except ValueError as exc:
        raise PKIError(f"{what}: not a PEM CRL ({exc})") from exc


def load_pem_crl(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> x509.CertificateRevocationList:
    """One PEM CRL from a file."""
    data = read_bounded(path, limits.max_certificate_bytes, what="CRL")
    return parse_pem_crl(data, what=f"CRL {path}", limits=limits)


def dump_pem_crl(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
